"""Injected markup in a real browser: every text a person or producer chooses is set to
script, event-handler and image payloads; Chromium shows the pages with no dialog, no
script of ours run from them, and no Content-Security-Policy refusal (which would mean
the markup reached the page and only the CSP stopped it)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, sign_in
from tests.factories import PASSWORD, make_team

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - playwright is a dev dependency
    pytest.skip("playwright is not installed", allow_module_level=True)

MARK = "window.__xss = (window.__xss || 0) + 1"
SCRIPT = f"<script>{MARK}; alert(1)</script>"
ATTRIBUTE = f'" onmouseover="{MARK}; alert(2)" autofocus onfocus="{MARK}" x="'
IMG = f'<img src=x onerror="{MARK}; alert(3)">'
TEXT = SCRIPT + ATTRIBUTE + IMG


def test_injected_markup_never_runs(server: Server, page: Any) -> None:
    """The Activity page (rows, expanded metadata, sidebar), a search for the payload,
    the resource pages, the profile and API-key pages: no dialog opens and no injected
    handler or script runs, even when the pointer hovers over every row."""
    user = server.user(name=SCRIPT)
    team = make_team(server.db, server.clock, user, name=(SCRIPT + ATTRIBUTE)[:200])
    key = server.key(user, team)
    server.ingest(
        key,
        {
            "resourceType": "project",
            "action": "created",
            "resourceId": "p1",
            "resourceName": TEXT,
            "description": TEXT,
            "metadata": {IMG: SCRIPT, "nested": {"x": "</code>" + SCRIPT, ATTRIBUTE: [IMG]}},
        },
    )
    with httpx.Client(base_url=server.base, timeout=10) as api:
        login = api.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        api.headers["X-CSRF-Token"] = login.json()["csrfToken"]
        assert api.post(f"/api/workspaces/{team.slug}/switch").status_code == 200
        made = api.post("/api/projects", json={"name": SCRIPT, "description": ATTRIBUTE + IMG})
        project = made.json()["project"]["id"]
        assert api.post("/api/api-keys", json={"name": SCRIPT[:100]}).status_code == 201
        profile = {"bio": TEXT[:1000], "company": IMG}
        assert api.patch("/api/settings/profile", json=profile).status_code == 200

    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, server.base, user)
    # The browser's session starts in the personal workspace: switch to the team, as a
    # person does, with the sidebar's button (whose label is the team's hostile name).
    page.click(f"button[name=slug][value='{team.slug}']")
    page.wait_for_url("**/activity")
    paths = (
        "/activity",
        "/activity?search=script",
        f"/projects/{project}",
        "/projects",
        "/settings/profile",
        "/settings/api-keys",
    )
    for path in paths:
        page.goto(server.base + path)
        expect(page.locator("body")).to_be_visible()
        for details in page.locator("details").all():
            details.evaluate("d => d.open = true")
        for row in page.locator("li, p, h1, h2, dd, td").all()[:60]:
            if row.is_visible():
                row.hover()
        assert page.evaluate("window.__xss") is None, path
    assert dialogs == []
    # The payloads were there, as text.
    page.goto(server.base + f"/projects/{project}")
    expect(page.locator("h1")).to_contain_text("<script>")
