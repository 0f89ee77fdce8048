"""The activity list query: its parameters parsed from untrusted input, and cursors."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache

from activityfeed.domain.events import Action, ResourceType
from activityfeed.errors import InvalidRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SEARCH = 200
DEFAULT_RANGE = timedelta(days=30)
#: Deeper than this, OFFSET pages stop being cheap; the cursor has no such limit.
MAX_PAGE = 1_000_000


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the newest-first order: the last row already returned. Clients get
    it sealed (``domain.sealing``): its ``seq`` counts every workspace's events."""

    created_at: datetime
    seq: int


_MICROSECOND = timedelta(microseconds=1)


def fold_case(text: str) -> str:
    """``text`` lower-cased letter by letter, as PostgreSQL's ``lower()`` (and so ILIKE)
    does: the search's case-insensitivity on both databases.

    Python's ``str.lower`` is the same but for two context rules PostgreSQL does not
    have: a capital sigma ending a word becomes final sigma (PostgreSQL: the plain small
    sigma), and ``İ`` becomes ``i`` plus a combining dot (PostgreSQL: ``i``). Text without
    either takes the fast path.
    """
    lowered = text.lower()
    if "\u0130" not in text and "\u03c2" not in lowered:
        return lowered
    return "".join("i" if c == "\u0130" else c.lower() for c in text)


def case_variants(char: str) -> tuple[str, ...]:
    """Every character that ``fold_case`` folds as it folds ``char`` (``char`` included,
    sorted): what a case-insensitive match of ``char`` must accept, e.g. ``i``, ``I`` and
    ``İ``; ``k``, ``K`` and the Kelvin sign."""
    return _case_groups().get(fold_case(char), (char,))


@cache
def _case_groups() -> dict[str, tuple[str, ...]]:
    # Built on first use (about 200,000 code points; cased letters all lie below
    # U+1E944, in the first two planes).
    groups: dict[str, set[str]] = {}
    for code in range(0x20000):
        if 0xD800 <= code < 0xE000:
            continue
        char = chr(code)
        folded = fold_case(char)
        if folded != char:
            groups.setdefault(folded, {folded}).add(char)
    return {folded: tuple(sorted(chars)) for folded, chars in groups.items()}


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    """A parsed ``GET /api/activity`` request. ``end`` is exclusive."""

    is_archived: bool = False
    search: str | None = None
    page: int = 1
    limit: int = DEFAULT_LIMIT
    start: datetime | None = None
    end: datetime | None = None
    resource_types: tuple[ResourceType, ...] = ()
    actions: tuple[Action, ...] = ()
    owner: str | None = None
    cursor: Cursor | None = None
    is_export: bool = False

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def filters(self) -> dict[str, object]:
        """The filters as they would be written back in a URL (for exports): parsed again,
        they select the same events."""
        out: dict[str, object] = {"archived": self.is_archived}
        if self.search:
            out["search"] = self.search
        if self.start:
            out["start"] = _written(self.start)
        if self.end:
            # ``end`` is exclusive, and a written date-time end is inclusive: echo the last
            # instant included (a date-only end's too, as the export's schema says
            # date-time), which, written back, gives the same exclusive bound.
            out["end"] = _written(self.end - _MICROSECOND)
        if self.resource_types:
            out["resourceType"] = [t.value for t in self.resource_types]
        if self.actions:
            out["action"] = [a.value for a in self.actions]
        return out


def _written(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


#: How a true flag may be spelled in a query string (case-insensitive).
TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
_FALSE = {"false", "0", "no", "off", ""}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE_VALUES:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidRequest(f"'{name}' must be true or false, not {value[:40]!r}.", field=name)


_NUMBER = re.compile(r"^[+-]?(\d{1,18})(?:\.0*)?$")


def parse_int(value: str, name: str, *, low: int, high: int) -> int:
    """A whole number in ``low..high``. The platform's own OpenAPI types these as
    "number", so "20.0" (and "20.00") is accepted too; "1.5", "1e3" and "abc" are not."""
    text = value.strip()
    match = _NUMBER.match(text)
    if match is None:
        raise InvalidRequest(
            f"'{name}' must be a whole number from {low} to {high}, not {value[:40]!r}.",
            field=name,
        )
    number = int(match.group(1)) * (-1 if text.startswith("-") else 1)
    if not low <= number <= high:
        raise InvalidRequest(
            f"'{name}' must be from {low} to {high}; {number} is out of range.", field=name
        )
    return number


def parse_instant(value: str, name: str, *, is_end: bool) -> datetime:
    """An ISO date (``YYYY-MM-DD``) or datetime. A date-only end includes its whole day
    (so is exclusive at the next midnight); a datetime without an offset is taken as UTC.
    A date alone in another form ("20260131", "2026-W05-6") raises ``InvalidRequest``."""
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1) if is_end else moment
        if _is_date(text):
            # Python also reads the basic and week forms of a date alone, as a midnight
            # instant, where a date-only end means its whole day ("2026-W05" even names a
            # week): a date alone is written one way, and the others are refused.
            raise ValueError(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        # An explicit end instant is inclusive; the query's end bound is exclusive.
        return moment + timedelta(microseconds=1) if is_end else moment
    except (ValueError, OverflowError):
        raise InvalidRequest(
            f"'{name}' must be an ISO date (2026-01-31) or date-time "
            f"(2026-01-31T12:00:00Z), not {value[:40]!r}.",
            field=name,
        ) from None


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_activity_query(
    params: Mapping[str, Sequence[str]],
    *,
    now: datetime,
    open_cursor: Callable[[str], Cursor] | None = None,
) -> ActivityQuery:
    """Parse query parameters (each name with all its values) into an ``ActivityQuery``.

    Unknown parameters are ignored; every known one is validated and a bad one raises
    ``InvalidRequest`` naming it. A ``cursor`` is opened with ``open_cursor`` (the
    ``open_cursor`` of the ``Sealer`` that made it; a caller that accepts cursors must
    pass it), which raises ``InvalidRequest`` for one it did not make.
    """

    def one(*names: str) -> tuple[str, str] | None:
        # A blank value counts as absent: an HTML form sends its empty fields.
        for name in names:
            values = params.get(name)
            if values and values[-1].strip():
                return name, values[-1]
        return None

    def many(name: str) -> list[str]:
        out: list[str] = []
        for raw in params.get(name, ()):
            out.extend(part.strip() for part in raw.split(",") if part.strip())
        return out

    is_archived = False
    if got := one("archived"):
        is_archived = parse_bool(got[1], got[0])
    is_export = False
    if got := one("export"):
        is_export = parse_bool(got[1], got[0])

    search: str | None = None
    if got := one("search"):
        # The limit is on what is searched for: surrounding blanks are not part of it.
        search = got[1].strip()
        if len(search) > MAX_SEARCH:
            raise InvalidRequest(
                f"'search' may be at most {MAX_SEARCH} characters; this one has {len(search)}.",
                field="search",
            )

    # An export is every match: its paging parameters are ignored, not checked.
    page, limit = 1, DEFAULT_LIMIT
    if not is_export:
        if got := one("page"):
            page = parse_int(got[1], got[0], low=1, high=MAX_PAGE)
        if got := one("limit"):
            limit = parse_int(got[1], got[0], low=1, high=MAX_LIMIT)

    start_arg = one("start", "from")
    end_arg = one("end", "to")
    start = parse_instant(start_arg[1], start_arg[0], is_end=False) if start_arg else None
    end = parse_instant(end_arg[1], end_arg[0], is_end=True) if end_arg else None
    # With neither bound the page shows the last 30 days; one explicit bound means the
    # person chose the range, so the other side stays open.
    if start is None and end is None:
        start = now - DEFAULT_RANGE
    if start is not None and end is not None and start >= end:
        name = start_arg[0] if start_arg else "start"
        raise InvalidRequest(f"'{name}' must be before 'end'.", field=name)

    types: list[ResourceType] = []
    for raw in many("resourceType"):
        try:
            types.append(ResourceType(raw))
        except ValueError:
            allowed = ", ".join(t.value for t in ResourceType)
            raise InvalidRequest(
                f"'resourceType' {raw[:40]!r} is not one of: {allowed}.", field="resourceType"
            ) from None
    actions: list[Action] = []
    for raw in many("action"):
        try:
            actions.append(Action(raw))
        except ValueError:
            allowed = ", ".join(a.value for a in Action)
            raise InvalidRequest(
                f"'action' {raw[:40]!r} is not one of: {allowed}.", field="action"
            ) from None

    owner = got[1].strip() or None if (got := one("owner")) else None
    cursor = None
    if not is_export and (got := one("cursor")):
        if open_cursor is None:
            raise TypeError("a cursor needs the sealer that made it")
        cursor = open_cursor(got[1].strip())

    return ActivityQuery(
        is_archived=is_archived,
        search=search,
        page=page,
        limit=limit,
        start=start,
        end=end,
        resource_types=tuple(dict.fromkeys(types)),
        actions=tuple(dict.fromkeys(actions)),
        owner=owner,
        cursor=cursor,
        is_export=is_export,
    )
