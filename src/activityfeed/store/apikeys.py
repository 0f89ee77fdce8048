"""API keys: stored as a SHA-256 of the secret, with a short display prefix."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, select, update

from activityfeed.domain.accounts import ApiKey, Scope
from activityfeed.store.db import Tx
from activityfeed.store.schema import api_keys, memberships


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        workspace_id=row.workspace_id,
        created_by=row.created_by,
        name=row.name,
        prefix=row.prefix,
        scopes=tuple(Scope(s) for s in row.scopes),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def insert_api_key(tx: Tx, key: ApiKey, *, secret_hash: str) -> None:
    tx.conn.execute(
        insert(api_keys).values(
            id=key.id,
            workspace_id=key.workspace_id,
            created_by=key.created_by,
            name=key.name,
            prefix=key.prefix,
            secret_hash=secret_hash,
            scopes=[s.value for s in key.scopes],
            created_at=key.created_at,
        )
    )


#: The key's creator's membership of the key's workspace (a key writes only for a member).
_CREATOR_IS_MEMBER = and_(
    memberships.c.workspace_id == api_keys.c.workspace_id,
    memberships.c.user_id == api_keys.c.created_by,
)


def select_api_key_by_hash(tx: Tx, secret_hash: str) -> tuple[ApiKey, bool] | None:
    """The key with that secret, and whether its creator is a member of its workspace."""
    is_member = memberships.c.user_id.is_not(None).label("creator_is_member")
    row = tx.conn.execute(
        select(api_keys, is_member)
        .outerjoin(
            memberships,
            _CREATOR_IS_MEMBER,
        )
        .where(api_keys.c.secret_hash == secret_hash)
    ).first()
    return (_key(row), bool(row.creator_is_member)) if row else None


def lock_live_api_key(tx: Tx, key_id: str) -> bool:
    """Whether the key is unrevoked and its creator a member of its workspace; on
    PostgreSQL its row is share-locked until the transaction ends (a revoke waits)."""
    row = tx.conn.execute(
        select(api_keys.c.id)
        .join(
            memberships,
            _CREATOR_IS_MEMBER,
        )
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .with_for_update(read=True, of=api_keys)
    ).first()
    return row is not None


def select_api_key(tx: Tx, key_id: str) -> ApiKey | None:
    row = tx.conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    return _key(row) if row else None


def select_api_keys(tx: Tx, *, workspace_id: str) -> list[ApiKey]:
    rows = tx.conn.execute(
        select(api_keys)
        .where(api_keys.c.workspace_id == workspace_id)
        .order_by(api_keys.c.created_at.desc(), api_keys.c.id)
    ).all()
    return [_key(r) for r in rows]


def revoke_api_key(tx: Tx, key_id: str, at: datetime) -> bool:
    """Mark the key revoked; False if it already was."""
    result = tx.conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return result.rowcount == 1


def touch_api_key(tx: Tx, key_id: str, at: datetime) -> None:
    tx.conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=at))
