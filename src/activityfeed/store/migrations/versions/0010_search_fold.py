"""search: SQLite's trigram index holds case-folded text, folded as PostgreSQL folds

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 12:00:00

FTS5's trigram tokenizer (``case_sensitive 0``) folds case by an old Unicode table: from
three characters on, SQLite missed what PostgreSQL's ILIKE finds (Georgian capitals,
``ᲐᲑᲒ`` for ``აბგ``) and found what it keeps apart (long s for s, the micro sign for
Greek mu). The index now holds the text folded by ``domain.query.fold_case``
(lower-casing letter by letter, as PostgreSQL's ``lower()``) and its trigrams are
case-sensitive; a search is folded the same way. The table is rebuilt from ``events``,
once (docs/operations.md, "Upgrading").
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BODY = "resource_name || ' ' || resource_type || ' ' || description"


def _fold(value: object) -> object:
    # domain.query.fold_case as written for this migration (a migration does what it
    # did when it was written): lower-case letter by letter; İ is i.
    if not isinstance(value, str):
        return value
    lowered = value.lower()
    if "\u0130" not in value and "\u03c2" not in lowered:
        return lowered
    return "".join("i" if c == "\u0130" else c.lower() for c in value)


def _rebuild(*, case_sensitive: int, body: str) -> None:
    op.execute("DROP TABLE IF EXISTS events_fts")
    op.execute(
        "CREATE VIRTUAL TABLE events_fts USING fts5("
        f"body, content='', tokenize='trigram case_sensitive {case_sensitive}')"
    )
    op.execute(f"INSERT INTO events_fts(rowid, body) SELECT seq, {body} FROM events")  # noqa: S608


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    bind.connection.driver_connection.create_function(  # type: ignore[union-attr]
        "af_fold_0010", 1, _fold, deterministic=True
    )
    _rebuild(case_sensitive=1, body=f"af_fold_0010({BODY})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(case_sensitive=0, body=BODY)
