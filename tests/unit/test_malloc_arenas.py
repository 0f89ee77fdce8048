"""``serve`` caps glibc's malloc arenas in its own process too (``--workers 1`` serves
there), through ``mallopt``, and leaves an operator's ``MALLOC_ARENA_MAX`` alone.

glibc has no getter for the cap, so a fresh interpreter starts threads that each
allocate while all are alive, and counts the arenas ``malloc_stats`` reports: a new
thread gets an arena of its own while the cap allows one more.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

import pytest

from activityfeed.cli.serve import limit_malloc_arenas

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's"
)

THREADS = 6

# Started with ``sys.executable -c``; argv[1] says whether to call limit_malloc_arenas.
_COUNT_ARENAS = f"""
import ctypes, os, sys, threading

from activityfeed.cli.serve import limit_malloc_arenas

if sys.argv[1] == "limit":
    limit_malloc_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
# Every thread allocates, then stays alive until the arenas are counted: an exited
# thread's arena would be handed to the next one.
allocated = threading.Barrier({THREADS} + 1)
counted = threading.Barrier({THREADS} + 1)

def allocate():
    libc.malloc(4096)
    allocated.wait()
    counted.wait()

threads = [threading.Thread(target=allocate) for _ in range({THREADS})]
for t in threads:
    t.start()
allocated.wait()
libc.malloc_stats()
counted.wait()
for t in threads:
    t.join()
print(os.environ.get("MALLOC_ARENA_MAX"))
"""


def _run(mode: str, arena_max: str | None) -> tuple[int, str]:
    """The number of arenas with THREADS allocating threads, and MALLOC_ARENA_MAX as the
    process saw it after the (optional) call."""
    # GLIBC_TUNABLES could carry glibc.malloc.arena_max, the same cap by another name.
    env = {k: v for k, v in os.environ.items() if k not in {"MALLOC_ARENA_MAX", "GLIBC_TUNABLES"}}
    if arena_max is not None:
        env["MALLOC_ARENA_MAX"] = arena_max
    done = subprocess.run(
        [sys.executable, "-c", _COUNT_ARENAS, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    arenas = len(re.findall(r"^Arena \d+:$", done.stderr, flags=re.MULTILINE))
    return arenas, done.stdout.strip()


def test_limit_caps_the_arenas_of_this_process():
    """Without the call every thread has its own arena; with it, two serve them all
    (setting the variable alone would not: glibc read it when the process started)."""
    assert _run("none", None) == (THREADS + 1, "None")
    assert _run("limit", None) == (2, "2")


def test_limit_keeps_the_operators_value():
    """An operator's MALLOC_ARENA_MAX stays, for the workers and for mallopt alike."""
    assert _run("limit", "4") == (4, "4")


def test_limit_ignores_a_value_that_is_no_number(monkeypatch):
    """glibc ignores such a value at start-up; so does the cap, and ``serve`` starts."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "lots")
    limit_malloc_arenas()
    assert os.environ["MALLOC_ARENA_MAX"] == "lots"
