"""Pages. The full Activity page is issue 3; here: sign-in and a plain feed."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/activity", status_code=303)
