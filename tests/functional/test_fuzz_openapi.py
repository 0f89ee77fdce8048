"""Schemathesis against the app's own OpenAPI document: no 5xx, and the document is true.

Every operation of ``create_app(...).openapi()`` gets generated requests (valid ones, and
invalid ones built from the same schemas) from a signed-in browser session that sends
its CSRF token, and ``POST /api/events`` also gets the producer key. Each response must
not be a 5xx and must match what the document says: a documented status code, the
documented content type, a body that matches the documented schema. Success bodies are
documented by strict models (``web/schemas.py``; tests/unit/test_openapi_bodies.py fails
on an open one), so a key too many, too few or of the wrong type fails here. When a
response is undocumented the route declarations are fixed, not this check.

CI runs 200 valid and 20 invalid examples per operation on SQLite (20 and 5 on
PostgreSQL), derandomized, so a failure reproduces; ``ACTIVITYFEED_FUZZ_EXAMPLES=2000
ACTIVITYFEED_FUZZ_SEED=random`` runs a longer, freshly random search (that many of
each kind, on both backends).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from activityfeed.domain.events import Action, Actor, EventDraft, ResourceType, Source, SourceKind
from activityfeed.domain.workspaces import Role
from activityfeed.services.events import record_event
from tests.factories import PASSWORD, event_body, ingest, make_key, make_team, make_user

_LONG = os.environ.get("ACTIVITYFEED_FUZZ_EXAMPLES")
#: Valid requests per operation. PostgreSQL gets one shorter pass: the routes are the
#: same code, and each of its statements is a round trip.
FUZZ_EXAMPLES = {"sqlite": int(_LONG or 200), "postgresql": int(_LONG or 20)}
#: Invalid requests per operation (generating them is the expensive part).
FUZZ_NEGATIVE = {"sqlite": int(_LONG or 20), "postgresql": int(_LONG or 5)}
_SEED = os.environ.get("ACTIVITYFEED_FUZZ_SEED", "20261126")
FUZZ_SEED = random.getrandbits(32) if _SEED == "random" else int(_SEED)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

#: The live stream never ends by itself; tests/functional/test_stream.py covers it.
SKIPPED = {("GET", "/api/activity/stream")}
KINDS = ("projects", "datasets", "models")
#: Signing out ends the session every later operation relies on, so it runs last.
LAST = {("POST", "/api/auth/logout")}


def _stage(method: str, path: str) -> int:
    """When an operation runs: after those whose seeded ids it would spend.

    Trash makes the other resource routes answer 409, so it runs after them, and restore
    after trash (so that it has something to restore); a delete (a revoked key, a deleted
    resource, a removed member) makes every later use of the id a 401 or 404 (the
    producer key included); signing out ends the session.
    """
    if (method, path) in LAST:
        return 4
    if method == "DELETE":
        return 3
    if path.endswith("/restore"):
        return 2
    if path.endswith("/trash"):
        return 1
    return 0


def _sign_in(client: TestClient, email: str) -> tuple[str, str]:
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.cookies["af_session"], response.json()["csrfToken"]


def _seed_data(app: FastAPI, client: TestClient, db: Any, clock: Any) -> dict[str, list[str]]:
    """Real ids the generator can pick for path parameters (besides random ones)."""
    owner = make_user(db, clock)
    member = make_user(db, clock)
    outsider = make_user(db, clock)
    team = make_team(db, clock, owner, [(member, Role.MEMBER)])
    secret = make_key(db, clock, owner, team)
    sent = ingest(client, secret, {"events": [event_body(i) for i in range(5)]}).json()["events"]
    with db.write() as tx:
        settings_event = record_event(
            tx,
            EventDraft(
                workspace_id=team.id,
                resource_type=ResourceType.SETTINGS,
                action=Action.UPDATED,
                resource_id=owner.id,
                resource_name="profile",
                actor=Actor(id=owner.id, name=owner.name, email=owner.email),
                source=Source(kind=SourceKind.UI),
            ),
            now=clock(),
        )
    cookie, csrf = _sign_in(client, owner.email)
    headers = {"X-CSRF-Token": csrf}
    client.cookies.set("af_session", cookie)
    # A settings change the owner can undo: without one, undo only ever answers 404/409.
    changed = client.patch("/api/settings/profile", json={"bio": "fuzz"}, headers=headers)
    undoable = changed.json()["event"]["id"]
    client.post(f"/api/workspaces/{team.slug}/switch", headers=headers)
    resources = [
        client.post(f"/api/{kind}", json={"name": f"fuzz {kind}"}, headers=headers).json()
        for kind in KINDS
    ]
    keys = client.get("/api/api-keys").json()["apiKeys"]
    return {
        "cookie": [cookie],
        "csrf": [csrf],
        "secret": [secret],
        "slug": [team.slug],
        "event_id": [e["id"] for e in sent] + [settings_event.id, undoable],
        # Each answer is {"<kind>": Resource}.
        "resource_id": [next(iter(r.values()))["id"] for r in resources],
        "key_id": [k["id"] for k in keys],
        "workspace": [team.slug],
        "email": [member.email, owner.email, outsider.email],
        "outsider": [outsider.email],
        **{kind: [next(iter(r.values()))["id"]] for kind, r in zip(KINDS, resources, strict=True)},
    }


def _explicit(method: str, path: str, known: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Valid requests the generator seldom makes, sent once each before the generated
    ones, so that these operations' success bodies are checked too: ``Case`` arguments,
    and ``cookies`` when they differ from the session's."""
    kind = path.split("/")[2]
    if (method, path) == ("POST", "/api/events"):
        # A new event, its replay (200) and a batch.
        one = event_body(100, idempotencyKey="fuzz-replay")
        return [{"body": one}, {"body": one}, {"body": {"events": [event_body(101)] * 2}}]
    if (method, path) == ("POST", "/api/auth/login"):
        # Without the fuzz session's cookie: a sign-in ends the session it replaces.
        login = {"email": known["email"][0], "password": PASSWORD}
        return [{"body": login, "cookies": {}}]
    if (method, path) == ("POST", "/api/auth/password"):
        return [{"body": {"currentPassword": PASSWORD, "newPassword": PASSWORD}}]
    if (method, path) == ("POST", "/api/workspaces/{slug}/members"):
        member = {"email": known["outsider"][0], "role": "viewer"}
        return [{"path_parameters": {"slug": known["slug"][0]}, "body": member}]
    if (method, path) == ("GET", "/api/activity"):
        filters = {"search": "yolo", "resourceType": "training", "action": "completed"}
        return [{"query": {}}, {"query": {"export": "true"}}, {"query": {"export": "1", **filters}}]
    if method == "POST" and kind in KINDS and path.endswith("/clone"):
        clone = {"workspace": known["slug"][0], "name": "fuzz clone"}
        return [{"path_parameters": {"resource_id": known[kind][0]}, "body": clone}]
    return []


@pytest.fixture
def fuzz_app(app: FastAPI, db: Any, clock: Any) -> Iterator[tuple[FastAPI, dict[str, list[str]]]]:
    with TestClient(app, base_url="http://testserver") as client:
        known = _seed_data(app, client, db, clock)
    yield app, known
    # Schemathesis keeps the app's lifespan running for the process; stop it with the app.
    asgi.shutdown_lifespans()


def _operations(schema: Any) -> list[Any]:
    ops = [result.ok() for result in schema.get_all_operations()]
    ops = [op for op in ops if (op.method.upper(), op.path) not in SKIPPED]
    return sorted(ops, key=lambda op: (_stage(op.method.upper(), op.path), op.path, op.method))


def _fuzz(
    op: Any,
    known: dict[str, list[str]],
    headers: dict[str, str],
    mode: GenerationMode,
    examples: int,
) -> None:
    """Run the operation's examples; raise the first failure, shrunk."""
    cookies = {"af_session": known["cookie"][0]}
    strategy = op.as_strategy(generation_mode=mode)

    @seed(FUZZ_SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=_SEED != "random",
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=strategy, data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        for name in list(case.path_parameters or {}):
            pool = known.get(name)
            # Half the time a real id, so the route gets past its 404.
            if pool and data.draw(st.booleans(), label=f"real {name}"):
                case.path_parameters[name] = data.draw(st.sampled_from(pool))
        case.call_and_validate(headers=headers, cookies=cookies, checks=CHECKS)

    run()


def _session_cookie(headers: Any) -> str:
    """The ``af_session`` value a response sets (schemathesis: header -> list of values)."""
    lines = next((v for k, v in headers.items() if k.lower() == "set-cookie"), [])
    found = [line.split(";", 1)[0].split("=", 1) for line in lines]
    return next(value for name, value in found if name == "af_session")


def _headers(op: Any, known: dict[str, list[str]]) -> dict[str, str]:
    headers = {"X-CSRF-Token": known["csrf"][0]}
    if op.path == "/api/events":
        headers["Authorization"] = f"Bearer {known['secret'][0]}"
    return headers


def test_every_operation_answers_as_documented(fuzz_app, backend):
    """No 5xx, and every status, content type and body is the one the document gives."""
    app, known = fuzz_app
    examples, negative = FUZZ_EXAMPLES[backend], FUZZ_NEGATIVE[backend]
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    failures: list[str] = []
    operations = _operations(schema)
    # The hand-made requests first: the generated ones use up the sign-in attempts.
    for op in operations:
        for request in _explicit(op.method.upper(), op.path, known):
            cookies = request.pop("cookies", {"af_session": known["cookie"][0]})
            where = f"{op.method.upper()} {op.path} {request}"
            try:
                answer = op.Case(**request).call_and_validate(
                    headers=_headers(op, known), cookies=cookies, checks=CHECKS
                )
            except (FailureGroup, AssertionError) as exc:
                failures.append(f"{where}: {exc}")
            else:
                # Each is valid: a refusal would leave the success body unchecked.
                if answer.status_code >= 300:
                    failures.append(f"{where}: {answer.status_code} {answer.text}")
                elif (op.method.upper(), op.path) == ("POST", "/api/auth/password"):
                    # A password change rotates the session's id: go on with the new one.
                    known["cookie"][0] = _session_cookie(answer.headers)
    for op in operations:
        headers = _headers(op, known)
        raw = op.definition.raw
        runs = [(GenerationMode.POSITIVE, examples)]
        # Invalid requests too (wrong types, out-of-range values, unknown fields) where
        # the operation takes input to get wrong; they cost about four valid ones each.
        if raw.get("parameters") or raw.get("requestBody"):
            runs.append((GenerationMode.NEGATIVE, negative))
        for mode, count in runs:
            try:
                _fuzz(op, known, headers, mode, count)
            except (FailureGroup, AssertionError) as exc:
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
            except Unsatisfiable:
                # Only a path id to get wrong, and every string is a valid id.
                pass
    assert not failures, "\n\n".join(failures)
