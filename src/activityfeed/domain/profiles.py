"""A user's profile and settings: the fields, their validation, and the diff a change makes.

A profile is handled as a flat mapping from *field key* to value. The keys are the public
names of the fields (``name``, ``timezone``, ``notifications.emailDigest`` ...) because
they are stored in the ``metadata.changes`` of ``settings`` events, which clients read:
changing a key would change recorded history. Undo works per field key.
"""

from __future__ import annotations

import unicodedata
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from activityfeed.errors import InvalidRequest

NAME_MAX = 200
BIO_MAX = 1000
COMPANY_MAX = 200
TIMEZONE_MAX = 64

NAME = "name"
BIO = "bio"
COMPANY = "company"
TIMEZONE = "timezone"
TRAINING_FAILURES = "notifications.trainingFailures"
WEEKLY_DIGEST = "notifications.weeklyDigest"
EMAIL_DIGEST = "notifications.emailDigest"

#: Every field key, in the order pages and event descriptions list them.
FIELDS = (NAME, BIO, COMPANY, TIMEZONE, TRAINING_FAILURES, WEEKLY_DIGEST, EMAIL_DIGEST)

LABELS = {
    NAME: "name",
    BIO: "bio",
    COMPANY: "company",
    TIMEZONE: "time zone",
    TRAINING_FAILURES: "training failure notifications",
    WEEKLY_DIGEST: "weekly digest",
    EMAIL_DIGEST: "e-mail digest",
}


class EmailDigest(StrEnum):
    OFF = "off"
    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True, slots=True)
class Profile:
    """What ``GET /api/settings/profile`` shows; ``values`` is keyed by field key."""

    user_id: str
    email: str
    values: dict[str, Any]
    updated_at: datetime | None

    def get(self, key: str) -> Any:
        return self.values[key]


#: A new profile's values for everything but the name (which the account already has).
DEFAULTS: dict[str, Any] = {
    BIO: "",
    COMPANY: "",
    TIMEZONE: "UTC",
    TRAINING_FAILURES: True,
    WEEKLY_DIGEST: False,
    EMAIL_DIGEST: EmailDigest.OFF.value,
}


@cache
def _zones() -> frozenset[str]:
    # Read once: scanning the time zone database takes milliseconds.
    return frozenset(zoneinfo.available_timezones())


def timezone_names() -> list[str]:
    """Every IANA time zone name, sorted (for pickers)."""
    return sorted(_zones())


def is_known_timezone(name: str) -> bool:
    """True for an IANA time zone name (``Europe/Paris``, ``UTC``); case matters."""
    return name in _zones()


def _has_control(text: str) -> bool:
    return "\x00" in text or any(unicodedata.category(ch) == "Cc" for ch in text)


def _storable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def clean_value(key: str, value: Any) -> Any:
    """The value to store for ``key``, or ``InvalidRequest`` naming the field.

    Text is trimmed. ``name`` must not be empty; ``bio`` may hold line breaks but no
    other control characters; ``timezone`` must be an IANA name.
    """
    if key == NAME:
        name = str(value).strip()
        if not name or len(name) > NAME_MAX or _has_control(name) or not _storable(name):
            raise InvalidRequest(
                f"A name of 1 to {NAME_MAX} characters, without control characters, is needed.",
                field="name",
            )
        return name
    if key == BIO:
        bio = str(value).strip()
        if (
            len(bio) > BIO_MAX
            or not _storable(bio)
            or _has_control(bio.replace("\n", "").replace("\r", "").replace("\t", ""))
        ):
            raise InvalidRequest(
                f"'bio' holds at most {BIO_MAX} characters, without control characters.",
                field="bio",
            )
        return bio
    if key == COMPANY:
        company = str(value).strip()
        if len(company) > COMPANY_MAX or _has_control(company) or not _storable(company):
            raise InvalidRequest(
                f"'company' holds at most {COMPANY_MAX} characters, without control characters.",
                field="company",
            )
        return company
    if key == TIMEZONE:
        zone = str(value).strip()
        if len(zone) > TIMEZONE_MAX or not is_known_timezone(zone):
            raise InvalidRequest(
                f"'timezone' must be an IANA time zone name such as 'Europe/Paris' or 'UTC', "
                f"not {zone[:TIMEZONE_MAX]!r}.",
                field="timezone",
            )
        return zone
    if key in (TRAINING_FAILURES, WEEKLY_DIGEST):
        if not isinstance(value, bool):
            raise InvalidRequest(f"'{key}' must be true or false.", field=key)
        return value
    if key == EMAIL_DIGEST:
        try:
            return EmailDigest(value).value
        except ValueError:
            raise InvalidRequest(
                f"'{key}' must be one of: {', '.join(d.value for d in EmailDigest)}.", field=key
            ) from None
    raise InvalidRequest(f"'{key}' is not a profile field.", field=key)


def diff(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The changes ``patch`` makes to ``current``: ``{key: {"before", "after"}}``.

    Every value in ``patch`` is validated first (``InvalidRequest`` names the first bad
    field, and nothing is changed); fields whose value stays the same are left out, so an
    empty result means the patch changes nothing.
    """
    cleaned = {key: clean_value(key, value) for key, value in patch.items()}
    return {
        key: {"before": current[key], "after": value}
        for key, value in cleaned.items()
        if current[key] != value
    }


def reverse(changes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The changes that put back what ``changes`` replaced."""
    return {key: {"before": c["after"], "after": c["before"]} for key, c in changes.items()}


def describe_change(changes: Mapping[str, Any], *, is_undo: bool = False) -> str:
    """The event's description, e.g. "Updated profile: time zone, bio"."""
    labels = ", ".join(LABELS.get(k, k) for k in FIELDS if k in changes)
    return f"Undid profile change: {labels}" if is_undo else f"Updated profile: {labels}"


def undo_deadline(created_at: datetime, window: timedelta) -> datetime:
    """The moment a settings change stops being undoable."""
    return created_at + window


def undoable_changes(metadata: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The ``changes`` of a settings event's metadata when undo can replay them, else None.

    Only field keys this code knows, each with a ``before`` and an ``after``, qualify.
    """
    changes = metadata.get("changes")
    if not isinstance(changes, dict) or not changes:
        return None
    for key, change in changes.items():
        if key not in FIELDS or not isinstance(change, dict):
            return None
        if "before" not in change or "after" not in change:
            return None
    return {k: dict(v) for k, v in changes.items()}
