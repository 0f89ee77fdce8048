"""The benchmark's world: a team workspace with a long history, many other workspaces,
and the accounts that look at them. Loaded once per (events, factor) and reused.

The history is ``services.simulation``'s stories (trainings, exports, deployments,
resource lifecycles) over 365 days, written through ``store.bulk.append_events`` in
large transactions that interleave the workspaces, so that the measured workspace's
rows are spread through the table as they would be in production.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, describe
from activityfeed.domain.ids import new_id
from activityfeed.domain.workspaces import Role
from activityfeed.services import accounts, workspaces
from activityfeed.services.events import record_events
from activityfeed.services.simulation import Cast, history, personal_history
from activityfeed.store import accounts as account_store
from activityfeed.store import bulk
from activityfeed.store import events as event_store
from activityfeed.store.db import Database

USER_EMAIL = "bench@example.com"
USER_PASSWORD = "bench-password"  # noqa: S105 - the benchmark's throwaway account
TEAMMATE_EMAIL = "bench-teammate@example.com"
OTHERS_EMAIL = "bench-others@example.com"
OTHER_WORKSPACES = 200
#: Rows of the measured workspace per load transaction (the others add theirs).
ROUND_ROWS = 5000
SMALL_EVENTS = 10_000
#: One event in this many is another member's private event (an API key they made).
PRIVATE_EVERY = 500


@dataclass(frozen=True, slots=True)
class BenchWorld:
    user_id: str
    teammate_id: str
    team_id: str
    team_slug: str
    #: A workspace of the user with ``SMALL_EVENTS`` events: "all" operations at 10,000.
    small_id: str
    #: Where the ingest and live-stream measurements write (the team keeps its N).
    ingest_id: str
    ingest_slug: str
    other_ids: tuple[str, ...]
    events: int
    others_factor: int
    reused: bool


def _names(events: int, factor: int) -> tuple[str, str, str, str]:
    tag = f"{events}x{factor}"
    return (f"Bench team {tag}", f"Bench small {tag}", f"Bench ingest {tag}", f"Bench done {tag}")


def _find(db: Database, events: int, factor: int) -> BenchWorld | None:
    team_name, small_name, ingest_name, done_name = _names(events, factor)
    with db.read() as tx:
        found = account_store.select_user_by_email(tx, USER_EMAIL)
        mate = account_store.select_user_by_email(tx, TEAMMATE_EMAIL)
        others = account_store.select_user_by_email(tx, OTHERS_EMAIL)
        if found is None or mate is None or others is None:
            return None
        mine = {
            m.workspace.name: m.workspace for m in account_store.select_memberships(tx, found[0].id)
        }
        if not all(n in mine for n in (team_name, small_name, ingest_name, done_name)):
            return None
        prefix = f"Bench other {events}x{factor} "
        other_ids = tuple(
            m.workspace.id
            for m in account_store.select_memberships(tx, others[0].id)
            if m.workspace.name.startswith(prefix)
        )
    return BenchWorld(
        user_id=found[0].id,
        teammate_id=mate[0].id,
        team_id=mine[team_name].id,
        team_slug=mine[team_name].slug,
        small_id=mine[small_name].id,
        ingest_id=mine[ingest_name].id,
        ingest_slug=mine[ingest_name].slug,
        other_ids=other_ids,
        events=events,
        others_factor=factor,
        reused=True,
    )


def _row(draft: EventDraft, workspace_id: str, private_to: str | None) -> dict[str, Any]:
    at = draft.occurred_at
    assert at is not None
    actor = draft.actor
    resource_type, resource_id, name = draft.resource_type, draft.resource_id, draft.resource_name
    action, metadata = draft.action, draft.metadata
    if private_to is not None:
        # Another member's API key: visible to them only (as services/apikeys records it).
        resource_type, resource_id, name = ResourceType.API_KEY, new_id("k_"), "ci-runner"
        action, metadata = Action.CREATED, {"scopes": ["events:write"]}
    return {
        "id": new_id(now_ms=int(at.timestamp() * 1000)),
        "workspace_id": workspace_id,
        "resource_type": resource_type.value,
        "action": action.value,
        "resource_id": resource_id,
        "resource_name": name,
        "description": draft.description or describe(resource_type, action, name),
        "actor_id": actor.id if actor else None,
        "actor_name": actor.name if actor else None,
        "actor_email": actor.email if actor else None,
        "source_kind": draft.source.kind.value,
        "source_key_prefix": draft.source.api_key_prefix,
        "created_at": at,
        "recorded_at": at,
        "metadata": metadata,
        "private_to": private_to,
        "idempotency_key": None,
        "payload_hash": None,
    }


def _cast(workspace_id: str, people: list[Actor]) -> Cast:
    return Cast(workspace_id=workspace_id, people=people, api_key_prefix="afk_bench01")


def ensure_world(
    db: Database,
    *,
    events: int,
    others_factor: int,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> BenchWorld:
    """The benchmark's world for ``events`` measured events plus ``others_factor`` times
    as many in ``OTHER_WORKSPACES`` other workspaces; loaded now unless already there.

    ``progress(done, total)`` is called after every load transaction.
    """
    existing = _find(db, events, others_factor)
    if existing is not None:
        return existing
    team_name, small_name, ingest_name, done_name = _names(events, factor := others_factor)
    with db.write() as tx:

        def user(email: str, name: str, password: str) -> str:
            found = account_store.select_user_by_email(tx, email)
            if found is not None:
                return found[0].id
            return accounts.create_user(tx, email=email, name=name, password=password, now=now).id

        user_id = user(USER_EMAIL, "Bench User", USER_PASSWORD)
        mate_id = user(TEAMMATE_EMAIL, "Bench Teammate", USER_PASSWORD + "-mate")
        others_id = user(OTHERS_EMAIL, "Bench Others", USER_PASSWORD + "-others")
        team = workspaces.create_workspace(tx, user_id=user_id, name=team_name, now=now)
        workspaces.add_member(
            tx, user_id=user_id, slug=team.slug, email=TEAMMATE_EMAIL, role=Role.MEMBER, now=now
        )
        small = workspaces.create_workspace(tx, user_id=user_id, name=small_name, now=now)
        workspaces.create_workspace(tx, user_id=user_id, name=ingest_name, now=now)
        other_ids = [
            workspaces.create_workspace(
                tx, user_id=others_id, name=f"Bench other {events}x{factor} {i}", now=now
            ).id
            for i in range(OTHER_WORKSPACES)
        ]
        me = Actor(id=user_id, name="Bench User", email=USER_EMAIL)
        mate = Actor(id=mate_id, name="Bench Teammate", email=TEAMMATE_EMAIL)
        personal = account_store.select_personal_workspace(tx, user_id)
        assert personal is not None
        start = now - timedelta(days=365) + timedelta(hours=1)
        record_events(tx, personal_history(personal.id, me, start=start, end=now), now=now)

    start = now - timedelta(days=365) + timedelta(hours=1)
    people = [me, mate]
    # (workspace, how many, private events to whom) in load order.
    plan: list[tuple[str, int, str | None]] = [(team.id, events, mate_id)]
    plan.append((small.id, min(SMALL_EVENTS, max(events, 1)), None))
    each, extra = divmod(events * factor, OTHER_WORKSPACES)
    plan += [(wid, each + (1 if i < extra else 0), None) for i, wid in enumerate(other_ids)]
    total = sum(n for _, n, _ in plan)
    rounds = max(1, math.ceil(events / ROUND_ROWS))
    streams: list[tuple[str, int, str | None, Iterator[EventDraft]]] = [
        (
            wid,
            n,
            private_to,
            # A story's later steps can fall after ``now`` and drop out: a second,
            # shorter history tops the count up (a few late arrivals, as in life).
            itertools.chain(
                history(_cast(wid, people), start=start, end=now, count=n, seed=1000 + i),
                history(_cast(wid, people), start=start, end=now, count=n, seed=5000 + i),
            ),
        )
        for i, (wid, n, private_to) in enumerate(plan)
    ]
    done = 0
    counter = itertools.count()
    for r in range(rounds):
        with db.write() as tx:
            for wid, n, private_to, drafts in streams:
                # This round's share: rows up to round r+1's proportional mark.
                upto = (n * (r + 1)) // rounds
                take = upto - (n * r) // rounds
                rows = []
                for draft in itertools.islice(drafts, take):
                    mine = (
                        private_to if (next(counter) % PRIVATE_EVERY == PRIVATE_EVERY - 1) else None
                    )
                    rows.append(_row(draft, wid, mine))
                bulk.append_events(tx, wid, rows)
                done += len(rows)
        if progress is not None:
            progress(done, total)
    with db.write() as tx:
        workspaces.create_workspace(tx, user_id=user_id, name=done_name, now=now)
        head = event_store.select_head(tx, team.id)[1]
    if head != events:
        raise RuntimeError(f"the measured workspace holds {head} events, not {events}")
    world = _find(db, events, others_factor)
    assert world is not None
    return BenchWorld(**{**_as_dict(world), "reused": False})


def _as_dict(world: BenchWorld) -> dict[str, Any]:
    return {name: getattr(world, name) for name in BenchWorld.__slots__}
