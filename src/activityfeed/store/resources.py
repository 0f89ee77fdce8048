"""Projects, datasets, models and their uploads. Every query is scoped by workspace."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, tuple_, update

from activityfeed.domain.resources import Resource, ResourceKind, Upload
from activityfeed.store.db import Tx
from activityfeed.store.schema import resources, uploads


def _resource(row: Any) -> Resource:
    return Resource(
        id=row.id,
        workspace_id=row.workspace_id,
        kind=ResourceKind(row.kind),
        name=row.name,
        description=row.description,
        is_public=row.is_public,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        trashed_at=row.trashed_at,
        purge_after=row.purge_after,
        deleted_at=row.deleted_at,
        cloned_from=row.cloned_from,
    )


def _upload(row: Any) -> Upload:
    return Upload(
        id=row.id,
        resource_id=row.resource_id,
        workspace_id=row.workspace_id,
        filename=row.filename,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        blob_key=row.blob_key,
        created_by=row.created_by,
        created_at=row.created_at,
    )


def insert_resource(tx: Tx, r: Resource) -> None:
    tx.conn.execute(
        insert(resources).values(
            id=r.id,
            workspace_id=r.workspace_id,
            kind=r.kind.value,
            name=r.name,
            description=r.description,
            is_public=r.is_public,
            created_by=r.created_by,
            created_at=r.created_at,
            updated_at=r.updated_at,
            trashed_at=r.trashed_at,
            purge_after=r.purge_after,
            deleted_at=r.deleted_at,
            cloned_from=r.cloned_from,
        )
    )


def select_resource(
    tx: Tx, *, workspace_id: str, kind: ResourceKind, resource_id: str, lock: bool = False
) -> Resource | None:
    """The resource of that kind in that workspace (deleted tombstones included).

    With ``lock`` the row is locked until commit (PostgreSQL ``FOR UPDATE``; SQLite
    writers are serialised already), so a concurrent trash, restore or delete of the
    same resource waits and then sees this transaction's outcome.
    """
    stmt = select(resources).where(
        resources.c.id == resource_id,
        resources.c.workspace_id == workspace_id,
        resources.c.kind == kind.value,
    )
    if lock and tx.dialect == "postgresql":
        stmt = stmt.with_for_update()
    row = tx.conn.execute(stmt).first()
    return _resource(row) if row else None


def select_resources(
    tx: Tx, *, workspace_id: str, kind: ResourceKind, trashed: bool
) -> list[Resource]:
    """The live resources of a kind (or those in Trash), newest first; never the deleted."""
    in_trash = resources.c.trashed_at.is_not(None)
    rows = tx.conn.execute(
        select(resources)
        .where(
            resources.c.workspace_id == workspace_id,
            resources.c.kind == kind.value,
            resources.c.deleted_at.is_(None),
            in_trash if trashed else resources.c.trashed_at.is_(None),
        )
        .order_by(resources.c.created_at.desc(), resources.c.id.desc())
    ).all()
    return [_resource(r) for r in rows]


def update_resource(tx: Tx, resource_id: str, **values: Any) -> None:
    tx.conn.execute(update(resources).where(resources.c.id == resource_id).values(**values))


def select_due_for_purge(tx: Tx, *, now: datetime, limit: int) -> list[Resource]:
    """Resources whose time in Trash is over, oldest due first."""
    rows = tx.conn.execute(
        select(resources)
        .where(
            resources.c.purge_after.is_not(None),
            resources.c.purge_after <= now,
            resources.c.deleted_at.is_(None),
        )
        .order_by(resources.c.purge_after, resources.c.id)
        .limit(limit)
    ).all()
    return [_resource(r) for r in rows]


def count_due_for_purge(tx: Tx, *, now: datetime) -> int:
    return int(
        tx.conn.execute(
            select(func.count())
            .select_from(resources)
            .where(
                resources.c.purge_after.is_not(None),
                resources.c.purge_after <= now,
                resources.c.deleted_at.is_(None),
            )
        ).scalar_one()
    )


# Read for every page of the feed: built once, with named parameters.
_GONE = select(resources).where(
    resources.c.workspace_id == bindparam("ws"),
    tuple_(resources.c.kind, resources.c.id).in_(bindparam("keys", expanding=True)),
    or_(resources.c.trashed_at.is_not(None), resources.c.deleted_at.is_not(None)),
)


def select_gone(
    tx: Tx, *, workspace_id: str, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Resource]:
    """Of the (kind, id) pairs, those in Trash or deleted, in one query."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = tx.conn.execute(_GONE, {"ws": workspace_id, "keys": wanted}).all()
    found = [_resource(r) for r in rows]
    return {(r.kind.value, r.id): r for r in found}


def insert_upload(tx: Tx, u: Upload) -> None:
    insert_uploads(tx, [u])


def insert_uploads(tx: Tx, items: Sequence[Upload]) -> None:
    if not items:
        return
    tx.conn.execute(
        insert(uploads),
        [
            {
                "id": u.id,
                "resource_id": u.resource_id,
                "workspace_id": u.workspace_id,
                "filename": u.filename,
                "content_type": u.content_type,
                "size_bytes": u.size_bytes,
                "sha256": u.sha256,
                "blob_key": u.blob_key,
                "created_by": u.created_by,
                "created_at": u.created_at,
            }
            for u in items
        ],
    )


def select_uploads(tx: Tx, *, workspace_id: str, resource_id: str) -> list[Upload]:
    rows = tx.conn.execute(
        select(uploads)
        .where(and_(uploads.c.workspace_id == workspace_id, uploads.c.resource_id == resource_id))
        .order_by(uploads.c.created_at, uploads.c.id)
    ).all()
    return [_upload(r) for r in rows]


def delete_uploads(tx: Tx, *, workspace_id: str, resource_id: str) -> list[str]:
    """Delete the resource's upload rows; return the blob keys no row names any more."""
    keys = {
        u.blob_key for u in select_uploads(tx, workspace_id=workspace_id, resource_id=resource_id)
    }
    tx.conn.execute(
        delete(uploads).where(
            uploads.c.workspace_id == workspace_id, uploads.c.resource_id == resource_id
        )
    )
    if not keys:
        return []
    still = set(
        tx.conn.execute(
            select(uploads.c.blob_key).where(uploads.c.blob_key.in_(sorted(keys))).distinct()
        ).scalars()
    )
    return sorted(keys - still)


def select_resources_after(
    tx: Tx, *, workspace_id: str, after_id: str, limit: int
) -> list[Resource]:
    """Every resource of the workspace (live, in Trash or deleted), by id after ``after_id``:
    a keyset walk for exports."""
    rows = tx.conn.execute(
        select(resources)
        .where(resources.c.workspace_id == workspace_id, resources.c.id > after_id)
        .order_by(resources.c.id)
        .limit(limit)
    ).all()
    return [_resource(r) for r in rows]


def select_uploads_of(tx: Tx, *, workspace_id: str, resource_ids: Sequence[str]) -> list[Upload]:
    """The uploads of several resources of one workspace, in one query."""
    if not resource_ids:
        return []
    rows = tx.conn.execute(
        select(uploads)
        .where(uploads.c.workspace_id == workspace_id, uploads.c.resource_id.in_(resource_ids))
        .order_by(uploads.c.resource_id, uploads.c.created_at, uploads.c.id)
    ).all()
    return [_upload(r) for r in rows]
