"""API keys: create (secret shown once) and list in the active workspace or the one named
by ``workspace``; revoke a key of any workspace the caller belongs to."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from activityfeed.domain.accounts import Session
from activityfeed.domain.events import SourceKind
from activityfeed.services import apikeys, workspaces
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, ctx, session_auth
from activityfeed.web.openapi import errors, success
from activityfeed.web.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyResponse,
    api_key_public,
)

router = auth_policy.router(prefix="/api/api-keys", tags=["api-keys"])


@router.post(
    "",
    status_code=201,
    response_model=None,
    responses=success(ApiKeyCreated, 201, "Created; the secret is never shown again.")
    | errors(404),
)
def create_key(
    body: ApiKeyCreate, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    with c.db.write() as tx:
        membership = workspaces.active_workspace(tx, session, body.workspace)
        created = apikeys.create_api_key(
            tx,
            user=session.user,
            membership=membership,
            name=body.name,
            scopes=body.scopes,
            source=SourceKind.UI,
            now=c.now(),
        )
    return {"apiKey": api_key_public(created.key), "secret": created.secret}


@router.get("", response_model=None, responses=success(ApiKeyList))
def list_keys(
    workspace: str | None = None,
    session: Session = Depends(session_auth),
    c: Ctx = Depends(ctx),
) -> dict[str, Any]:
    with c.db.read() as tx:
        membership = workspaces.active_workspace(tx, session, workspace)
        keys = apikeys.list_api_keys(tx, membership=membership)
    return {"apiKeys": [api_key_public(k) for k in keys]}


@router.delete(
    "/{key_id}", response_model=None, responses=success(ApiKeyResponse, description="Revoked.")
)
def revoke_key(
    key_id: str, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    with c.db.write() as tx:
        key = apikeys.revoke_api_key(
            tx,
            user=session.user,
            key_id=key_id,
            source=SourceKind.UI,
            now=c.now(),
        )
    return {"apiKey": api_key_public(key)}
