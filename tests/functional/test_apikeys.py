"""API keys through HTTP: create (secret once), list, revoke, their events, and access
(PRODUCT.md "Producers" and the API-key lines of "Precise rules")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from activityfeed.domain.ids import digest
from activityfeed.domain.workspaces import Role
from activityfeed.store.schema import memberships
from tests.factories import Browser, event_body, ingest, make_key, make_team, make_user


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def create_key(browser: Browser, **body: Any) -> dict[str, Any]:
    response = browser.post("/api/api-keys", json={"name": "ci", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def key_events(browser: Browser, **params: Any) -> list[dict[str, Any]]:
    feed = browser.activity(resourceType="api_key", limit=100, **params)
    return list(feed["events"])


# ---- create and list --------------------------------------------------------------------


def test_create_returns_the_secret_once(app, client, db, clock):
    """POST /api/api-keys → 201 with the key and its secret; the secret writes events."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    created = create_key(browser, name="Training runner", scopes=["events:write"])
    assert set(created) == {"apiKey", "secret"}
    secret = created["secret"]
    key = created["apiKey"]
    assert secret.startswith("afk_")
    assert len(secret) >= 40
    assert key["name"] == "Training runner"
    assert key["scopes"] == ["events:write"]
    assert key["workspaceId"] == browser.login["workspace"]["id"]
    assert key["prefix"] == secret[: len(key["prefix"])]
    assert len(key["prefix"]) < len(secret) - 16
    assert key["revokedAt"] is None
    assert key["lastUsedAt"] is None
    assert key["createdBy"] == user.id
    assert "secret" not in key
    assert "secretHash" not in key

    response = ingest(client, secret, event_body())
    assert response.status_code == 201, response.text
    event = response.json()["event"]
    assert event["workspaceId"] == key["workspaceId"]
    assert event["source"] == {"kind": "api_key", "apiKeyPrefix": key["prefix"]}


def test_scopes_default_to_events_write(app, db, clock):
    browser = Browser(app, make_user(db, clock).email)
    assert create_key(browser)["apiKey"]["scopes"] == ["events:write"]


def test_the_secret_is_never_shown_again(app, client, db, clock):
    """Neither the list, nor any event, nor the export holds the secret or its hash."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    created = create_key(browser)
    secret = created["secret"]
    assert ingest(client, secret, event_body()).status_code == 201
    browser.delete(f"/api/api-keys/{created['apiKey']['id']}")

    listed = browser.get("/api/api-keys")
    assert listed.status_code == 200
    [key] = listed.json()["apiKeys"]
    assert key["id"] == created["apiKey"]["id"]
    assert "secret" not in key
    assert not any("hash" in k.lower() for k in key)
    texts = {
        "list": listed.text,
        "inbox": browser.get("/api/activity", params={"limit": 100}).text,
        "archive": browser.get("/api/activity", params={"archived": "true"}).text,
        "export": browser.get("/api/activity", params={"export": "true"}).text,
        "workspaces": browser.get("/api/workspaces").text,
    }
    for where, text in texts.items():
        assert secret not in text, where
        assert secret[len(key["prefix"]) :] not in text, where
        assert digest(secret) not in text, where
    assert len(key_events(browser)) == 2


def test_list_shows_keys_of_the_active_workspace_newest_first(app, db, clock):
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    first = create_key(browser, name="first")["apiKey"]
    clock.advance(seconds=1)
    second = create_key(browser, name="second")["apiKey"]
    team_key = create_key(browser, name="team", workspace=team.slug)["apiKey"]
    assert [k["id"] for k in browser.get("/api/api-keys").json()["apiKeys"]] == [
        second["id"],
        first["id"],
    ]
    by_param = browser.get("/api/api-keys", params={"workspace": team.slug}).json()["apiKeys"]
    assert [k["id"] for k in by_param] == [team_key["id"]]
    browser.switch(team.slug)
    assert [k["id"] for k in browser.get("/api/api-keys").json()["apiKeys"]] == [team_key["id"]]


def test_team_members_see_the_team_keys(app, db, clock):
    """Every member (a viewer too) sees the keys of the workspace, never their secrets."""
    owner, viewer = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(viewer, Role.VIEWER)])
    created = create_key(Browser(app, owner.email), workspace=team.slug)
    listed = Browser(app, viewer.email).get("/api/api-keys", params={"workspace": team.slug})
    assert [k["id"] for k in listed.json()["apiKeys"]] == [created["apiKey"]["id"]]
    assert created["secret"] not in listed.text


def test_key_belongs_to_the_active_workspace(app, client, db, clock):
    """A key created after switching belongs to that workspace and writes only there."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    browser.switch(team.slug)
    created = create_key(browser)
    assert created["apiKey"]["workspaceId"] == team.id
    event = ingest(client, created["secret"], event_body()).json()["event"]
    assert event["workspaceId"] == team.id
    assert event["id"] in [e["id"] for e in browser.activity()["events"]]
    personal = browser.login["workspace"]["slug"]
    assert event["id"] not in [e["id"] for e in browser.activity(owner=personal)["events"]]


def test_key_belongs_to_the_workspace_slug_given(app, client, db, clock):
    """With ``workspace`` the key belongs to that workspace, whichever is active."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    created = create_key(browser, workspace=team.slug)
    assert created["apiKey"]["workspaceId"] == team.id
    event = ingest(client, created["secret"], event_body()).json()["event"]
    assert event["workspaceId"] == team.id
    assert browser.activity()["total"] == 0  # the personal workspace is still active
    # The key's event is in the key's workspace.
    assert [e["resourceId"] for e in key_events(browser, owner=team.slug)] == [
        created["apiKey"]["id"]
    ]


def test_workspace_slug_of_another_team_is_404_like_an_unknown_one(app, db, clock):
    owner, outsider = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, outsider.email)
    foreign = browser.post("/api/api-keys", json={"name": "x", "workspace": team.slug})
    unknown = browser.post("/api/api-keys", json={"name": "x", "workspace": "no-such-team"})
    assert_error(foreign, 404, "not_found")
    assert foreign.content == unknown.content
    nul = browser.post("/api/api-keys", json={"name": "x", "workspace": "team\u0000"})
    assert nul.content == unknown.content
    assert (
        Browser(app, owner.email)
        .get("/api/api-keys", params={"workspace": team.slug})
        .json()["apiKeys"]
        == []
    )


def test_viewer_cannot_create_keys(app, db, clock):
    """A viewer → 403 forbidden, by workspace slug or as the active workspace."""
    owner, viewer, member = make_user(db, clock), make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(viewer, Role.VIEWER), (member, Role.MEMBER)])
    browser = Browser(app, viewer.email)
    assert_error(
        browser.post("/api/api-keys", json={"name": "x", "workspace": team.slug}), 403, "forbidden"
    )
    browser.switch(team.slug)
    assert_error(browser.post("/api/api-keys", json={"name": "x"}), 403, "forbidden")
    assert browser.get("/api/api-keys").json()["apiKeys"] == []
    assert key_events(browser) == []
    # A member may.
    assert (
        create_key(Browser(app, member.email), workspace=team.slug)["apiKey"]["workspaceId"]
        == team.id
    )


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{oops", "body"),
        (b"{}", "name"),
        (b'{"name": ""}', "name"),
        (b'{"name": "   "}', "name"),
        (b'{"name": ' + b'"' + b"k" * 101 + b'"}', "name"),
        (b'{"name": 3}', "name"),
        (b'{"name": "x", "scopes": ["admin"]}', "scopes[0]"),
        (b'{"name": "x", "scopes": "events:write"}', "scopes"),
        (b'{"name": "x", "scopes": []}', "scopes"),
        (b'{"name": "x", "workspace": 5}', "workspace"),
        (b'{"name": "x", "secret": "afk_mine"}', "secret"),
        (b'{"name": "x", "expiresAt": null}', "expiresAt"),
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"name": "tab\\there"}', "name"),
    ],
    ids=[
        "malformed",
        "missing",
        "empty",
        "blank",
        "long",
        "int",
        "bad-scope",
        "scope-string",
        "no-scopes",
        "workspace-int",
        "own-secret",
        "unknown-field",
        "nul",
        "control",
    ],
)
def test_create_bad_bodies(app, db, clock, content, field):
    """Bad bodies → 422 invalid_request naming the field; no key is made."""
    browser = Browser(app, make_user(db, clock).email)
    response = browser.client.post(
        "/api/api-keys",
        content=content,
        headers={"Content-Type": "application/json", "X-CSRF-Token": browser.csrf},
    )
    assert assert_error(response, 422, "invalid_request")["field"] == field
    assert browser.get("/api/api-keys").json()["apiKeys"] == []


# ---- revoke -----------------------------------------------------------------------------


def test_revoke_makes_the_key_useless_at_once(app, client, db, clock):
    """DELETE revokes; the revoked key → 401 invalid_api_key on ingestion."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    created = create_key(browser)
    assert ingest(client, created["secret"], event_body(1)).status_code == 201
    clock.advance(seconds=10)
    response = browser.delete(f"/api/api-keys/{created['apiKey']['id']}")
    assert response.status_code == 200, response.text
    revoked = response.json()["apiKey"]
    assert revoked["id"] == created["apiKey"]["id"]
    assert revoked["revokedAt"] is not None
    assert created["secret"] not in response.text

    assert_error(ingest(client, created["secret"], event_body(2)), 401, "invalid_api_key")
    [listed] = browser.get("/api/api-keys").json()["apiKeys"]
    assert listed["revokedAt"] == revoked["revokedAt"]
    assert listed["lastUsedAt"] is not None


def test_a_removed_members_keys_are_revoked_with_the_removal(app, client, db, clock):
    """Removing a member (or a member leaving) revokes the keys they made for the team,
    at once and with an ``api_key`` ``deleted`` event by whoever removed them; other
    members' keys keep working, and the member's keys elsewhere too."""
    owner, member, leaver = make_user(db, clock), make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER), (leaver, Role.ADMIN)])
    owner_b, member_b, leaver_b = (Browser(app, u.email) for u in (owner, member, leaver))
    owners_key = create_key(owner_b, workspace=team.slug)
    members_key = create_key(member_b, workspace=team.slug, name="ci-producer")
    members_own = create_key(member_b)  # their personal workspace's
    leavers_key = create_key(leaver_b, workspace=team.slug)
    for created in (owners_key, members_key, members_own, leavers_key):
        assert ingest(client, created["secret"], event_body(1)).status_code == 201

    clock.advance(seconds=5)
    gone = owner_b.delete(f"/api/workspaces/{team.slug}/members/{member.email}")
    assert gone.status_code == 200, gone.text
    left = leaver_b.delete(f"/api/workspaces/{team.slug}/members/{leaver.email}")
    assert left.status_code == 200, left.text

    for created in (members_key, leavers_key):
        assert_error(ingest(client, created["secret"], event_body(2)), 401, "invalid_api_key")
    for created in (owners_key, members_own):
        assert ingest(client, created["secret"], event_body(3)).status_code == 201
    owner_b.switch(team.slug)
    listed = {k["id"]: k for k in owner_b.get("/api/api-keys").json()["apiKeys"]}
    assert listed[members_key["apiKey"]["id"]]["revokedAt"] is not None
    assert listed[leavers_key["apiKey"]["id"]]["revokedAt"] is not None
    assert listed[owners_key["apiKey"]["id"]]["revokedAt"] is None
    revoked = [e for e in key_events(owner_b) if e["action"] == "deleted"]
    assert [e["resourceId"] for e in revoked] == [members_key["apiKey"]["id"]]
    assert revoked[0]["actor"]["id"] == owner.id
    assert revoked[0]["source"]["kind"] == "system"
    assert "ci-producer" in revoked[0]["description"]


def test_a_key_whose_creator_is_no_longer_a_member_is_refused(app, client, db, clock):
    """A key of someone whose membership is gone without the revocation (a removal from
    before removals revoked keys) is refused like a revoked one."""
    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    secret = make_key(db, clock, member, team)
    assert ingest(client, secret, event_body(1)).status_code == 201
    with db.write() as tx:
        tx.conn.execute(
            delete(memberships).where(
                memberships.c.workspace_id == team.id, memberships.c.user_id == member.id
            )
        )
    assert_error(ingest(client, secret, event_body(2)), 401, "invalid_api_key")


def test_a_revocation_between_the_check_and_the_write_stops_the_batch(
    app, client, db, clock, monkeypatch
):
    """The key is checked in a read transaction before the batch's write: a revocation
    committed in between is seen by the write, which stores nothing (401)."""
    from activityfeed.services import apikeys as key_service
    from activityfeed.web import deps

    user = make_user(db, clock)
    browser = Browser(app, user.email)
    created = create_key(browser)
    authenticate = key_service.authenticate_api_key

    def revoked_right_after(*args: Any, **kwargs: Any) -> Any:
        key = authenticate(*args, **kwargs)
        assert browser.delete(f"/api/api-keys/{key.id}").status_code == 200
        return key

    monkeypatch.setattr(deps.apikeys, "authenticate_api_key", revoked_right_after)
    response = ingest(client, created["secret"], event_body(1, resourceName="late"))
    assert_error(response, 401, "invalid_api_key")
    assert all(e["resourceName"] != "late" for e in browser.activity(limit=100)["events"])


def test_revoking_twice_changes_nothing(app, db, clock):
    browser = Browser(app, make_user(db, clock).email)
    key_id = create_key(browser)["apiKey"]["id"]
    first = browser.delete(f"/api/api-keys/{key_id}").json()["apiKey"]
    clock.advance(seconds=5)
    second = browser.delete(f"/api/api-keys/{key_id}")
    assert second.status_code == 200
    assert second.json()["apiKey"]["revokedAt"] == first["revokedAt"]
    assert [e["action"] for e in key_events(browser)] == ["deleted", "created"]


def test_revoke_a_key_of_another_of_my_workspaces(app, client, db, clock):
    """DELETE finds a key of any workspace the caller belongs to, not only the active one."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    created = create_key(browser, workspace=team.slug)
    response = browser.delete(f"/api/api-keys/{created['apiKey']['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["apiKey"]["revokedAt"] is not None
    assert_error(ingest(client, created["secret"], event_body()), 401, "invalid_api_key")
    # The revocation is recorded in the key's workspace, not the active one.
    assert [e["action"] for e in key_events(browser, owner=team.slug)] == ["deleted", "created"]
    assert key_events(browser) == []


def test_foreign_key_id_is_404_like_an_unknown_id(app, client, db, clock):
    """A key of a workspace the caller does not belong to → 404 byte-identical to an
    unknown id, and the key keeps working."""
    owner, outsider = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner)
    secret = make_key(db, clock, owner, team)
    key_id = (
        Browser(app, owner.email)
        .get("/api/api-keys", params={"workspace": team.slug})
        .json()["apiKeys"][0]["id"]
    )
    browser = Browser(app, outsider.email)
    foreign = browser.delete(f"/api/api-keys/{key_id}")
    assert_error(foreign, 404, "not_found")
    for unknown_id in ("k_00000000000000000000000000", "nope", "k_" + "x" * 300, "k_%00"):
        unknown = browser.delete(f"/api/api-keys/{unknown_id}")
        assert unknown.content == foreign.content, unknown_id
        assert unknown.status_code == 404
    assert ingest(client, secret, event_body()).status_code == 201


def test_another_users_personal_key_is_404(app, db, clock):
    """Owning a workspace of one's own gives no reach into another user's personal one."""
    a, b = make_user(db, clock), make_user(db, clock)
    key_a = create_key(Browser(app, a.email))["apiKey"]["id"]
    assert_error(Browser(app, b.email).delete(f"/api/api-keys/{key_a}"), 404, "not_found")


def test_member_revokes_own_key_but_not_anothers(app, db, clock):
    """A key's creator or an owner/admin may revoke it; to another member the key is
    404, exactly like an unknown id (tests/security/test_isolation.py)."""
    owner, admin, alice, bob = (make_user(db, clock) for _ in range(4))
    team = make_team(
        db, clock, owner, [(admin, Role.ADMIN), (alice, Role.MEMBER), (bob, Role.MEMBER)]
    )
    alice_b, bob_b, admin_b = (Browser(app, u.email) for u in (alice, bob, admin))
    k1 = create_key(alice_b, workspace=team.slug)["apiKey"]["id"]
    k2 = create_key(alice_b, workspace=team.slug)["apiKey"]["id"]
    assert_error(bob_b.delete(f"/api/api-keys/{k1}"), 404, "not_found")
    assert bob_b.delete(f"/api/api-keys/{k1}").json() == bob_b.delete("/api/api-keys/k_x").json()
    assert (
        bob_b.get("/api/api-keys", params={"workspace": team.slug}).json()["apiKeys"][0][
            "revokedAt"
        ]
        is None
    )
    assert alice_b.delete(f"/api/api-keys/{k1}").status_code == 200
    assert admin_b.delete(f"/api/api-keys/{k2}").status_code == 200


# ---- the api_key events -----------------------------------------------------------------


def test_create_and_revoke_record_private_api_key_events(app, db, clock):
    """Creating and revoking record api_key events in the key's workspace, with the actor
    and source, seen only by the actor: another member of the team does not see them."""
    owner, member = make_user(db, clock, name="Olga"), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    owner_b, member_b = Browser(app, owner.email), Browser(app, member.email)
    owner_b.switch(team.slug)
    member_b.switch(team.slug)
    created = create_key(owner_b, name="exporter")
    key = created["apiKey"]
    owner_b.delete(f"/api/api-keys/{key['id']}")

    revoke_event, create_event = key_events(owner_b)
    assert create_event["resourceType"] == "api_key"
    assert create_event["action"] == "created"
    assert create_event["resourceId"] == key["id"]
    assert create_event["resourceName"] == "exporter"
    assert create_event["workspaceId"] == team.id
    assert create_event["actor"] == {"id": owner.id, "name": "Olga", "email": owner.email}
    assert create_event["source"]["kind"] == "ui"
    assert create_event["seen"] is False
    assert "exporter" in create_event["description"]
    assert revoke_event["action"] == "deleted"
    assert revoke_event["resourceId"] == key["id"]
    assert revoke_event["actor"]["id"] == owner.id
    for event in (create_event, revoke_event):
        assert created["secret"] not in str(event)

    # The other member sees neither event, nor counts them, even when asking by filter,
    # in the Archive, or in an export.
    assert key_events(member_b) == []
    assert member_b.activity()["unseenCount"] == 0
    assert member_b.activity(archived="true")["total"] == 0
    export = member_b.get("/api/activity", params={"export": "true"}).json()
    assert export["activity"] == []
    unseen = {
        w["slug"]: w["unseenCount"] for w in member_b.get("/api/workspaces").json()["workspaces"]
    }
    assert unseen[team.slug] == 0
    # Acting on the ids does nothing for them.
    hidden = [create_event["id"], revoke_event["id"]]
    assert (
        member_b.post("/api/activity/archive", json={"eventIds": hidden, "archive": True}).json()[
            "updated"
        ]
        == 0
    )
    assert owner_b.activity()["unseenCount"] == 2


def test_key_events_of_the_cli_are_private_too(app, db, clock):
    """Keys made outside the browser (the CLI) record the same private event."""
    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.ADMIN)])
    make_key(db, clock, owner, team)
    [event] = key_events(Browser(app, owner.email), owner=team.slug)
    assert event["source"]["kind"] == "cli"
    assert key_events(Browser(app, member.email), owner=team.slug) == []
