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
from urllib.parse import urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from activityfeed.config import Settings
from activityfeed.domain.accounts import ApiKey, Scope, Session
from activityfeed.errors import Forbidden, NotAuthenticated
from activityfeed.services import accounts, apikeys
from activityfeed.store.db import Database
from activityfeed.web.uploads import UPLOAD_PATHS

SESSION_COOKIE = "af_session"
SECURE_SESSION_COOKIE = "__Host-af_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Ctx:
    """What every handler needs: settings, the database and the clock."""

    settings: Settings
    db: Database
    clock: Callable[[], datetime]

    def now(self) -> datetime:
        return self.clock()


def ctx(request: Request) -> Ctx:
    state = request.app.state
    return Ctx(settings=state.settings, db=state.db, clock=state.clock)


def is_secure(request: Request, settings: Settings) -> bool:
    return settings.cookie_secure or request.url.scheme == "https"


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


async def _csrf_token_from(request: Request) -> str | None:
    if token := request.headers.get(CSRF_HEADER):
        return token
    content_type = request.headers.get("content-type", "")
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
    value = request.cookies.get(cookie_name(request, c.settings)) or request.cookies.get(
        SESSION_COOKIE
    )
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
        if _bearer(request) is not None:
            raise NotAuthenticated(
                "This route needs a browser session; API keys cannot use it.",
                code="browser_session_required",
            )
        raise NotAuthenticated("Sign in first.")
    if request.method not in SAFE_METHODS:
        check_origin(request, c.settings)
    request.state.auth_kind = "session"
    return session


def check_csrf(session: Session, token: str | None) -> None:
    if not token or not hmac.compare_digest(token, session.csrf_token):
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
