"""The worker process of ``serve --workers N``: what each spawned worker unpickles.

A worker starts by unpickling its process object, which imports the module that defines
it; so this module imports nothing of the command line (Typer, Rich, Alembic), which
``cli/serve.py`` does and every worker would otherwise carry (12 MB each) without using.
"""

from __future__ import annotations

import pickle
from multiprocessing.connection import wait

from uvicorn.supervisors.multiprocess import Process


class Worker(Process):
    """Uvicorn's worker process, whose health check also ends when the process does.

    The supervisor asks a worker "are you alive?" down a pipe and waits up to
    ``timeout_worker_healthcheck`` for the answer. It holds both ends of that pipe, so a
    worker dying mid-check closes nothing the wait can see: the supervisor sat out the
    whole minute, neither reaping nor replacing the dead worker (whose queued connections
    waited with it) nor answering signals. A worker still starting is the likely one to
    die mid-check, since it answers only once its modules are imported."""

    def _healthcheck(self, timeout: float) -> bool | None:
        try:
            self.parent_conn.send(b"ping")
            if self.parent_conn in wait([self.parent_conn, self.process.sentinel], timeout):
                started: bool = self.parent_conn.recv()
                return started
            return None  # it died (or did not answer in time)
        except (OSError, EOFError, pickle.UnpicklingError):
            return None
