"""A worker's app (``app_from_env``, what ``serve`` runs) takes what exists after start-up
out of the garbage collector's sight; an app made by ``create_app`` alone (the tests')
does not, and stays collectable.

Each case runs in a fresh interpreter: freezing is for the rest of a process's life.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.fresh_python import run_python

_FROZEN_AFTER = """
import gc, os, sys

from activityfeed.config import Settings
from activityfeed.web.app import app_from_env, create_app

if sys.argv[1] == "worker":
    app = app_from_env()
else:
    app = create_app(Settings.from_env())
print(gc.get_freeze_count())
"""


def _frozen_after(kind: str, tmp_path: Path) -> int:
    env = {**os.environ, "ACTIVITYFEED_DATABASE_URL": f"sqlite:///{tmp_path / 'gc.db'}"}
    return int(run_python(_FROZEN_AFTER, kind, env=env, timeout=120).stdout.split()[-1])


def test_a_worker_freezes_what_start_up_made(tmp_path):
    # Tens of thousands of objects: the modules, routes and schemas, not a handful.
    assert _frozen_after("worker", tmp_path) > 20_000


def test_an_app_made_by_create_app_is_not_frozen(tmp_path):
    assert _frozen_after("plain", tmp_path) == 0
