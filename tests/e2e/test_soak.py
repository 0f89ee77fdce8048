"""The soak (``scripts/soak.py``) passes: no errors, no stream event lost or doubled,
flat server memory, under 50 clients and 200 open streams against ``serve --workers 2``.

CI runs two minutes on SQLite and a shorter, lighter pass on PostgreSQL;
``ACTIVITYFEED_SOAK_SECONDS=600`` (or ``python scripts/soak.py --duration 600``) runs
longer. The figures go to the test's output (``-s``) and to ``soak-<backend>.md``/
``.json`` in ``ACTIVITYFEED_SOAK_REPORT_DIR`` when it is set.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
SECONDS = os.environ.get("ACTIVITYFEED_SOAK_SECONDS")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses look their module up while being made.
    sys.modules["soak"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_soak(backend: str, database_url: str, tmp_path: Path) -> None:
    """Every check of the soak passes (``problems`` lists the ones that did not)."""
    soak = _load()
    if backend == "sqlite":
        argv = ["--duration", SECONDS or "120"]
    else:
        # The same code paths; PostgreSQL's pass is shorter and lighter to keep CI modest.
        argv = ["--duration", SECONDS or "30", "--clients", "20", "--streams", "100"]
        argv += ["--database-url", database_url]
    report_dir = Path(os.environ.get("ACTIVITYFEED_SOAK_REPORT_DIR", tmp_path))
    argv += ["--json", str(report_dir / f"soak-{backend}.json")]
    argv += ["--markdown", str(report_dir / f"soak-{backend}.md")]
    result = soak.run(soak.parse_args(argv))
    print(soak.markdown(result))
    assert result["events_ingested"] > 0
    assert result["deliveries"] == result["events_ingested"] * result["streams"]
    assert not result["problems"], result["problems"]
