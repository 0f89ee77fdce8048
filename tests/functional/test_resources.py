"""Projects, datasets and models through HTTP: every route, its errors and its events."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activityfeed.config import Settings
from activityfeed.domain.workspaces import Role
from activityfeed.web import create_app
from tests.factories import Browser, make_key, make_team, make_user

KINDS = ["projects", "datasets", "models"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _events(browser: Browser, resource_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every event of the resource in the viewer's feed, oldest first."""
    feed = browser.activity(limit=100, **params)
    return [e for e in reversed(feed["events"]) if e["resourceId"] == resource_id]


def _create(browser: Browser, kind: str, name: str = "alpha", **params: Any) -> dict[str, Any]:
    response = browser.post(f"/api/{kind}", json={"name": name}, params=params)
    assert response.status_code == 201, response.text
    return dict(response.json()[kind[:-1]])


def _upload(
    browser: Browser, kind: str, resource_id: str, data: bytes = PNG, ctype: str = "image/png"
) -> Any:
    return browser.client.post(
        f"/api/{kind}/{resource_id}/uploads",
        files={"file": ("cat.png", data, ctype)},
        headers={"X-CSRF-Token": browser.csrf},
    )


def _files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "uploads"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def alice(app, db, clock) -> Browser:
    user = make_user(db, clock, name="Alice")
    return Browser(app, user.email)


@pytest.mark.parametrize("kind", KINDS)
def test_life_cycle_records_every_event(alice, clock, kind):
    """Create, rename, share, unshare, trash, restore, delete: each records its event,
    with the right type, action and metadata; the events outlive the resource."""
    noun = kind[:-1]
    created = _create(alice, kind, "first")
    rid = created["id"]
    assert created["status"] == "active"
    assert created["isPublic"] is False
    assert [r["id"] for r in alice.get(f"/api/{kind}").json()[kind]] == [rid]

    renamed = alice.patch(f"/api/{kind}/{rid}", json={"name": "second", "description": "d"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()[noun]["name"] == "second"
    assert alice.post(f"/api/{kind}/{rid}/share").json()[noun]["isPublic"] is True
    assert alice.post(f"/api/{kind}/{rid}/unshare").json()[noun]["isPublic"] is False

    trashed = alice.post(f"/api/{kind}/{rid}/trash")
    assert trashed.status_code == 200
    assert trashed.json()[noun]["purgeAfter"] == _iso(clock() + timedelta(days=30))
    assert alice.get(f"/api/{kind}").json()[kind] == []
    assert [r["id"] for r in alice.get(f"/api/{kind}?trashed=true").json()[kind]] == [rid]
    assert alice.post(f"/api/{kind}/{rid}/restore").status_code == 200
    assert alice.get(f"/api/{kind}/{rid}").json()[noun]["status"] == "active"
    assert alice.delete(f"/api/{kind}/{rid}").status_code == 200
    assert alice.get(f"/api/{kind}/{rid}").status_code == 404

    events = _events(alice, rid)
    assert [(e["resourceType"], e["action"]) for e in events] == [
        (noun, "created"),
        (noun, "updated"),
        (noun, "shared"),
        (noun, "unshared"),
        (noun, "trashed"),
        (noun, "restored"),
        (noun, "deleted"),
    ]
    assert events[1]["metadata"] == {
        "before": {"name": "first", "description": ""},
        "after": {"name": "second", "description": "d"},
    }
    assert events[1]["description"] == f"Renamed {noun} first to second"
    assert events[4]["metadata"] == {"purgeAfter": _iso(clock() + timedelta(days=30))}
    assert all(e["actor"]["name"] == "Alice" and e["source"] == {"kind": "ui"} for e in events)
    # Nothing of the history is lost: every event is still there, marked deleted.
    assert all(e["resourceDeleted"] for e in events)
    assert all(
        e["resourceState"] == {"status": "deleted", "deletedAt": _iso(clock())} for e in events
    )


def test_no_change_records_nothing(alice):
    """Renaming to the same name, sharing a shared project: no event, no error."""
    rid = _create(alice, "projects", "same")["id"]
    assert alice.patch(f"/api/projects/{rid}", json={"name": "same"}).status_code == 200
    assert alice.post(f"/api/projects/{rid}/unshare").status_code == 200
    assert [e["action"] for e in _events(alice, rid)] == ["created"]


def test_trash_state_shows_on_every_event_and_restore_clears_it(alice, clock):
    """Trash: resourceDeleted + resourceState trashed (purgeAt); restore clears both;
    delete: deleted with deletedAt. The export says the same."""
    rid = _create(alice, "datasets", "cats")["id"]
    other = _create(alice, "datasets", "dogs")["id"]
    alice.post(f"/api/datasets/{rid}/trash")
    purge_at = _iso(clock() + timedelta(days=30))
    for e in _events(alice, rid):
        assert e["resourceDeleted"] is True
        assert e["resourceState"] == {"status": "trashed", "purgeAt": purge_at}
    assert all(e["resourceState"] is None for e in _events(alice, other))
    exported = alice.get("/api/activity", params={"export": "true"}).json()["activity"]
    assert {e["resourceId"]: e["resourceState"] for e in exported}[rid]["status"] == "trashed"

    alice.post(f"/api/datasets/{rid}/restore")
    for e in _events(alice, rid):
        assert e["resourceDeleted"] is False
        assert e["resourceState"] is None

    clock.advance(hours=2)
    alice.delete(f"/api/datasets/{rid}")
    states = {e["action"]: e["resourceState"] for e in _events(alice, rid)}
    assert states["created"] == {"status": "deleted", "deletedAt": _iso(clock())}


def test_ingested_events_of_the_resource_show_its_state(app, client, db, clock):
    """A producer's events about one of our datasets show its state too."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    rid = _create(browser, "datasets")["id"]
    secret = make_key(db, clock, user)
    body = {"resourceType": "dataset", "action": "analyzed", "resourceId": rid, "resourceName": "x"}
    assert (
        client.post("/api/events", json=body, headers={"Authorization": f"Bearer {secret}"})
    ).status_code == 201
    browser.post(f"/api/datasets/{rid}/trash")
    analyzed = next(e for e in _events(browser, rid) if e["action"] == "analyzed")
    assert analyzed["resourceState"]["status"] == "trashed"


def test_conflicts_in_trash(alice):
    rid = _create(alice, "models")["id"]
    assert alice.post(f"/api/models/{rid}/restore").json()["error"]["code"] == "not_in_trash"
    alice.post(f"/api/models/{rid}/trash")
    again = alice.post(f"/api/models/{rid}/trash")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_trashed")
    for response in (
        alice.patch(f"/api/models/{rid}", json={"name": "n"}),
        alice.post(f"/api/models/{rid}/share"),
        alice.post(
            f"/api/models/{rid}/clone", json={"workspace": alice.login["workspace"]["slug"]}
        ),
        _upload(alice, "models", rid),
    ):
        assert (response.status_code, response.json()["error"]["code"]) == (409, "in_trash")


def test_invalid_bodies(alice):
    for body in ({"name": ""}, {"name": " "}, {"name": "x" * 201}, {"name": "a", "extra": 1}, {}):
        response = alice.post("/api/projects", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_request"
    assert alice.post("/api/projects", json={"name": "a\x01"}).status_code == 422


def test_foreign_ids_look_like_unknown_ids(app, db, clock, alice):
    """Another workspace's resource, another kind's id, a deleted one and an unknown id
    get the same answer on every route."""
    mallory = Browser(app, make_user(db, clock).email)
    theirs = _create(mallory, "projects", "secret")["id"]
    dataset = _create(alice, "datasets")["id"]
    gone = _create(alice, "projects", "gone")["id"]
    alice.delete(f"/api/projects/{gone}")
    mine_slug = alice.login["workspace"]["slug"]

    def answers(rid: str) -> list[tuple[int, Any]]:
        out = []
        for response in (
            alice.get(f"/api/projects/{rid}"),
            alice.patch(f"/api/projects/{rid}", json={"name": "x"}),
            alice.post(f"/api/projects/{rid}/trash"),
            alice.post(f"/api/projects/{rid}/restore"),
            alice.post(f"/api/projects/{rid}/share"),
            alice.post(f"/api/projects/{rid}/unshare"),
            alice.post(f"/api/projects/{rid}/clone", json={"workspace": mine_slug}),
            alice.delete(f"/api/projects/{rid}"),
            _upload(alice, "projects", rid),
        ):
            out.append((response.status_code, response.json()))
        return out

    unknown = answers("prj_00000000000000000000000000")
    assert unknown[0] == (
        404,
        {"error": {"code": "not_found", "message": "No project here has that id."}},
    )
    assert answers(theirs) == unknown
    assert answers(dataset) == unknown
    assert answers(gone) == unknown
    assert answers("x" * 300) == unknown
    assert mallory.get(f"/api/projects/{theirs}").json()["project"]["name"] == "secret"


def test_viewer_reads_but_cannot_change(app, db, clock):
    owner = make_user(db, clock)
    viewer = make_user(db, clock)
    team = make_team(db, clock, owner, [(viewer, Role.VIEWER)], name="Lab")
    owner_b = Browser(app, owner.email)
    owner_b.switch(team.slug)
    rid = _create(owner_b, "datasets", "shared-data")["id"]
    v = Browser(app, viewer.email)
    v.switch(team.slug)
    assert v.get(f"/api/datasets/{rid}").status_code == 200
    assert [r["id"] for r in v.get("/api/datasets").json()["datasets"]] == [rid]
    refused = [
        v.post("/api/datasets", json={"name": "n"}),
        v.patch(f"/api/datasets/{rid}", json={"name": "n"}),
        v.post(f"/api/datasets/{rid}/trash"),
        v.post(f"/api/datasets/{rid}/restore"),
        v.post(f"/api/datasets/{rid}/share"),
        v.post(f"/api/datasets/{rid}/unshare"),
        v.delete(f"/api/datasets/{rid}"),
        v.post(f"/api/datasets/{rid}/clone", json={"workspace": team.slug}),
        _upload(v, "datasets", rid),
    ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "insufficient_role"
        assert "Viewers" in response.json()["error"]["message"]
    assert [e["action"] for e in _events(owner_b, rid)] == ["created"]
    # The viewer may clone into a workspace of their own.
    mine = v.login["workspace"]["slug"]
    assert (
        v.post(
            f"/api/datasets/{rid}/clone?workspace={team.slug}", json={"workspace": mine}
        ).status_code
        == 201
    )


def test_clone_into_another_workspace(app, db, clock, settings):
    """The copy (with its files) lands in the target, whose members see the `cloned`
    event with the source in its metadata; a viewer's or a stranger's workspace is refused."""
    owner = make_user(db, clock)
    stranger = make_user(db, clock)
    team = make_team(db, clock, owner, name="Team")
    read_only = make_team(db, clock, stranger, [(owner, Role.VIEWER)], name="Theirs")
    private = make_team(db, clock, stranger, name="Private")
    b = Browser(app, owner.email)
    src = _create(b, "models", "yolo")
    assert (
        _upload(b, "models", src["id"], b"weights", "application/octet-stream").status_code == 201
    )

    cloned = b.post(
        f"/api/models/{src['id']}/clone", json={"workspace": team.slug, "name": "yolo-copy"}
    )
    assert cloned.status_code == 201, cloned.text
    copy = cloned.json()["model"]
    assert copy["clonedFrom"] == src["id"]
    assert copy["name"] == "yolo-copy"
    assert copy["workspaceId"] != src["workspaceId"]

    b.switch(team.slug)
    detail = b.get(f"/api/models/{copy['id']}").json()["model"]
    assert [u["filename"] for u in detail["uploads"]] == ["cat.png"]
    (event,) = _events(b, copy["id"])
    assert event["action"] == "cloned"
    assert event["resourceType"] == "model"
    assert event["metadata"]["source"] == {
        "id": src["id"],
        "name": "yolo",
        "workspace": b.login["workspace"]["slug"],
    }
    # Deleting the source leaves the copy's bytes alone (they are shared).
    b.switch(b.login["workspace"]["slug"])
    assert b.delete(f"/api/models/{src['id']}").status_code == 200
    assert len(_files(settings)) == 1

    viewer_target = b.post(
        f"/api/models/{copy['id']}/clone?workspace={team.slug}", json={"workspace": read_only.slug}
    )
    assert viewer_target.status_code == 403
    assert viewer_target.json()["error"]["code"] == "insufficient_role"
    stranger_target = b.post(
        f"/api/models/{copy['id']}/clone?workspace={team.slug}", json={"workspace": private.slug}
    )
    unknown_target = b.post(
        f"/api/models/{copy['id']}/clone?workspace={team.slug}", json={"workspace": "no-such-ws"}
    )
    assert stranger_target.status_code == 404
    assert stranger_target.json() == unknown_target.json()
    assert stranger_target.json()["error"]["code"] == "not_found"


def test_uploads(alice, settings):
    """Datasets take images, models any file, projects none; the event carries the file."""
    ds = _create(alice, "datasets")["id"]
    response = _upload(alice, "datasets", ds)
    assert response.status_code == 201, response.text
    upload = response.json()["upload"]
    assert (upload["filename"], upload["size"], upload["contentType"]) == (
        "cat.png",
        len(PNG),
        "image/png",
    )
    (stored,) = _files(settings)
    assert stored.read_bytes() == PNG
    assert stored.parent.name == "blobs"
    event = _events(alice, ds)[-1]
    assert event["action"] == "uploaded"
    assert event["metadata"] == {
        "filename": "cat.png",
        "size": len(PNG),
        "contentType": "image/png",
    }

    not_image = _upload(alice, "datasets", ds, b"a,b", "text/csv")
    assert (not_image.status_code, not_image.json()["error"]["field"]) == (422, "file")
    model = _create(alice, "models")["id"]
    assert (
        _upload(alice, "models", model, b"\x00\x01", "application/octet-stream").status_code == 201
    )
    project = _create(alice, "projects")["id"]
    refused = _upload(alice, "projects", project)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "upload_not_supported")
    missing = alice.client.post(
        f"/api/models/{model}/uploads",
        data={"x": "1"},
        files={"other": ("a", b"a")},
        headers={"X-CSRF-Token": alice.csrf},
    )
    assert missing.status_code == 422
    not_form = alice.post(f"/api/models/{model}/uploads", json={"file": "x"})
    assert not_form.status_code == 422
    assert len(_files(settings)) == 2


def test_upload_path_traversal_names_are_only_shown(alice, settings):
    ds = _create(alice, "datasets")["id"]
    response = alice.client.post(
        f"/api/datasets/{ds}/uploads",
        files={"file": ("../../etc/passwd.png", PNG, "image/png")},
        headers={"X-CSRF-Token": alice.csrf},
    )
    assert response.json()["upload"]["filename"] == "passwd.png"
    assert all(p.is_relative_to(settings.data_dir / "uploads" / "blobs") for p in _files(settings))


def test_upload_limit_setting():
    env = {"ACTIVITYFEED_MAX_UPLOAD_BYTES": "2048"}
    assert Settings.from_env(env).max_upload_bytes == 2048
    assert Settings.from_env({}).max_upload_bytes == 50 * 1024 * 1024


def test_upload_needs_the_csrf_header(alice, settings):
    """The API reads the token from the header only: the body is never parsed before the
    token is checked (the pages' form carries it in a field instead)."""
    ds = _create(alice, "datasets")["id"]
    for response in (
        alice.client.post(f"/api/datasets/{ds}/uploads", json={"file": "x"}),
        alice.client.post(
            f"/api/datasets/{ds}/uploads", files={"file": ("a.png", PNG, "image/png")}
        ),
        alice.client.post(
            f"/api/datasets/{ds}/uploads",
            data={"csrf_token": alice.csrf},
            files={"file": ("a.png", PNG, "image/png")},
        ),
    ):
        assert (response.status_code, response.json()["error"]["code"]) == (403, "csrf_failed")
    assert _files(settings) == []
    assert [e["action"] for e in _events(alice, ds)] == ["created"]


@pytest.fixture
def small_app(settings, db, clock):
    """The app with a 1 KiB upload limit."""
    return create_app(replace(settings, max_upload_bytes=1024), db=db, clock=clock)


def test_upload_over_the_limit_leaves_nothing_behind(small_app, db, clock, settings):
    """413 upload_too_large, declared or streamed; no file, no row, no event."""
    user = make_user(db, clock)
    b = Browser(small_app, user.email)
    ds = _create(b, "datasets")["id"]
    before = _events(b, ds)
    big = PNG + b"\x00" * 2048
    declared = _upload(b, "datasets", ds, big)
    assert declared.status_code == 413
    assert declared.json()["error"] == {
        "code": "upload_too_large",
        "message": "The file is larger than the upload limit of 1024 bytes; nothing was stored.",
    }
    boundary = "xyzzy"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + big
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def chunks():
        for i in range(0, len(body), 256):
            yield body[i : i + 256]

    streamed = b.client.post(
        f"/api/datasets/{ds}/uploads",
        content=chunks(),
        headers={
            "X-CSRF-Token": b.csrf,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "upload_too_large"
    # Refused on the declared Content-Length alone, before a byte is read.
    huge = _upload(b, "datasets", ds, PNG + b"\x00" * 70_000)
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "upload_too_large")
    assert _files(settings) == []
    assert b.get(f"/api/datasets/{ds}").json()["dataset"]["uploads"] == []
    assert _events(b, ds) == before
    # Just under the limit is fine.
    assert _upload(b, "datasets", ds, PNG).status_code == 201


def test_delete_removes_files_but_keeps_events(alice, settings):
    ds = _create(alice, "datasets")["id"]
    _upload(alice, "datasets", ds)
    _upload(alice, "datasets", ds)
    assert len(_files(settings)) == 2
    alice.post(f"/api/datasets/{ds}/trash")
    assert len(_files(settings)) == 2
    alice.delete(f"/api/datasets/{ds}")
    assert _files(settings) == []
    actions = [e["action"] for e in _events(alice, ds)]
    assert actions == ["created", "uploaded", "uploaded", "trashed", "deleted"]
    assert _events(alice, ds)[-1]["metadata"] == {"permanent": True, "wasInTrash": True}


def test_workspace_parameter_and_api_keys(app, client, db, clock):
    """`?workspace=` picks a workspace of the caller's; an API key is not a session."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner, name="Ops")
    b = Browser(app, owner.email)
    rid = _create(b, "projects", "in-team", workspace=team.slug)["id"]
    assert b.get(f"/api/projects/{rid}").status_code == 404
    assert b.get(f"/api/projects/{rid}?workspace={team.slug}").status_code == 200
    assert b.get("/api/projects?workspace=nope").status_code == 404
    secret = make_key(db, clock, owner)
    keyed = client.get("/api/projects", headers={"Authorization": f"Bearer {secret}"})
    assert (keyed.status_code, keyed.json()["error"]["code"]) == (401, "browser_session_required")
    anonymous = TestClient(app).get("/api/projects")
    assert anonymous.json()["error"]["code"] == "not_authenticated"
    no_csrf = b.client.post("/api/projects", json={"name": "x"})
    assert no_csrf.json()["error"]["code"] == "csrf_failed"
