"""Realistic platform activity, for the demo history, the live producer and the benchmark."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind

A = Action
WORKSPACE_ACTIONS: dict[ResourceType, Sequence[Action]] = {
    ResourceType.PROJECT: (
        A.CREATED,
        A.UPDATED,
        A.SHARED,
        A.UNSHARED,
        A.CLONED,
        A.TRASHED,
        A.RESTORED,
        A.DELETED,
    ),
    ResourceType.DATASET: (
        A.CREATED,
        A.UPLOADED,
        A.UPLOADED,
        A.ANALYZED,
        A.UPDATED,
        A.SHARED,
        A.UNSHARED,
        A.CLONED,
        A.TRASHED,
        A.RESTORED,
        A.DELETED,
    ),
    ResourceType.MODEL: (
        A.CREATED,
        A.UPLOADED,
        A.UPDATED,
        A.EXPORTED,
        A.SHARED,
        A.CLONED,
        A.TRASHED,
        A.RESTORED,
        A.DELETED,
    ),
}
NAMES = {
    ResourceType.PROJECT: [
        "retail-shelf",
        "traffic-cams",
        "pcb-defects",
        "wildlife-survey",
        "warehouse-robots",
        "crop-health",
        "parking-lots",
        "drone-inspect",
    ],
    ResourceType.DATASET: [
        "coco-subset",
        "shelf-images-v2",
        "night-traffic",
        "pcb-xray",
        "camera-trap-2026",
        "aerial-fields",
        "parking-occupancy",
        "solar-panels",
    ],
    ResourceType.MODEL: [
        "yolo11n-shelf",
        "yolo11s-traffic",
        "yolo11m-pcb",
        "yolo11n-wildlife",
        "yolo11l-aerial",
        "yolo11s-parking",
        "yolo11x-solar",
    ],
}
EXPORT_FORMATS = ["onnx", "torchscript", "coreml", "tflite", "openvino", "engine"]
REGIONS = ["us-central1", "europe-west4", "asia-east1"]


@dataclass(frozen=True, slots=True)
class Cast:
    """Who acts in a simulated workspace."""

    workspace_id: str
    people: Sequence[Actor]
    api_key_prefix: str | None = None


def _source(rng: random.Random, cast: Cast) -> tuple[Actor | None, Source]:
    if cast.api_key_prefix and rng.random() < 0.35:
        return None, Source(kind=SourceKind.API_KEY, api_key_prefix=cast.api_key_prefix)
    return rng.choice(list(cast.people)), Source(kind=SourceKind.UI)


def _draft(
    cast: Cast,
    rtype: ResourceType,
    action: Action,
    rid: str,
    name: str,
    at: datetime,
    rng: random.Random,
    metadata: dict[str, Any] | None = None,
    system: bool = False,
) -> EventDraft:
    actor, source = (None, Source(kind=SourceKind.SYSTEM)) if system else _source(rng, cast)
    return EventDraft(
        workspace_id=cast.workspace_id,
        resource_type=rtype,
        action=action,
        resource_id=rid,
        resource_name=name,
        actor=actor,
        source=source,
        metadata=metadata or {},
        occurred_at=at,
    )


def run_story(cast: Cast, at: datetime, rng: random.Random) -> list[EventDraft]:
    """One episode of platform work starting at ``at``: a training run, an export, a
    deployment, or a resource's lifecycle step. Returns drafts in time order."""
    roll = rng.random()
    if roll < 0.4:
        model = rng.choice(NAMES[ResourceType.MODEL])
        run = f"train-{rng.randrange(10_000, 99_999)}"
        epochs = rng.choice([50, 100, 200, 300])
        out = [
            _draft(
                cast,
                ResourceType.TRAINING,
                A.STARTED,
                run,
                f"{model} {run}",
                at,
                rng,
                {"model": model, "epochs": epochs, "gpu": rng.choice(["A100", "H100", "L4"])},
            )
        ]
        end = at + timedelta(minutes=rng.randrange(5, 600))
        outcome = rng.choices([A.COMPLETED, A.FAILED, A.CANCELLED], [0.7, 0.2, 0.1])[0]
        meta: dict[str, Any] = {"model": model, "epochs": epochs}
        if outcome is A.COMPLETED:
            meta["mAP50-95"] = round(rng.uniform(0.3, 0.7), 3)
        elif outcome is A.FAILED:
            meta["error"] = rng.choice(
                ["CUDA out of memory", "dataset not found", "NaN loss at epoch 12"]
            )
        out.append(
            _draft(
                cast,
                ResourceType.TRAINING,
                outcome,
                run,
                f"{model} {run}",
                end,
                rng,
                meta,
                system=True,
            )
        )
        return out
    if roll < 0.55:
        model = rng.choice(NAMES[ResourceType.MODEL])
        fmt = rng.choice(EXPORT_FORMATS)
        rid = f"exp-{rng.randrange(10_000, 99_999)}"
        name = f"{model}.{fmt}"
        end = at + timedelta(minutes=rng.randrange(1, 30))
        outcome = rng.choices([A.COMPLETED, A.FAILED], [0.85, 0.15])[0]
        return [
            _draft(cast, ResourceType.EXPORT, A.STARTED, rid, name, at, rng, {"format": fmt}),
            _draft(
                cast,
                ResourceType.EXPORT,
                outcome,
                rid,
                name,
                end,
                rng,
                {"format": fmt},
                system=True,
            ),
        ]
    if roll < 0.65:
        model = rng.choice(NAMES[ResourceType.MODEL])
        rid = f"dep-{rng.randrange(1000, 9999)}"
        region = rng.choice(REGIONS)
        action = rng.choice([A.CREATED, A.STARTED, A.UPDATED, A.COMPLETED, A.FAILED, A.DELETED])
        return [
            _draft(
                cast,
                ResourceType.DEPLOYMENT,
                action,
                rid,
                f"{model}-{region}",
                at,
                rng,
                {"region": region},
            )
        ]
    rtype = rng.choice(list(WORKSPACE_ACTIONS))
    name = rng.choice(NAMES[rtype])
    action = rng.choice(list(WORKSPACE_ACTIONS[rtype]))
    meta = {}
    if action is A.UPLOADED:
        meta = (
            {"files": rng.randrange(1, 5000)}
            if rtype is ResourceType.DATASET
            else {"weights": "best.pt", "bytes": rng.randrange(5_000_000, 200_000_000)}
        )
    elif action is A.ANALYZED:
        meta = {"images": rng.randrange(100, 50_000), "classes": rng.randrange(1, 80)}
    elif action is A.CLONED:
        meta = {"target": "personal workspace"}
    return [_draft(cast, rtype, action, f"{rtype.value[:2]}-{name}", name, at, rng, meta)]


def history(
    cast: Cast, *, start: datetime, end: datetime, count: int, seed: int = 7
) -> Iterator[EventDraft]:
    """``count`` drafts spread over [start, end), in time order, produced lazily."""
    rng = random.Random(seed)
    span = (end - start).total_seconds()
    # A story yields 1.55 events on average; enough stories to fill the span.
    stories = max(1, int(count / 1.55) + 1)
    moments = sorted(rng.uniform(0, span) for _ in range(stories))
    pending: list[tuple[datetime, int, EventDraft]] = []
    produced = 0
    tie = 0
    for offset in moments:
        moment = start + timedelta(seconds=offset)
        for d in run_story(cast, moment, rng):
            if d.occurred_at is not None and d.occurred_at < end:
                tie += 1
                heapq.heappush(pending, (d.occurred_at, tie, d))
        while pending and pending[0][0] <= moment and produced < count:
            yield heapq.heappop(pending)[2]
            produced += 1
    while pending and produced < count:
        yield heapq.heappop(pending)[2]
        produced += 1


def personal_history(
    workspace_id: str, actor: Actor, *, start: datetime, end: datetime, seed: int = 11
) -> list[EventDraft]:
    """Settings, API key and onboarding events of one person (private to them)."""
    rng = random.Random(seed)
    ui = Source(kind=SourceKind.UI)
    out = [
        EventDraft(
            workspace_id=workspace_id,
            resource_type=ResourceType.ONBOARDING,
            action=A.COMPLETED,
            resource_id="onboarding",
            resource_name="onboarding",
            actor=actor,
            source=ui,
            occurred_at=start + timedelta(minutes=5),
        )
    ]
    fields = [
        ("company", "Acme Vision", "Acme Robotics"),
        ("timezone", "UTC", "Europe/Berlin"),
        ("bio", "", "Computer vision engineer"),
        ("name", actor.name, actor.name + " R."),
    ]
    span = (end - start).total_seconds()
    for i in range(12):
        at = start + timedelta(seconds=rng.uniform(600, span))
        field_name, before, after = rng.choice(fields)
        out.append(
            EventDraft(
                workspace_id=workspace_id,
                resource_type=ResourceType.SETTINGS,
                action=A.UPDATED,
                resource_id=actor.id,
                resource_name="profile",
                actor=actor,
                source=ui,
                description=f"Updated profile {field_name}",
                metadata={"changes": {field_name: {"before": before, "after": after}}},
                occurred_at=at,
            )
        )
        if i % 4 == 0:
            kid = f"k_demo{i}"
            out.append(
                EventDraft(
                    workspace_id=workspace_id,
                    resource_type=ResourceType.API_KEY,
                    action=A.CREATED if i % 8 == 0 else A.DELETED,
                    resource_id=kid,
                    resource_name=f"runner-key-{i}",
                    actor=actor,
                    source=ui,
                    occurred_at=at,
                )
            )
    return sorted(out, key=lambda d: d.occurred_at or start)


class LiveScript:
    """Platform work happening now: stories start as asked, and their later steps (a
    training's completion, an export's result) follow a few seconds later instead of
    hours, so a watcher sees whole stories unfold."""

    def __init__(
        self, cast: Cast, *, seed: int | None = None, follow_up: tuple[float, float] = (3.0, 15.0)
    ) -> None:
        self._cast = cast
        self._rng = random.Random(seed)
        self._follow_up = follow_up
        self._pending: list[tuple[float, int, EventDraft]] = []
        self._tie = 0

    def next_event(self, now: float) -> EventDraft:
        """The next event at monotonic time ``now``: a due follow-up, else a new story."""
        if self._pending and self._pending[0][0] <= now:
            return heapq.heappop(self._pending)[2]
        first, *rest = run_story(self._cast, datetime.now(UTC), self._rng)
        for draft in rest:
            self._tie += 1
            delay = self._rng.uniform(*self._follow_up)
            heapq.heappush(self._pending, (now + delay, self._tie, draft))
        return first


def to_ingestion(draft: EventDraft, *, keep_time: bool = False) -> dict[str, Any]:
    """The ``POST /api/events`` item for a draft (live events take the server's time)."""
    body: dict[str, Any] = {
        "resourceType": draft.resource_type.value,
        "action": draft.action.value,
        "resourceId": draft.resource_id,
        "resourceName": draft.resource_name,
    }
    if draft.description:
        body["description"] = draft.description
    if draft.metadata:
        body["metadata"] = draft.metadata
    if keep_time and draft.occurred_at is not None:
        body["occurredAt"] = draft.occurred_at.isoformat().replace("+00:00", "Z")
    return body
