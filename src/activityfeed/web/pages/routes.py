"""Server-rendered pages: sign-in and the Activity page.

Every action here is a plain HTML form (with the ``csrf_token`` field), so the core of
the product works with JavaScript turned off. The live, keyboard-driven page builds on
these (issue 3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from activityfeed.domain.accounts import Session
from activityfeed.domain.events import EventView
from activityfeed.domain.query import parse_activity_query
from activityfeed.errors import AppError, NotAuthenticated, TooManyRequests
from activityfeed.services import accounts, activity, workspaces
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

router = APIRouter(include_in_schema=False)

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


def _signed_in(request: Request) -> Session | None:
    return session_from_cookie(request, ctx(request))


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/activity", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/activity") -> Response:
    if _signed_in(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return templates.TemplateResponse(
        request, "login.html", {"error": None, "email": "", "next": _safe_next(next)}
    )


def _safe_next(target: str) -> str:
    # Only local paths: an open redirect would make the sign-in page a phishing tool.
    return target if target.startswith("/") and not target.startswith("//") else "/activity"


@router.post("/login", response_class=HTMLResponse)
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


@router.get("/activity", response_class=HTMLResponse)
def activity_page(request: Request, c: Ctx = Depends(ctx)) -> Response:
    session = _signed_in(request)
    if session is None:
        return _login_redirect(request)
    now = c.now()
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    error = None
    try:
        q = parse_activity_query(params, now=now)
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
        summaries = workspaces.list_workspaces(tx, session)
    pages = max(1, -(-page.total // page.limit))
    keep = {
        k: v[-1]
        for k, v in params.items()
        if k in ("archived", "search", "start", "end", "limit", "from", "to")
    }

    def link(**changes: Any) -> str:
        merged = {**keep, **{k: str(v) for k, v in changes.items() if v is not None}}
        return "/activity?" + urlencode({k: v for k, v in merged.items() if v != ""})

    start_value = (q.start or now - timedelta(days=30)).date().isoformat()
    end_value = ((q.end - timedelta(microseconds=1)) if q.end else now).date().isoformat()
    return templates.TemplateResponse(
        request,
        "activity.html",
        {
            "session": session,
            "membership": membership,
            "workspaces": summaries,
            "page": page,
            "pages": pages,
            "q": q,
            "error": error,
            "link": link,
            "colour": colour,
            "labels": TYPE_LABELS,
            "relative": lambda m: relative(m, now),
            "absolute": lambda m: m.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "start_value": start_value,
            "end_value": end_value,
            "return_to": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        },
    )


@router.post("/activity/archive")
async def archive_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
    """No-JavaScript Archive / Restore / Archive all.

    Async only to read the form; the database work runs in the thread pool, so a busy
    SQLite lock never stalls the event loop.
    """
    try:
        session = await session_auth(request)
    except NotAuthenticated:
        return _login_redirect(request)
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
    try:
        session = await session_auth(request)
    except NotAuthenticated:
        return _login_redirect(request)
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
