"""The Activity page live: new events, other tabs' triage and badges arrive through
GET /api/activity/stream (Server-Sent Events) without a reload.

Marked ``live_stream`` (``-m 'not live_stream'`` leaves them out): they need the stream
route, GET /api/activity/stream.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import Server, sign_in
from tests.e2e.test_browser import rows, trainings
from tests.factories import make_team

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - playwright is a dev dependency
    pytest.skip("playwright is not installed", allow_module_level=True)

pytestmark = pytest.mark.live_stream

LIVE = 3000  # ms: how soon a live change must show


def test_a_new_event_appears_without_a_reload(server: Server, page: Any) -> None:
    user = server.user()
    key = server.key(user)
    server.ingest(key, *trainings(1))
    sign_in(page, server.base, user)
    expect(rows(page)).to_have_count(2)
    # A reload would lose this mark.
    page.evaluate("window.__sameDocument = true")
    page.wait_for_timeout(300)  # let the stream connect

    server.ingest(key, *trainings(1, start=5))
    new_row = rows(page).first
    expect(new_row).to_contain_text("yolo-run-5", timeout=LIVE)
    expect(rows(page)).to_have_count(3)
    expect(page.locator("[data-total-text]")).to_have_text("3 events")
    expect(page.locator("[data-announce]")).to_contain_text("New event")
    assert page.evaluate("window.__sameDocument") is True


def test_a_filtered_view_gets_only_matching_events(server: Server, page: Any) -> None:
    user = server.user()
    key = server.key(user)
    server.ingest(key, *trainings(1))
    sign_in(page, server.base, user, next_path="/activity?search=yolo")
    expect(rows(page)).to_have_count(1)
    page.wait_for_timeout(300)
    server.ingest(
        key,
        {"resourceType": "dataset", "action": "created", "resourceId": "d", "resourceName": "coco"},
        *trainings(1, start=7),
    )
    expect(rows(page).first).to_contain_text("yolo-run-7", timeout=LIVE)
    expect(rows(page)).to_have_count(2)
    expect(rows(page).filter(has_text="coco")).to_have_count(0)


def test_a_second_tab_sees_the_first_tabs_archive(server: Server, context: Any) -> None:
    user = server.user()
    server.ingest(server.key(user), *trainings(3))
    first = context.new_page()
    sign_in(first, server.base, user)
    second = context.new_page()
    second.goto(server.base + "/activity")
    expect(rows(second)).to_have_count(4)
    second.wait_for_timeout(300)

    target = rows(first).filter(has_text="yolo-run-1")
    event_id = target.get_attribute("data-id")
    target.get_by_role("button", name=re.compile("^Archive")).click()
    expect(second.locator(f"#e-{event_id}")).to_have_count(0, timeout=LIVE)
    expect(rows(second)).to_have_count(3)

    archive_tab = context.new_page()
    archive_tab.goto(server.base + "/activity?archived=true")
    expect(rows(archive_tab)).to_have_count(1)
    archive_tab.wait_for_timeout(300)
    first.get_by_role("button", name="Archive all").click()
    expect(rows(second)).to_have_count(0, timeout=LIVE)
    expect(rows(archive_tab)).to_have_count(4, timeout=LIVE)


def test_badges_update_live(server: Server, chromium: Any) -> None:
    """An event in another workspace raises its switcher count; one in the active
    workspace that is not on screen raises the badge and waits behind the pill, without
    moving the rows the reader is looking at."""
    user = server.user()
    team = make_team(server.db, server.clock, user, name="Vision")
    team_key = server.key(user, team)
    own_key = server.key(user)
    server.ingest(own_key, *trainings(15))
    context = chromium.new_context(viewport={"width": 1000, "height": 500})
    try:
        page = context.new_page()
        page.set_default_timeout(5000)
        sign_in(page, server.base, user)
        count = page.locator(f'[data-ws-count="{team.slug}"]')
        expect(count).to_contain_text("1")  # the team key's own event
        page.wait_for_timeout(300)
        server.ingest(team_key, *trainings(2))
        expect(count).to_contain_text("3", timeout=LIVE)

        # Read down to the bottom: the top rows are off screen.
        page.mouse.wheel(0, 5000)
        badge = page.locator("[data-unseen-badge]")
        page.wait_for_timeout(800)
        before = int(badge.inner_text().split()[0])
        anchor = rows(page).last
        top = anchor.bounding_box()["y"]
        server.ingest(own_key, *trainings(1, start=40))
        expect(badge).to_contain_text(str(before + 1), timeout=LIVE)
        expect(page.locator("[data-new-pill]")).to_have_text("1 new event — show")
        assert anchor.bounding_box()["y"] == top, "rows under the reader must not move"
        expect(page).to_have_title(re.compile(rf"^\({before + 1}\) Activity"))
        page.locator("[data-new-pill]").click()
        expect(rows(page).first).to_contain_text("yolo-run-40")
    finally:
        context.close()
