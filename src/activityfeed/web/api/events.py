"""Ingestion: ``POST /api/events`` with an API key, one event or ``{"events": [...]}``."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from activityfeed.domain.accounts import ApiKey
from activityfeed.domain.events import EventView
from activityfeed.errors import InvalidRequest, PayloadTooLarge
from activityfeed.services import apikeys
from activityfeed.services.ingest import MAX_BATCH, IngestItem, ingest_events
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, api_key_auth, ctx
from activityfeed.web.errors import validation_message
from activityfeed.web.openapi import success
from activityfeed.web.responses import json_response
from activityfeed.web.schemas import EventCreate, EventList, EventResponse, event_public

router = auth_policy.router(auth=auth_policy.Auth.API_KEY, prefix="/api/events", tags=["ingestion"])


def _not_json(name: str) -> Any:
    # Python's parser accepts NaN and Infinity; JSON (and PostgreSQL's jsonb) does not.
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _read_body(raw: bytes) -> tuple[list[IngestItem], bool]:
    """The request's items, and whether it was a batch; ``InvalidRequest`` (or
    ``PayloadTooLarge``) naming what is wrong with it."""
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("The body is not valid JSON.", field="body") from None
    except RecursionError:
        # Python's JSON parser recurses; a body nested thousands deep exhausts the stack.
        raise InvalidRequest("The body is nested too deeply.", field="body") from None
    return _parse(body)


def _parse(body: Any) -> tuple[list[IngestItem], bool]:
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"}:
            extra = sorted(set(body) - {"events"})[0]
            raise InvalidRequest(f"'{extra}' is not a field this request takes.", field=extra)
        raw_items, is_batch = body["events"], True
        if not isinstance(raw_items, list):
            raise InvalidRequest("'events' must be a list of events.", field="events")
        if len(raw_items) > MAX_BATCH:
            raise PayloadTooLarge(f"At most {MAX_BATCH} events per request; send smaller batches.")
    elif isinstance(body, dict):
        raw_items, is_batch = [body], False
    else:
        raise InvalidRequest('The body must be an event object or {"events": [...]}.', field="body")
    try:
        # One validation of the whole list (pydantic's loop, not ours); on any error
        # the item-by-item loop below finds the first bad item and names it.
        valid = _ITEMS.validate_python(raw_items)
    except ValidationError:
        valid = None
    if valid is not None:
        return [_item(parsed) for parsed in valid], is_batch
    items = []
    for i, raw in enumerate(raw_items):
        if is_batch and not isinstance(raw, dict):
            raise InvalidRequest(
                f"events[{i}]: each event must be an object.", field=f"events[{i}]"
            )
        try:
            parsed = EventCreate.model_validate(raw)
        except ValidationError as exc:
            field, message = validation_message([dict(e) for e in exc.errors()])
            where = f"events[{i}].{field}" if is_batch else field
            prefix = f"events[{i}]: " if is_batch else ""
            raise InvalidRequest(prefix + message, field=where) from None
        items.append(_item(parsed))
    return items, is_batch


_ITEMS = TypeAdapter(list[EventCreate])


def _item(parsed: EventCreate) -> IngestItem:
    return IngestItem(
        resource_type=parsed.resource_type,
        action=parsed.action,
        resource_id=parsed.resource_id,
        resource_name=parsed.resource_name,
        description=parsed.description,
        metadata=parsed.metadata or {},
        occurred_at=parsed.occurred_at,
        idempotency_key=parsed.idempotency_key,
    )


@router.post(
    "",
    status_code=201,
    response_model=None,
    # One event answers {"event"}, a batch {"events"}.
    responses=success(EventResponse | EventList, 201, "Recorded.")
    | success(EventResponse | EventList, 200, "Every item replayed an earlier idempotencyKey."),
    # The handler parses the body itself (to name the failing item), so the document
    # describes it here: one event, or a batch.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/EventCreate"},
                            {"$ref": "#/components/schemas/EventBatch"},
                        ]
                    }
                }
            },
        }
    },
)
async def ingest(
    request: Request, key: ApiKey = Depends(api_key_auth), c: Ctx = Depends(ctx)
) -> Response:
    """Record one event or a batch (≤ 1000) atomically into the key's workspace."""
    raw = await request.body()

    def work() -> Response:
        # All of it off the event loop, the body's decoding and validation and the
        # answer's encoding too (a batch of 1000 takes tens of milliseconds of them): on
        # the loop they held up every live stream and request of this worker meanwhile.
        items, is_batch = _read_body(raw)
        now = c.now()
        with c.db.write() as tx:
            result = ingest_events(
                tx,
                key=key,
                items=items,
                is_batch=is_batch,
                now=now,
                max_metadata_bytes=c.settings.max_metadata_bytes,
            )
            # After the workspace's lock (taken by ``ingest_events``), as every writer
            # of a key row takes them: a revocation made meanwhile rolls the batch back.
            apikeys.use_api_key(tx, key, now=now)
        # The producer sees the event as a fresh viewer would: unseen, in the Inbox.
        views = [
            event_public(EventView(event=e, is_seen=False, is_archived=False))
            for e in result.events
        ]
        status = 201 if result.is_new else 200
        return json_response({"events": views} if is_batch else {"event": views[0]}, status)

    return await run_in_threadpool(work)
