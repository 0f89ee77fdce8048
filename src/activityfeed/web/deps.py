"""Request context and authentication: who is asking, and through what.

Every route declares what it accepts in ``web/auth_policy.py`` (session-only by
default); handlers get the caller from ``session_auth`` (everything a person does in
the browser) or ``api_key_auth`` (ingestion). ``session_auth`` also enforces the CSRF
rule on every state-changing request.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn
from urllib.parse import urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from activityfeed.config import Settings
from activityfeed.domain.accounts import ApiKey, Membership, Scope, Session
from activityfeed.domain.state import MarksAndHead
from activityfeed.errors import Forbidden, NotAuthenticated
from activityfeed.services import accounts, apikeys
from activityfeed.store.db import Database, Tx
from activityfeed.web.sealing import LazySealer
from activityfeed.web.uploads import UPLOAD_PATHS

SESSION_COOKIE = "af_session"
SECURE_SESSION_COOKIE = "__Host-af_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every handler needs: settings, the database, the clock, and what seals the
    cursors and stream positions the app hands out (off the event loop: it reads the key
    now and then)."""

    settings: Settings
    db: Database
    clock: Callable[[], datetime]
    sealer: LazySealer

    def now(self) -> datetime:
        return self.clock()


def ctx(request: Request) -> Ctx:
    state = request.app.state
    return Ctx(settings=state.settings, db=state.db, clock=state.clock, sealer=state.sealers)


def is_secure(request: Request, settings: Settings) -> bool:
    # The scope's scheme (what ``request.url.scheme`` reads), without building the URL:
    # every signed-in request asks, and a URL costs more than the rest of this check.
    return settings.cookie_secure or request.scope.get("scheme") == "https"


def cookie_name(request: Request, settings: Settings) -> str:
    # The __Host- prefix pins the cookie to this host over HTTPS (no Domain, Path=/).
    return SECURE_SESSION_COOKIE if is_secure(request, settings) else SESSION_COOKIE


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def check_origin(request: Request, settings: Settings) -> None:
    """Refuse a state-changing request that a browser says comes from another site."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise Forbidden("Cross-site requests are refused.", code="csrf_failed")
    origin = request.headers.get("origin")
    if origin is None:
        return
    own = f"{request.url.scheme}://{request.url.netloc}".lower()
    host = request.headers.get("host", "").lower()
    parts = urlsplit(origin.lower())
    if origin.lower() in {o.lower() for o in settings.trusted_origins}:
        return
    if origin == "null" or (parts.netloc != host and origin.lower() != own):
        raise Forbidden("Requests from another site are refused.", code="csrf_failed")


#: Bodies a cross-site page can send without a CORS preflight (an HTML form, a
#: "simple" fetch). The JSON API never takes one, except an upload's multipart form.
SIMPLE_BODY_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")


def _is_json_route(request: Request) -> bool:
    return request.url.path.startswith("/api/") and not UPLOAD_PATHS.match(request.url.path)


async def _csrf_token_from(request: Request) -> str | None:
    content_type = request.headers.get("content-type", "").lower()
    if _is_json_route(request):
        # The JSON API takes the token from the header only, which a cross-site page can
        # send only after a CORS preflight this app never grants; and it refuses form
        # bodies outright, so an HTML form on another site cannot reach it at all.
        if content_type.startswith(SIMPLE_BODY_TYPES):
            raise Forbidden(
                "This route takes a JSON body (Content-Type: application/json).",
                code="csrf_failed",
            )
        return request.headers.get(CSRF_HEADER)
    if token := request.headers.get(CSRF_HEADER):
        return token
    if UPLOAD_PATHS.match(request.url.path):
        # An upload's body is streamed by its route under its own size limit; parsing it
        # here would spool a file of any size before the token is even known.
        return None
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else None
    return None


def _session_from(request: Request, c: Ctx) -> Session | None:
    # Only the cookie of this scheme: over HTTPS a plain ``af_session`` may have been
    # planted by a sibling subdomain or an HTTP page, which ``__Host-`` rules out.
    value = request.cookies.get(cookie_name(request, c.settings))
    if not value:
        return None
    now = c.now()
    with c.db.read() as tx:
        session = accounts.resolve_session(tx, value, now=now, settings=c.settings)
    if session is not None and now - session.last_seen_at >= accounts.TOUCH_EVERY:
        with c.db.write() as tx:
            accounts.touch_session(tx, session, now=now)
    return session


async def session_before_csrf(request: Request) -> Session:
    """The caller's live browser session, origin-checked, before the CSRF token check.

    For routes that must read their (streamed) body themselves to find a form's
    ``csrf_token``: they call ``check_csrf`` once they have it. No session: 401
    ``browser_session_required`` when an API key was sent instead (these routes never
    accept one), else 401 ``not_authenticated``.
    """
    c = ctx(request)
    # The lookup (and the once-a-minute touch) is blocking database work: keep it off
    # the event loop, where a busy SQLite lock would stall every request of the worker.
    session = await run_in_threadpool(_session_from, request, c)
    if session is None:
        _refuse(request)
    if request.method not in SAFE_METHODS:
        check_origin(request, c.settings)
    request.state.auth_kind = "session"
    return session


@dataclass(frozen=True, slots=True)
class SessionLookup:
    """The caller's session, looked up by the handler in its own read transaction.

    For the hottest read routes: ``session_auth`` reads the session in a thread-pool
    call and a transaction of its own before the handler's, and those two cost a
    request about a tenth of its CPU. ``within_workspace`` answers exactly as ``session_auth``
    does (401 ``browser_session_required`` or ``not_authenticated``), so the handler
    calls it first, before it reads anything else or looks at its parameters.
    """

    request: Request
    ctx: Ctx
    cookie: str

    def within_workspace(self, tx: Tx) -> tuple[Session, Membership | None, MarksAndHead | None]:
        """The session, the user's membership of its active workspace (None when they
        left it; for ``workspaces.active_workspace``'s ``known``), and their watermarks
        there with its head (for ``activity.list_activity``), read in one statement."""
        c = self.ctx
        found = accounts.resolve_session_for_feed(tx, self.cookie, now=c.now(), settings=c.settings)
        if found is None:
            _refuse(self.request)
        self.request.state.auth_kind = "session"
        return found

    def is_touch_due(self, session: Session) -> bool:
        return self.ctx.now() - session.last_seen_at >= accounts.TOUCH_EVERY

    def touch(self, session: Session) -> None:
        """Refresh ``last_seen_at`` (the caller checks ``is_touch_due`` first). A write:
        on SQLite it may wait for the write lock, so run it off the readers' pool."""
        with self.ctx.db.write() as tx:
            accounts.touch_session(tx, session, now=self.ctx.now())


#: Methods that may read the session in the handler: they change nothing, so there is no
#: CSRF token to check (``auth_policy.problems`` refuses the dependency on other routes).
SESSION_IN_HANDLER_METHODS = frozenset({"GET", "HEAD"})


async def session_in_handler(request: Request) -> SessionLookup:
    """``session_auth`` for safe-method routes that read the session in their own
    transaction (``SessionLookup``): one thread-pool call and one transaction a request.
    Without a session cookie it answers at once, as ``session_auth`` does."""
    if request.method not in SESSION_IN_HANDLER_METHODS:
        raise RuntimeError("session_in_handler serves GET routes only (no CSRF check)")
    c = ctx(request)
    cookie = request.cookies.get(cookie_name(request, c.settings))
    if not cookie:
        _refuse(request)
    return SessionLookup(request=request, ctx=c, cookie=cookie)


def _refuse(request: Request) -> NoReturn:
    if _bearer(request) is not None:
        raise NotAuthenticated(
            "This route needs a browser session; API keys cannot use it.",
            code="browser_session_required",
        )
    raise NotAuthenticated("Sign in first.")


def check_csrf(session: Session, token: str | None) -> None:
    # As bytes: ``compare_digest`` refuses a str with non-ASCII characters (a TypeError,
    # which would be a 500 for a token the client made up).
    if not token or not hmac.compare_digest(token.encode(), session.csrf_token.encode()):
        raise Forbidden(
            "The CSRF token is missing or wrong; reload the page and try again.",
            code="csrf_failed",
        )


async def session_auth(request: Request) -> Session:
    """The caller's live browser session; CSRF-checked when the method changes state.

    No session: 401 ``browser_session_required`` when an API key was sent instead (these
    routes never accept one), else 401 ``not_authenticated``.
    """
    session = await session_before_csrf(request)
    if request.method not in SAFE_METHODS:
        check_csrf(session, await _csrf_token_from(request))
    return session


def api_key_auth(request: Request) -> ApiKey:
    """The API key in ``Authorization: Bearer``, live and with ``events:write``."""
    c = ctx(request)
    token = _bearer(request)
    if token is None:
        raise NotAuthenticated(
            "Send an API key as 'Authorization: Bearer <key>'.", code="not_authenticated"
        )
    with c.db.read() as tx:
        key = apikeys.authenticate_api_key(tx, token, scope=Scope.EVENTS_WRITE)
    request.state.auth_kind = "api_key"
    return key


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def session_from_cookie(request: Request, c: Ctx) -> Session | None:
    """The live session behind the request's cookie, or None (pages redirect to sign-in)."""
    return _session_from(request, c)
