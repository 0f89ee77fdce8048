"""The OpenAPI document, with the error answers every route can give.

Every error is ``{"error": {"code", "message", "field"?}}`` (``web/errors.py``), never
FastAPI's ``{"detail": [...]}``, which FastAPI would otherwise document for 422. The
statuses that follow from how the API works are added to every ``/api`` operation here:
401 (no session, or a bad key; a wrong password at sign-in), 403 on a state-changing
method (a failed CSRF or origin check, a role or a key scope that does not allow it),
404 where a path id or a workspace slug (``workspace``, ``owner``) is taken, 413 on a
state-changing method (the body limit), and 422 wherever there is input to be invalid.
What only a route's own rules produce (409, 429, 413 for a list) is declared on the
route with ``responses=errors(...)``. Success bodies are declared on each route with
``responses=success(Model)`` (strict models from ``web/schemas.py``) and
``response_model=None``, so the handlers' dicts go out untouched; a stream or a file with
``not_json``. ``tests/functional/test_fuzz_openapi.py`` fails on any answer the document
does not list, and ``tests/unit/test_openapi_bodies.py`` on a success answer whose schema
would accept any body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from activityfeed.web.schemas import EventBatch, EventCreate

SAFE = frozenset({"get", "head", "options"})
#: Query parameters that name a workspace by slug: an unknown or foreign one is a 404.
WORKSPACE_PARAMS = frozenset({"workspace", "owner"})
ERROR_REF = "#/components/schemas/ErrorBody"


class ErrorDetail(BaseModel):
    code: str = Field(description="snake_case and stable: what a program branches on")
    message: str = Field(description="a sentence for a person")
    field: str | None = Field(
        default=None, description="the parameter or body field at fault, when there is one"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


DESCRIPTIONS = {
    401: "Not signed in, a bad or revoked key, or (sign-in) a wrong password.",
    403: "Refused: a failed CSRF or origin check, or a role or key scope that does not allow it.",
    404: "No such thing, or one the caller may not see (`not_found`).",
    409: "The change conflicts with the current state.",
    413: "The body, a list or a file is over its limit.",
    422: "An invalid parameter or body field (`invalid_request`, with `field`).",
    429: "Too many attempts or open streams; see `Retry-After`.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own error answers."""
    return {s: {"model": ErrorBody, "description": DESCRIPTIONS[s]} for s in statuses}


def success(
    model: Any, status: int = 200, description: str = "Done."
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's success body, described by ``model`` (a strict wire
    model of ``web/schemas.py``, or a union of them).

    The route also takes ``response_model=None``: its handler returns plain dicts (or a
    ``JSONResponse``) that go out as they are, with no validation or re-serialisation on
    the way, and the model only documents them. The fuzz test holds the two together.
    """
    return {status: {"model": model, "description": description}}


def not_json(
    media_type: str, description: str, schema: dict[str, Any]
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose 200 is not JSON (a stream, a file)."""
    return {200: {"description": description, "content": {media_type: {"schema": schema}}}}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def _statuses(method: str, operation: dict[str, Any]) -> set[int]:
    params = operation.get("parameters", [])
    writes = method not in SAFE
    out = {401}
    if writes:
        out |= {403, 413}
    if any(p["in"] == "path" or p["name"] in WORKSPACE_PARAMS for p in params):
        out.add(404)
    if params or writes or "requestBody" in operation:
        out.add(422)
    return out


def add_error_responses(document: dict[str, Any]) -> dict[str, Any]:
    """Document the error answers of every ``/api`` operation (in place; also returned)."""
    # The error body, and the bodies that routes reading their own input refer to.
    _, definitions = models_json_schema(
        [(ErrorBody, "serialization"), (EventCreate, "validation"), (EventBatch, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    for path, operations in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(method, operation)):
                existing = responses.get(str(status), {})
                schema = existing.get("content", {}).get("application/json", {}).get("schema")
                if schema != {"$ref": ERROR_REF}:
                    responses[str(status)] = _error_response(status)
    # FastAPI's validation error models describe a body this app never sends.
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/api/openapi.json``) the document with its errors."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_error_responses(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    openapi_version=app.openapi_version,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]  # FastAPI's documented override hook
