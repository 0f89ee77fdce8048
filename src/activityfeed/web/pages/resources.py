"""Pages for projects, datasets and models (placeholder; filled in below)."""

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
