"""Browser tests: a real server on a free port, a real Chromium driven by Playwright.

``serve()`` starts uvicorn in a thread against a migrated temporary SQLite database and
yields a ``Server`` whose ``db`` the test uses to make users and workspaces through the
services; events go through the HTTP API as a producer would send them.

The browser is Debian's Chromium (Playwright's own download does not work everywhere).
Without /usr/bin/chromium the browser tests are skipped, unless
ACTIVITYFEED_REQUIRE_BROWSER=1 (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn

from activityfeed.config import Settings
from activityfeed.domain.accounts import User, Workspace
from activityfeed.store.db import Database
from activityfeed.web import create_app
from activityfeed.web.app import utc_now
from tests.factories import PASSWORD, make_key, make_user, personal_workspace

CHROMIUM = os.environ.get("ACTIVITYFEED_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("ACTIVITYFEED_REQUIRE_BROWSER") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running server: its base URL and its database (for set-up through services)."""

    base: str
    db: Database

    def clock(self) -> Any:
        return utc_now()

    def user(self, **kw: Any) -> User:
        return make_user(self.db, utc_now, **kw)

    def key(self, user: User, workspace: Workspace | None = None) -> str:
        return make_key(self.db, utc_now, user, workspace or personal_workspace(self.db, user))

    def ingest(self, secret: str, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Send events as a producer would; returns the recorded events."""
        response = httpx.post(
            self.base + "/api/events",
            json={"events": list(events)},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        assert response.status_code in (200, 201), response.text
        body = response.json()
        return list(body["events"])


@contextmanager
def serve(database_url: str, **settings: Any) -> Iterator[Server]:
    """Run the app with uvicorn in a thread until the block ends."""
    port = free_port()
    db = Database(database_url)
    app = create_app(Settings(database_url=database_url, **settings), db=db)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the test server did not start")
            time.sleep(0.05)
        yield Server(base=base, db=db)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.dispose()


@pytest.fixture
def server(sqlite_template: Path, tmp_path: Path) -> Iterator[Server]:
    path = tmp_path / "e2e.db"
    shutil.copy(sqlite_template, path)
    with serve(f"sqlite:///{path}", data_dir=tmp_path) as running:
        yield running


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and the other e2e modules call asyncio.run().
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(reason + " and ACTIVITYFEED_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Any) -> Iterator[Any]:
    ctx = chromium.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC")
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A page that fails the test on a script error or a Content-Security-Policy refusal."""
    p = context.new_page()
    p.set_default_timeout(5000)
    problems: list[str] = []
    p.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    p.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    yield p
    assert not problems, problems


def sign_in(page: Any, base: str, user: User, *, next_path: str = "/activity") -> None:
    """Sign in through the form, as a person does."""
    page.goto(f"{base}/login?" + urlencode({"next": next_path}))
    page.fill("#email", user.email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path.split('?')[0]}*")
