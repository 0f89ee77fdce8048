"""Projects, datasets and models (one router per kind, same routes).

Every route acts on the session's active workspace, or on the one named by the
``workspace`` query parameter (a slug the caller belongs to).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from activityfeed.domain.accounts import Membership, Session
from activityfeed.domain.events import SourceKind
from activityfeed.domain.resources import ResourceKind, check_upload
from activityfeed.errors import InvalidRequest
from activityfeed.services import resources, workspaces
from activityfeed.store.blobs import Blobs
from activityfeed.store.db import Tx
from activityfeed.web import auth_policy
from activityfeed.web.deps import (
    Ctx,
    ctx,
    session_auth,
)
from activityfeed.web.openapi import errors, success
from activityfeed.web.schemas import (
    RESOURCE_BODIES,
    ResourceClone,
    ResourceCreate,
    ResourceUpdate,
    UploadResponse,
    resource_public,
    upload_public,
)
from activityfeed.web.uploads import Received, receive_upload


def _membership(tx: Tx, session: Session, workspace: str | None) -> Membership:
    return workspaces.active_workspace(tx, session, workspace.strip() if workspace else None)


def store_upload(
    c: Ctx,
    session: Session,
    *,
    kind: ResourceKind,
    resource_id: str,
    workspace: str | None,
    received: Received,
) -> dict[str, Any]:
    """Record a received file; its bytes move into place only after the commit."""
    file = received.file
    if file is None:
        raise InvalidRequest("'file' is required.", field="file")
    blobs = Blobs(c.settings.data_dir)
    with c.db.write() as tx:
        upload = resources.add_upload(
            tx,
            user=session.user,
            membership=_membership(tx, session, workspace),
            kind=kind,
            resource_id=resource_id,
            filename=file.filename,
            content_type=file.content_type,
            size_bytes=file.size,
            sha256=file.sha256,
            source=SourceKind.UI,
            now=c.now(),
        )
        tx.after_commit(lambda: blobs.place(file.path, upload.blob_key))
    return upload_public(upload)


def precheck_upload(
    c: Ctx, session: Session, *, kind: ResourceKind, resource_id: str, workspace: str | None
) -> None:
    """Refuse what will be refused anyway (unknown id, viewer, Trash, a project) before
    reading the body, so nobody streams a large file for nothing."""
    with c.db.read() as tx:
        membership = _membership(tx, session, workspace)
        # The role first, as every change does: a viewer's answer must not depend on
        # whether the id exists.
        resources.require_writer(membership, kind)
        r = resources.access_resource(tx, membership=membership, kind=kind, resource_id=resource_id)
        r.check_active()
        if kind is ResourceKind.PROJECT:
            check_upload(kind, "")


def make_router(kind: ResourceKind) -> APIRouter:
    router = auth_policy.router(prefix=f"/api/{kind.plural}", tags=[kind.plural])
    bodies = RESOURCE_BODIES[kind]

    @router.post(
        "",
        status_code=201,
        response_model=None,
        responses=success(bodies.detail, 201, f"The new {kind.value}."),
    )
    def create(
        body: ResourceCreate,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        with c.db.write() as tx:
            r = resources.create_resource(
                tx,
                user=session.user,
                membership=_membership(tx, session, workspace),
                kind=kind,
                name=body.name,
                description=body.description,
                source=SourceKind.UI,
                now=c.now(),
            )
        return {kind.value: resource_public(r, [])}

    @router.get("", response_model=None, responses=success(bodies.many))
    def list_(
        trashed: bool = False,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        with c.db.read() as tx:
            found = resources.list_resources(
                tx, membership=_membership(tx, session, workspace), kind=kind, trashed=trashed
            )
        return {kind.plural: [resource_public(r) for r in found]}

    @router.get("/{resource_id}", response_model=None, responses=success(bodies.detail))
    def get(
        resource_id: str,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        with c.db.read() as tx:
            detail = resources.get_resource(
                tx,
                membership=_membership(tx, session, workspace),
                kind=kind,
                resource_id=resource_id,
            )
        return {kind.value: resource_public(detail.resource, detail.uploads)}

    @router.patch(
        "/{resource_id}", response_model=None, responses=success(bodies.one) | errors(409)
    )
    def update(
        resource_id: str,
        body: ResourceUpdate,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        with c.db.write() as tx:
            r = resources.update_resource(
                tx,
                user=session.user,
                membership=_membership(tx, session, workspace),
                kind=kind,
                resource_id=resource_id,
                name=body.name,
                description=body.description,
                source=SourceKind.UI,
                now=c.now(),
            )
        return {kind.value: resource_public(r)}

    def _change(
        action: str, resource_id: str, workspace: str | None, session: Session, c: Ctx
    ) -> dict[str, Any]:
        with c.db.write() as tx:
            r = resources.change_resource(
                tx,
                action,
                user=session.user,
                membership=_membership(tx, session, workspace),
                kind=kind,
                resource_id=resource_id,
                source=SourceKind.UI,
                blobs=Blobs(c.settings.data_dir),
                now=c.now(),
            )
        return {kind.value: resource_public(r)}

    def _simple(action: str) -> None:
        @router.post(
            f"/{{resource_id}}/{action}",
            name=f"{kind.value}_{action}",
            response_model=None,
            responses=success(bodies.one) | errors(409),
        )
        def handler(
            resource_id: str,
            workspace: str | None = None,
            session: Session = Depends(session_auth),
            c: Ctx = Depends(ctx),
        ) -> dict[str, Any]:
            return _change(action, resource_id, workspace, session, c)

    for action in ("trash", "restore", "share", "unshare"):
        _simple(action)

    @router.delete(
        "/{resource_id}",
        response_model=None,
        responses=success(bodies.one, description="Deleted for good (`status` `deleted`)."),
    )
    def delete(
        resource_id: str,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        """Delete permanently (from Trash or not); the events stay."""
        return _change("delete", resource_id, workspace, session, c)

    @router.post(
        "/{resource_id}/clone",
        status_code=201,
        response_model=None,
        responses=success(bodies.one, 201, "The copy, in the target workspace.") | errors(409),
    )
    def clone(
        resource_id: str,
        body: ResourceClone,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        with c.db.write() as tx:
            r = resources.clone_resource(
                tx,
                user=session.user,
                membership=_membership(tx, session, workspace),
                kind=kind,
                resource_id=resource_id,
                target_slug=body.workspace,
                name=body.name,
                source=SourceKind.UI,
                now=c.now(),
            )
        return {kind.value: resource_public(r)}

    @router.post(
        "/{resource_id}/uploads",
        status_code=201,
        response_model=None,
        responses=success(UploadResponse, 201, "Stored.") | errors(409),
    )
    async def upload(
        resource_id: str,
        request: Request,
        workspace: str | None = None,
        session: Session = Depends(session_auth),
        c: Ctx = Depends(ctx),
    ) -> dict[str, Any]:
        """``multipart/form-data`` with a ``file`` field; the CSRF token in the header
        (the body is streamed here, never parsed before the token is checked)."""
        await run_in_threadpool(
            precheck_upload, c, session, kind=kind, resource_id=resource_id, workspace=workspace
        )
        received = await receive_upload(
            request,
            tmp_dir=Blobs(c.settings.data_dir).new_tmp_dir(),
            max_bytes=c.settings.max_upload_bytes,
        )
        try:
            public = await run_in_threadpool(
                store_upload,
                c,
                session,
                kind=kind,
                resource_id=resource_id,
                workspace=workspace,
                received=received,
            )
        finally:
            received.discard()
        return {"upload": public}

    return router


routers = [make_router(kind) for kind in ResourceKind]
