"""The application factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from activityfeed import __version__
from activityfeed.config import Settings
from activityfeed.store.db import Database
from activityfeed.web import errors
from activityfeed.web.api import activity, apikeys, auth, events, export, workspaces
from activityfeed.web.middleware import BodyLimit, SecurityHeaders
from activityfeed.web.pages import routes as pages


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the app for ``settings``. The schema must exist (``activityfeed db upgrade``)."""
    app = FastAPI(
        title="Activity Feed",
        version=__version__,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url)
    app.state.clock = clock
    errors.install(app)
    for module in (auth, workspaces, activity, apikeys, events, export):
        app.include_router(module.router)
    app.include_router(pages.router)
    app.mount("/static", pages.static_files, name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_env() -> FastAPI:
    """The factory ``uvicorn`` calls in each worker process (``activityfeed serve``)."""
    return create_app(Settings.from_env())
