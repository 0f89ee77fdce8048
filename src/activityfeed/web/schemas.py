"""Wire schemas: the only place where names are camelCase."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from activityfeed.domain import profiles
from activityfeed.domain.accounts import ApiKey, Membership, Scope, User, Workspace
from activityfeed.domain.events import EventView, ResourceState, ResourceStatus
from activityfeed.domain.profiles import Profile
from activityfeed.domain.resources import Resource, Upload
from activityfeed.errors import InvalidRequest
from activityfeed.services.events import event_json, rfc3339


class Wire(BaseModel):
    # Bodies are camelCase only: a snake_case spelling is an unknown field (422).
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=False, validate_by_alias=True, extra="forbid"
    )


iso = rfc3339


# ---- requests ---------------------------------------------------------------------------

EventId = Annotated[str, StringConstraints(max_length=128)]


class LoginRequest(Wire):
    email: Annotated[str, StringConstraints(max_length=320)]
    password: Annotated[str, StringConstraints(max_length=1024)]


class PasswordChange(Wire):
    current_password: Annotated[str, StringConstraints(max_length=1024)]
    new_password: Annotated[str, StringConstraints(max_length=1024)]


class WorkspaceCreate(Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class MemberAdd(Wire):
    email: Annotated[str, StringConstraints(max_length=320)]
    role: Literal["owner", "admin", "member", "viewer"] = "member"


# Strict booleans: "yes" or 1 is a wrong type, not a truthy value.
class MarkSeenRequest(Wire):
    event_ids: Annotated[list[EventId], Field(max_length=1000)] | None = None
    all: StrictBool | None = None


class ArchiveRequest(Wire):
    event_ids: Annotated[list[EventId], Field(max_length=1000)] | None = None
    archive: StrictBool = True
    all: StrictBool | None = None


class ApiKeyCreate(Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(max_length=10)] = [Scope.EVENTS_WRITE]
    workspace: Annotated[str, StringConstraints(max_length=64)] | None = None


class EventCreate(Wire):
    resource_type: Annotated[str, StringConstraints(max_length=32)]
    action: Annotated[str, StringConstraints(max_length=32)]
    resource_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    resource_name: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    metadata: dict[str, Any] | None = None
    occurred_at: datetime | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class EventBatch(Wire):
    # Only for the OpenAPI document: the ingestion route parses bodies itself.
    events: Annotated[list[EventCreate], Field(max_length=1000)]


ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ResourceCreate(Wire):
    name: ResourceName
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ResourceUpdate(Wire):
    name: ResourceName | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None


class ResourceClone(Wire):
    workspace: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: ResourceName | None = None


# ---- responses --------------------------------------------------------------------------


def user_public(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "createdAt": iso(user.created_at),
    }


def workspace_public(ws: Workspace, **extra: Any) -> dict[str, Any]:
    return {
        "id": ws.id,
        "slug": ws.slug,
        "name": ws.name,
        "isPersonal": ws.is_personal,
        "createdAt": iso(ws.created_at),
        **extra,
    }


def membership_public(m: Membership, **extra: Any) -> dict[str, Any]:
    return workspace_public(m.workspace, role=m.role.value, **extra)


def api_key_public(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "workspaceId": key.workspace_id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": [s.value for s in key.scopes],
        "createdAt": iso(key.created_at),
        "lastUsedAt": iso(key.last_used_at),
        "revokedAt": iso(key.revoked_at),
        "createdBy": key.created_by,
    }


def event_public(view: EventView) -> dict[str, Any]:
    return {
        **event_json(view.event, seen=view.is_seen, archived=view.is_archived),
        "resourceDeleted": view.is_resource_deleted,
        "resourceState": resource_state_public(view.resource_state),
        "undoableUntil": iso(view.undoable_until),
    }


# ---- settings ---------------------------------------------------------------------------


class NotificationsUpdate(Wire):
    training_failures: StrictBool | None = None
    weekly_digest: StrictBool | None = None
    email_digest: Literal["off", "daily", "weekly"] | None = None


class ProfileUpdate(Wire):
    """``PATCH /api/settings/profile``: only the fields given change; ``null`` is refused."""

    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    bio: Annotated[str, StringConstraints(max_length=1000)] | None = None
    company: Annotated[str, StringConstraints(max_length=200)] | None = None
    timezone: Annotated[str, StringConstraints(max_length=64)] | None = None
    notifications: NotificationsUpdate | None = None

    def to_patch(self) -> dict[str, Any]:
        """Field key -> new value (keys as in ``domain.profiles``); 422 on an explicit null."""
        patch: dict[str, Any] = {}
        for attr in ("name", "bio", "company", "timezone"):
            if attr in self.model_fields_set:
                patch[attr] = _not_null(getattr(self, attr), attr)
        if "notifications" in self.model_fields_set:
            notes = _not_null(self.notifications, "notifications")
            for attr in notes.model_fields_set:
                key = f"notifications.{to_camel(attr)}"
                patch[key] = _not_null(getattr(notes, attr), key)
        return patch


def _not_null(value: Any, field: str) -> Any:
    if value is None:
        raise InvalidRequest(f"'{field}' cannot be null; leave it out to keep it.", field=field)
    return value


def profile_public(profile: Profile) -> dict[str, Any]:
    v = profile.values
    return {
        "name": v[profiles.NAME],
        "email": profile.email,
        "bio": v[profiles.BIO],
        "company": v[profiles.COMPANY],
        "timezone": v[profiles.TIMEZONE],
        "notifications": {
            "trainingFailures": v[profiles.TRAINING_FAILURES],
            "weeklyDigest": v[profiles.WEEKLY_DIGEST],
            "emailDigest": v[profiles.EMAIL_DIGEST],
        },
        "updatedAt": iso(profile.updated_at),
    }


def resource_state_public(state: ResourceState | None) -> dict[str, Any] | None:
    if state is None:
        return None
    if state.status is ResourceStatus.TRASHED:
        return {"status": "trashed", "purgeAt": iso(state.purge_at)}
    return {"status": "deleted", "deletedAt": iso(state.deleted_at)}


def upload_public(u: Upload) -> dict[str, Any]:
    return {
        "id": u.id,
        "resourceId": u.resource_id,
        "filename": u.filename,
        "contentType": u.content_type,
        "size": u.size_bytes,
        "sha256": u.sha256,
        "createdBy": u.created_by,
        "createdAt": iso(u.created_at),
    }


def resource_public(r: Resource, uploads: list[Upload] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r.id,
        "workspaceId": r.workspace_id,
        "kind": r.kind.value,
        "name": r.name,
        "description": r.description,
        "isPublic": r.is_public,
        "status": r.status.value,
        "createdBy": r.created_by,
        "createdAt": iso(r.created_at),
        "updatedAt": iso(r.updated_at),
        "trashedAt": iso(r.trashed_at),
        "purgeAfter": iso(r.purge_after),
        "clonedFrom": r.cloned_from,
    }
    if uploads is not None:
        out["uploads"] = [upload_public(u) for u in uploads]
    return out
