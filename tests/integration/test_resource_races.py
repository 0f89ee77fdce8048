"""Changes of one resource that race each other end in one consistent story.

* Trash and permanent delete at once: whichever commits first, the resource ends
  deleted, and its events tell exactly what happened (no "trashed" after "deleted").
* Clone and delete of the source at once: the copy shares the source's stored bytes;
  the delete must not remove bytes that the copy, committed first, now names.

One transaction is held open until the other provably waits for it (PostgreSQL's row
lock, SQLite's write lock), so the interleaving is the same on every run.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activityfeed.domain.accounts import Membership, Scope, User
from activityfeed.domain.events import SourceKind
from activityfeed.domain.resources import ResourceKind, Status
from activityfeed.errors import NotFound
from activityfeed.services import apikeys, resources, workspaces
from activityfeed.services import events as events_service
from activityfeed.services.events import record_events
from activityfeed.store import resources as resource_store
from activityfeed.store.blobs import Blobs
from activityfeed.store.db import Database
from activityfeed.store.schema import events
from tests.factories import make_team, make_user
from tests.integration.test_state_races import drafts, in_other_tab, wait_until_blocked


def _setup(db: Database, clock) -> tuple[User, Membership, str]:
    user = make_user(db, clock)
    team = make_team(db, clock, user, name="Race")
    with db.write() as tx:
        membership = workspaces.access_workspace(tx, user_id=user.id, workspace_id=team.id)
        r = resources.create_resource(
            tx,
            user=user,
            membership=membership,
            kind=ResourceKind.DATASET,
            name="shared",
            description=None,
            source=SourceKind.UI,
            now=clock(),
        )
    return user, membership, r.id


def _actions(db: Database, membership: Membership, rid: str) -> list[str]:
    from sqlalchemy import select

    from activityfeed.store.schema import events

    with db.read() as tx:
        rows = tx.conn.execute(
            select(events.c.action)
            .where(events.c.workspace_id == membership.workspace.id, events.c.resource_id == rid)
            .order_by(events.c.seq)
        ).scalars()
        return list(rows)


@pytest.mark.parametrize("first", ["trash", "delete"])
def test_trash_and_delete_at_once(db, clock, tmp_path, first):
    user, membership, rid = _setup(db, clock)
    blobs = Blobs(tmp_path)
    second = "delete" if first == "trash" else "trash"

    def change(tx, action: str) -> None:
        resources.change_resource(
            tx,
            action,
            user=user,
            membership=membership,
            kind=ResourceKind.DATASET,
            resource_id=rid,
            source=SourceKind.UI,
            blobs=blobs,
            now=clock(),
        )

    def other() -> None:
        with db.write() as tx:
            change(tx, second)

    with db.write() as tx:
        change(tx, first)
        thread, errors = in_other_tab(other)
        wait_until_blocked(db)
    thread.join(30)
    if first == "trash":
        assert errors == []
        assert _actions(db, membership, rid) == ["created", "trashed", "deleted"]
    else:
        assert [type(e) for e in errors] == [NotFound]
        assert _actions(db, membership, rid) == ["created", "deleted"]
    with db.read() as tx:
        found = resource_store.select_resource(
            tx, workspace_id=membership.workspace.id, kind=ResourceKind.DATASET, resource_id=rid
        )
    assert found is not None
    assert found.status is Status.DELETED


@pytest.mark.parametrize("first", ["clone", "delete"])
def test_clone_and_delete_of_the_source_at_once(db, clock, tmp_path: Path, first):
    user, membership, rid = _setup(db, clock)
    blobs = Blobs(tmp_path)
    with db.write() as tx:
        upload = resources.add_upload(
            tx,
            user=user,
            membership=membership,
            kind=ResourceKind.DATASET,
            resource_id=rid,
            filename="a.png",
            content_type="image/png",
            size_bytes=3,
            sha256="0" * 64,
            source=SourceKind.UI,
            now=clock(),
        )
    blobs.blob_dir.mkdir(parents=True)
    blobs.path(upload.blob_key).write_bytes(b"png")
    copies: list[str] = []

    def clone(tx) -> None:
        copy = resources.clone_resource(
            tx,
            user=user,
            membership=membership,
            kind=ResourceKind.DATASET,
            resource_id=rid,
            target_slug=membership.workspace.slug,
            name="copy",
            source=SourceKind.UI,
            now=clock(),
        )
        copies.append(copy.id)

    def delete(tx) -> None:
        resources.delete_resource(
            tx,
            user=user,
            membership=membership,
            kind=ResourceKind.DATASET,
            resource_id=rid,
            source=SourceKind.UI,
            blobs=blobs,
            now=clock(),
        )

    ops = {"clone": clone, "delete": delete}
    later = ops["delete" if first == "clone" else "clone"]

    def other() -> None:
        with db.write() as tx:
            later(tx)

    with db.write() as tx:
        ops[first](tx)
        thread, errors = in_other_tab(other)
        wait_until_blocked(db)
    thread.join(30)
    if first == "clone":
        assert errors == []
        # The copy names the bytes: they stay although the source is gone.
        assert blobs.path(upload.blob_key).read_bytes() == b"png"
        with db.read() as tx:
            files = resource_store.select_uploads(
                tx, workspace_id=membership.workspace.id, resource_id=copies[0]
            )
        assert [f.blob_key for f in files] == [upload.blob_key]
    else:
        assert [type(e) for e in errors] == [NotFound]
        assert copies == []
        assert not blobs.path(upload.blob_key).exists()


def _create_key(tx, user: User, membership: Membership, clock) -> None:
    apikeys.create_api_key(
        tx,
        user=user,
        membership=membership,
        name="racing key",
        scopes=[Scope.EVENTS_WRITE],
        source=SourceKind.UI,
        now=clock(),
    )


def _create_project(tx, user: User, membership: Membership, clock) -> None:
    resources.create_resource(
        tx,
        user=user,
        membership=membership,
        kind=ResourceKind.PROJECT,
        name="racing project",
        description=None,
        source=SourceKind.UI,
        now=clock(),
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [("key", "key"), ("project", "project"), ("key", "project"), ("project", "ingest")],
)
def test_two_recording_writes_of_one_workspace_at_once(db, clock, monkeypatch, first, second):
    """Each write inserts its row (which references the workspace), then records its
    event under the workspace's exclusive lock. The first pauses between the two while
    the second runs whole: both must succeed, one after the other. With the lock taken
    ``FOR UPDATE``, the foreign-key lock of each insert (``FOR KEY SHARE``) made them
    wait for each other, and PostgreSQL killed one as a deadlock."""
    user, membership, _ = _setup(db, clock)
    writes = {
        "key": _create_key,
        "project": _create_project,
        "ingest": lambda tx, *_: record_events(tx, drafts(membership.workspace, 1), now=clock()),
    }
    main = threading.current_thread()
    started: list[tuple[threading.Thread, list[BaseException]]] = []

    def other() -> None:
        with db.write() as tx:
            writes[second](tx, user, membership, clock)

    original = events_service.account_store.lock_workspace

    def pause_first(tx, *args, **kw):
        if threading.current_thread() is main and not started:
            started.append(in_other_tab(other))
            # Let the other write get as far as it can (on SQLite: BEGIN IMMEDIATE).
            started[0][0].join(timeout=1.5)
        return original(tx, *args, **kw)

    monkeypatch.setattr(events_service.account_store, "lock_workspace", pause_first)
    with db.read() as tx:
        before = tx.conn.execute(select(func.count()).select_from(events)).scalar_one()
    with db.write() as tx:
        writes[first](tx, user, membership, clock)
    thread, errors = started[0]
    thread.join(timeout=30)
    assert errors == []
    with db.read() as tx:
        after = tx.conn.execute(select(func.count()).select_from(events)).scalar_one()
    assert after == before + 2
