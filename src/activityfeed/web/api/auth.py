"""Sign-in and sign-out."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Response

from activityfeed.domain.accounts import Session
from activityfeed.errors import InvalidRequest, NotAuthenticated
from activityfeed.services import accounts, workspaces
from activityfeed.web import auth_policy
from activityfeed.web.deps import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    Ctx,
    check_origin,
    client_address,
    cookie_name,
    ctx,
    is_secure,
    session_auth,
)
from activityfeed.web.openapi import errors, success
from activityfeed.web.schemas import (
    LoginRequest,
    LoginResponse,
    MeResponse,
    PasswordChange,
    PasswordChanged,
    SuccessResponse,
    membership_public,
    user_public,
    workspace_public,
)

router = auth_policy.router(prefix="/api/auth", tags=["auth"])


def set_session_cookie(request: Request, response: Response, c: Ctx, value: str) -> None:
    response.set_cookie(
        cookie_name(request, c.settings),
        value,
        max_age=c.settings.session_absolute_seconds,
        httponly=True,
        samesite="lax",
        secure=is_secure(request, c.settings),
        path="/",
    )


@router.post(
    "/login",
    response_model=None,
    responses=success(LoginResponse, description="Signed in.") | errors(429),
)
@auth_policy.accepts(auth_policy.Auth.PUBLIC)
def login(
    body: LoginRequest, request: Request, response: Response, c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    """Sign in with e-mail and password; sets the session cookie."""
    check_origin(request, c.settings)
    now = c.now()
    address = client_address(request)
    try:
        with c.db.write() as tx:
            signed_in = accounts.sign_in(
                tx,
                email=body.email,
                password=body.password,
                address=address,
                now=now,
                settings=c.settings,
                replaces=request.cookies.get(cookie_name(request, c.settings)),
            )
    except NotAuthenticated:
        with c.db.write() as tx:
            accounts.record_failure(
                tx, email=body.email, address=address, now=now, settings=c.settings
            )
        raise
    set_session_cookie(request, response, c, signed_in.cookie_value)
    return {
        "user": user_public(signed_in.session.user),
        "workspace": workspace_public(signed_in.workspace),
        "csrfToken": signed_in.session.csrf_token,
    }


@router.post("/logout", response_model=None, responses=success(SuccessResponse))
def logout(
    response: Response,
    session: Session = Depends(session_auth),
    c: Ctx = Depends(ctx),
) -> dict[str, bool]:
    """End this session on the server at once; other sessions of the user go on."""
    with c.db.write() as tx:
        accounts.sign_out(tx, session, now=c.now())
    for name in (SESSION_COOKIE, SECURE_SESSION_COOKIE):
        response.delete_cookie(
            name, path="/", secure=name == SECURE_SESSION_COOKIE, httponly=True, samesite="lax"
        )
    return {"success": True}


@router.post("/password", response_model=None, responses=success(PasswordChanged) | errors(429))
def change_password(
    body: PasswordChange,
    request: Request,
    response: Response,
    session: Session = Depends(session_auth),
    c: Ctx = Depends(ctx),
) -> dict[str, Any]:
    """Change the password; every other session of the user ends at once, and this one
    goes on under a new session id (a new cookie; the CSRF token stays)."""
    now = c.now()
    address = client_address(request)
    try:
        with c.db.write() as tx:
            changed = accounts.change_password(
                tx,
                session,
                current_password=body.current_password,
                new_password=body.new_password,
                address=address,
                now=now,
                settings=c.settings,
            )
    except InvalidRequest as exc:
        if exc.field == "currentPassword":
            # A wrong current password counts like a failed sign-in, so a stolen session
            # cannot be used to guess the password faster than the sign-in form allows.
            with c.db.write() as tx:
                accounts.record_failure(
                    tx, email=session.user.email, address=address, now=now, settings=c.settings
                )
        raise
    set_session_cookie(request, response, c, changed.cookie_value)
    return {"success": True, "endedSessions": changed.ended_sessions}


@router.get("/me", response_model=None, responses=success(MeResponse))
def me(session: Session = Depends(session_auth), c: Ctx = Depends(ctx)) -> dict[str, Any]:
    """The signed-in user, the active workspace and the CSRF token (for pages)."""
    with c.db.read() as tx:
        active = workspaces.access_workspace(
            tx, user_id=session.user.id, workspace_id=session.workspace_id
        )
    return {
        "user": user_public(session.user),
        "workspace": membership_public(active),
        "csrfToken": session.csrf_token,
    }
