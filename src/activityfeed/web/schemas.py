"""Wire schemas: the only place where names are camelCase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    create_model,
    field_validator,
)
from pydantic.alias_generators import to_camel

from activityfeed.domain import profiles
from activityfeed.domain.accounts import ApiKey, Membership, Scope, User, Workspace
from activityfeed.domain.events import (
    Action,
    EventView,
    ResourceState,
    ResourceStatus,
    ResourceType,
    SourceKind,
)
from activityfeed.domain.profiles import Profile
from activityfeed.domain.resources import Resource, ResourceKind, Upload
from activityfeed.domain.workspaces import Role
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
    # At least one: an empty list would make a key that can do nothing (it once became
    # events:write, a right the caller had not asked for). Omitted: events:write.
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=10)] = [Scope.EVENTS_WRITE]
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
#
# The routes return plain dicts (the ``*_public`` functions), never validated on the way
# out; the models below only document them (``openapi.success``), and
# tests/functional/test_fuzz_openapi.py checks every answer against them. They forbid
# extra keys; a key that is always sent is required (``X | None`` when it may be null),
# and one that is sometimes left out is ``absent()``.


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def absent() -> Any:
    """A key that is left out when it has no value: optional, never null."""
    return Field(default=None, json_schema_extra=_no_default)


class UserPublic(Wire):
    id: str
    email: str
    name: str
    created_at: datetime


class WorkspacePublic(Wire):
    id: str
    slug: str
    name: str
    is_personal: bool
    created_at: datetime


class MembershipPublic(WorkspacePublic):
    """A workspace with the caller's role in it."""

    role: Role


class WorkspaceSummary(MembershipPublic):
    """A workspace as lists, create and switch show it."""

    unseen_count: int
    active: bool


class MemberPublic(Wire):
    email: str
    role: Role


class ApiKeyPublic(Wire):
    id: str
    workspace_id: str
    name: str
    prefix: str
    scopes: list[Scope]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_by: str


class ActorPublic(Wire):
    id: str
    name: str
    email: str


class SourcePublic(Wire):
    kind: SourceKind
    api_key_prefix: str = absent()


class ResourceTrashed(Wire):
    status: Literal["trashed"]
    purge_at: datetime


class ResourceDeleted(Wire):
    status: Literal["deleted"]
    deleted_at: datetime


class EventPublic(Wire):
    id: str
    workspace_id: str
    resource_type: ResourceType
    resource_id: str
    resource_name: str
    action: Action
    description: str
    actor: ActorPublic | None
    source: SourcePublic
    created_at: datetime
    metadata: dict[str, Any]
    seen: bool
    archived: bool
    resource_deleted: bool
    resource_state: (
        Annotated[ResourceTrashed | ResourceDeleted, Field(discriminator="status")] | None
    )
    undoable_until: datetime | None


class LoginResponse(Wire):
    user: UserPublic
    workspace: WorkspacePublic
    csrf_token: str


class MeResponse(Wire):
    user: UserPublic
    workspace: MembershipPublic
    csrf_token: str


class SuccessResponse(Wire):
    success: Literal[True]


class PasswordChanged(SuccessResponse):
    ended_sessions: int


class WorkspaceList(Wire):
    workspaces: list[WorkspaceSummary]


class WorkspaceResponse(Wire):
    workspace: WorkspaceSummary


class MemberResponse(Wire):
    member: MemberPublic


class ActivityPage(Wire):
    events: list[EventPublic]
    page: int
    limit: int
    total: int
    unseen_count: int
    next_cursor: str | None


class ExportFilters(Wire):
    """The export's filters: ``archived`` always, the others when set."""

    archived: bool
    search: str = absent()
    start: datetime = absent()
    end: datetime = absent()
    resource_type: list[ResourceType] = absent()
    action: list[Action] = absent()


class ActivityExport(Wire):
    """``GET /api/activity?export=true``: every matching event, as a download."""

    exported_at: datetime
    owner: str
    filters: ExportFilters
    activity: list[EventPublic]


class MarkSeenResponse(SuccessResponse):
    unseen_count: int


class ArchiveResponse(SuccessResponse):
    updated: int


class ApiKeyCreated(Wire):
    api_key: ApiKeyPublic
    secret: str


class ApiKeyList(Wire):
    api_keys: list[ApiKeyPublic]


class ApiKeyResponse(Wire):
    api_key: ApiKeyPublic


class EventResponse(Wire):
    event: EventPublic


class EventList(Wire):
    events: list[EventPublic]


class NotificationsPublic(Wire):
    training_failures: bool
    weekly_digest: bool
    email_digest: Literal["off", "daily", "weekly"]


class ProfilePublic(Wire):
    name: str
    email: str
    bio: str
    company: str
    timezone: str
    notifications: NotificationsPublic
    updated_at: datetime | None


class ProfileResponse(Wire):
    profile: ProfilePublic


class ProfileChanged(Wire):
    profile: ProfilePublic
    # Null when the request changed nothing.
    event: EventPublic | None


class OnboardingResponse(Wire):
    completed_at: datetime
    already_completed: bool
    # docs/api.md says an Event always; the service gives none when the caller can no
    # longer see the one recorded, and the document must say what is sent.
    event: EventPublic | None


class UploadPublic(Wire):
    id: str
    resource_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_by: str
    created_at: datetime


class UploadResponse(Wire):
    upload: UploadPublic


class ResourcePublic(Wire):
    id: str
    workspace_id: str
    kind: ResourceKind
    name: str
    description: str
    is_public: bool
    status: Literal["active", "trashed", "deleted"]
    created_by: str
    created_at: datetime
    updated_at: datetime
    trashed_at: datetime | None
    purge_after: datetime | None
    cloned_from: str | None


class ResourceDetail(ResourcePublic):
    """A resource with its uploads (get and create)."""

    uploads: list[UploadPublic]


@dataclass(frozen=True, slots=True)
class ResourceBodies:
    """One kind's answers: ``{"<kind>": Resource}``, the same with uploads, and the list
    ``{"<kind>s": [Resource, ...]}``."""

    one: type[Wire]
    detail: type[Wire]
    many: type[Wire]


def _resource_bodies(kind: ResourceKind) -> ResourceBodies:
    title = kind.value.capitalize()

    def wrapper(name: str, key: str, value: Any) -> type[Wire]:
        fields: dict[str, Any] = {key: (value, ...)}
        return create_model(name, __base__=Wire, **fields)

    return ResourceBodies(
        one=wrapper(f"{title}Response", kind.value, ResourcePublic),
        detail=wrapper(f"{title}DetailResponse", kind.value, ResourceDetail),
        many=wrapper(f"{title}List", kind.plural, list[ResourcePublic]),
    )


RESOURCE_BODIES = {kind: _resource_bodies(kind) for kind in ResourceKind}


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
