"""``serve`` tunes glibc's malloc (``serve.MALLOC_SETTINGS``) in its own process too
(``--workers 1`` serves there), through ``mallopt``, and leaves an operator's values alone.

glibc has no getters for these settings, so each test runs a fresh interpreter that
shows one by its effect: for the arena cap, threads that each allocate while all are
alive, counted in ``malloc_stats`` (a new thread gets an arena of its own while the cap
allows one more); for the fixed ``mmap`` threshold, whether a large block allocated again
after one was freed still comes from ``mmap``.
"""

from __future__ import annotations

import os
import platform
import re

import pytest

from activityfeed.cli.serve import tune_malloc
from tests.fresh_python import run_python

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's"
)

THREADS = 6

# Started with ``sys.executable -c``; argv[1] says whether to call tune_malloc.
_COUNT_ARENAS = f"""
import ctypes, os, sys, threading

from activityfeed.cli.serve import tune_malloc

if sys.argv[1] == "limit":
    tune_malloc()
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


def _clean_env() -> dict[str, str]:
    # GLIBC_TUNABLES could carry any of the settings by another name.
    return {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }


def _run(mode: str, arena_max: str | None) -> tuple[int, str]:
    """The number of arenas with THREADS allocating threads, and MALLOC_ARENA_MAX as the
    process saw it after the (optional) call."""
    env = _clean_env()
    if arena_max is not None:
        env["MALLOC_ARENA_MAX"] = arena_max
    done = run_python(_COUNT_ARENAS, mode, env=env)
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
    tune_malloc()
    assert os.environ["MALLOC_ARENA_MAX"] == "lots"


# argv[1]: whether to call tune_malloc. Prints how many blocks come from mmap while the
# second 1 MiB block is held, beyond those the interpreter already has.
_REALLOCATE = """
import ctypes, sys

from activityfeed.cli.serve import tune_malloc

if sys.argv[1] == "tune":
    tune_malloc()


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Mallinfo2
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _mmapped_blocks(mode: str) -> int:
    return int(run_python(_REALLOCATE, mode, env=_clean_env()).stdout)


def test_large_blocks_keep_coming_from_mmap():
    """By default, freeing a 1 MiB block raises glibc's mmap threshold past it, and the
    next such block comes from the heap (where it can pin freed memory below it for
    good); with the fixed threshold it comes from mmap again, and goes back to the
    system when freed."""
    assert _mmapped_blocks("none") == 0
    assert _mmapped_blocks("tune") == 1
