"""The application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from starlette.types import ASGIApp

from activityfeed import __version__
from activityfeed.config import Settings
from activityfeed.store.db import Database
from activityfeed.web import apidocs, auth_policy, errors, openapi
from activityfeed.web.api import (
    activity,
    apikeys,
    auth,
    events,
    export,
    onboarding,
    resources,
    stream,
    workspaces,
)
from activityfeed.web.api import settings as settings_api
from activityfeed.web.middleware import BodyLimit, SecurityHeaders
from activityfeed.web.pages import resources as resource_pages
from activityfeed.web.pages import routes as pages
from activityfeed.web.pages import settings as settings_pages
from activityfeed.web.sealing import LazySealer
from activityfeed.web.sse import Broker
from activityfeed.web.uploads import UPLOAD_PATHS


def utc_now() -> datetime:
    return datetime.now(UTC)


class _App(FastAPI):
    """FastAPI with ``SecurityHeaders`` outside everything else.

    Middleware added with ``add_middleware`` runs inside Starlette's
    ``ServerErrorMiddleware``, so a 500 (and anything answered further out) would go
    without the headers; wrapping the whole stack here covers every answer.
    """

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return SecurityHeaders(super().build_middleware_stack(), hsts=settings.cookie_secure)


def create_app(
    settings: Settings,
    *,
    db: Database | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the app for ``settings``. The schema must exist (``activityfeed db upgrade``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker: Broker = app.state.broker
        broker.start()
        try:
            yield
        finally:
            await broker.aclose()

    app = _App(
        lifespan=lifespan,
        title="Activity Feed",
        version=__version__,
        # Our own page at /api/docs (web/apidocs.py): FastAPI's loads a CDN's scripts.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        openapi_url="/api/openapi.json",
    )
    # Routes added on the app itself are session-only unless declared otherwise.
    auth_policy.install(app)
    app.state.settings = settings
    app.state.db = db or Database(settings.database_url)
    app.state.clock = clock
    app.state.sealers = LazySealer(app.state.db)
    # The live stream's fan-out for this process (started by the lifespan, or by the
    # first stream request when the app runs without one).
    app.state.broker = Broker(settings, app.state.db, clock, app.state.sealers)
    errors.install(app)
    for module in (auth, workspaces, activity, stream, apikeys, events, export):
        app.include_router(module.router)
    app.include_router(settings_api.router)
    app.include_router(onboarding.router)
    for router in resources.routers:
        app.include_router(router)
    app.include_router(pages.router)
    app.include_router(settings_pages.router)
    app.include_router(resource_pages.router)
    app.router.routes.append(auth_policy.public_mount("/static", pages.static_files, name="static"))

    @app.get("/healthz", include_in_schema=False)
    @auth_policy.accepts(auth_policy.Auth.PUBLIC)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    openapi.install(app)
    apidocs.install(app)

    # Uploads stream past the JSON body limit and enforce ACTIVITYFEED_MAX_UPLOAD_BYTES.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, exempt=UPLOAD_PATHS)
    # Every route must say which authentication it accepts (web/auth_policy.py).
    auth_policy.check(app)
    return app


def app_from_env() -> FastAPI:
    """The factory ``uvicorn`` calls in each worker process (``activityfeed serve``).

    The app is built once a process, so everything that exists then (modules, routes,
    schemas, statements: about 150,000 objects) lives as long as the process; they are
    moved out of the garbage collector's sight (``gc.freeze``). Every full collection
    walked them all: about 200 ms during which the worker answered nothing, once every
    20 s under load on a slow machine, against nothing after (docs/performance.md,
    "Tenth round"). Only a worker does this: an app made and dropped (as the tests do)
    must stay collectable.
    """
    app = create_app(Settings.from_env())
    gc.collect()  # what start-up left as garbage goes first, not frozen with the rest
    gc.freeze()
    return app
