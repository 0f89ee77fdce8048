"""The platform's own producers in a real browser: Undo on a settings row, the deleted
resource's note on its events, and "Export my data"."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import pytest

from tests.e2e.conftest import Server, sign_in
from tests.e2e.test_browser import api_session, rows

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - playwright is a dev dependency
    pytest.skip("playwright is not installed", allow_module_level=True)


def test_undo_a_settings_change_from_its_row(server: Server, page: Any) -> None:
    """Saving the profile form records a settings row with Undo; Undo reverts the field,
    records its own row, and the first row offers Undo no more."""
    user = server.user(name="Ada")
    sign_in(page, server.base, user, next_path="/settings/profile")
    page.fill("#bio", "Trains detectors.")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Profile saved.")).to_be_visible()

    page.goto(server.base + "/activity")
    change = rows(page).filter(has_text="Updated profile: bio")
    expect(change).to_have_count(1)
    change.get_by_role("button", name=re.compile("^Undo")).click()
    expect(change.locator(".row-status")).to_have_text("Undone.")

    with api_session(server, user.email) as api:
        assert api.get("/api/settings/profile").json()["profile"]["bio"] == ""
    page.reload()
    expect(rows(page).filter(has_text="Undid profile change: bio")).to_have_count(1)
    undone = rows(page).filter(has_text="Updated profile: bio")
    expect(undone.get_by_role("button", name=re.compile("^Undo"))).to_have_count(0)


def test_events_of_a_trashed_then_deleted_project_say_so(server: Server, page: Any) -> None:
    """The project's events stay in the feed and show its live state: in Trash until a
    date, then permanently deleted."""
    user = server.user()
    sign_in(page, server.base, user)
    with api_session(server, user.email) as api:
        created = api.post("/api/projects", json={"name": "street-signs"})
        assert created.status_code == 201, created.text
        project_id = created.json()["project"]["id"]
        assert api.post(f"/api/projects/{project_id}/trash").status_code == 200
        purge = api.get(f"/api/projects/{project_id}").json()["project"]["purgeAfter"][:10]

    page.reload()
    events = rows(page).filter(has_text="street-signs")
    expect(events).to_have_count(2)
    for i in range(2):
        expect(events.nth(i).locator(".gone")).to_have_text(
            f"In Trash, deleted for good on {purge}"
        )

    with api_session(server, user.email) as api:
        assert api.delete(f"/api/projects/{project_id}").status_code == 200
    page.reload()
    expect(events).to_have_count(3)
    for i in range(3):
        expect(events.nth(i).locator(".gone")).to_have_text(
            re.compile(r"^Permanently deleted on \d{4}-\d{2}-\d{2}$")
        )


def test_export_my_data_downloads_the_archive(server: Server, page: Any) -> None:
    """The profile page's "Export my data" downloads the ZIP with the user's events."""
    user = server.user()
    key = server.key(user)
    sent = server.ingest(
        key,
        {
            "resourceType": "training",
            "action": "completed",
            "resourceId": "run-1",
            "resourceName": "yolo-run-1",
        },
    )
    sign_in(page, server.base, user, next_path="/settings/profile")
    with page.expect_download() as info:
        page.get_by_role("link", name="Export my data").click()
    download = info.value
    assert re.fullmatch(r"activityfeed-export-\d{4}-\d{2}-\d{2}\.zip", download.suggested_filename)
    with open(download.path(), "rb") as f:
        archive = zipfile.ZipFile(io.BytesIO(f.read()))
    assert archive.namelist()[-1] == "manifest.json"
    exported = [json.loads(line) for line in archive.read("events.jsonl").splitlines()]
    assert sent[0]["id"] in {e["id"] for e in exported}
    assert json.loads(archive.read("profile.json"))["email"] == user.email
