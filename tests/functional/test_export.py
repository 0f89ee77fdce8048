"""The personal-data export (GET /api/settings/profile/export and `activityfeed export`).

Every part of the ZIP is checked against the database and against the feed the user
sees over HTTP; the whole archive is searched for API key secrets and their hashes.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import or_, select
from typer.testing import CliRunner

from activityfeed.cli.main import app as cli
from activityfeed.domain.accounts import User, Workspace
from activityfeed.domain.events import ResourceType
from activityfeed.domain.ids import digest
from activityfeed.domain.workspaces import Role
from activityfeed.services import export as export_service
from activityfeed.services import integrity
from activityfeed.store.schema import api_keys, events, memberships
from tests.factories import (
    Browser,
    event_body,
    ingest,
    make_key,
    make_team,
    make_user,
    personal_workspace,
    record_system_event,
)
from tests.functional.feed_helpers import assert_error, record_private

runner = CliRunner()
EXPORT = "/api/settings/profile/export"


@dataclass
class Scene:
    me: User
    other: User
    stranger: User
    personal: Workspace
    team: Workspace
    foreign: Workspace
    secrets: list[str]
    browser: Browser
    hidden_ids: set[str]
    archived_ids: set[str]
    late_ids: set[str]


def _key_id(db, secret: str) -> str:
    with db.read() as tx:
        return str(
            tx.conn.execute(
                select(api_keys.c.id).where(api_keys.c.secret_hash == digest(secret))
            ).scalar_one()
        )


def _ids(response) -> list[str]:
    assert response.status_code == 201, response.text
    body = response.json()
    return [e["id"] for e in body["events"]] if "events" in body else [body["event"]["id"]]


def make_scene(app, client, db, clock) -> Scene:
    """Me in my personal workspace and in a team owned by someone else, with keys, events
    and triage; a stranger's workspace I do not belong to."""
    me = make_user(db, clock, name="Me")
    other = make_user(db, clock, name="Other")
    stranger = make_user(db, clock, name="Stranger")
    personal = personal_workspace(db, me)
    team = make_team(db, clock, other, [(me, Role.MEMBER)], name="Vision")
    foreign = personal_workspace(db, stranger)

    my_personal_key = make_key(db, clock, me, personal)
    my_team_key = make_key(db, clock, me, team)
    other_key = make_key(db, clock, other, team)
    stranger_key = make_key(db, clock, stranger, foreign)
    secrets = [my_personal_key, my_team_key, other_key, stranger_key]

    hidden: set[str] = set()
    # Another member's private events in the team: their key's event and a settings one.
    with db.read() as tx:
        hidden |= set(
            tx.conn.execute(
                select(events.c.id).where(
                    events.c.workspace_id == team.id, events.c.private_to == other.id
                )
            ).scalars()
        )
    hidden.add(record_private(db, clock, other, team, ResourceType.SETTINGS))
    record_private(db, clock, me, personal, ResourceType.SETTINGS)
    hidden |= set(_ids(ingest(client, stranger_key, {"events": [event_body(i) for i in range(5)]})))

    clock.advance(minutes=1)
    team_ids = _ids(ingest(client, other_key, {"events": [event_body(i) for i in range(12)]}))
    uploads = [event_body(i, resourceType="dataset", action="uploaded") for i in range(4)]
    personal_ids = _ids(ingest(client, my_personal_key, {"events": uploads}))

    browser = Browser(app, me.email)
    # Personal workspace: mark one seen and archive another by id.
    for path, body in (
        ("/api/activity/mark-seen", {"eventIds": personal_ids[:1]}),
        ("/api/activity/archive", {"eventIds": personal_ids[1:2]}),
    ):
        assert browser.post(path, json=body).status_code == 200
    # Team: mark all seen, archive all, restore one; then more events arrive.
    browser.switch(team.slug)
    since = (clock() - timedelta(days=1)).date().isoformat()
    team_before = {e["id"] for e in browser.activity(limit=100, start=since)["events"]}
    assert browser.post("/api/activity/mark-seen", json={"all": True}).status_code == 200
    assert browser.post("/api/activity/archive", json={"all": True}).status_code == 200
    restore_body = {"eventIds": team_ids[:2], "archive": False}
    restore = browser.post("/api/activity/archive", json=restore_body)
    assert restore.json()["updated"] == 2
    clock.advance(minutes=1)
    # Metadata of every JSON kind (non-ASCII text, nesting, numbers, a redacted secret):
    # the export writes it from the stored text, and it must read as the feed shows it.
    metadata = {
        "note": 'Zürich \u2013 東京 😀 "quoted" \\ line\nbreak',
        "nested": {"list": [1, 2.5, -0.0, 1e-7, None, True], "empty": {}},
        "big": 10**20,
        "password": "hunter2",
    }
    late = _ids(
        ingest(
            client,
            my_team_key,
            {"events": [event_body(100 + i, metadata=metadata) for i in range(3)]},
        )
    )
    assert browser.post("/api/activity/archive", json={"eventIds": late[:1]}).status_code == 200
    assert browser.post("/api/activity/mark-seen", json={"eventIds": late[1:2]}).status_code == 200

    # One of my keys revoked; the other has been used (lastUsedAt set).
    revoked = browser.delete(f"/api/api-keys/{_key_id(db, my_team_key)}")
    assert revoked.status_code == 200, revoked.text

    # A profile change (a private settings event) and resources: in the team a live
    # project and one in Trash; a stranger's project that must not show.
    changed = browser.patch(
        "/api/settings/profile", json={"bio": "Labels things.", "timezone": "Europe/Paris"}
    )
    assert changed.status_code == 200, changed.text
    for name in ("kept", "gone"):
        assert browser.post("/api/projects", json={"name": name}).status_code == 201
    gone = browser.get("/api/projects").json()["projects"][0]
    assert gone["name"] == "gone"
    assert browser.post(f"/api/projects/{gone['id']}/trash").status_code == 200
    stranger_browser = Browser(app, stranger.email)
    assert stranger_browser.post("/api/projects", json={"name": "theirs"}).status_code == 201

    return Scene(
        me=me,
        other=other,
        stranger=stranger,
        personal=personal,
        team=team,
        foreign=foreign,
        secrets=secrets,
        browser=browser,
        hidden_ids=hidden,
        archived_ids=(team_before - set(team_ids[:2])) | set(personal_ids[1:2]) | set(late[:1]),
        late_ids=set(late),
    )


def read_zip(data: bytes) -> tuple[list[str], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        return names, {name: zf.read(name) for name in names}


def jsonl(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode().splitlines()]


def feed_states(browser: Browser, slug: str, since) -> dict[str, dict[str, Any]]:
    """Every event of the workspace as the feed shows it (Inbox and Archive)."""
    found: dict[str, dict[str, Any]] = {}
    for archived in ("false", "true"):
        page = browser.activity(owner=slug, archived=archived, limit=100, start=since)
        assert page["total"] <= 100
        found.update({e["id"]: e for e in page["events"]})
    return found


def test_export_holds_every_part_as_the_database_and_feed_say(app, client, db, clock, tmp_path):
    """Each part matches the database; events are exactly what the user can see across
    their workspaces (Inbox and Archive) with the feed's seen/archived flags."""
    scene = make_scene(app, client, db, clock)
    since = (clock() - timedelta(days=1)).date().isoformat()

    response = scene.browser.get(EXPORT)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="activityfeed-export-{clock().date().isoformat()}.zip"'
    )
    names, parts = read_zip(response.content)
    assert names == list(export_service.PARTS)

    profile = json.loads(parts["profile.json"])
    assert profile["id"] == scene.me.id
    assert profile["email"] == scene.me.email
    assert profile["name"] == "Me"
    assert profile["createdAt"].endswith("Z")
    assert (profile["bio"], profile["timezone"]) == ("Labels things.", "Europe/Paris")
    assert profile["notifications"] == {
        "trainingFailures": True,
        "weeklyDigest": False,
        "emailDigest": "off",
    }

    with db.read() as tx:
        joined = {
            r.workspace_id: r
            for r in tx.conn.execute(
                select(memberships).where(memberships.c.user_id == scene.me.id)
            )
        }
        my_keys = {
            r.id: r
            for r in tx.conn.execute(select(api_keys).where(api_keys.c.created_by == scene.me.id))
        }
        expected_events = set(
            tx.conn.execute(
                select(events.c.id).where(
                    events.c.workspace_id.in_(list(joined)),
                    or_(events.c.private_to.is_(None), events.c.private_to == scene.me.id),
                )
            ).scalars()
        )

    workspaces_part = jsonl(parts["workspaces.jsonl"])
    assert [w["id"] for w in workspaces_part] == [scene.personal.id, scene.team.id]
    for w in workspaces_part:
        assert w["role"] == joined[w["id"]].role
        assert w["joinedAt"] == joined[w["id"]].created_at.isoformat().replace("+00:00", "Z")
    assert workspaces_part[1]["slug"] == scene.team.slug
    assert workspaces_part[1]["isPersonal"] is False

    keys_part = jsonl(parts["api_keys.jsonl"])
    assert {k["id"] for k in keys_part} == set(my_keys)
    assert len(keys_part) == 2
    for k in keys_part:
        row = my_keys[k["id"]]
        assert set(k) == {
            "id", "name", "prefix", "scopes", "workspaceId", "workspace",
            "createdAt", "lastUsedAt", "revokedAt",
        }  # fmt: skip
        assert (k["name"], k["prefix"], k["scopes"], k["workspaceId"]) == (
            row.name,
            row.prefix,
            row.scopes,
            row.workspace_id,
        )
        if row.workspace_id == scene.team.id:
            assert k["workspace"] == scene.team.slug
            assert k["revokedAt"] is not None
        else:
            assert k["lastUsedAt"] is not None
            assert k["revokedAt"] is None

    resources_part = jsonl(parts["resources.jsonl"])
    assert {(r["name"], r["status"], r["workspaceId"]) for r in resources_part} == {
        ("kept", "active", scene.team.id),
        ("gone", "trashed", scene.team.id),
    }
    assert all(r["purgeAfter"] for r in resources_part if r["status"] == "trashed")

    lines = jsonl(parts["events.jsonl"])
    exported = {e["id"]: e for e in lines}
    assert len(exported) == len(lines)
    assert set(exported) == expected_events
    assert not scene.hidden_ids & set(exported)
    assert all(e["workspaceId"] != scene.foreign.id for e in lines)
    # Workspace by workspace (as in workspaces.jsonl), then in arrival order.
    order = [e["workspaceId"] for e in lines]
    assert order == sorted(order, key=[scene.personal.id, scene.team.id].index)

    feed = feed_states(scene.browser, scene.personal.slug, since)
    feed |= feed_states(scene.browser, scene.team.slug, since)
    assert set(feed) == set(exported)
    for event_id, line in exported.items():
        shown = feed[event_id]
        assert {k: shown[k] for k in line} == line, event_id
    assert {i for i, e in exported.items() if e["archived"]} == scene.archived_ids
    # Archived events in the team were all seen by "mark all seen" first; the late
    # events are unseen except the one marked.
    assert [exported[i]["seen"] for i in sorted(scene.late_ids)].count(True) == 1

    manifest = json.loads(parts["manifest.json"])
    assert manifest["format"] == "activityfeed-export"
    assert manifest["formatVersion"] == 1
    assert manifest["exportedAt"] == clock().isoformat().replace("+00:00", "Z")
    assert manifest["user"] == {"id": scene.me.id, "email": scene.me.email}
    assert manifest["parts"] == {
        "profile.json": 1,
        "workspaces.jsonl": 2,
        "api_keys.jsonl": 2,
        "resources.jsonl": 2,
        "events.jsonl": len(lines),
        "chain.jsonl": len(jsonl(parts["chain.jsonl"])),
    }
    # The chain part verifies offline, and carries other people's private events only as
    # hashes (docs/export.md, "chain.jsonl").
    chain_lines = jsonl(parts["chain.jsonl"])
    assert not scene.hidden_ids & {c.get("id") for c in chain_lines}
    assert any("leaf" in c for c in chain_lines)
    saved = tmp_path / "export.zip"
    saved.write_bytes(response.content)
    reports = integrity.verify_export(saved)
    assert [(slug, r.broken) for slug, r in reports] == [
        (scene.personal.slug, None),
        (scene.team.slug, None),
    ]


def test_the_archive_holds_no_api_key_secret_nor_hash(app, client, db, clock):
    """Neither any key's secret nor its stored hash appears anywhere in the archive."""
    scene = make_scene(app, client, db, clock)

    data = scene.browser.get(EXPORT).content

    _, parts = read_zip(data)
    everything = data + b"".join(parts.values())
    with db.read() as tx:
        hashes = list(tx.conn.execute(select(api_keys.c.secret_hash)).scalars())
    assert len(hashes) == len(scene.secrets) == 4
    for needle in [*scene.secrets, *hashes]:
        assert needle.encode() not in everything
        assert needle.lower().encode() not in everything.lower()
    # The check can find what it looks for: the public prefix is there.
    assert scene.secrets[0][:8].encode() in everything


def test_export_needs_a_browser_session(app, client, db, clock):
    user = make_user(db, clock)
    secret = make_key(db, clock, user)

    assert_error(client.get(EXPORT), 401, "not_authenticated")
    assert_error(
        client.get(EXPORT, headers={"Authorization": f"Bearer {secret}"}),
        401,
        "browser_session_required",
    )


def test_cli_writes_the_same_zip(app, client, db, clock, database_url, tmp_path):
    """`activityfeed export` writes the archive the web gives (bar the export moment)."""
    scene = make_scene(app, client, db, clock)
    web = read_zip(scene.browser.get(EXPORT).content)
    target = tmp_path / "me.zip"

    result = runner.invoke(
        cli,
        [
            "export",
            "--email",
            scene.me.email.upper(),
            "-o",
            str(target),
            "--database-url",
            database_url,
        ],
    )

    assert result.exit_code == 0, result.output
    names, parts = read_zip(target.read_bytes())
    assert names == web[0]
    for name in names:
        if name != "manifest.json":
            assert parts[name] == web[1][name], name
    manifest, web_manifest = json.loads(parts["manifest.json"]), json.loads(web[1]["manifest.json"])
    assert manifest.pop("exportedAt")
    web_manifest.pop("exportedAt")
    assert manifest == web_manifest
    assert not list(tmp_path.glob("*.partial"))


def test_cli_unknown_email_is_a_clear_error(database_url, tmp_path):
    target = tmp_path / "nobody.zip"

    result = runner.invoke(
        cli,
        [
            "export",
            "--email",
            "nobody@example.com",
            "-o",
            str(target),
            "--database-url",
            database_url,
        ],
    )

    assert result.exit_code == 1
    assert "not_found" in result.output
    assert "nobody@example.com" in result.output
    assert not target.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_the_response_streams_before_all_events_are_read(app, client, db, clock):
    """The first bytes leave before the first event chunk is read, and bytes keep
    leaving between chunks: the ZIP is never built whole in memory."""
    user = make_user(db, clock)
    secret = make_key(db, clock, user)
    n = 2 * export_service.EVENTS_CHUNK + 500
    for start in range(0, n, 1000):
        body = {"events": [event_body(i) for i in range(start, min(n, start + 1000))]}
        assert ingest(client, secret, body).status_code == 201
    browser = Browser(app, user.email)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.client.cookies.items())

    chunk_queries = 0

    def count(_conn, _cursor, statement, *_args):
        nonlocal chunk_queries
        # The keyset page over arrival order (the feed's own pages order by created_at).
        if "event_states" in statement and "ORDER BY events.seq" in statement:
            chunk_queries += 1

    sa_event.listen(db.engine, "before_cursor_execute", count)
    sent: list[tuple[int, int]] = []
    try:
        asyncio.run(_get(app, EXPORT, cookie, lambda size: sent.append((size, chunk_queries))))
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)

    bodies = [(size, q) for size, q in sent if size]
    assert chunk_queries >= 3
    assert bodies[0][1] == 0, "the download starts before any event is read"
    assert any(0 < q < chunk_queries for _, q in bodies), "bytes leave between chunks"
    assert len({q for _, q in bodies}) >= 3


async def _get(app, path: str, cookie: str, on_body) -> None:
    """One GET through the ASGI app, reporting each body message's size as it is sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requested = False
    never = asyncio.Event()
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            on_body(len(message.get("body", b"")))

    await app(scope, receive, send)
    assert status == [200]


def test_a_user_with_no_events_gets_a_complete_zip(app, db, clock):
    """A fresh user's export is a complete archive with empty parts where there is nothing."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)

    names, parts = read_zip(browser.get(EXPORT).content)

    assert names == list(export_service.PARTS)
    assert parts["events.jsonl"] == b""
    assert parts["api_keys.jsonl"] == b""
    assert json.loads(parts["manifest.json"])["parts"]["events.jsonl"] == 0


def test_an_abandoned_download_closes_cleanly(client, db, clock):
    """A client that hangs up mid-archive: closing the stream part-way (as the server
    does) unwinds the open ZIP member and archive without raising."""
    user = make_user(db, clock)
    secret = make_key(db, clock, user)
    for start in (0, 1000):
        body = {"events": [event_body(start + i) for i in range(1000)]}
        assert ingest(client, secret, body).status_code == 201

    with db.read() as tx:
        stream = export_service.export_archive(tx, user_id=user.id, now=clock())
        assert next(stream).startswith(b"PK\x03\x04")
        stream.close()

    assert ingest(client, secret, event_body(9999)).status_code == 201


def test_the_chain_part_does_not_count_other_workspaces(app, db, clock, tmp_path):
    """``events.seq`` is every workspace's counter: with 37 events recorded in a
    stranger's workspace between two of mine, my export's chain.jsonl gives no seq (the
    chain's version 2 does not hash it), and the export still verifies."""
    me = make_user(db, clock)
    stranger = make_user(db, clock)
    mine, elsewhere = personal_workspace(db, me), personal_workspace(db, stranger)
    first = record_system_event(db, mine.id, 1, now=clock())
    for n in range(37):
        record_system_event(db, elsewhere.id, 100 + n, now=clock())
    second = record_system_event(db, mine.id, 2, now=clock())
    with db.read() as tx:
        seqs = dict(
            tx.conn.execute(
                select(events.c.id, events.c.seq).where(events.c.id.in_([first, second]))
            ).all()
        )
    assert seqs[second] - seqs[first] == 38  # what a line with seq would show

    data = Browser(app, me.email).get(EXPORT).content

    _, parts = read_zip(data)
    lines = jsonl(parts["chain.jsonl"])
    own = {c["id"]: c for c in lines if "id" in c}
    assert {first, second} <= own.keys()
    assert all("seq" not in c for c in lines), lines
    assert {c["checkpoint"]["version"] for c in lines if "checkpoint" in c} == {2}
    saved = tmp_path / "export.zip"
    saved.write_bytes(data)
    assert [(slug, r.ok) for slug, r in integrity.verify_export(saved)] == [(mine.slug, True)]
