"""Regenerate docs/screenshots/*.png: `make screenshots` (or `python scripts/screenshots.py`).

Seeds a temporary SQLite database with the demo's history (the same accounts as
`activityfeed demo`), serves it on a free port, and photographs the pages with Chromium
(/usr/bin/chromium, or ACTIVITYFEED_CHROMIUM). A page that answers 404 is skipped with
a message.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import Page, sync_playwright

from activityfeed.cli.bench import free_port
from activityfeed.cli.demo import DEMO_EMAIL, DEMO_PASSWORD, TEAM_NAME, seed_demo
from activityfeed.config import Settings
from activityfeed.web import create_app

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("ACTIVITYFEED_CHROMIUM", "/usr/bin/chromium")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 360, "height": 740}


def sign_in(page: Page, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", DEMO_EMAIL)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/activity*")


def switch_to_team(page: Page, base: str) -> None:
    # Through the form's route rather than a click: a click would render the team's feed,
    # and the rows it showed would be seen (so no longer highlighted) in the picture.
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    slug = page.locator(".ws", has_text=TEAM_NAME).get_attribute("value") or ""
    page.request.post(base + "/activity/switch", form={"csrf_token": token, "slug": slug})


def shoot(page: Page, base: str, path: str, name: str) -> None:
    response = page.goto(base + path)
    if response is None or response.status == 404:
        print(f"skipped {name}: {path} answers 404 on this branch")
        return
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / name))
    print(f"wrote docs/screenshots/{name}")


def archive_some(base: str) -> None:
    """Archive a handful of team events so the Archive tab has something to show."""
    with httpx.Client(base_url=base, timeout=10) as client:
        login = client.post(
            "/api/auth/login", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD}
        )
        login.raise_for_status()
        client.headers["X-CSRF-Token"] = login.json()["csrfToken"]
        slug = next(
            w["slug"]
            for w in client.get("/api/workspaces").json()["workspaces"]
            if w["name"] == TEAM_NAME
        )
        client.post(f"/api/workspaces/{slug}/switch").raise_for_status()
        events = client.get("/api/activity", params={"limit": 40}).json()["events"]
        ids = [e["id"] for e in events[6:40:3]]
        client.post("/api/activity/archive", json={"eventIds": ids}).raise_for_status()
        # What the demo user already read: everything but the newest few.
        seen = [e["id"] for e in events[5:]]
        client.post("/api/activity/mark-seen", json={"eventIds": seen}).raise_for_status()


# The pages' own stylesheet drops transitions under prefers-reduced-motion, so the
# contexts ask for it: the pictures are then stable (the CSP forbids injecting a style).


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"No Chromium at {CHROMIUM}: apt-get install chromium (or set ACTIVITYFEED_CHROMIUM)")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/screenshots.db"
        seed_demo(url, events=400)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(Settings(database_url=url, data_dir=Path(folder))),
                host="127.0.0.1",
                port=port,
                log_level="warning",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        try:
            archive_some(base)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                desktop = browser.new_context(
                    viewport=DESKTOP, timezone_id="Europe/Berlin", reduced_motion="reduce"
                )
                page = desktop.new_page()
                sign_in(page, base)
                switch_to_team(page, base)
                shoot(page, base, "/activity", "inbox.png")
                shoot(page, base, "/activity?archived=true", "archive.png")
                shoot(page, base, "/settings/profile", "settings-profile.png")
                shoot(page, base, "/settings/api-keys", "settings-api-keys.png")
                shoot(page, base, "/projects", "projects.png")
                desktop.close()
                phone = browser.new_context(
                    viewport=PHONE,
                    device_scale_factor=2,
                    is_mobile=True,
                    has_touch=True,
                    reduced_motion="reduce",
                )
                page = phone.new_page()
                sign_in(page, base)
                switch_to_team(page, base)
                shoot(page, base, "/activity", "inbox-mobile.png")
                phone.close()
                browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
