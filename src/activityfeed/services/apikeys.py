"""API keys: created with the secret shown once, listed, revoked; each records its event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from activityfeed.domain.accounts import ApiKey, Membership, Scope, User
from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.ids import digest, new_id, new_secret
from activityfeed.errors import Forbidden, InvalidRequest, NotAuthenticated, NotFound
from activityfeed.services.accounts import clean_name, is_storable
from activityfeed.services.events import record_event
from activityfeed.store import accounts as account_store
from activityfeed.store import apikeys as store
from activityfeed.store.db import Tx

KEY_PREFIX = "afk_"
#: Characters of the key shown in lists and in events' ``source.apiKeyPrefix``.
DISPLAY_LENGTH = 12
#: ``last_used_at`` is written at most this often per key (it is a hint, not an audit).
TOUCH_EVERY = timedelta(minutes=1)
#: Longer path ids cannot be ours; they are refused without a query.
MAX_ID_LENGTH = 64


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: ApiKey
    secret: str


def _actor(user: User) -> Actor:
    return Actor(id=user.id, name=user.name, email=user.email)


def create_api_key(
    tx: Tx,
    *,
    user: User,
    membership: Membership,
    name: str,
    scopes: Sequence[Scope],
    source: SourceKind,
    now: datetime,
) -> CreatedKey:
    """Create a key for the workspace with ``scopes`` (at least one); the secret is
    returned here and never again."""
    name = clean_name(name, field="name", max_length=100, what="A key name")
    if not scopes:
        raise InvalidRequest("A key needs at least one scope.", field="scopes")
    if not membership.role.can_write:
        raise Forbidden("Viewers cannot create API keys.")
    secret = KEY_PREFIX + new_secret(30)
    key = ApiKey(
        id=new_id("k_"),
        workspace_id=membership.workspace.id,
        created_by=user.id,
        name=name,
        prefix=secret[:DISPLAY_LENGTH],
        scopes=tuple(dict.fromkeys(scopes)),
        created_at=now,
        last_used_at=None,
        revoked_at=None,
    )
    store.insert_api_key(tx, key, secret_hash=digest(secret))
    record_event(
        tx,
        EventDraft(
            workspace_id=key.workspace_id,
            resource_type=ResourceType.API_KEY,
            action=Action.CREATED,
            resource_id=key.id,
            resource_name=name,
            actor=_actor(user),
            source=Source(kind=source),
            metadata={"prefix": key.prefix, "scopes": [s.value for s in key.scopes]},
        ),
        now=now,
    )
    return CreatedKey(key=key, secret=secret)


def list_api_keys(tx: Tx, *, membership: Membership) -> list[ApiKey]:
    return store.select_api_keys(tx, workspace_id=membership.workspace.id)


def access_api_key(tx: Tx, *, user_id: str, key_id: str) -> tuple[ApiKey, Membership]:
    """The key with that id and the caller's membership of the key's workspace.

    Any workspace the caller belongs to will do, not only the active one. Raises the
    same ``NotFound`` for an unknown id and for a key of a workspace the caller is not
    a member of.
    """
    is_valid = len(key_id) <= MAX_ID_LENGTH and is_storable(key_id)
    key = store.select_api_key(tx, key_id) if is_valid else None
    membership = (
        account_store.select_membership(tx, user_id=user_id, workspace_id=key.workspace_id)
        if key is not None
        else None
    )
    if key is None or membership is None:
        raise NotFound("No API key of yours has that id.")
    return key, membership


def revoke_api_key(tx: Tx, *, user: User, key_id: str, source: SourceKind, now: datetime) -> ApiKey:
    """Revoke a key of any of the caller's workspaces (its creator, or an owner/admin).

    Records the ``api_key`` ``deleted`` event the first time; revoking a revoked key
    again changes nothing. Raises the same ``NotFound`` for an unknown id, a key of a
    workspace the caller is not in, and a key the caller may not revoke: a viewer's or
    member's answer must not tell which ids exist (the isolation matrix,
    tests/security/test_isolation.py).
    """
    key, membership = access_api_key(tx, user_id=user.id, key_id=key_id)
    if key.created_by != user.id and not membership.role.can_manage_members:
        raise NotFound("No API key of yours has that id.")
    _revoke(tx, key, by=user, source=source, now=now)
    revoked = store.select_api_key(tx, key.id)
    assert revoked is not None
    return revoked


def revoke_keys_of_departed(
    tx: Tx, *, workspace_id: str, creator: User, by: User, now: datetime
) -> list[ApiKey]:
    """Revoke the live keys ``creator`` made for the workspace they no longer belong to
    (``workspaces.remove_member``, in its transaction), each with its ``api_key``
    ``deleted`` event by ``by`` (who removed them, or themselves when they left): a key
    writes only for a member."""
    return [
        key
        for key in store.select_api_keys(tx, workspace_id=workspace_id)
        if key.created_by == creator.id
        and _revoke(tx, key, by=by, source=SourceKind.SYSTEM, now=now, creator_left=True)
    ]


def _revoke(
    tx: Tx, key: ApiKey, *, by: User, source: SourceKind, now: datetime, creator_left: bool = False
) -> bool:
    """Revoke ``key`` with its ``api_key`` ``deleted`` event by ``by``; False (and no
    event) when it was revoked already."""
    # The workspace's lock before the key's row, the order ingestion takes them in
    # (``use_api_key``): the other order could deadlock with a batch.
    account_store.lock_workspace(tx, key.workspace_id, exclusive=True)
    if not store.revoke_api_key(tx, key.id, now):
        return False
    reason = ": its creator left the workspace" if creator_left else ""
    metadata: dict[str, object] = {"prefix": key.prefix, "revoked": True}
    if creator_left:
        metadata["creatorLeft"] = True
    record_event(
        tx,
        EventDraft(
            workspace_id=key.workspace_id,
            resource_type=ResourceType.API_KEY,
            action=Action.DELETED,
            resource_id=key.id,
            resource_name=key.name,
            actor=_actor(by),
            source=Source(kind=source),
            description=f"Revoked API key {key.name}{reason}",
            metadata=metadata,
        ),
        now=now,
    )
    return True


def authenticate_api_key(tx: Tx, secret: str, *, scope: Scope) -> ApiKey:
    """The live key behind a bearer secret that carries ``scope``, whose creator is
    still a member of its workspace.

    Raises ``NotAuthenticated`` (``invalid_api_key``) for an unknown or revoked key, or
    one whose creator has left the workspace (removal revokes their keys; this also
    covers keys of members removed before it did), and ``Forbidden``
    (``insufficient_scope``) for one without the scope.
    """
    found = store.select_api_key_by_hash(tx, digest(secret)) if secret else None
    key, creator_is_member = found if found is not None else (None, False)
    if key is None or key.revoked_at is not None or not creator_is_member:
        raise NotAuthenticated("The API key is unknown or revoked.", code="invalid_api_key")
    if scope not in key.scopes:
        raise Forbidden(f"The API key lacks the '{scope.value}' scope.", code="insufficient_scope")
    return key


def use_api_key(tx: Tx, key: ApiKey, *, now: datetime) -> None:
    """In the write transaction that uses ``key`` (authenticated in an earlier one),
    after it took the key's workspace's lock: confirm the key is still live, and note
    that it was used (at most once a minute: a hint, not an audit).

    On PostgreSQL the key's row is share-locked until the write commits, so a revoke
    (or the removal of its creator, which revokes it) either commits before (and this
    raises ``NotAuthenticated``, ``invalid_api_key``) or waits for the write: no event
    is accepted under a key after its revocation committed. Every writer of a key row
    takes the workspace's lock first (``_revoke``, ``workspaces.remove_member``), so
    the two locks are always taken in one order. SQLite's writers are serial.
    """
    live = store.lock_live_api_key(tx, key.id)
    if not live:
        raise NotAuthenticated("The API key is unknown or revoked.", code="invalid_api_key")
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
        store.touch_api_key(tx, key.id, now)
