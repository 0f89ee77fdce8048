"""Server-rendered Settings pages (profile, API keys) and the no-JavaScript Undo.

Every action is a plain HTML form with the ``csrf_token`` field, checked by
``session_auth`` like the JSON routes. Handlers are async only to read the form; the
database work runs in the thread pool.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from activityfeed.domain import profiles as p
from activityfeed.domain.accounts import Scope, Session
from activityfeed.domain.events import SourceKind
from activityfeed.errors import AppError, InvalidRequest, TooManyRequests
from activityfeed.services import accounts, apikeys, settings, workspaces
from activityfeed.web import auth_policy
from activityfeed.web.api.auth import set_session_cookie
from activityfeed.web.deps import Ctx, client_address, ctx, session_from_cookie
from activityfeed.web.pages.routes import (
    _login_redirect,
    _safe_next,
    form_session,
    sidebar_context,
    templates,
)

router = auth_policy.router(include_in_schema=False)

#: Longest text a form field may carry before it is even looked at.
FORM_MAX = 2000


def _text(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value[:FORM_MAX] if isinstance(value, str) else default


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


def _render(
    request: Request, template: str, session: Session, status: int = 200, **context: Any
) -> Response:
    # The shared sidebar (workspaces with their unseen counts) costs one short read.
    with ctx(request).db.read() as tx:
        sidebar = sidebar_context(tx, session, current=str(context.get("section", "")))
    return templates.TemplateResponse(
        request,
        template,
        {**sidebar, "when": _when, "notice": None, "error": None, **context},
        status_code=status,
    )


@router.get("/settings")
@auth_policy.accepts(auth_policy.Auth.PUBLIC)
def settings_home() -> RedirectResponse:
    return RedirectResponse("/settings/profile", status_code=303)


# ---- profile ------------------------------------------------------------------------------


def _profile_page(
    request: Request,
    session: Session,
    values: dict[str, Any],
    *,
    status: int = 200,
    notice: str | None = None,
    error: AppError | None = None,
    password_error: str | None = None,
) -> Response:
    return _render(
        request,
        "settings_profile.html",
        session,
        status,
        section="profile",
        values=values,
        email=session.user.email,
        zones=p.timezone_names(),
        digests=[d.value for d in p.EmailDigest],
        notice=notice,
        error=error.message if error else None,
        error_field=error.field if isinstance(error, InvalidRequest) else None,
        password_error=password_error,
    )


@router.get("/settings/profile", response_class=HTMLResponse)
def profile_page(request: Request, saved: str | None = None, c: Ctx = Depends(ctx)) -> Response:
    session = session_from_cookie(request, c)
    if session is None:
        return _login_redirect(request)
    with c.db.read() as tx:
        profile = settings.get_profile(tx, user_id=session.user.id)
    notice = {
        "1": "Profile saved.",
        "0": "Nothing changed.",
        "password": "Password changed; every other browser was signed out.",
    }.get(saved or "")
    return _profile_page(request, session, profile.values, notice=notice)


@router.post("/settings/profile", response_class=HTMLResponse)
async def profile_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """The whole form is sent, so an unticked box means false."""
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    patch: dict[str, Any] = {
        p.NAME: _text(form, "name"),
        p.BIO: _text(form, "bio"),
        p.COMPANY: _text(form, "company"),
        p.TIMEZONE: _text(form, "timezone"),
        p.TRAINING_FAILURES: form.get("training_failures") == "on",
        p.WEEKLY_DIGEST: form.get("weekly_digest") == "on",
        p.EMAIL_DIGEST: _text(form, "email_digest"),
    }
    user = session.user

    def work() -> bool:
        with c.db.write() as tx:
            change = settings.update_profile(
                tx,
                user=user,
                patch=patch,
                source=SourceKind.UI,
                now=c.now(),
                undo_window=timedelta(seconds=c.settings.undo_window_seconds),
            )
        return change.event is not None

    try:
        changed = await run_in_threadpool(work)
    except InvalidRequest as exc:
        return _profile_page(request, session, patch, status=exc.status, error=exc)
    return RedirectResponse(f"/settings/profile?saved={int(changed)}", status_code=303)


@router.post("/settings/password", response_class=HTMLResponse)
async def password_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """No-JavaScript password change (``POST /api/auth/password``'s rules)."""
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    current = form.get("current_password", "")
    new = form.get("new_password", "")
    now = c.now()
    address = client_address(request)

    def work() -> accounts.PasswordChanged:
        try:
            with c.db.write() as tx:
                return accounts.change_password(
                    tx,
                    session,
                    current_password=current if isinstance(current, str) else "",
                    new_password=new if isinstance(new, str) else "",
                    address=address,
                    now=now,
                    settings=c.settings,
                )
        except InvalidRequest as exc:
            if exc.field == "currentPassword":
                with c.db.write() as tx:
                    accounts.record_failure(
                        tx, email=session.user.email, address=address, now=now, settings=c.settings
                    )
            raise

    try:
        changed = await run_in_threadpool(work)
    except (InvalidRequest, TooManyRequests) as exc:
        with c.db.read() as tx:
            profile = settings.get_profile(tx, user_id=session.user.id)
        page = _profile_page(
            request, session, profile.values, status=exc.status, password_error=exc.message
        )
        if isinstance(exc, TooManyRequests):
            page.headers["Retry-After"] = str(exc.retry_after)
        return page
    redirect = RedirectResponse("/settings/profile?saved=password", status_code=303)
    # This browser's session id was rotated: it carries on under the new cookie.
    set_session_cookie(request, redirect, c, changed.cookie_value)
    return redirect


# ---- API keys -----------------------------------------------------------------------------


def _keys_page(
    request: Request,
    session: Session,
    c: Ctx,
    *,
    status: int = 200,
    created: apikeys.CreatedKey | None = None,
    notice: str | None = None,
    error: str | None = None,
    name: str = "",
) -> Response:
    with c.db.read() as tx:
        membership = workspaces.active_workspace(tx, session, None)
        keys = apikeys.list_api_keys(tx, membership=membership)
    return _render(
        request,
        "settings_api_keys.html",
        session,
        status,
        section="api-keys",
        membership=membership,
        keys=keys,
        scopes=[s.value for s in Scope],
        created=created,
        notice=notice,
        error=error,
        name=name,
    )


@router.get("/settings/api-keys", response_class=HTMLResponse)
def api_keys_page(request: Request, revoked: str | None = None, c: Ctx = Depends(ctx)) -> Response:
    session = session_from_cookie(request, c)
    if session is None:
        return _login_redirect(request)
    notice = "The key was revoked; it no longer works." if revoked == "1" else None
    return _keys_page(request, session, c, notice=notice)


@router.post("/settings/api-keys", response_class=HTMLResponse)
async def create_key_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """Create a key and show its secret on this one response (never again: no redirect)."""
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    name = _text(form, "name")
    chosen = [str(s) for s in form.getlist("scopes")]
    try:
        scopes = [Scope(s) for s in chosen] or [Scope.EVENTS_WRITE]
    except ValueError:
        return await run_in_threadpool(
            lambda: _keys_page(request, session, c, status=422, error="Unknown scope.", name=name)
        )

    def work() -> Response:
        try:
            with c.db.write() as tx:
                membership = workspaces.active_workspace(tx, session, None)
                created = apikeys.create_api_key(
                    tx,
                    user=session.user,
                    membership=membership,
                    name=name,
                    scopes=scopes,
                    source=SourceKind.UI,
                    now=c.now(),
                )
        except AppError as exc:
            return _keys_page(request, session, c, status=exc.status, error=exc.message, name=name)
        page = _keys_page(request, session, c, created=created)
        # The secret is in this page only: keep it out of every cache.
        page.headers["Cache-Control"] = "no-store"
        return page

    return await run_in_threadpool(work)


@router.post("/settings/api-keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke_key_form(key_id: str, request: Request, c: Ctx = Depends(ctx)) -> Response:
    session = await form_session(request)
    if isinstance(session, Response):
        return session

    def work() -> Response:
        try:
            with c.db.write() as tx:
                apikeys.revoke_api_key(
                    tx, user=session.user, key_id=key_id, source=SourceKind.UI, now=c.now()
                )
        except AppError as exc:
            return _keys_page(request, session, c, status=exc.status, error=exc.message)
        return RedirectResponse("/settings/api-keys?revoked=1", status_code=303)

    return await run_in_threadpool(work)


# ---- undo from the activity page ------------------------------------------------------------


@router.post("/activity/undo", response_class=HTMLResponse)
async def undo_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """No-JavaScript Undo: back to the page on success; a page that says why otherwise."""
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    event_id = _text(form, "event_id")[:128]
    return_to = _safe_next(_text(form, "return_to", "/activity"))

    def work() -> Response:
        try:
            with c.db.write() as tx:
                settings.undo_settings_change(
                    tx,
                    user=session.user,
                    event_id=event_id,
                    source=SourceKind.UI,
                    now=c.now(),
                    undo_window=timedelta(seconds=c.settings.undo_window_seconds),
                )
        except AppError as exc:
            return _render(
                request,
                "settings_layout.html",
                session,
                exc.status,
                section=None,
                title="Undo failed",
                error=exc.message,
                back=return_to,
            )
        return RedirectResponse(return_to, status_code=303)

    return await run_in_threadpool(work)
