"""The installation's key as the processes of a server use it, and what a position
tells a viewer (docs/decisions/0004-sealed-positions.md)."""

from __future__ import annotations

import re
import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import delete

from activityfeed.config import Settings
from activityfeed.domain.events import ResourceType
from activityfeed.services import sealing
from activityfeed.store import secrets as secret_store
from activityfeed.store.db import Database
from activityfeed.store.schema import server_secrets
from activityfeed.web import create_app
from tests.factories import Browser, event_body
from tests.functional.feed_helpers import make_world, record_private


def test_processes_agree_on_the_key_after_the_table_is_emptied(
    settings: Settings, db: Database, clock: Any
) -> None:
    """Two workers; the key's row is deleted while they run; the second makes a new key.
    The first, shown a token of the new key, reads the key again and opens it (it does
    not keep refusing the other worker's cursors for the rest of its life)."""
    a = create_app(settings, db=db, clock=clock)
    other_db = Database(db.url)
    try:
        b = create_app(settings, db=other_db, clock=clock)
        world = make_world(a, TestClient(a, base_url="http://testserver"), db, clock)
        world.send([event_body(n) for n in range(3)])
        assert world.viewer.activity(limit=1)["nextCursor"]  # a has read its key
        with db.write() as tx:
            tx.conn.execute(delete(server_secrets))
        on_b = Browser(b, world.member.email)
        on_b.switch(world.team.slug)
        cursor = on_b.activity(limit=1)["nextCursor"]  # b makes a new key
        page = world.viewer.activity(limit=1, cursor=cursor)
        assert len(page["events"]) == 1
        # And a now seals with the new key: its cursors open on b.
        again = world.viewer.activity(limit=1)["nextCursor"]
        assert len(on_b.activity(limit=1, cursor=again)["events"]) == 1
    finally:
        other_db.dispose()


def test_concurrent_first_users_store_one_key(db: Database) -> None:
    """Eight first users of an emptied table at once: one key, the same for all."""
    with db.write() as tx:
        tx.conn.execute(delete(server_secrets))
    got: list[bytes] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        try:
            barrier.wait()
            with db.write() as tx:
                got.append(secret_store.secret(tx, sealing.POSITIONS_KEY, size=64))
        except BaseException as exc:  # a failure in a thread is reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(got) == 8
    assert len(set(got)) == 1


def _page_position(browser: Browser) -> str:
    html = browser.get("/activity").text
    match = re.search(r'data-stream-position="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def test_a_teammates_private_event_does_not_move_my_position(app, client, db, clock) -> None:
    """A position is the newest event the viewer may see: a teammate's private event
    (their settings) leaves it — and so its sealed, deterministic token — as it was;
    the viewer's own next event moves it."""
    world = make_world(app, client, db, clock)
    world.send([event_body(1)])
    before = _page_position(world.viewer)
    assert _page_position(world.viewer) == before
    record_private(db, clock, world.owner, world.team, ResourceType.SETTINGS)
    assert world.viewer.activity()["total"] == 1
    assert _page_position(world.viewer) == before
    world.send([event_body(2)])
    assert _page_position(world.viewer) != before
