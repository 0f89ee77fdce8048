"""Imports follow the layers of STYLE.md: domain ← store ← services ← web, cli.

Every module under ``src/activityfeed`` is parsed (not imported) and each import,
wherever it sits (top level, inside a function, under ``TYPE_CHECKING``, relative or
absolute), is checked against the layer it points into. ``config`` and ``errors`` (and
the package's own ``__init__``) are shared: every layer may import them, and they
import no layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import activityfeed

ROOT = Path(activityfeed.__file__).parent
PACKAGE = "activityfeed"
LAYERS = ("domain", "store", "services", "web", "cli")
SHARED = "shared"
#: What each layer may import, besides itself.
ALLOWED: dict[str, frozenset[str]] = {
    SHARED: frozenset(),
    "domain": frozenset({SHARED}),
    "store": frozenset({SHARED, "domain"}),
    "services": frozenset({SHARED, "domain", "store"}),
    "web": frozenset({SHARED, "domain", "store", "services"}),
    "cli": frozenset({SHARED, "domain", "store", "services"}),
}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name inside the package, or None for outside ones."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return SHARED


def module_name(path: Path) -> tuple[str, bool]:
    """The dotted name of a source file, and whether it is a package's ``__init__``."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def imported_modules(module: str, is_package: bool, source: str) -> list[tuple[int, str]]:
    """Every module an import statement in ``source`` names, with its line.

    ``from X import name`` yields ``X.name`` too, because ``name`` may be a
    submodule (``from activityfeed import web``); for a plain attribute the extra
    name lies in X's own layer, so it changes nothing.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The wrong arrows in one module's source, as readable lines."""
    own = layer_of(module)
    assert own is not None, module
    # One line per statement and wrong layer (``from X import y`` yields X and X.y).
    out: dict[tuple[int, str], str] = {}
    for line, target in imported_modules(module, is_package, source):
        theirs = layer_of(target)
        if theirs is None or theirs == own or theirs in ALLOWED[own]:
            continue
        out.setdefault(
            (line, theirs), f"{module}:{line} imports {target} ({own} may not import {theirs})"
        )
    return sorted(out.values())


def source_modules() -> list[tuple[str, bool, Path]]:
    return [(*module_name(path), path) for path in sorted(ROOT.rglob("*.py"))]


def test_every_import_follows_the_layers():
    """No module imports against the direction domain ← store ← services ← web, cli."""
    wrong: list[str] = []
    for module, is_package, path in source_modules():
        wrong.extend(violations(module, path.read_text(), is_package=is_package))
    assert wrong == []


def test_the_walk_sees_every_layer():
    """A walk that found nothing would pass the test above for the wrong reason."""
    seen = {layer_of(module) for module, _, _ in source_modules()}
    assert seen == {*LAYERS, SHARED}
    assert len(source_modules()) > 30


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("activityfeed.domain.events", "from activityfeed.store import events\n"),
        ("activityfeed.domain.events", "import activityfeed.services.activity\n"),
        ("activityfeed.store.events", "from activityfeed.services.activity import mark_seen\n"),
        ("activityfeed.store.events", "from ..services import activity\n"),
        ("activityfeed.store.events", "from .. import web\n"),
        ("activityfeed.services.activity", "from activityfeed import web\n"),
        ("activityfeed.services.activity", "def f():\n    from activityfeed.cli import db\n"),
        (
            "activityfeed.services.activity",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from activityfeed.web.schemas import EventPublic\n",
        ),
        ("activityfeed.web.app", "from activityfeed.cli.main import app\n"),
        ("activityfeed.cli.serve", "from activityfeed.web import create_app\n"),
        ("activityfeed.cli.serve", "import activityfeed.web.app as web_app\n"),
        ("activityfeed.errors", "from activityfeed.domain.events import Event\n"),
        ("activityfeed.config", "from activityfeed.store.db import Database\n"),
    ],
)
def test_the_checker_flags_a_wrong_arrow(module, source):
    """Each of these synthetic modules imports against the direction and is caught."""
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("activityfeed.domain.events", "from activityfeed.errors import InvalidRequest\n"),
        ("activityfeed.domain.events", "from activityfeed.config import Settings\n"),
        ("activityfeed.domain.query", "from .events import Action\n"),
        ("activityfeed.store.events", "from ..domain.events import Event\n"),
        ("activityfeed.store.events", "from activityfeed.domain import state\n"),
        ("activityfeed.services.activity", "from activityfeed.store import events\n"),
        ("activityfeed.web.app", "from activityfeed import __version__\n"),
        ("activityfeed.web.api.activity", "from activityfeed.services import activity\n"),
        ("activityfeed.web.api.activity", "from .. import schemas\n"),
        ("activityfeed.cli.db", "from activityfeed.store import migrate\nimport typer\n"),
    ],
)
def test_the_checker_allows_the_right_arrows(module, source):
    """Imports along the direction (and of shared modules and outside packages) pass."""
    assert violations(module, source) == []


def test_relative_imports_resolve_against_the_package():
    """``from . import x`` in a package's ``__init__`` means that package, not its parent."""
    found = imported_modules("activityfeed.store", True, "from . import events\n")
    assert (1, "activityfeed.store.events") in found
    found = imported_modules("activityfeed.store.events", False, "from . import schema\n")
    assert (1, "activityfeed.store.schema") in found
