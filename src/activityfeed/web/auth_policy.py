"""Which authentication each route accepts, declared where the route is defined.

    Auth.SESSION   the browser's session cookie (CSRF-checked on writes); API keys refused
    Auth.API_KEY   ``Authorization: Bearer <key>`` only (ingestion)
    Auth.PUBLIC    nothing at all (sign-in, health, static files, the API documentation)

A router made by ``router(auth=...)`` gives every route it holds that policy; the default
is ``Auth.SESSION``, so a route is session-only unless someone writes otherwise.
``@accepts(Auth.PUBLIC)`` on one endpoint overrides its router's policy. A plain
``APIRouter`` declares nothing: ``check`` refuses to build an app with such a route, so a
new route cannot slip in without a decision (tests/security/test_auth_policy.py walks
the route table too).

The declaration is also the enforcement for session routes: before any dependency or
body is read, a request that carries a bearer token and no live session is answered
``401 browser_session_required``, whatever the handler does after (pages included).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from activityfeed.errors import NotAuthenticated
from activityfeed.web.deps import (
    SESSION_IN_HANDLER_METHODS,
    api_key_auth,
    ctx,
    session_auth,
    session_before_csrf,
    session_from_cookie,
    session_in_handler,
)


class Auth(StrEnum):
    SESSION = "session"
    API_KEY = "api_key"
    PUBLIC = "public"


#: Where a declaration is kept on an endpoint function or a non-FastAPI route.
ATTRIBUTE = "__activityfeed_auth__"

F = TypeVar("F", bound=Callable[..., Any])


def accepts(auth: Auth) -> Callable[[F], F]:
    """Declare the authentication one endpoint accepts, overriding its router's policy."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, ATTRIBUTE, auth)
        return endpoint

    return mark


def _sends_api_key(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


async def refuse_api_keys(request: Request) -> None:
    """401 ``browser_session_required`` for a bearer token without a live session.

    Only requests that send a bearer token pay for the session lookup here; everything
    else is left to the route's own session handling (a 401 or a sign-in redirect).
    """
    if not _sends_api_key(request):
        return
    session = await run_in_threadpool(session_from_cookie, request, ctx(request))
    if session is None:
        raise NotAuthenticated(
            "This route needs a browser session; API keys cannot use it.",
            code="browser_session_required",
        )


class PolicyRoute(APIRoute):
    """An ``APIRoute`` that knows, and for sessions enforces, the authentication it takes."""

    default_auth: ClassVar[Auth]

    @property
    def auth(self) -> Auth:
        # Read when asked, not at construction, so ``@accepts`` works above or below the
        # router's decorator.
        declared = getattr(self.endpoint, ATTRIBUTE, None)
        return declared if isinstance(declared, Auth) else self.default_auth

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            if self.auth is Auth.SESSION:
                await refuse_api_keys(request)
            return await handler(request)

        return guarded


class SessionRoute(PolicyRoute):
    default_auth = Auth.SESSION


class ApiKeyRoute(PolicyRoute):
    default_auth = Auth.API_KEY


class PublicRoute(PolicyRoute):
    default_auth = Auth.PUBLIC


ROUTE_CLASSES: dict[Auth, type[PolicyRoute]] = {
    Auth.SESSION: SessionRoute,
    Auth.API_KEY: ApiKeyRoute,
    Auth.PUBLIC: PublicRoute,
}


def router(*, auth: Auth = Auth.SESSION, **kwargs: Any) -> APIRouter:
    """An ``APIRouter`` whose routes accept ``auth`` (session-only unless said otherwise)."""
    return APIRouter(route_class=ROUTE_CLASSES[auth], **kwargs)


def public_mount(path: str, app: ASGIApp, *, name: str) -> Mount:
    """A mount (static files) declared public: it serves the same bytes to everyone."""
    mount = Mount(path, app=app, name=name)
    setattr(mount, ATTRIBUTE, Auth.PUBLIC)
    return mount


def public_route(path: str, endpoint: Callable[[Request], Any], *, name: str) -> Route:
    """A plain GET route (no FastAPI parameters or schema entry) declared public: a
    static page that holds no data."""
    route = Route(path, endpoint, methods=["GET"], name=name, include_in_schema=False)
    setattr(route, ATTRIBUTE, Auth.PUBLIC)
    return route


def install(app: FastAPI) -> None:
    """Make routes added on ``app`` itself session-only unless declared otherwise, and
    declare FastAPI's own documentation routes public (they describe the API, no data)."""
    app.router.route_class = SessionRoute
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    for route in app.router.routes:
        if not isinstance(route, APIRoute) and getattr(route, "path", None) in docs - {None}:
            setattr(route, ATTRIBUTE, Auth.PUBLIC)


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """One entry of the app's route table with what it accepts (None: undeclared)."""

    path: str
    methods: frozenset[str]
    name: str
    auth: Auth | None
    route: BaseRoute
    #: What FastAPI resolves before the handler (None for routes that are not FastAPI's).
    dependant: Dependant | None

    def __str__(self) -> str:
        return f"{'|'.join(sorted(self.methods)) or 'ANY'} {self.path} ({self.name})"


def route_policies(app: FastAPI) -> list[RoutePolicy]:
    """Every route of the app (included routers flattened) with its declared policy."""
    out = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, PolicyRoute):
            auth: Auth | None = route.auth
        else:
            declared = getattr(route, ATTRIBUTE, None)
            auth = declared if isinstance(declared, Auth) else None
        out.append(
            RoutePolicy(
                path=str(context.path),
                methods=frozenset(context.methods or ()),
                name=str(context.name),
                auth=auth,
                route=route,
                dependant=context.dependant if isinstance(route, APIRoute) else None,
            )
        )
    return out


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


_SESSION_DEPS = {session_auth, session_before_csrf, session_in_handler}


def problems(app: FastAPI) -> list[str]:
    """What is wrong with the app's declarations, one sentence per route ([] when none).

    A route must declare a policy, and its dependencies must agree with it: an API-key
    route depends on ``api_key_auth``; no other route does; a public route depends on
    no session.
    """
    found = []
    for entry in route_policies(app):
        if entry.auth is None:
            found.append(
                f"{entry} declares no authentication: define it on auth_policy.router(...) "
                "or mark it with @auth_policy.accepts(...)."
            )
            continue
        if entry.dependant is None:
            continue
        calls = set(_calls(entry.dependant))
        if entry.auth is Auth.API_KEY and api_key_auth not in calls:
            found.append(f"{entry} is declared api_key but does not depend on api_key_auth.")
        if entry.auth is not Auth.API_KEY and api_key_auth in calls:
            found.append(f"{entry} depends on api_key_auth but is declared {entry.auth}.")
        if entry.auth is Auth.PUBLIC and calls & _SESSION_DEPS:
            found.append(f"{entry} is declared public but depends on a session.")
        if session_in_handler in calls and not entry.methods <= SESSION_IN_HANDLER_METHODS:
            found.append(
                f"{entry} depends on session_in_handler, which skips the CSRF check: "
                "GET routes only (use session_auth)."
            )
    return found


class UndeclaredAuthentication(RuntimeError):
    """The app has a route whose authentication is undeclared or contradicts its code."""


def check(app: FastAPI) -> None:
    """Refuse to build an app whose routes do not all declare what they accept."""
    found = problems(app)
    if found:
        raise UndeclaredAuthentication("\n".join(found))
