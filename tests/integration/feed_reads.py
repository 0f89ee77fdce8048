"""The bench user's signed-in session and a feed page read as ``GET /api/activity``
reads it, for the integration tests that look at the page's statements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from activityfeed.config import Settings
from activityfeed.domain.query import ActivityQuery
from activityfeed.services import accounts, activity, workspaces
from activityfeed.services.bench_history import USER_EMAIL, USER_PASSWORD
from activityfeed.store.db import Database

UNDO = timedelta(hours=1)


def sign_in(db: Database, slug: str) -> tuple[str, Settings]:
    """The bench user signed in with ``slug`` active: the cookie and the settings."""
    settings = Settings(database_url=db.url)
    with db.write() as tx:
        signed = accounts.sign_in(
            tx,
            email=USER_EMAIL,
            password=USER_PASSWORD,
            address="127.0.0.1",
            now=datetime.now(UTC),
            settings=settings,
        )
        workspaces.switch_workspace(tx, signed.session, slug)
    return signed.cookie_value, settings


def feed_page(db: Database, cookie: str, settings: Settings, q: ActivityQuery) -> Any:
    """The session, its membership, its marks and head, and the page, read as
    ``GET /api/activity`` reads them: in one read transaction."""
    now = datetime.now(UTC)
    with db.read() as tx:
        found = accounts.resolve_session_for_feed(tx, cookie, now=now, settings=settings)
        assert found is not None
        session, membership, marks_and_head = found
        assert membership is not None
        page = activity.list_activity(
            tx,
            viewer_id=session.user.id,
            membership=membership,
            q=q,
            now=now,
            undo_window=UNDO,
            marks_and_head=marks_and_head,
        )
    return session, membership, marks_and_head, page
