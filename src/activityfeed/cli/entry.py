"""The ``activityfeed`` console script's entry point, free of imports.

``serve`` starts its workers with multiprocessing's *spawn*, which runs the parent's main
script again in every worker (as ``__mp_main__``, without its ``__main__`` block); the
script pip writes imports its entry point's module at the top. With the entry point in
``cli/main.py`` every worker imported the whole command line (Typer, Rich,
Pygments, Alembic, Mako, the benchmark), 12 MB of each worker's memory that serving
never uses; from here the command line is imported only when the command runs.
"""

from __future__ import annotations


def main() -> None:
    from activityfeed.cli.main import main as run

    run()
