"""Shared test setup: offline data, a non-interactive plotting backend, and the notebooks' time budget."""

from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Figures in unit tests are drawn off screen. (Notebook kernels started by nbval keep their inline backend.)
matplotlib.use("Agg")

# Tests and nbval's notebook kernels never download: CIFAR-10 comes from the folder CI provides beside the
# clone. The loader's download path is tested on a small archive built in the test itself.
if "VITUTILS_DATA_DIR" not in os.environ and (SHARED_DATA / "cifar-10-batches-py").is_dir():
    os.environ["VITUTILS_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Each chapter must run top to bottom within its budget on a 2-core CPU (seconds, nbval's execution time).
NOTEBOOK_BUDGET_S = {"01": 30, "02": 30, "03": 30, "04": 60, "05": 60, "06": 60}
_notebook_seconds: dict[str, float] = {}
_notebook_started: dict[str, float] = {}


def pytest_runtest_logstart(nodeid, location):
    path = nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_started.setdefault(path, time.perf_counter())


def pytest_runtest_logfinish(nodeid, location):
    path = nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] = time.perf_counter() - _notebook_started[path]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _notebook_seconds:
        return
    terminalreporter.section("notebook execution time (budget)")
    for path, seconds in sorted(_notebook_seconds.items()):
        budget = NOTEBOOK_BUDGET_S.get(Path(path).name[:2], 60)
        terminalreporter.write_line(f"{path}: {seconds:.1f} s (budget {budget} s)")


def pytest_collection_modifyitems(session, config, items):
    # The budget check reads the times nbval measured, so it runs after every notebook.
    last = [item for item in items if item.nodeid.endswith("test_notebook_time_budget")]
    items[:] = [item for item in items if item not in last] + last


def notebook_times() -> dict[str, tuple[float, int]]:
    """Seconds each notebook took under nbval in this session, with its budget."""
    return {
        path: (seconds, NOTEBOOK_BUDGET_S.get(Path(path).name[:2], 60))
        for path, seconds in _notebook_seconds.items()
    }
