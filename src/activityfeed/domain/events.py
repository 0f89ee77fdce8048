"""Event types, actions, sources, descriptions and who may see an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ResourceType(StrEnum):
    PROJECT = "project"
    DATASET = "dataset"
    MODEL = "model"
    TRAINING = "training"
    SETTINGS = "settings"
    API_KEY = "api_key"
    EXPORT = "export"
    DEPLOYMENT = "deployment"
    ONBOARDING = "onboarding"


class Action(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    TRASHED = "trashed"
    RESTORED = "restored"
    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UPLOADED = "uploaded"
    SHARED = "shared"
    UNSHARED = "unshared"
    EXPORTED = "exported"
    CLONED = "cloned"
    ANALYZED = "analyzed"


class SourceKind(StrEnum):
    UI = "ui"
    API_KEY = "api_key"
    CLI = "cli"
    SYSTEM = "system"


#: Events of these types are seen by their actor only, whatever the workspace.
PRIVATE_TYPES = frozenset({ResourceType.SETTINGS, ResourceType.API_KEY, ResourceType.ONBOARDING})

#: Types that outside services may report through the ingestion API; the rest are recorded
#: only by the platform itself.
INGESTIBLE_TYPES = frozenset(
    {
        ResourceType.PROJECT,
        ResourceType.DATASET,
        ResourceType.MODEL,
        ResourceType.TRAINING,
        ResourceType.EXPORT,
        ResourceType.DEPLOYMENT,
    }
)

_VERBS: dict[Action, str] = {
    Action.CREATED: "Created",
    Action.UPDATED: "Updated",
    Action.DELETED: "Deleted",
    Action.TRASHED: "Moved",
    Action.RESTORED: "Restored",
    Action.STARTED: "Started",
    Action.COMPLETED: "Completed",
    Action.FAILED: "Failed",
    Action.CANCELLED: "Cancelled",
    Action.UPLOADED: "Uploaded to",
    Action.SHARED: "Shared",
    Action.UNSHARED: "Unshared",
    Action.EXPORTED: "Exported",
    Action.CLONED: "Cloned",
    Action.ANALYZED: "Analyzed",
}

_NOUNS: dict[ResourceType, str] = {
    ResourceType.PROJECT: "project",
    ResourceType.DATASET: "dataset",
    ResourceType.MODEL: "model",
    ResourceType.TRAINING: "training",
    ResourceType.SETTINGS: "settings",
    ResourceType.API_KEY: "API key",
    ResourceType.EXPORT: "export",
    ResourceType.DEPLOYMENT: "deployment",
    ResourceType.ONBOARDING: "onboarding",
}


def describe(resource_type: ResourceType, action: Action, resource_name: str) -> str:
    """The sentence shown when a producer gives no description.

    >>> describe(ResourceType.PROJECT, Action.CREATED, "my-project")
    'Created project my-project'
    >>> describe(ResourceType.PROJECT, Action.TRASHED, "old")
    'Moved project old to trash'
    """
    if resource_type is ResourceType.SETTINGS and action is Action.UPDATED:
        return f"Updated settings {resource_name}".rstrip()
    if resource_type is ResourceType.ONBOARDING and action is Action.COMPLETED:
        return "Completed onboarding"
    noun = _NOUNS[resource_type]
    sentence = f"{_VERBS[action]} {noun} {resource_name}".rstrip()
    return f"{sentence} to trash" if action is Action.TRASHED else sentence


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, snapshotted when the event is recorded."""

    id: str
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Source:
    """How it happened: through the UI, an API key, the CLI or the system itself."""

    kind: SourceKind
    api_key_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class EventDraft:
    """An event about to be recorded; ``record_event`` turns it into an ``Event``."""

    workspace_id: str
    resource_type: ResourceType
    action: Action
    resource_id: str
    resource_name: str
    actor: Actor | None
    source: Source
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None
    idempotency_key: str | None = None
    payload_hash: str | None = None
    #: ``metadata`` already serialised as the store would (compact, not ASCII-escaped)
    #: by a caller that had to serialise it anyway (ingestion measures it); the store
    #: writes it as is instead of serialising again. None: the store serialises it.
    metadata_json: str | None = field(default=None, compare=False, repr=False)

    @property
    def private_to(self) -> str | None:
        """The only user who may see the event, or None when the workspace may."""
        if self.resource_type in PRIVATE_TYPES and self.actor is not None:
            return self.actor.id
        return None


@dataclass(frozen=True, slots=True)
class Event:
    """A recorded event, as stored (viewer-independent)."""

    seq: int
    id: str
    workspace_id: str
    resource_type: ResourceType
    action: Action
    resource_id: str
    resource_name: str
    description: str
    actor: Actor | None
    source: Source
    created_at: datetime
    recorded_at: datetime
    metadata: dict[str, Any]
    private_to: str | None
    idempotency_key: str | None = None
    payload_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ViewerState:
    """One viewer's state of one event."""

    is_seen: bool
    is_archived: bool


class ResourceStatus(StrEnum):
    TRASHED = "trashed"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ResourceState:
    """The live state of the resource an event names, when it is no longer active:
    in Trash until ``purge_at``, or permanently deleted at ``deleted_at``."""

    status: ResourceStatus
    purge_at: datetime | None = None
    deleted_at: datetime | None = None

    @classmethod
    def trashed(cls, purge_at: datetime) -> ResourceState:
        return cls(status=ResourceStatus.TRASHED, purge_at=purge_at)

    @classmethod
    def deleted(cls, deleted_at: datetime) -> ResourceState:
        return cls(status=ResourceStatus.DELETED, deleted_at=deleted_at)

    @classmethod
    def of(
        cls, *, deleted_at: datetime | None, purge_after: datetime | None
    ) -> ResourceState | None:
        """What an event of a resource with these columns shows; None while it is active."""
        if deleted_at is not None:
            return cls.deleted(deleted_at)
        if purge_after is not None:
            return cls.trashed(purge_after)
        return None


@dataclass(frozen=True, slots=True)
class EventView:
    """An event as one viewer sees it."""

    event: Event
    is_seen: bool
    is_archived: bool
    is_resource_deleted: bool = False
    undoable_until: datetime | None = None
    #: Set for events of a project, dataset or model that is now in Trash or deleted;
    #: ``is_resource_deleted`` is then true as well.
    resource_state: ResourceState | None = None
