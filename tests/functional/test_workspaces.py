"""Workspaces through HTTP: personal and team workspaces, members, unseen counts, switching,
and a non-member learning nothing (PRODUCT.md "Workspaces")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activityfeed.domain.workspaces import Role
from tests.factories import Browser, event_body, ingest, make_key, make_team, make_user


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def workspaces_of(browser: Browser) -> dict[str, dict[str, Any]]:
    response = browser.get("/api/workspaces")
    assert response.status_code == 200, response.text
    return {w["slug"]: w for w in response.json()["workspaces"]}


# ---- personal and team workspaces -------------------------------------------------------


def test_every_user_has_a_personal_workspace(app, db, clock):
    """A new user owns exactly one workspace, personal, active in a new session."""
    user = make_user(db, clock, email="mia@example.com", name="Mia")
    browser = Browser(app, user.email)
    listed = browser.get("/api/workspaces").json()["workspaces"]
    assert len(listed) == 1
    personal = listed[0]
    assert personal["isPersonal"] is True
    assert personal["role"] == "owner"
    assert personal["active"] is True
    assert personal["unseenCount"] == 0
    assert personal["slug"] == "mia"
    assert personal["id"] == browser.login["workspace"]["id"]
    assert set(personal) >= {"id", "slug", "name", "isPersonal", "createdAt", "role"}


def test_personal_slugs_are_unique(app, db, clock):
    """Two users with the same mailbox name get different personal slugs."""
    a = make_user(db, clock, email="sam@one.example")
    b = make_user(db, clock, email="sam@two.example")
    slug_a = Browser(app, a.email).login["workspace"]["slug"]
    slug_b = Browser(app, b.email).login["workspace"]["slug"]
    assert slug_a != slug_b


def test_create_team_workspace_makes_caller_owner(app, db, clock):
    """POST /api/workspaces creates a team workspace owned by the caller; it is listed."""
    user = make_user(db, clock)
    browser = Browser(app, user.email)
    response = browser.post("/api/workspaces", json={"name": "Vision Team"})
    assert response.status_code == 201, response.text
    ws = response.json()["workspace"]
    assert ws["name"] == "Vision Team"
    assert ws["slug"] == "vision-team"
    assert ws["isPersonal"] is False
    assert ws["role"] == "owner"
    assert ws["unseenCount"] == 0
    listed = workspaces_of(browser)
    assert listed["vision-team"]["role"] == "owner"
    assert listed["vision-team"]["active"] is False
    # Creating does not switch: the personal workspace stays active.
    assert [w["isPersonal"] for w in listed.values() if w["active"]] == [True]

    again = browser.post("/api/workspaces", json={"name": "Vision Team"})
    assert again.status_code == 201
    assert again.json()["workspace"]["slug"] not in {"vision-team", ""}
    assert len(workspaces_of(browser)) == 3


def test_team_names_are_trimmed_and_slugs_are_url_safe(app, db, clock):
    browser = Browser(app, make_user(db, clock).email)
    ws = browser.post("/api/workspaces", json={"name": "  Ünïcode & <Friends>  "}).json()
    assert ws["workspace"]["name"] == "Ünïcode & <Friends>"
    assert ws["workspace"]["slug"] == "unicode-friends"
    odd = browser.post("/api/workspaces", json={"name": "日本"}).json()["workspace"]
    assert odd["slug"]
    assert all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in odd["slug"])


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"{", "body"),
        (b"{}", "name"),
        (b'{"name": ""}', "name"),
        (b'{"name": "   "}', "name"),
        (b'{"name": 7}', "name"),
        (b'{"name": null}', "name"),
        (b'{"name": "' + b"x" * 201 + b'"}', "name"),
        (b'{"name": "ok", "personal": true}', "personal"),
        (b'["name"]', "body"),
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"name": "a\\ud800b"}', "name"),
        (b'{"name": "line\\nbreak"}', "name"),
    ],
    ids=[
        "malformed",
        "missing",
        "empty",
        "blank",
        "int",
        "null",
        "long",
        "unknown",
        "array",
        "nul",
        "surrogate",
        "control",
    ],
)
def test_create_workspace_bad_bodies(app, db, clock, content, field):
    """Bad workspace bodies → 422 invalid_request naming the field; nothing is created."""
    browser = Browser(app, make_user(db, clock).email)
    response = browser.client.post(
        "/api/workspaces",
        content=content,
        headers={"Content-Type": "application/json", "X-CSRF-Token": browser.csrf},
    )
    assert assert_error(response, 422, "invalid_request")["field"] == field
    assert len(workspaces_of(browser)) == 1


# ---- members ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_owner_adds_members_with_each_role(app, db, clock, role):
    """An owner may add a member with any role; the new member sees the workspace."""
    owner = make_user(db, clock)
    newcomer = make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    response = browser.post(
        f"/api/workspaces/{team.slug}/members", json={"email": newcomer.email, "role": role}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"member": {"email": newcomer.email, "role": role}}
    theirs = workspaces_of(Browser(app, newcomer.email))
    assert theirs[team.slug]["role"] == role
    assert theirs[team.slug]["isPersonal"] is False


def test_role_defaults_to_member_and_email_is_normalised(app, db, clock):
    owner = make_user(db, clock)
    newcomer = make_user(db, clock, email="newbie@example.com")
    team = make_team(db, clock, owner)
    response = Browser(app, owner.email).post(
        f"/api/workspaces/{team.slug}/members", json={"email": "  NewBie@Example.com "}
    )
    assert response.status_code == 201, response.text
    assert response.json()["member"] == {"email": "newbie@example.com", "role": "member"}
    assert workspaces_of(Browser(app, newcomer.email))[team.slug]["role"] == "member"


def test_admin_adds_members_but_not_owners(app, db, clock):
    """An admin may add admins, members and viewers; only an owner makes an owner."""
    owner, admin, a, b = (make_user(db, clock) for _ in range(4))
    team = make_team(db, clock, owner, [(admin, Role.ADMIN)])
    browser = Browser(app, admin.email)
    url = f"/api/workspaces/{team.slug}/members"
    assert browser.post(url, json={"email": a.email, "role": "viewer"}).status_code == 201
    refused = browser.post(url, json={"email": b.email, "role": "owner"})
    assert_error(refused, 403, "forbidden")
    assert team.slug not in workspaces_of(Browser(app, b.email))


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_members_and_viewers_cannot_add_members(app, db, clock, role):
    """Members and viewers → 403 forbidden, and nobody is added."""
    owner, caller, outsider = (make_user(db, clock) for _ in range(3))
    team = make_team(db, clock, owner, [(caller, role)])
    browser = Browser(app, caller.email)
    for new_role in ("member", "viewer"):
        response = browser.post(
            f"/api/workspaces/{team.slug}/members",
            json={"email": outsider.email, "role": new_role},
        )
        assert_error(response, 403, "forbidden")
    assert team.slug not in workspaces_of(Browser(app, outsider.email))


def test_adding_an_unknown_email_is_404(app, db, clock):
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    response = Browser(app, owner.email).post(
        f"/api/workspaces/{team.slug}/members", json={"email": "nobody@example.com"}
    )
    assert_error(response, 404, "not_found")


def test_adding_a_member_twice_is_409_already_member(app, db, clock):
    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    browser = Browser(app, owner.email)
    url = f"/api/workspaces/{team.slug}/members"
    assert_error(browser.post(url, json={"email": member.email}), 409, "already_member")
    # A different role does not make it a new membership (nor change the role).
    assert_error(
        browser.post(url, json={"email": member.email.upper(), "role": "admin"}),
        409,
        "already_member",
    )
    assert_error(browser.post(url, json={"email": owner.email}), 409, "already_member")
    assert workspaces_of(Browser(app, member.email))[team.slug]["role"] == "member"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "x@example.com", "role": "superuser"}, "role"),
        ({"email": "x@example.com", "role": "Owner"}, "role"),
        ({"email": "x@example.com", "role": 1}, "role"),
        ({"email": "x@example.com", "role": None}, "role"),
        ({"role": "member"}, "email"),
        ({"email": "not-an-address", "role": "member"}, "email"),
        ({"email": 5}, "email"),
        ({"email": "x@example.com", "invite": True}, "invite"),
        ({"email": "x\u0000@example.com"}, "email"),
        ({"email": "x@exa mple.com"}, "email"),
    ],
    ids=[
        "unknown-role",
        "capitalised",
        "int-role",
        "null-role",
        "no-email",
        "bad-email",
        "int-email",
        "unknown-field",
        "nul-email",
        "space-email",
    ],
)
def test_add_member_bad_bodies(app, db, clock, body, field):
    """Invalid role, missing or malformed e-mail, unknown field → 422 naming the field."""
    owner = make_user(db, clock)
    make_user(db, clock, email="x@example.com")
    team = make_team(db, clock, owner)
    response = Browser(app, owner.email).post(f"/api/workspaces/{team.slug}/members", json=body)
    assert assert_error(response, 422, "invalid_request")["field"] == field


def test_personal_workspace_cannot_get_members(app, db, clock):
    owner, friend = make_user(db, clock), make_user(db, clock)
    browser = Browser(app, owner.email)
    slug = browser.login["workspace"]["slug"]
    response = browser.post(f"/api/workspaces/{slug}/members", json={"email": friend.email})
    assert response.status_code == 422
    assert len(workspaces_of(Browser(app, friend.email))) == 1


# ---- removing members and leaving -------------------------------------------------------


def _remove(browser: Browser, slug: str, email: str) -> Any:
    return browser.delete(f"/api/workspaces/{slug}/members/{email}")


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER])
def test_owner_removes_a_member_of_any_role(app, db, clock, role):
    """The removed user no longer has the workspace; its activity is a 404 for them."""
    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, role)])
    theirs = Browser(app, member.email)
    theirs.switch(team.slug)
    response = _remove(Browser(app, owner.email), team.slug, member.email.upper())
    assert response.status_code == 200, response.text
    assert response.json() == {"member": {"email": member.email, "role": role.value}}
    assert team.slug not in workspaces_of(theirs)
    assert_error(theirs.get("/api/activity", params={"owner": team.slug}), 404, "not_found")
    # The session that had the team active is back on the personal workspace, so the
    # feed keeps working without a switch.
    assert theirs.get("/api/activity").status_code == 200
    active = [w for w in workspaces_of(theirs).values() if w["active"]]
    assert [w["isPersonal"] for w in active] == [True]


def test_admin_removes_members_but_not_owners(app, db, clock):
    owner, admin, other_admin, viewer = (make_user(db, clock) for _ in range(4))
    team = make_team(
        db, clock, owner, [(admin, Role.ADMIN), (other_admin, Role.ADMIN), (viewer, Role.VIEWER)]
    )
    browser = Browser(app, admin.email)
    assert _remove(browser, team.slug, viewer.email).status_code == 200
    assert _remove(browser, team.slug, other_admin.email).status_code == 200
    assert_error(_remove(browser, team.slug, owner.email), 403, "forbidden")
    assert team.slug in workspaces_of(Browser(app, owner.email))


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_members_and_viewers_cannot_remove_others_but_may_leave(app, db, clock, role):
    """Refused alike for a member and for an address that names no one (403 before the
    look-up), so a viewer learns nothing about who belongs; leaving is allowed."""
    owner, caller, colleague = (make_user(db, clock) for _ in range(3))
    team = make_team(db, clock, owner, [(caller, role), (colleague, Role.MEMBER)])
    browser = Browser(app, caller.email)
    refused = _remove(browser, team.slug, colleague.email)
    unknown = _remove(browser, team.slug, "nobody@example.com")
    assert_error(refused, 403, "forbidden")
    assert (refused.status_code, refused.json()) == (unknown.status_code, unknown.json())
    assert team.slug in workspaces_of(Browser(app, colleague.email))
    left = _remove(browser, team.slug, caller.email)
    assert left.status_code == 200, left.text
    assert team.slug not in workspaces_of(browser)


def test_the_last_owner_stays(app, db, clock):
    """The only owner cannot be removed nor leave (409 last_owner); with a second owner
    either may go, but not both."""
    owner, second = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    assert_error(_remove(browser, team.slug, owner.email), 409, "last_owner")
    browser.post(
        f"/api/workspaces/{team.slug}/members", json={"email": second.email, "role": "owner"}
    )
    assert _remove(Browser(app, second.email), team.slug, owner.email).status_code == 200
    assert_error(_remove(Browser(app, second.email), team.slug, second.email), 409, "last_owner")
    assert workspaces_of(Browser(app, second.email))[team.slug]["role"] == "owner"


def test_removing_a_non_member_is_404_like_an_unknown_address(app, db, clock):
    owner, stranger = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner)
    browser = Browser(app, owner.email)
    answers = [
        _remove(browser, team.slug, email)
        for email in (stranger.email, "nobody@example.com", "not-an-address", "x%00@example.com")
    ]
    for response in answers:
        assert_error(response, 404, "not_found")
    assert len({r.text for r in answers}) == 1


def test_removing_from_unknown_foreign_or_personal_workspaces(app, db, clock):
    owner, outsider = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner)
    theirs = Browser(app, outsider.email)
    foreign = _remove(theirs, team.slug, owner.email)
    unknown = _remove(theirs, "no-such-team", owner.email)
    assert_error(foreign, 404, "not_found")
    assert foreign.json() == unknown.json()
    personal = theirs.login["workspace"]["slug"]
    refused = _remove(theirs, personal, outsider.email)
    assert assert_error(refused, 422, "invalid_request")["field"] == "slug"
    assert team.slug in workspaces_of(Browser(app, owner.email))


def test_an_export_checks_access_again_where_it_reads(app, client, db, clock, monkeypatch):
    """``GET /api/activity?export=true`` reads its rows in a transaction of its own: a
    removal committed after the request's first access check (and an event recorded
    after it) gives the removed member a 404, not a download holding that event."""
    from activityfeed.services import workspaces as workspace_service
    from activityfeed.web.api import activity as activity_api

    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    secret = make_key(db, clock, owner, team)
    assert ingest(client, secret, event_body(1, resourceName="before")).status_code == 201
    member_browser = Browser(app, member.email)
    member_browser.switch(team.slug)
    assert (
        len(member_browser.get("/api/activity", params={"export": "true"}).json()["activity"]) == 1
    )
    checked = workspace_service.active_workspace

    def removed_right_after(*args: Any, **kwargs: Any) -> Any:
        found = checked(*args, **kwargs)
        with db.write() as tx:
            workspace_service.remove_member(
                tx, user=owner, slug=team.slug, email=member.email, now=clock()
            )
        assert ingest(client, secret, event_body(2, resourceName="after")).status_code == 201
        return found

    monkeypatch.setattr(activity_api.workspaces, "active_workspace", removed_right_after)
    response = member_browser.get("/api/activity", params={"export": "true"})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


def test_a_removed_member_added_again_keeps_their_marks(app, client, db, clock):
    """Seen marks are the member's own and come back with the membership."""
    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    secret = make_key(db, clock, owner, team)
    for i in range(3):
        ingest(client, secret, event_body(i))
    theirs = Browser(app, member.email)
    theirs.switch(team.slug)
    assert theirs.post("/api/activity/mark-seen", json={"all": True}).status_code == 200
    browser = Browser(app, owner.email)
    assert _remove(browser, team.slug, member.email).status_code == 200
    url = f"/api/workspaces/{team.slug}/members"
    assert browser.post(url, json={"email": member.email}).status_code == 201
    assert workspaces_of(theirs)[team.slug]["unseenCount"] == 0


# ---- unseen counts and switching --------------------------------------------------------


def test_unseen_counts_match_the_activity_list(app, client, db, clock):
    """Each listed unseenCount equals the activity list's unseenCount for that workspace,
    per viewer: seen, archived and private events are taken into account."""
    owner, member = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    other_team = make_team(db, clock, owner, name="Other")
    team_key = make_key(db, clock, owner, team)  # also a private api_key event for owner
    personal_key = make_key(db, clock, owner)
    ids = [
        e["id"]
        for e in ingest(client, team_key, {"events": [event_body(i) for i in range(5)]}).json()[
            "events"
        ]
    ]
    assert (
        ingest(client, personal_key, {"events": [event_body(i) for i in range(3)]}).status_code
        == 201
    )
    # Older than the list's default 30-day range, yet unseen in the Inbox all the same.
    old = (clock() - timedelta(days=60)).isoformat()
    assert ingest(client, team_key, event_body(9, occurredAt=old)).status_code == 201

    owner_b = Browser(app, owner.email)
    member_b = Browser(app, member.email)
    member_b.switch(team.slug)
    assert member_b.post("/api/activity/mark-seen", json={"eventIds": ids[:2]}).status_code == 200
    archived = member_b.post("/api/activity/archive", json={"eventIds": ids[2:3], "archive": True})
    assert archived.json()["updated"] == 1

    for browser, expected in (
        (owner_b, {team.slug: 7, other_team.slug: 0}),
        (member_b, {team.slug: 3}),
    ):
        listed = workspaces_of(browser)
        for slug, ws in listed.items():
            feed = browser.activity(owner=slug)
            assert ws["unseenCount"] == feed["unseenCount"], slug
            if slug in expected:
                assert ws["unseenCount"] == expected[slug], slug
    personal = owner_b.login["workspace"]["slug"]
    assert workspaces_of(owner_b)[personal]["unseenCount"] == 4  # 3 events + its key's event

    owner_b.post(f"/api/activity/mark-seen?owner={team.slug}", json={"all": True})
    assert workspaces_of(owner_b)[team.slug]["unseenCount"] == 0
    assert workspaces_of(member_b)[team.slug]["unseenCount"] == 3


def test_switch_makes_the_workspace_active_for_this_session(app, client, db, clock):
    """Switching changes what /api/activity and /api/api-keys act on, for this session only."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    secret = make_key(db, clock, owner, team)
    event_id = ingest(client, secret, event_body()).json()["event"]["id"]
    browser = Browser(app, owner.email)
    other_tab = Browser(app, owner.email)
    assert event_id not in [e["id"] for e in browser.activity()["events"]]
    assert browser.get("/api/api-keys").json()["apiKeys"] == []

    response = browser.post(f"/api/workspaces/{team.slug}/switch")
    assert response.status_code == 200, response.text
    ws = response.json()["workspace"]
    assert ws["slug"] == team.slug
    assert ws["active"] is True
    assert ws["unseenCount"] == 2
    assert workspaces_of(browser)[team.slug]["active"] is True

    feed = browser.activity()
    assert event_id in [e["id"] for e in feed["events"]]
    assert {e["workspaceId"] for e in feed["events"]} == {team.id}
    assert len(browser.get("/api/api-keys").json()["apiKeys"]) == 1
    assert browser.get("/api/auth/me").json()["workspace"]["slug"] == team.slug

    # Another session of the same user is not switched.
    assert event_id not in [e["id"] for e in other_tab.activity()["events"]]
    assert workspaces_of(other_tab)[team.slug]["active"] is False

    # Switching back works too.
    browser.switch(browser.login["workspace"]["slug"])
    assert event_id not in [e["id"] for e in browser.activity()["events"]]


def test_owner_param_acts_on_another_of_my_workspaces(app, client, db, clock):
    """owner=<slug> lists, marks seen and archives in that workspace, without switching."""
    owner = make_user(db, clock)
    team = make_team(db, clock, owner)
    secret = make_key(db, clock, owner, team)
    ids = [
        e["id"]
        for e in ingest(client, secret, {"events": [event_body(1), event_body(2)]}).json()["events"]
    ]
    browser = Browser(app, owner.email)
    assert browser.activity(owner=team.slug)["total"] == 3
    seen = browser.post(f"/api/activity/mark-seen?owner={team.slug}", json={"eventIds": ids[:1]})
    assert seen.json() == {"success": True, "unseenCount": 2}
    archived = browser.post(
        f"/api/activity/archive?owner={team.slug}", json={"eventIds": ids, "archive": True}
    )
    assert archived.json() == {"success": True, "updated": 2}
    assert workspaces_of(browser)[team.slug]["active"] is False


# ---- a non-member learns nothing --------------------------------------------------------


@pytest.fixture
def outsider_setup(app, client, db, clock) -> dict[str, Any]:
    owner, outsider = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner, name="Secret Team")
    secret = make_key(db, clock, owner, team)
    event_id = ingest(client, secret, event_body()).json()["event"]["id"]
    return {
        "browser": Browser(app, outsider.email),
        "owner": owner,
        "team": team,
        "event_id": event_id,
        "owner_browser": Browser(app, owner.email),
    }


def _workspace_requests(slug: str, event_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("POST", f"/api/workspaces/{slug}/switch", None),
        ("POST", f"/api/workspaces/{slug}/members", {"email": "x@example.com", "role": "member"}),
        ("GET", f"/api/activity?owner={slug}", None),
        ("GET", f"/api/activity?owner={slug}&export=true", None),
        ("POST", f"/api/activity/mark-seen?owner={slug}", {"all": True}),
        ("POST", f"/api/activity/mark-seen?owner={slug}", {"eventIds": [event_id]}),
        ("POST", f"/api/activity/archive?owner={slug}", {"all": True, "archive": True}),
        ("POST", f"/api/activity/archive?owner={slug}", {"eventIds": [event_id], "archive": True}),
        ("POST", "/api/api-keys", {"name": "sneaky", "workspace": slug}),
        ("GET", f"/api/api-keys?workspace={slug}", None),
    ]


def test_non_member_gets_404_identical_to_a_missing_workspace(outsider_setup, db, clock):
    """For everything of a workspace a non-member gets 404 not_found, byte-identical to
    what a slug that does not exist gets; and nothing changes."""
    browser: Browser = outsider_setup["browser"]
    team = outsider_setup["team"]
    make_user(db, clock, email="x@example.com")
    existing = _workspace_requests(team.slug, outsider_setup["event_id"])
    missing = _workspace_requests("no-such-team", outsider_setup["event_id"])
    for (method, url, body), (_, missing_url, missing_body) in zip(existing, missing, strict=True):
        foreign = browser.client.request(
            method, url, json=body, headers={"X-CSRF-Token": browser.csrf}
        )
        unknown = browser.client.request(
            method, missing_url, json=missing_body, headers={"X-CSRF-Token": browser.csrf}
        )
        assert_error(foreign, 404, "not_found")
        assert foreign.content == unknown.content, url
        assert foreign.headers.get("content-type") == unknown.headers.get("content-type")

    assert team.slug not in workspaces_of(browser)
    owner_b: Browser = outsider_setup["owner_browser"]
    feed = owner_b.activity(owner=team.slug)
    assert feed["unseenCount"] == feed["total"] == 2
    assert owner_b.activity(owner=team.slug, archived="true")["total"] == 0
    assert len(owner_b.get(f"/api/api-keys?workspace={team.slug}").json()["apiKeys"]) == 1


def test_non_member_cannot_use_a_similar_slug(outsider_setup):
    """Slugs match exactly: another case or trailing text is simply not found."""
    browser: Browser = outsider_setup["browser"]
    team = outsider_setup["team"].slug
    missing = browser.post("/api/workspaces/no-such-team/switch")
    for slug in (team.upper(), team + "-", f"{team}%00", "%2E%2E", "%ED%A0%80"):
        response = browser.post(f"/api/workspaces/{slug}/switch")
        assert response.status_code == 404, slug
        assert response.content == missing.content
        listed = browser.get(f"/api/activity?owner={slug}")
        assert listed.status_code == 404, slug
        assert listed.content == missing.content


def test_foreign_event_ids_in_bulk_calls_are_ignored(app, db, clock):
    """An event id of a foreign workspace in eventIds is ignored, not counted."""
    owner, outsider = make_user(db, clock), make_user(db, clock)
    team = make_team(db, clock, owner)
    secret = make_key(db, clock, owner, team)
    with TestClient(app) as c:
        foreign_id = ingest(c, secret, event_body()).json()["event"]["id"]
    browser = Browser(app, outsider.email)
    archived = browser.post(
        "/api/activity/archive", json={"eventIds": [foreign_id], "archive": True}
    )
    assert archived.json() == {"success": True, "updated": 0}
    seen = browser.post("/api/activity/mark-seen", json={"eventIds": [foreign_id]})
    assert seen.json() == {"success": True, "unseenCount": 0}
    owner_b = Browser(app, owner.email)
    assert owner_b.activity(owner=team.slug)["unseenCount"] == 2
