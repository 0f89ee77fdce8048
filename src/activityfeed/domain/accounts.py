"""Users, workspaces, memberships, sessions and API keys, as the rest of the code sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from activityfeed.domain.workspaces import Role


class Scope(StrEnum):
    EVENTS_WRITE = "events:write"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    slug: str
    name: str
    is_personal: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Membership:
    workspace: Workspace
    role: Role


@dataclass(frozen=True, slots=True)
class Session:
    """A live browser session (the cookie value itself is never stored)."""

    id_hash: str
    user: User
    workspace_id: str
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    workspace_id: str
    created_by: str
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
