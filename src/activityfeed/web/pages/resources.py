"""Pages for projects, datasets and models: plain forms that work without JavaScript.

``/projects`` (and ``/datasets``, ``/models``) lists the active workspace's resources with
a Trash tab and a create form; ``/projects/{id}`` shows one with its rename, share,
clone, upload, trash, restore and delete forms. A refused action shows the page again
with the message and the error's status.

``resource_state_note`` is also the Jinja filter that the Activity page uses for rows of
a resource that is in Trash or deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from activityfeed.domain.accounts import Session
from activityfeed.domain.events import ResourceState, ResourceStatus, SourceKind
from activityfeed.domain.resources import ResourceKind
from activityfeed.errors import AppError, NotAuthenticated
from activityfeed.services import resources, workspaces
from activityfeed.store.blobs import Blobs
from activityfeed.web import auth_policy
from activityfeed.web.api.resources import precheck_upload, store_upload
from activityfeed.web.deps import (
    Ctx,
    check_csrf,
    ctx,
    session_before_csrf,
    session_from_cookie,
)
from activityfeed.web.pages.routes import (
    _login_redirect,
    form_session,
    sidebar_context,
    templates,
)
from activityfeed.web.uploads import receive_upload

router = auth_policy.router(include_in_schema=False)

TITLES = {
    ResourceKind.PROJECT: "Projects",
    ResourceKind.DATASET: "Datasets",
    ResourceKind.MODEL: "Models",
}
UPLOAD_HINTS = {
    ResourceKind.DATASET: ("Add an image", "image/*"),
    ResourceKind.MODEL: ("Upload weights", ""),
}


def _day(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d") if moment else ""


def resource_state_note(state: ResourceState | None) -> str:
    """The sentence shown on an event whose resource is in Trash or deleted ('' if neither).

    >>> from datetime import datetime, UTC
    >>> resource_state_note(ResourceState.trashed(datetime(2026, 12, 25, tzinfo=UTC)))
    'In Trash, deleted for good on 2026-12-25'
    >>> resource_state_note(ResourceState.deleted(datetime(2026, 11, 25, tzinfo=UTC)))
    'Permanently deleted on 2026-11-25'
    """
    if state is None:
        return ""
    if state.status is ResourceStatus.TRASHED:
        return f"In Trash, deleted for good on {_day(state.purge_at)}"
    return f"Permanently deleted on {_day(state.deleted_at)}"


templates.env.filters["resource_state_note"] = resource_state_note
templates.env.globals["resource_state_note"] = resource_state_note


def _signed_in(request: Request, c: Ctx) -> Session | None:
    return session_from_cookie(request, c)


def _render(
    request: Request,
    c: Ctx,
    session: Session,
    kind: ResourceKind,
    *,
    resource_id: str | None = None,
    trash: bool = False,
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The list (or one resource's) page; a missing resource shows the list with a 404."""
    with c.db.read() as tx:
        membership = workspaces.active_workspace(tx, session, None)
        detail = None
        if resource_id is not None:
            try:
                detail = resources.get_resource(
                    tx, membership=membership, kind=kind, resource_id=resource_id
                )
            except AppError as exc:
                error, status = error or exc.message, exc.status if status == 200 else status
        items = (
            []
            if detail is not None
            else resources.list_resources(tx, membership=membership, kind=kind, trashed=trash)
        )
        targets = [
            m for m in workspaces.list_workspaces(tx, session) if m.membership.role.can_write
        ]
        sidebar = sidebar_context(tx, session, current=kind.plural)
    context: dict[str, Any] = {
        **sidebar,
        "membership": membership,
        "kind": kind,
        "title": TITLES[kind],
        "base": f"/{kind.plural}",
        "items": items,
        "detail": detail,
        "trash": trash,
        "error": error,
        "targets": targets,
        "upload_hint": UPLOAD_HINTS.get(kind),
        "can_write": membership.role.can_write,
        "day": _day,
    }
    name = "resource.html" if detail is not None else "resources.html"
    return templates.TemplateResponse(request, name, context, status_code=status)


async def _error_page(
    request: Request,
    c: Ctx,
    session: Session,
    kind: ResourceKind,
    resource_id: str | None,
    exc: AppError,
) -> Response:
    # A refusal (403, 404) shows the list, never the resource: the page must read the
    # same whether or not the id exists (tests/security/test_isolation.py).
    shown = None if exc.status in (403, 404) else resource_id
    return await run_in_threadpool(
        _render,
        request,
        c,
        session,
        kind,
        resource_id=shown,
        error=exc.message,
        status=exc.status,
    )


def _make_pages(kind: ResourceKind) -> None:
    base = f"/{kind.plural}"

    @router.get(base, response_class=HTMLResponse, name=f"{kind.value}_list_page")
    def list_page(request: Request, trash: str = "", c: Ctx = Depends(ctx)) -> Response:
        session = _signed_in(request, c)
        if session is None:
            return _login_redirect(request)
        return _render(request, c, session, kind, trash=trash in ("1", "true"))

    @router.get(base + "/{resource_id}", response_class=HTMLResponse, name=f"{kind.value}_page")
    def detail_page(request: Request, resource_id: str, c: Ctx = Depends(ctx)) -> Response:
        session = _signed_in(request, c)
        if session is None:
            return _login_redirect(request)
        return _render(request, c, session, kind, resource_id=resource_id)

    async def _act(
        request: Request,
        c: Ctx,
        work: Callable[[Session, Any], str],
        *,
        resource_id: str | None = None,
    ) -> Response:
        """Run a form's change; 303 to where ``work`` says, or the page with the error."""
        session = await form_session(request)
        if isinstance(session, Response):
            return session
        form = await request.form()
        try:
            target = await run_in_threadpool(work, session, form)
        except AppError as exc:
            return await _error_page(request, c, session, kind, resource_id, exc)
        return RedirectResponse(target, status_code=303)

    def _text(form: Any, name: str, limit: int) -> str:
        value = form.get(name, "")
        return value[:limit] if isinstance(value, str) else ""

    @router.post(base, name=f"{kind.value}_create_form")
    async def create_form(request: Request, c: Ctx = Depends(ctx)) -> Response:
        def work(session: Session, form: Any) -> str:
            with c.db.write() as tx:
                r = resources.create_resource(
                    tx,
                    user=session.user,
                    membership=workspaces.active_workspace(tx, session, None),
                    kind=kind,
                    name=_text(form, "name", 1000),
                    description=_text(form, "description", 5000),
                    source=SourceKind.UI,
                    now=c.now(),
                )
            return f"{base}/{r.id}"

        return await _act(request, c, work)

    @router.post(base + "/{resource_id}/rename", name=f"{kind.value}_rename_form")
    async def rename_form(request: Request, resource_id: str, c: Ctx = Depends(ctx)) -> Response:
        def work(session: Session, form: Any) -> str:
            with c.db.write() as tx:
                resources.update_resource(
                    tx,
                    user=session.user,
                    membership=workspaces.active_workspace(tx, session, None),
                    kind=kind,
                    resource_id=resource_id,
                    name=_text(form, "name", 1000),
                    description=_text(form, "description", 5000),
                    source=SourceKind.UI,
                    now=c.now(),
                )
            return f"{base}/{resource_id}"

        return await _act(request, c, work, resource_id=resource_id)

    @router.post(base + "/{resource_id}/clone", name=f"{kind.value}_clone_form")
    async def clone_form(request: Request, resource_id: str, c: Ctx = Depends(ctx)) -> Response:
        def work(session: Session, form: Any) -> str:
            with c.db.write() as tx:
                copy = resources.clone_resource(
                    tx,
                    user=session.user,
                    membership=workspaces.active_workspace(tx, session, None),
                    kind=kind,
                    resource_id=resource_id,
                    target_slug=_text(form, "workspace", 64),
                    name=_text(form, "name", 1000).strip() or None,
                    source=SourceKind.UI,
                    now=c.now(),
                )
                is_here = copy.workspace_id == session.workspace_id
            return f"{base}/{copy.id}" if is_here else f"{base}/{resource_id}"

        return await _act(request, c, work, resource_id=resource_id)

    for action in ("trash", "restore", "delete", "share", "unshare"):
        _simple_form(kind, action, _act)

    @router.post(base + "/{resource_id}/upload", name=f"{kind.value}_upload_form")
    async def upload_form(request: Request, resource_id: str, c: Ctx = Depends(ctx)) -> Response:
        try:
            session = await session_before_csrf(request)
        except NotAuthenticated:
            return _login_redirect(request)
        received = None
        try:
            await run_in_threadpool(
                precheck_upload, c, session, kind=kind, resource_id=resource_id, workspace=None
            )
            received = await receive_upload(
                request,
                tmp_dir=Blobs(c.settings.data_dir).new_tmp_dir(),
                max_bytes=c.settings.max_upload_bytes,
            )
            check_csrf(session, received.fields.get("csrf_token"))
            await run_in_threadpool(
                store_upload,
                c,
                session,
                kind=kind,
                resource_id=resource_id,
                workspace=None,
                received=received,
            )
        except AppError as exc:
            return await _error_page(request, c, session, kind, resource_id, exc)
        finally:
            if received is not None:
                received.discard()
        return RedirectResponse(f"{base}/{resource_id}", status_code=303)


def _simple_form(kind: ResourceKind, action: str, act: Callable[..., Awaitable[Response]]) -> None:
    base = f"/{kind.plural}"

    @router.post(base + "/{resource_id}/" + action, name=f"{kind.value}_{action}_form")
    async def form(request: Request, resource_id: str, c: Ctx = Depends(ctx)) -> Response:
        def work(session: Session, _form: Any) -> str:
            with c.db.write() as tx:
                resources.change_resource(
                    tx,
                    action,
                    user=session.user,
                    membership=workspaces.active_workspace(tx, session, None),
                    kind=kind,
                    resource_id=resource_id,
                    source=SourceKind.UI,
                    blobs=Blobs(c.settings.data_dir),
                    now=c.now(),
                )
            return f"{base}?trash=1" if action in ("trash", "delete") else f"{base}/{resource_id}"

        return await act(request, c, work, resource_id=resource_id)


for _kind in ResourceKind:
    _make_pages(_kind)
