"""Projects, datasets and models: their life cycle (active, in Trash, deleted) and uploads."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from activityfeed.domain.events import ResourceState, ResourceType
from activityfeed.errors import Conflict, InvalidRequest

#: How long a resource stays in Trash before ``activityfeed purge-trash`` deletes it.
TRASH_RETENTION = timedelta(days=30)
MAX_NAME = 200
MAX_DESCRIPTION = 2000
MAX_FILENAME = 255


class ResourceKind(StrEnum):
    PROJECT = "project"
    DATASET = "dataset"
    MODEL = "model"

    @property
    def resource_type(self) -> ResourceType:
        return ResourceType(self.value)

    @property
    def plural(self) -> str:
        return f"{self.value}s"

    @property
    def id_prefix(self) -> str:
        return {"project": "prj_", "dataset": "ds_", "model": "mdl_"}[self.value]


#: The event types that name a resource of this module.
RESOURCE_TYPES = frozenset(k.resource_type for k in ResourceKind)


class Status(StrEnum):
    ACTIVE = "active"
    TRASHED = "trashed"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Resource:
    """A project, dataset or model. A deleted one stays as a tombstone row (no uploads),
    so the events that name it can say when it went."""

    id: str
    workspace_id: str
    kind: ResourceKind
    name: str
    description: str
    is_public: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    trashed_at: datetime | None
    purge_after: datetime | None
    deleted_at: datetime | None
    cloned_from: str | None

    @property
    def status(self) -> Status:
        if self.deleted_at is not None:
            return Status.DELETED
        if self.trashed_at is not None:
            return Status.TRASHED
        return Status.ACTIVE

    @property
    def state(self) -> ResourceState | None:
        """What an event of this resource shows about it now; None while it is active."""
        return ResourceState.of(deleted_at=self.deleted_at, purge_after=self.purge_after)

    def check_active(self) -> None:
        """Raise ``Conflict`` (``in_trash``) unless the resource is out of Trash."""
        if self.status is Status.TRASHED:
            raise Conflict(
                f"The {self.kind.value} '{self.name}' is in Trash; restore it first.",
                code="in_trash",
            )


@dataclass(frozen=True, slots=True)
class Upload:
    """A file attached to a dataset (an image) or a model (weights).

    ``blob_key`` names the stored bytes; clones share their source's blobs, so bytes are
    removed only when no upload row names them any more.
    """

    id: str
    resource_id: str
    workspace_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    blob_key: str
    created_by: str
    created_at: datetime


def check_upload(kind: ResourceKind, content_type: str) -> None:
    """Datasets take images, models take any file (weights), projects take none.

    Raises ``InvalidRequest`` naming ``file``.
    """
    if kind is ResourceKind.PROJECT:
        raise InvalidRequest(
            "Projects take no uploads; upload images to a dataset or weights to a model.",
            code="upload_not_supported",
            field="file",
        )
    if kind is ResourceKind.DATASET and not content_type.lower().startswith("image/"):
        raise InvalidRequest(
            f"A dataset takes images (image/*), not '{content_type}'.", field="file"
        )


def clean_filename(raw: str) -> str:
    """The file's base name without path parts or control characters (``upload`` if empty).

    The stored bytes never live under this name; it is only shown.
    """
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:MAX_FILENAME] or "upload"
