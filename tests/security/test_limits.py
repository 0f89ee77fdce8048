"""Resource limits: every limit answers a clear 413/422/429 with its documented code
(docs/api.md), never a 500, and a refused request changes nothing.

(Open live streams per user are covered with the stream's own tests.)
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from activityfeed.web import create_app
from tests.factories import Browser, event_body, make_key, make_user
from tests.security._hardening import (
    CSRF_EXEMPT,
    PRE_SESSION,
    World,
    changed_tables,
    dump,
    make_world,
    state_changing_routes,
    valid_call,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
BODY_LIMIT = 4096
UPLOAD_LIMIT = 1024


@pytest.fixture
def small(settings, db, clock) -> World:
    """A world served with small body and upload limits."""
    limited = dataclasses.replace(
        settings, max_body_bytes=BODY_LIMIT, max_upload_bytes=UPLOAD_LIMIT
    )
    return make_world(create_app(limited, db=db, clock=clock), db, clock)


def error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text[:300]
    body = response.json()["error"]
    assert body["code"] == code, body
    assert body["message"]
    if field is not None:
        assert body.get("field") == field, body


def chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_request_body_limit_on_every_route(small: World):
    """A body over the limit is 413 payload_too_large on every state-changing route but
    the uploads (which have their own limit), whether Content-Length declares it or the
    body streams past it, and nothing changes."""
    b = small.browser
    big = json.dumps({"name": "x" * (BODY_LIMIT * 2)}).encode()
    before = dump(small.db)
    for method, path in state_changing_routes(small.app):
        if path.endswith(("/upload", "/uploads")):
            continue
        url = small.url(path)
        headers = {"Content-Type": "application/json", "X-CSRF-Token": b.csrf}
        if (method, path) in CSRF_EXEMPT:
            headers["Authorization"] = f"Bearer {small.secret}"
        declared = b.client.request(method, url, content=big, headers=headers)
        error(declared, 413, "payload_too_large")
        if valid_call(small, method, path).json is None:
            # A route that takes no body never reads one: a streamed body is not buffered.
            continue
        streamed = b.client.request(method, url, content=chunks(big), headers=headers)
        error(streamed, 413, "payload_too_large")
    assert changed_tables(before, dump(small.db)) == []


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_upload_limit(small: World):
    """A file over the upload limit is 413 upload_too_large (API) and the page says so
    with the same status; nothing is stored."""
    b = small.browser
    ds = small.resources["datasets"]
    big = PNG + b"\x00" * (UPLOAD_LIMIT * 2)
    before = dump(small.db)
    api = b.client.post(
        f"/api/datasets/{ds}/uploads",
        files={"file": ("big.png", big, "image/png")},
        headers={"X-CSRF-Token": b.csrf},
    )
    error(api, 413, "upload_too_large")
    page = b.client.post(
        f"/datasets/{ds}/upload",
        data={"csrf_token": b.csrf},
        files={"file": ("big.png", big, "image/png")},
        follow_redirects=False,
    )
    assert page.status_code == 413
    assert "upload limit" in page.text
    assert changed_tables(before, dump(small.db)) == []
    files = small.app.state.settings.data_dir / "uploads" / "blobs"
    assert not files.exists() or not any(files.rglob("*"))


HOSTILE_BODIES = {
    "deep-array": b"[" * 50_000 + b"]" * 50_000,
    "deep-object": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "bad-utf8": b'{"name": "\xff\xfe"}',
    "lone-surrogate": b'{"name": "\\ud800", "eventIds": ["\\udfff"]}',
    "not-an-object": b'"just a string"',
    "huge-number": b'{"limit": 1' + b"0" * 4000 + b"}",
    "nul": b'{"name": "a\\u0000b", "email": "a\\u0000@example.com"}',
}


def test_hostile_bodies_never_cause_a_500(app, db, clock):
    """Every state-changing JSON route, given bodies built to break parsers (nesting
    deeper than Python's recursion limit, invalid UTF-8, lone surrogates, NUL, a
    4000-digit number), answers a 4xx error with a code (or ignores the body, on routes
    that take none), never a 500."""
    world = make_world(app, db, clock)
    b = world.browser
    for method, path in state_changing_routes(app):
        if not path.startswith("/api/") or path.endswith("/uploads"):
            continue
        headers = {"Content-Type": "application/json", "X-CSRF-Token": b.csrf}
        if (method, path) in CSRF_EXEMPT:
            headers["Authorization"] = f"Bearer {world.secret}"
        for name, content in HOSTILE_BODIES.items():
            client = b.client if (method, path) not in PRE_SESSION else TestClient(app)
            response = client.request(method, world.url(path), content=content, headers=headers)
            assert response.status_code < 500, (name, method, path, response.text[:200])
            if response.status_code >= 400:  # routes without a body ignore it
                assert response.json()["error"]["code"], (name, method, path)


@pytest.fixture
def browser(app, db, clock) -> Browser:
    return Browser(app, make_user(db, clock).email)


def test_event_ids_at_most_1000(browser: Browser):
    """More than 1000 eventIds, or one over 128 characters, is 422 invalid_request naming
    eventIds, and nothing is marked (never a partial update)."""
    before = browser.activity()["unseenCount"]
    for url, extra in (
        ("/api/activity/mark-seen", {}),
        ("/api/activity/archive", {"archive": True}),
    ):
        error(
            browser.post(url, json={"eventIds": ["e"] * 1001, **extra}),
            422,
            "invalid_request",
            "eventIds",
        )
        error(
            browser.post(url, json={"eventIds": ["e" * 129], **extra}),
            422,
            "invalid_request",
            "eventIds[0]",
        )
        assert browser.post(url, json={"eventIds": ["e"] * 1000, **extra}).status_code == 200
    assert browser.activity()["unseenCount"] == before


LIST_LIMITS = [
    ({"search": "x" * 201}, "search"),
    ({"limit": 0}, "limit"),
    ({"limit": 101}, "limit"),
    ({"page": 0}, "page"),
    ({"page": 1_000_001}, "page"),
    ({"page": "9" * 40}, "page"),
    ({"cursor": "x" * 5000}, "cursor"),
]


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_list_limits(browser: Browser):
    """Search length, page size and page number: 422 invalid_request naming the
    parameter, on the API and (same status, with the message) on the Activity page."""
    for params, field in LIST_LIMITS:
        error(browser.get("/api/activity", params=params), 422, "invalid_request", field)
        page = browser.get("/activity", params=params)
        assert page.status_code == 422, params
        assert field in page.text, params
    # The edges themselves are fine.
    edge = browser.get("/api/activity", params={"search": "x" * 200, "limit": 100})
    assert edge.status_code == 200


def test_metadata_size_and_depth(app, client, db, clock):
    """Metadata over 16 KiB or deeper than 8 levels is 422 invalid_request naming
    ``metadata``; more than 1000 events in a batch is 413 payload_too_large. Nothing is
    stored for any of them."""
    secret = make_key(db, clock, make_user(db, clock))
    headers = {"Authorization": f"Bearer {secret}"}

    def nested(levels: int) -> dict[str, Any]:
        value: Any = 1
        for _ in range(levels):
            value = {"a": value}
        return value

    before = dump(db)
    big = event_body(metadata={"blob": "x" * (16 * 1024)})
    error(client.post("/api/events", json=big, headers=headers), 422, "invalid_request", "metadata")
    deep = event_body(metadata=nested(8))  # 8 objects and the leaf: 9 levels
    error(
        client.post("/api/events", json=deep, headers=headers), 422, "invalid_request", "metadata"
    )
    batch = {"events": [event_body(n) for n in range(1001)]}
    error(client.post("/api/events", json=batch, headers=headers), 413, "payload_too_large")
    assert changed_tables(before, dump(db)) == []
    ok = client.post("/api/events", json=event_body(metadata=nested(7)), headers=headers)
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("backend", ["sqlite"])  # no database behaviour here
def test_text_fields_have_limits(browser: Browser):
    """Names, descriptions and profile text have documented maximum lengths (422)."""
    error(browser.post("/api/workspaces", json={"name": "x" * 201}), 422, "invalid_request", "name")
    error(browser.post("/api/projects", json={"name": "x" * 201}), 422, "invalid_request", "name")
    error(
        browser.patch("/api/settings/profile", json={"bio": "x" * 1001}),
        422,
        "invalid_request",
        "bio",
    )
    error(browser.post("/api/api-keys", json={"name": "x" * 101}), 422, "invalid_request", "name")
