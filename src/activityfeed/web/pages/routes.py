"""Server-rendered pages: sign-in and the Activity page.

Every action here is a plain HTML form (with the ``csrf_token`` field), so the core of
the product works with JavaScript turned off. The live, keyboard-driven page builds on
these (issue 3).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from activityfeed.domain.accounts import Session
from activityfeed.domain.events import EventView
from activityfeed.domain.query import parse_activity_query
from activityfeed.errors import AppError, InvalidRequest, NotAuthenticated, TooManyRequests
from activityfeed.services import accounts, activity, stream, workspaces
from activityfeed.store.db import Tx
from activityfeed.web import auth_policy
from activityfeed.web.api.auth import set_session_cookie
from activityfeed.web.deps import (
    Ctx,
    check_origin,
    client_address,
    cookie_name,
    ctx,
    session_auth,
    session_from_cookie,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
static_files = StaticFiles(directory=str(HERE / "static"))

router = auth_policy.router(include_in_schema=False)

#: The resource types' colours (PRODUCT.md), and the training colour per action.
TYPE_COLOURS = {
    "project": "blue",
    "dataset": "green",
    "model": "purple",
    "settings": "gray",
    "api_key": "amber",
    "export": "amber",
    "deployment": "blue",
    "onboarding": "green",
}
TRAINING_COLOURS = {"started": "blue", "completed": "green", "failed": "red", "cancelled": "gray"}
TYPE_LABELS = {
    "project": "Project",
    "dataset": "Dataset",
    "model": "Model",
    "training": "Training",
    "settings": "Settings",
    "api_key": "API key",
    "export": "Export",
    "deployment": "Deployment",
    "onboarding": "Onboarding",
}


def colour(view: EventView) -> str:
    e = view.event
    if e.resource_type.value == "training":
        return TRAINING_COLOURS.get(e.action.value, "blue")
    return TYPE_COLOURS.get(e.resource_type.value, "gray")


def relative(moment: datetime, now: datetime) -> str:
    """ "2 hours ago" style, as the seed shows it."""
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return "just now" if seconds > -300 else "in the future"
    for unit, size in (
        ("year", 365 * 86400),
        ("month", 30 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def absolute(moment: datetime) -> str:
    """The exact time, in UTC; the page's script rewrites it in the reader's timezone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%d %b %Y")


def timedelta_days(days: int, microseconds: int = 0) -> timedelta:
    return timedelta(days=days, microseconds=microseconds)


templates.env.globals.update(
    type_colour=colour,
    type_labels=TYPE_LABELS,
    relative=relative,
    absolute=absolute,
    day=day,
    timedelta_days=timedelta_days,
)


def _signed_in(request: Request) -> Session | None:
    return session_from_cookie(request, ctx(request))


@router.get("/")
@auth_policy.accepts(auth_policy.Auth.PUBLIC)
def home() -> RedirectResponse:
    return RedirectResponse("/activity", status_code=303)


@router.get("/login", response_class=HTMLResponse)
@auth_policy.accepts(auth_policy.Auth.PUBLIC)
def login_page(request: Request, next: str = "/activity") -> Response:
    if _signed_in(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return templates.TemplateResponse(
        request, "login.html", {"error": None, "email": "", "next": _safe_next(next)}
    )


def _is_blank(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] == "C"


def _safe_next(target: str) -> str:
    """``target`` when it is a path on this site, else ``/activity``.

    An open redirect would make the sign-in page a phishing tool. Browsers read
    ``/\\host`` as ``//host`` (another site), drop tabs and newlines from URLs, and some
    proxies decode ``%5C`` and ``%2F``; so the path is judged after percent-decoding, and
    a backslash, blank or control character in it (or raw anywhere) refuses it.
    """
    decoded = target
    for _ in range(3):
        decoded = unquote(decoded)
    path = decoded.split("?", 1)[0].split("#", 1)[0]
    parts = urlsplit(decoded)
    is_local = (
        len(target) <= 2000
        and path.startswith("/")
        and not path.startswith("//")
        and "\\" not in path
        and not parts.scheme
        and not parts.netloc
        and not any(_is_blank(ch) for ch in path)
        and not any(_is_blank(ch) for ch in target)
    )
    return target if is_local else "/activity"


@router.post("/login", response_class=HTMLResponse)
@auth_policy.accepts(auth_policy.Auth.PUBLIC)
def login_form(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=1024),
    next: str = Form("/activity", max_length=500),
    c: Ctx = Depends(ctx),
) -> Response:
    check_origin(request, c.settings)
    now = c.now()
    address = client_address(request)
    error, status, retry_after = None, 200, 0
    try:
        with c.db.write() as tx:
            signed_in = accounts.sign_in(
                tx,
                email=email,
                password=password,
                address=address,
                now=now,
                settings=c.settings,
                replaces=request.cookies.get(cookie_name(request, c.settings)),
            )
    except NotAuthenticated as exc:
        with c.db.write() as tx:
            accounts.record_failure(tx, email=email, address=address, now=now, settings=c.settings)
        error, status = exc.message, 401
    except TooManyRequests as exc:
        error, status = exc.message, 429
        retry_after = exc.retry_after
    if error is not None:
        page = templates.TemplateResponse(
            request,
            "login.html",
            {"error": error, "email": email, "next": _safe_next(next)},
            status_code=status,
        )
        if status == 429:
            page.headers["Retry-After"] = str(retry_after)
        return page
    redirect = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(request, redirect, c, signed_in.cookie_value)
    return redirect


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


async def form_session(request: Request) -> Session | RedirectResponse:
    """The CSRF-checked session of a form post, or the redirect to sign in."""
    try:
        return await session_auth(request)
    except NotAuthenticated:
        return _login_redirect(request)


_KEPT = ("archived", "search", "start", "end", "limit", "from", "to")


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    return params


def _return_to(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def sidebar_context(tx: Tx, session: Session, *, current: str) -> dict[str, Any]:
    """What templates/_sidebar.html needs; other pages pass it to their template too.

    ``current`` names the highlighted link: "activity", "projects", "datasets", "models",
    "profile" or "api-keys".
    """
    summaries = workspaces.list_workspaces(tx, session)
    active = next((s for s in summaries if s.is_active), None)
    return {
        "session": session,
        "csrf_token": session.csrf_token,
        "workspaces": summaries,
        "active_unseen": active.unseen_count if active else 0,
        "current": current,
    }


def _feed(request: Request, c: Ctx, session: Session) -> dict[str, Any]:
    """The Activity page's context for the request's filters (shared by the page and the
    row fragments, so a fragment shows exactly what the page would)."""
    now = c.now()
    params = _params(request)
    error = None
    sealer = c.sealer
    try:
        q = parse_activity_query(params, now=now, open_cursor=sealer.open_cursor)
    except AppError as exc:
        error = exc.message
        q = parse_activity_query({}, now=now)
    window = timedelta(seconds=c.settings.undo_window_seconds)
    with c.db.read() as tx:
        membership = workspaces.active_workspace(tx, session, None)
        page = activity.list_activity(
            tx,
            viewer_id=session.user.id,
            membership=membership,
            q=q,
            now=now,
            undo_window=window,
        )
        side = sidebar_context(tx, session, current="activity")
        # Same snapshot as the rows: the stream resumes exactly after what is shown.
        position = sealer.seal_position(
            stream.current_position(
                tx, user_id=session.user.id, workspace_id=membership.workspace.id
            ),
            workspace_id=membership.workspace.id,
            user_id=session.user.id,
        )
    pages = max(1, -(-page.total // page.limit))
    keep = {k: v[-1] for k, v in params.items() if k in _KEPT} if error is None else {}

    def link(**changes: Any) -> str:
        merged = {**keep, **{k: str(v) for k, v in changes.items() if v is not None}}
        if changes.get("start") is not None:
            merged.pop("from", None)
            merged.pop("to", None)
        return "/activity?" + urlencode({k: v for k, v in merged.items() if v != ""})

    start_value = q.start.date().isoformat() if q.start else ""
    end_value = ((q.end - timedelta(microseconds=1)) if q.end else now).date().isoformat()
    is_default_range = not any(k in keep for k in ("start", "end", "from", "to"))
    return {
        **side,
        "membership": membership,
        "page": page,
        "pages": pages,
        "q": q,
        "error": error,
        "link": link,
        "now": now,
        "start_value": start_value,
        "end_value": end_value,
        "is_default_range": is_default_range,
        "is_live": not q.is_archived and q.page == 1 and q.cursor is None,
        "return_to": _return_to(request),
        "stream_position": position,
    }


@router.get("/activity", response_class=HTMLResponse)
def activity_page(request: Request, c: Ctx = Depends(ctx)) -> Response:
    session = _signed_in(request)
    if session is None:
        return _login_redirect(request)
    context = _feed(request, c, session)
    # A bad filter (a search over 200 characters, page 0, ...) shows the page with the
    # message, answered 422 like the API, rather than a silent 200.
    status = 422 if context["error"] is not None else 200
    return templates.TemplateResponse(request, "activity.html", context, status_code=status)


#: At most this many ids per fragment request (a burst of live events comes in one).
MAX_FRAGMENT_IDS = 100


@router.get("/activity/rows", response_class=HTMLResponse)
def activity_rows(request: Request, ids: str = "", c: Ctx = Depends(ctx)) -> Response:
    """Rendered rows (templates/_event_row.html) for the page's live updates.

    Takes the page's own filters. Without ``ids``: the rows of that page (after a stream
    ``reset``). With ``ids`` (comma-separated): only those of the given events that are
    on that page, so the script never shows a row the view would not. The headers
    ``X-Activity-Total`` and ``X-Unseen-Count`` carry the page's counts.
    """
    session = _signed_in(request)
    if session is None:
        raise NotAuthenticated("Sign in first.")
    wanted = [i for i in ids.split(",") if i.strip()][:MAX_FRAGMENT_IDS]
    context = _feed(request, c, session)
    if context["error"] is not None:
        raise InvalidRequest(context["error"])
    events = context["page"].events
    if wanted:
        keep = set(wanted)
        events = [v for v in events if v.event.id in keep]
    response = templates.TemplateResponse(
        request, "_rows.html", {**context, "events": events, "return_to": _page_url(request)}
    )
    response.headers["X-Activity-Total"] = str(context["page"].total)
    response.headers["X-Unseen-Count"] = str(context["page"].unseen_count)
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_url(request: Request) -> str:
    # The rows' forms return to the page the fragment belongs to, not to the fragment.
    kept = [(k, v) for k, v in request.query_params.multi_items() if k in (*_KEPT, "page")]
    return "/activity" + (f"?{urlencode(kept)}" if kept else "")


@router.post("/activity/mark-seen")
async def mark_seen_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """No-JavaScript "Mark all seen" for the active workspace."""
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()

    def work() -> None:
        with c.db.write() as tx:
            membership = workspaces.active_workspace(tx, session, None)
            activity.mark_seen(
                tx,
                viewer_id=session.user.id,
                membership=membership,
                event_ids=None,
                mark_all=True,
            )

    await run_in_threadpool(work)
    return RedirectResponse(_safe_next(str(form.get("return_to", "/activity"))), status_code=303)


@router.post("/activity/archive")
async def archive_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """No-JavaScript Archive / Restore / Archive all.

    Async only to read the form; the database work runs in the thread pool, so a busy
    SQLite lock never stalls the event loop.
    """
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()
    event_id = str(form.get("event_id", ""))[:128]
    is_all = form.get("all") == "1"
    archive = form.get("archive", "1") == "1"

    def work() -> None:
        with c.db.write() as tx:
            membership = workspaces.active_workspace(tx, session, None)
            activity.archive_events(
                tx,
                viewer_id=session.user.id,
                membership=membership,
                event_ids=None if is_all else [event_id],
                archive_all=is_all,
                archive=archive,
            )

    await run_in_threadpool(work)
    return RedirectResponse(_safe_next(str(form.get("return_to", "/activity"))), status_code=303)


@router.post("/activity/switch")
async def switch_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    session = await form_session(request)
    if isinstance(session, Response):
        return session
    form = await request.form()

    def work() -> None:
        with c.db.write() as tx:
            workspaces.switch_workspace(tx, session, str(form.get("slug", ""))[:64])

    await run_in_threadpool(work)
    return RedirectResponse("/activity", status_code=303)


@router.post("/logout")
async def logout_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    try:
        session = await session_auth(request)
    except NotAuthenticated:
        return RedirectResponse("/login", status_code=303)

    def work() -> None:
        with c.db.write() as tx:
            accounts.sign_out(tx, session, now=c.now())

    await run_in_threadpool(work)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie("af_session", path="/")
    response.delete_cookie("__Host-af_session", path="/", secure=True)
    return response
