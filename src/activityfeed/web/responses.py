"""JSON bodies of the hot routes, encoded by pydantic-core."""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse, Response


def json_response(content: Any, status_code: int = 200) -> Response:
    """``JSONResponse``'s bytes (compact, UTF-8), encoded by pydantic-core's serializer.

    The standard library's encoder was the larger part of building a feed page or a
    batch answer (each dozens to a thousand events). Anything that serializer refuses
    goes the usual way.
    """
    try:
        body = pydantic_core.to_json(content)
    except (TypeError, ValueError, pydantic_core.PydanticSerializationError):
        return JSONResponse(content, status_code=status_code)
    return Response(body, status_code=status_code, media_type="application/json")
