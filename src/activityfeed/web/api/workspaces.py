"""Workspaces: list with unseen counts, create, add and remove members, switch."""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from fastapi.responses import JSONResponse

from activityfeed.domain.accounts import Session
from activityfeed.domain.workspaces import Role
from activityfeed.services import workspaces
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, ctx, session_auth
from activityfeed.web.openapi import errors, success
from activityfeed.web.schemas import (
    MemberAdd,
    MemberResponse,
    WorkspaceCreate,
    WorkspaceList,
    WorkspaceResponse,
    membership_public,
)

router = auth_policy.router(prefix="/api/workspaces", tags=["workspaces"])


@router.get("", response_model=None, responses=success(WorkspaceList))
def list_workspaces(
    session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    with c.db.read() as tx:
        summaries = workspaces.list_workspaces(tx, session)
    return {
        "workspaces": [
            membership_public(s.membership, unseenCount=s.unseen_count, active=s.is_active)
            for s in summaries
        ]
    }


@router.post(
    "",
    status_code=201,
    response_model=None,
    responses=success(WorkspaceResponse, 201, "Created."),
)
def create_workspace(
    body: WorkspaceCreate, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    with c.db.write() as tx:
        ws = workspaces.create_workspace(tx, user_id=session.user.id, name=body.name, now=c.now())
        membership = workspaces.access_workspace(tx, user_id=session.user.id, workspace_id=ws.id)
    return {"workspace": membership_public(membership, unseenCount=0, active=False)}


@router.post(
    "/{slug}/members",
    status_code=201,
    response_model=None,
    responses=success(MemberResponse, 201, "Added.") | errors(409),
)
def add_member(
    slug: str, body: MemberAdd, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> JSONResponse:
    with c.db.write() as tx:
        workspaces.add_member(
            tx,
            user_id=session.user.id,
            slug=slug,
            email=body.email,
            role=Role(body.role),
            now=c.now(),
        )
    return JSONResponse(
        {"member": {"email": body.email.strip().lower(), "role": body.role}}, status_code=201
    )


@router.delete(
    "/{slug}/members/{email}",
    response_model=None,
    responses=success(MemberResponse, description="Removed.") | errors(409),
)
def remove_member(
    slug: str, email: str, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    """Remove a member (owners and admins), or leave (anyone); see docs/api.md."""
    with c.db.write() as tx:
        member, role = workspaces.remove_member(
            tx, user=session.user, slug=slug, email=email, now=c.now()
        )
    return {"member": {"email": member.email, "role": role.value}}


@router.post("/{slug}/switch", response_model=None, responses=success(WorkspaceResponse))
def switch(
    slug: str, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    with c.db.write() as tx:
        membership = workspaces.switch_workspace(tx, session, slug)
        unseen = workspaces.unseen_count(
            tx, user_id=session.user.id, workspace_id=membership.workspace.id
        )
    return {"workspace": membership_public(membership, unseenCount=unseen, active=True)}
