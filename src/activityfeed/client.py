"""A small typed client for outside producers (training runners, exporters, deployers).

It reports events to ``POST /api/events`` with an API key::

    from activityfeed.client import ActivityFeedClient

    with ActivityFeedClient("https://feed.example.com", api_key="afk_...") as feed:
        feed.send("training", "started", resource_id="run-42", resource_name="yolo11n run 42",
                  metadata={"epochs": 100})

What it does for you:

* every event gets an ``idempotencyKey`` (a UUID, unless you give one), made once before
  the first attempt, so a retry after a lost response never stores the event twice;
* connection errors, timeouts, 5xx and 429 are retried with exponential backoff and
  jitter, honouring ``Retry-After``; other 4xx answers raise ``RequestRejected`` at once,
  naming the server's error code, item and field;
* ``send_batch`` splits any number of events into requests of at most 1000.

It depends on httpx only, and imports nothing else of this package.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "ActivityFeedClient",
    "ActivityFeedError",
    "AsyncActivityFeedClient",
    "EventIn",
    "RequestRejected",
    "ServerUnavailable",
]

MAX_BATCH = 1000
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ActivityFeedError(Exception):
    """Base of this client's errors."""


class RequestRejected(ActivityFeedError):
    """The server refused the request (4xx other than 429); retrying will not help."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{status} {code}{where}: {message}")
        self.status = status
        self.code = code
        self.message = message
        #: The part of the request at fault, e.g. ``events[3].occurredAt``.
        self.field = field


class ServerUnavailable(ActivityFeedError):
    """Every attempt failed with a connection error, a timeout, a 5xx or a 429."""


@dataclass(frozen=True, slots=True)
class EventIn:
    """One event to report. ``idempotency_key`` defaults to a fresh UUID."""

    resource_type: str
    action: str
    resource_id: str
    resource_name: str
    description: str | None = None
    metadata: Mapping[str, Any] | None = None
    occurred_at: datetime | None = None
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resourceType": self.resource_type,
            "action": self.action,
            "resourceId": self.resource_id,
            "resourceName": self.resource_name,
            "idempotencyKey": self.idempotency_key,
        }
        if self.description is not None:
            body["description"] = self.description
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        if self.occurred_at is not None:
            moment = self.occurred_at
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            body["occurredAt"] = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return body


def _coerce(event: EventIn | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(event, EventIn):
        return event.to_wire()
    body = dict(event)
    body.setdefault("idempotencyKey", str(uuid.uuid4()))
    return body


def _chunks(items: Sequence[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass(frozen=True, slots=True)
class _Policy:
    max_retries: int
    backoff: float
    max_backoff: float

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (header := response.headers.get("retry-after")):
            try:
                return min(self.max_backoff, max(0.0, float(header)))
            except ValueError:
                pass
        # Full jitter: spreads the retries of many producers after an outage.
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


def _rejected(response: httpx.Response) -> RequestRejected:
    try:
        error = response.json().get("error", {})
    except ValueError:
        error = {}
    return RequestRejected(
        response.status_code,
        str(error.get("code", "http_error")),
        str(error.get("message", response.text[:200])),
        error.get("field"),
    )


def _outcome(response: httpx.Response, is_batch: bool) -> list[dict[str, Any]] | RequestRejected:
    """The stored events of a success, or the error to retry on; raises a final refusal."""
    if response.status_code < 300:
        body = response.json()
        return list(body["events"]) if is_batch else [body["event"]]
    if response.status_code not in RETRY_STATUSES:
        raise _rejected(response)
    return _rejected(response)


class ActivityFeedClient:
    """Synchronous client. Thread-safe as httpx.Client is; close it (or use ``with``)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self._policy = _Policy(max_retries, backoff, max_backoff)

    def send(
        self,
        resource_type: str,
        action: str,
        *,
        resource_id: str,
        resource_name: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Report one event; returns it as stored (the original one on a replay)."""
        event = EventIn(
            resource_type,
            action,
            resource_id,
            resource_name,
            description,
            metadata,
            occurred_at,
            **({"idempotency_key": idempotency_key} if idempotency_key else {}),
        )
        return self._post(event.to_wire(), is_batch=False)[0]

    def send_batch(self, events: Iterable[EventIn | Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Report events in requests of at most 1000, each atomic; returns them in order."""
        items = [_coerce(e) for e in events]
        out: list[dict[str, Any]] = []
        for chunk in _chunks(items, MAX_BATCH):
            out.extend(self._post({"events": chunk}, is_batch=True))
        return out

    def _post(self, body: dict[str, Any], *, is_batch: bool) -> list[dict[str, Any]]:
        last: Exception | None = None
        for attempt in range(self._policy.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._http.post("/api/events", json=body)
            except httpx.TransportError as exc:
                last = exc
            else:
                outcome = _outcome(response, is_batch)
                if isinstance(outcome, list):
                    return outcome
                last = outcome
            if attempt < self._policy.max_retries:
                time.sleep(self._policy.delay(attempt, response))
        raise ServerUnavailable(f"gave up after {self._policy.max_retries + 1} attempts: {last}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ActivityFeedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncActivityFeedClient:
    """The same client for asyncio code."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self._policy = _Policy(max_retries, backoff, max_backoff)

    async def send(
        self,
        resource_type: str,
        action: str,
        *,
        resource_id: str,
        resource_name: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        occurred_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        event = EventIn(
            resource_type,
            action,
            resource_id,
            resource_name,
            description,
            metadata,
            occurred_at,
            **({"idempotency_key": idempotency_key} if idempotency_key else {}),
        )
        return (await self._post(event.to_wire(), is_batch=False))[0]

    async def send_batch(
        self, events: Iterable[EventIn | Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        items = [_coerce(e) for e in events]
        out: list[dict[str, Any]] = []
        for chunk in _chunks(items, MAX_BATCH):
            out.extend(await self._post({"events": chunk}, is_batch=True))
        return out

    async def _post(self, body: dict[str, Any], *, is_batch: bool) -> list[dict[str, Any]]:
        last: Exception | None = None
        for attempt in range(self._policy.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self._http.post("/api/events", json=body)
            except httpx.TransportError as exc:
                last = exc
            else:
                outcome = _outcome(response, is_batch)
                if isinstance(outcome, list):
                    return outcome
                last = outcome
            if attempt < self._policy.max_retries:
                await asyncio.sleep(self._policy.delay(attempt, response))
        raise ServerUnavailable(f"gave up after {self._policy.max_retries + 1} attempts: {last}")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncActivityFeedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
