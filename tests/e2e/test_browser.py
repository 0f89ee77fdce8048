"""The Activity page in a real browser (Chromium through Playwright), against a real server.

The tests that need the live stream are in test_browser_live.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from activityfeed.domain.workspaces import Role
from tests.e2e.conftest import Server, sign_in
from tests.factories import PASSWORD, make_team

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - playwright is a dev dependency
    pytest.skip("playwright is not installed", allow_module_level=True)


def trainings(n: int, *, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "training",
            "action": "completed",
            "resourceId": f"run-{i}",
            "resourceName": f"yolo-run-{i}",
            **extra,
        }
        for i in range(start, start + n)
    ]


@contextmanager
def api_session(server: Server, email: str) -> Iterator[httpx.Client]:
    """A second, API-only session of the same user (to read the server's view of state)."""
    with httpx.Client(base_url=server.base, timeout=10) as client:
        response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrfToken"]
        yield client


def unseen_ids(client: httpx.Client) -> set[str]:
    body = client.get("/api/activity", params={"limit": 100}).json()
    return {e["id"] for e in body["events"] if not e["seen"]}


def rows(page: Any) -> Any:
    return page.locator("#events > li.event")


def test_sign_in_and_see_the_inbox(server: Server, page: Any) -> None:
    """Signing in through the form lands on the Inbox: icons, types, actors, times."""
    user = server.user(name="Ada")
    key = server.key(user)
    server.ingest(
        key,
        *trainings(1),
        {
            "resourceType": "project",
            "action": "created",
            "resourceId": "p1",
            "resourceName": "my-project",
            "metadata": {"visibility": "private"},
        },
    )
    page.goto(server.base + "/activity")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    sign_in(page, server.base, user)
    expect(page.locator("h1")).to_contain_text("Activity")
    # Two events plus the API key's own creation event.
    expect(rows(page)).to_have_count(3)
    project = rows(page).filter(has_text="Created project my-project")
    expect(project.locator(".icon.c-blue svg")).to_have_count(1)
    expect(project.locator(".type")).to_have_text("Project")
    expect(project.locator("time")).to_have_text("just now")
    # The title is the exact time in the reader's timezone (the context runs in UTC).
    expect(project.locator("time")).to_have_attribute("title", re.compile(r"UTC"))
    training = rows(page).filter(has_text="yolo-run-0")
    expect(training.locator(".icon.c-green")).to_have_count(1)
    project.locator("summary").click()
    expect(project.locator("dd")).to_have_text("private")
    # Unseen is more than a colour: a dot, bold text and words for screen readers.
    expect(project.locator(".sr-only.unseen-label")).to_have_count(1)
    expect(project.locator(".dot")).to_have_count(1)
    expect(page).to_have_title(re.compile(r"^\(\d\) Activity"))


def test_inbox_archive_restore_and_archive_all(server: Server, page: Any) -> None:
    """Archive and Restore move rows between the tabs in place; Archive all empties the
    Inbox, and an event that arrives later is in the Inbox."""
    user = server.user()
    key = server.key(user)
    server.ingest(key, *trainings(3))
    sign_in(page, server.base, user)
    expect(rows(page)).to_have_count(4)

    target = rows(page).filter(has_text="yolo-run-1")
    target.get_by_role("button", name=re.compile("^Archive")).click()
    expect(rows(page)).to_have_count(3)
    expect(page.locator("[data-total-text]")).to_have_text("3 events")

    page.get_by_role("link", name="Archive", exact=True).click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("yolo-run-1")
    rows(page).first.get_by_role("button", name=re.compile("^Restore")).click()
    expect(rows(page)).to_have_count(0)
    expect(page.locator("[data-empty]")).to_contain_text("Look in the Inbox")

    page.get_by_role("link", name="Inbox", exact=True).click()
    expect(rows(page)).to_have_count(4)
    page.get_by_role("button", name="Archive all").click()
    expect(rows(page)).to_have_count(0)
    expect(page.locator("[data-empty]")).to_contain_text("all caught up")

    server.ingest(key, *trainings(1, start=10))
    page.reload()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("yolo-run-10")


def test_search_and_date_range(server: Server, page: Any) -> None:
    """Search narrows the list; an empty result says why and how to widen it; the date
    range defaults to the last 30 days and older events appear when it is widened."""
    user = server.user()
    key = server.key(user)
    old = (datetime.now(UTC) - timedelta(days=45)).isoformat()
    server.ingest(
        key,
        *trainings(2),
        {
            "resourceType": "dataset",
            "action": "created",
            "resourceId": "d1",
            "resourceName": "coco-old",
            "occurredAt": old,
        },
    )
    sign_in(page, server.base, user)
    start = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    expect(page.locator("#start")).to_have_value(start)
    expect(rows(page)).to_have_count(3)
    expect(rows(page).filter(has_text="coco-old")).to_have_count(0)

    page.fill("#search", "yolo-run-1")
    page.press("#search", "Enter")
    expect(rows(page)).to_have_count(1)
    expect(page).to_have_url(re.compile(r"search=yolo-run-1"))

    page.fill("#search", "coco")
    page.press("#search", "Enter")
    expect(rows(page)).to_have_count(0)
    empty = page.locator("[data-empty]")
    expect(empty).to_contain_text("matches “coco”")
    expect(empty).to_contain_text("Clear the search")
    empty.get_by_role("link", name="Widen the dates to all time").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("coco-old")

    page.fill("#search", "")
    page.fill("#start", (datetime.now(UTC) - timedelta(days=50)).date().isoformat())
    page.fill("#end", (datetime.now(UTC) - timedelta(days=40)).date().isoformat())
    page.get_by_role("button", name="Apply").click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("coco-old")


def test_pagination_keeps_filters_and_limit(server: Server, page: Any) -> None:
    user = server.user()
    key = server.key(user)
    server.ingest(key, *trainings(7))
    sign_in(page, server.base, user, next_path="/activity?limit=3&search=yolo")
    expect(rows(page)).to_have_count(3)
    expect(page.locator(".pagination")).to_contain_text("Page 1 of 3")
    page.get_by_role("link", name=re.compile("Older")).click()
    expect(page).to_have_url(re.compile(r"limit=3"))
    expect(page).to_have_url(re.compile(r"search=yolo"))
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator(".pagination")).to_contain_text("Page 2 of 3")
    page.get_by_role("link", name=re.compile("Older")).click()
    expect(rows(page)).to_have_count(1)
    page.goto(server.base + "/activity?limit=3&search=yolo&page=9")
    expect(page.locator("[data-empty]")).to_contain_text("past the end")


def test_badges_and_workspace_switcher(server: Server, page: Any) -> None:
    """The title, the Activity badge and the switcher show the unseen counts; switching
    shows the other workspace's feed."""
    user = server.user()
    team = make_team(server.db, server.clock, user, name="Vision")
    server.ingest(server.key(user, team), *trainings(4))
    sign_in(page, server.base, user)
    expect(page.locator(f'[data-ws-count="{team.slug}"]')).to_contain_text("5")
    page.get_by_role("button", name=re.compile("^Vision")).click()
    expect(page).to_have_title(re.compile(r"^\(5\) Activity · Vision"))
    expect(page.locator("[data-unseen-badge]")).to_contain_text("5")
    # Rows on screen are seen: the badges drop without a reload.
    expect(page.locator("[data-unseen-badge]")).to_contain_text("0")
    expect(page).to_have_title(re.compile(r"^Activity · Vision"))
    expect(page.locator(f'[data-ws-count="{team.slug}"]')).to_contain_text("0")


def test_seen_on_view_leaves_unscrolled_rows_unseen(server: Server, chromium: Any) -> None:
    """Only rows that were on screen are marked seen; scrolling marks the rest."""
    user = server.user()
    server.ingest(server.key(user), *trainings(12))
    context = chromium.new_context(viewport={"width": 900, "height": 420})
    try:
        page = context.new_page()
        page.set_default_timeout(5000)
        sign_in(page, server.base, user, next_path="/activity?limit=13")
        expect(rows(page)).to_have_count(13)
        with api_session(server, user.email) as api:
            first = rows(page).first.get_attribute("data-id")
            last = rows(page).last.get_attribute("data-id")
            deadline = 50
            while first in unseen_ids(api) and deadline:
                page.wait_for_timeout(100)
                deadline -= 1
            assert first not in unseen_ids(api)
            page.wait_for_timeout(800)
            assert last in unseen_ids(api), "a row never scrolled to stays unseen"
            # The highlight stays in this tab until the next render.
            expect(rows(page).first).to_have_class(re.compile(r"unseen"))
            # Read on down the page, as a person scrolls.
            for _ in range(30):
                page.mouse.wheel(0, 150)
                page.wait_for_timeout(60)
            expect(page.locator("[data-unseen-badge]")).to_have_text("0 unseen")
            assert unseen_ids(api) == set()
            page.reload()
            expect(page.locator("#events > li.unseen")).to_have_count(0)
    finally:
        context.close()


def test_keyboard_triage(server: Server, page: Any) -> None:
    """j/k move a visible focus, e archives the focused row, / searches, ? shows help."""
    user = server.user()
    server.ingest(server.key(user), *trainings(3))
    sign_in(page, server.base, user)
    expect(rows(page)).to_have_count(4)
    page.keyboard.press("j")
    expect(rows(page).nth(0)).to_be_focused()
    page.keyboard.press("j")
    second = rows(page).nth(1)
    expect(second).to_be_focused()
    outline = second.evaluate("el => getComputedStyle(el).boxShadow")
    assert outline != "none", "the focused row shows a focus ring"
    page.keyboard.press("k")
    expect(rows(page).nth(0)).to_be_focused()
    page.keyboard.press("j")
    archived = second.get_attribute("data-id")
    page.keyboard.press("e")
    expect(rows(page)).to_have_count(3)
    expect(page.locator(f"#e-{archived}")).to_have_count(0)
    # Focus moves on to the next row, so triage goes on without the mouse.
    expect(rows(page).nth(1)).to_be_focused()
    expect(page.locator("[data-announce]")).to_contain_text("Archived")

    page.keyboard.press("?")
    expect(page.locator("[data-help-dialog]")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("[data-help-dialog]")).to_be_hidden()
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()

    page.goto(server.base + "/activity?archived=true")
    expect(rows(page)).to_have_count(1)
    page.keyboard.press("j")
    page.keyboard.press("e")
    expect(rows(page)).to_have_count(0)
    page.goto(server.base + "/activity")
    expect(rows(page)).to_have_count(4)


def test_phone_sized_window(server: Server, chromium: Any) -> None:
    """At 360 px wide nothing scrolls sideways and the row actions stay reachable."""
    user = server.user()
    server.ingest(server.key(user), *trainings(2))
    context = chromium.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    try:
        page = context.new_page()
        page.set_default_timeout(5000)
        sign_in(page, server.base, user)
        expect(rows(page)).to_have_count(3)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360
        button = rows(page).first.get_by_role("button", name=re.compile("^Archive"))
        box = button.bounding_box()
        assert box is not None
        assert box["x"] + box["width"] <= 360
    finally:
        context.close()


def test_without_javascript(server: Server, chromium: Any) -> None:
    """With JavaScript off the forms do it all: archive, restore, archive all, switch."""
    user = server.user()
    team = make_team(server.db, server.clock, user, name="Vision")
    server.ingest(server.key(user, team), *trainings(2))
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(5000)
        sign_in(page, server.base, user)
        page.get_by_role("button", name=re.compile("^Vision")).click()
        expect(page.locator("h1")).to_contain_text("Vision")
        expect(rows(page)).to_have_count(3)
        rows(page).filter(has_text="yolo-run-0").get_by_role(
            "button", name=re.compile("^Archive")
        ).click()
        expect(rows(page)).to_have_count(2)
        page.get_by_role("link", name="Archive", exact=True).click()
        expect(rows(page)).to_have_count(1)
        rows(page).first.get_by_role("button", name=re.compile("^Restore")).click()
        expect(rows(page)).to_have_count(0)
        page.get_by_role("link", name="Inbox", exact=True).click()
        expect(rows(page)).to_have_count(3)
        page.get_by_role("button", name="Mark all seen").click()
        expect(page.locator("#events > li.unseen")).to_have_count(0)
        page.get_by_role("button", name="Archive all").click()
        expect(rows(page)).to_have_count(0)
        expect(page.locator("[data-empty]")).to_contain_text("all caught up")
    finally:
        context.close()


def test_a_member_sees_only_what_is_theirs_to_see(server: Server, page: Any) -> None:
    """A member sees the workspace's events, not the owner's private API key event."""
    owner = server.user()
    member = server.user()
    team = make_team(server.db, server.clock, owner, [(member, Role.MEMBER)], name="Shared")
    server.ingest(server.key(owner, team), *trainings(1))
    sign_in(page, server.base, member)
    page.get_by_role("button", name=re.compile("^Shared")).click()
    expect(rows(page)).to_have_count(1)
    expect(rows(page)).to_contain_text("yolo-run-0")


def test_the_api_reference_renders_from_this_server_alone(server: Server, page: Any) -> None:
    """``/api/docs`` in Chromium: Swagger UI starts (no script error, no CSP refusal: the
    ``page`` fixture checks both), lists the API's operations from the OpenAPI document and
    opens one, while every request to another origin is refused and recorded."""
    elsewhere: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(server.base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(server.base + "/api/docs")
    operation = page.get_by_role("button", name="GET /api/activity List Activity")
    expect(operation).to_be_visible(timeout=15000)
    operation.click()
    expect(page.locator(".parameters").first).to_contain_text("search")
    assert page.locator(".opblock").count() > 20
    assert elsewhere == []
