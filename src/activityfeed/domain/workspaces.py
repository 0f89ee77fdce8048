"""Workspace roles and what each may do."""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def can_manage_members(self) -> bool:
        return self in (Role.OWNER, Role.ADMIN)

    @property
    def can_write(self) -> bool:
        return self is not Role.VIEWER


_SLUG_JUNK = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """A URL-safe slug: lowercase ASCII letters, digits and single dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = _SLUG_JUNK.sub("-", ascii_text.lower()).strip("-")
    return slug[:48].strip("-") or "workspace"
