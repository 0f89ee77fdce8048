"""Projects, datasets and models: create, list, rename, trash, restore, delete, share,
clone and upload. Each change records its event in the caller's transaction.

Access: ``access_resource`` is the one check. A resource is found only in the workspace
the request acts on, so an unknown id, another workspace's id and a deleted resource
all raise the same ``NotFound``. Viewers read; every change needs a writer's role.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from activityfeed.domain.accounts import Membership, User
from activityfeed.domain.events import (
    Action,
    Actor,
    Event,
    EventDraft,
    ResourceState,
    Source,
    SourceKind,
)
from activityfeed.domain.ids import new_id
from activityfeed.domain.resources import (
    MAX_DESCRIPTION,
    MAX_NAME,
    RESOURCE_TYPES,
    TRASH_RETENTION,
    Resource,
    ResourceKind,
    Status,
    Upload,
    check_upload,
    clean_filename,
)
from activityfeed.errors import Conflict, Forbidden, InvalidRequest, NotFound
from activityfeed.services.accounts import clean_name, is_storable
from activityfeed.services.events import record_event
from activityfeed.services.workspaces import access_workspace
from activityfeed.store import resources as store
from activityfeed.store.blobs import Blobs
from activityfeed.store.db import Tx

#: Longer path ids cannot be ours; they are refused without a query.
MAX_ID_LENGTH = 64
#: purge-trash handles this many due resources per query.
PURGE_BATCH = 100


@dataclass(frozen=True, slots=True)
class ResourceDetail:
    resource: Resource
    uploads: list[Upload]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _actor(user: User) -> Actor:
    return Actor(id=user.id, name=user.name, email=user.email)


def _record(
    tx: Tx,
    r: Resource,
    action: Action,
    *,
    actor: Actor | None,
    source: SourceKind,
    now: datetime,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Event:
    return record_event(
        tx,
        EventDraft(
            workspace_id=r.workspace_id,
            resource_type=r.kind.resource_type,
            action=action,
            resource_id=r.id,
            resource_name=r.name,
            actor=actor,
            source=Source(kind=source),
            description=description,
            metadata=metadata or {},
        ),
        now=now,
    )


def require_writer(membership: Membership, kind: ResourceKind) -> None:
    """Raise ``Forbidden`` (``insufficient_role``) for a viewer of the workspace."""
    if not membership.role.can_write:
        raise Forbidden(
            f"Viewers of this workspace cannot change its {kind.plural}; "
            "ask an owner or admin for the member role.",
            code="insufficient_role",
        )


def _clean_description(value: str | None) -> str:
    text = (value or "").strip()
    if len(text) > MAX_DESCRIPTION or not is_storable(text):
        raise InvalidRequest(
            f"A description of at most {MAX_DESCRIPTION} characters is needed.",
            field="description",
        )
    return text


def access_resource(
    tx: Tx, *, membership: Membership, kind: ResourceKind, resource_id: str, lock: bool = False
) -> Resource:
    """The live (active or trashed) resource of that kind in the membership's workspace.

    Raises the same ``NotFound`` for an unknown id, an id of another workspace or of
    another kind, and a deleted resource. ``lock`` holds the row until commit.
    """
    is_valid = len(resource_id) <= MAX_ID_LENGTH and is_storable(resource_id)
    found = (
        store.select_resource(
            tx,
            workspace_id=membership.workspace.id,
            kind=kind,
            resource_id=resource_id,
            lock=lock,
        )
        if is_valid
        else None
    )
    if found is None or found.status is Status.DELETED:
        raise NotFound(f"No {kind.value} here has that id.")
    return found


def create_resource(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    name: str,
    description: str | None,
    source: SourceKind,
    now: datetime,
) -> Resource:
    """Create a resource in the membership's workspace (writers only); records ``created``."""
    require_writer(membership, kind)
    r = Resource(
        id=new_id(kind.id_prefix),
        workspace_id=membership.workspace.id,
        kind=kind,
        name=clean_name(name, field="name", max_length=MAX_NAME, what="A name"),
        description=_clean_description(description),
        is_public=False,
        created_by=user.id,
        created_at=now,
        updated_at=now,
        trashed_at=None,
        purge_after=None,
        deleted_at=None,
        cloned_from=None,
    )
    store.insert_resource(tx, r)
    _record(tx, r, Action.CREATED, actor=_actor(user), source=source, now=now)
    return r


def list_resources(
    tx: Tx, *, membership: Membership, kind: ResourceKind, trashed: bool
) -> list[Resource]:
    return store.select_resources(
        tx, workspace_id=membership.workspace.id, kind=kind, trashed=trashed
    )


def get_resource(
    tx: Tx, *, membership: Membership, kind: ResourceKind, resource_id: str
) -> ResourceDetail:
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id)
    return ResourceDetail(
        resource=r, uploads=store.select_uploads(tx, workspace_id=r.workspace_id, resource_id=r.id)
    )


def update_resource(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    name: str | None,
    description: str | None,
    source: SourceKind,
    now: datetime,
) -> Resource:
    """Rename and/or describe. Records ``updated`` with every changed field's before and
    after value in ``metadata``; a change to nothing records nothing."""
    require_writer(membership, kind)
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    r.check_active()
    new_name = (
        r.name
        if name is None
        else clean_name(name, field="name", max_length=MAX_NAME, what="A name")
    )
    new_description = r.description if description is None else _clean_description(description)
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for field, old, new in (
        ("name", r.name, new_name),
        ("description", r.description, new_description),
    ):
        if old != new:
            before[field], after[field] = old, new
    if not after:
        return r
    store.update_resource(tx, r.id, name=new_name, description=new_description, updated_at=now)
    updated = replace(r, name=new_name, description=new_description, updated_at=now)
    _record(
        tx,
        updated,
        Action.UPDATED,
        actor=_actor(user),
        source=source,
        now=now,
        description=(f"Renamed {kind.value} {r.name} to {new_name}" if "name" in after else None),
        metadata={"before": before, "after": after},
    )
    return updated


def trash_resource(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    source: SourceKind,
    now: datetime,
) -> Resource:
    """Move to Trash for ``TRASH_RETENTION``; ``already_trashed`` (409) if it is there."""
    require_writer(membership, kind)
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    if r.status is Status.TRASHED:
        raise Conflict(f"The {kind.value} '{r.name}' is in Trash already.", code="already_trashed")
    purge_after = now + TRASH_RETENTION
    store.update_resource(tx, r.id, trashed_at=now, purge_after=purge_after, updated_at=now)
    trashed = replace(r, trashed_at=now, purge_after=purge_after, updated_at=now)
    _record(
        tx,
        trashed,
        Action.TRASHED,
        actor=_actor(user),
        source=source,
        now=now,
        metadata={"purgeAfter": _iso(purge_after)},
    )
    return trashed


def restore_resource(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    source: SourceKind,
    now: datetime,
) -> Resource:
    """Take out of Trash; ``not_in_trash`` (409) if it is not there."""
    require_writer(membership, kind)
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    if r.status is not Status.TRASHED:
        raise Conflict(f"The {kind.value} '{r.name}' is not in Trash.", code="not_in_trash")
    store.update_resource(tx, r.id, trashed_at=None, purge_after=None, updated_at=now)
    restored = replace(r, trashed_at=None, purge_after=None, updated_at=now)
    _record(tx, restored, Action.RESTORED, actor=_actor(user), source=source, now=now)
    return restored


def _delete(
    tx: Tx,
    r: Resource,
    *,
    actor: Actor | None,
    source: SourceKind,
    blobs: Blobs,
    now: datetime,
    description: str | None = None,
) -> Resource:
    # The row stays as a tombstone (its events show "deleted on ..."); the uploads go,
    # and their bytes once no other upload row (a clone's) names them.
    store.update_resource(tx, r.id, deleted_at=now, purge_after=None, updated_at=now)
    gone = store.delete_uploads(tx, workspace_id=r.workspace_id, resource_id=r.id)
    if gone:
        tx.after_commit(lambda: blobs.remove(gone))
    deleted = replace(r, deleted_at=now, purge_after=None, updated_at=now)
    _record(
        tx,
        deleted,
        Action.DELETED,
        actor=actor,
        source=source,
        now=now,
        description=description,
        metadata={"permanent": True, "wasInTrash": r.status is Status.TRASHED},
    )
    return deleted


def delete_resource(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    source: SourceKind,
    blobs: Blobs,
    now: datetime,
) -> Resource:
    """Delete permanently, from Trash or not. Its events stay; its files go after commit."""
    require_writer(membership, kind)
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    return _delete(tx, r, actor=_actor(user), source=source, blobs=blobs, now=now)


def set_public(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    is_public: bool,
    source: SourceKind,
    now: datetime,
) -> Resource:
    """Share (make public) or unshare. Asking for the state it is in changes and records
    nothing."""
    require_writer(membership, kind)
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    r.check_active()
    if r.is_public == is_public:
        return r
    store.update_resource(tx, r.id, is_public=is_public, updated_at=now)
    changed = replace(r, is_public=is_public, updated_at=now)
    _record(
        tx,
        changed,
        Action.SHARED if is_public else Action.UNSHARED,
        actor=_actor(user),
        source=source,
        now=now,
        metadata={"isPublic": is_public},
    )
    return changed


def clone_resource(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    target_slug: str,
    name: str | None,
    source: SourceKind,
    now: datetime,
) -> Resource:
    """Copy a resource (with its uploads, sharing their bytes) into a workspace the caller
    can write to; the ``cloned`` event is the copy's, in the target workspace.

    A target the caller is not a member of is ``NotFound``, one where they are a viewer
    is ``Forbidden``, checked before the source is looked up (so a viewer's answer does
    not depend on whether the source id exists). Reading the source is enough in its
    workspace.
    """
    target = access_workspace(tx, user_id=user.id, slug=target_slug)
    require_writer(target, kind)
    # The lock keeps a concurrent delete of the source from removing bytes the copy is
    # about to share: the delete waits, then counts this copy's upload rows.
    src = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    src.check_active()
    copy = Resource(
        id=new_id(kind.id_prefix),
        workspace_id=target.workspace.id,
        kind=kind,
        name=(
            src.name
            if name is None
            else clean_name(name, field="name", max_length=MAX_NAME, what="A name")
        ),
        description=src.description,
        is_public=False,
        created_by=user.id,
        created_at=now,
        updated_at=now,
        trashed_at=None,
        purge_after=None,
        deleted_at=None,
        cloned_from=src.id,
    )
    store.insert_resource(tx, copy)
    files = store.select_uploads(tx, workspace_id=src.workspace_id, resource_id=src.id)
    store.insert_uploads(
        tx,
        [
            replace(
                u,
                id=new_id("up_"),
                resource_id=copy.id,
                workspace_id=copy.workspace_id,
                created_by=user.id,
                created_at=now,
            )
            for u in files
        ],
    )
    _record(
        tx,
        copy,
        Action.CLONED,
        actor=_actor(user),
        source=source,
        now=now,
        description=f"Cloned {kind.value} {src.name} as {copy.name}",
        metadata={
            "source": {
                "id": src.id,
                "name": src.name,
                "workspace": membership.workspace.slug,
            },
            "uploads": len(files),
        },
    )
    return copy


def add_upload(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    sha256: str,
    source: SourceKind,
    now: datetime,
) -> Upload:
    """Record a received file (dataset: an image; model: any file) and its ``uploaded``
    event. The caller moves the bytes to ``blob_key`` after commit."""
    require_writer(membership, kind)
    r = access_resource(tx, membership=membership, kind=kind, resource_id=resource_id, lock=True)
    r.check_active()
    content_type = content_type.strip()[:200] or "application/octet-stream"
    check_upload(kind, content_type)
    upload_id = new_id("up_")
    u = Upload(
        id=upload_id,
        resource_id=r.id,
        workspace_id=r.workspace_id,
        filename=clean_filename(filename),
        content_type=content_type,
        size_bytes=size_bytes,
        sha256=sha256,
        blob_key=upload_id,
        created_by=user.id,
        created_at=now,
    )
    store.insert_upload(tx, u)
    _record(
        tx,
        r,
        Action.UPLOADED,
        actor=_actor(user),
        source=source,
        now=now,
        description=f"Uploaded {u.filename} to {kind.value} {r.name}",
        metadata={"filename": u.filename, "size": u.size_bytes, "contentType": u.content_type},
    )
    return u


def change_resource(
    tx: Tx,
    action: str,
    *,
    user: User,
    membership: Membership,
    kind: ResourceKind,
    resource_id: str,
    source: SourceKind,
    blobs: Blobs,
    now: datetime,
) -> Resource:
    """One of the body-less changes by name: trash, restore, delete, share, unshare."""
    common: dict[str, Any] = {
        "user": user,
        "membership": membership,
        "kind": kind,
        "resource_id": resource_id,
        "source": source,
        "now": now,
    }
    if action == "trash":
        return trash_resource(tx, **common)
    if action == "restore":
        return restore_resource(tx, **common)
    if action == "delete":
        return delete_resource(tx, blobs=blobs, **common)
    if action in ("share", "unshare"):
        return set_public(tx, is_public=action == "share", **common)
    raise ValueError(f"unknown change {action!r}")


def due_for_purge(tx: Tx, *, now: datetime, limit: int = PURGE_BATCH) -> list[Resource]:
    return store.select_due_for_purge(tx, now=now, limit=limit)


def count_due_for_purge(tx: Tx, *, now: datetime) -> int:
    return store.count_due_for_purge(tx, now=now)


def purge_resource(tx: Tx, *, due: Resource, blobs: Blobs, now: datetime) -> Resource | None:
    """Delete one resource whose time in Trash is over, as the system.

    The row is locked and checked again: one restored or deleted meanwhile is left alone
    (None).
    """
    r = store.select_resource(
        tx, workspace_id=due.workspace_id, kind=due.kind, resource_id=due.id, lock=True
    )
    if r is None or r.status is not Status.TRASHED or r.purge_after is None or r.purge_after > now:
        return None
    return _delete(
        tx,
        r,
        actor=None,
        source=SourceKind.SYSTEM,
        blobs=blobs,
        now=now,
        description=f"Deleted {r.kind.value} {r.name} after 30 days in Trash",
    )


def resource_states(
    tx: Tx, *, workspace_id: str, events: Iterable[Event]
) -> dict[tuple[str, str], ResourceState]:
    """The live state of the projects, datasets and models these events name, for those
    in Trash or deleted, keyed by (resource type, resource id); one query."""
    keys = {
        (e.resource_type.value, e.resource_id) for e in events if e.resource_type in RESOURCE_TYPES
    }
    gone = store.select_gone(tx, workspace_id=workspace_id, keys=keys)
    return {key: r.state for key, r in gone.items() if r.state is not None}
