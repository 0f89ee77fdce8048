"""Run a snippet in a fresh interpreter: for what a process can do only once (freeze its
objects, cap malloc's arenas) or only at start-up, which a test must not do to itself."""

from __future__ import annotations

import subprocess
import sys


def run_python(
    code: str, *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``code`` run by this interpreter with ``args`` and exactly ``env``, its output
    captured as text. Raises ``CalledProcessError`` (with the child's stderr) when it
    fails."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
