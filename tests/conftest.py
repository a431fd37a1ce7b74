"""Shared test setup: offline data, a non-interactive plotting backend, and the notebooks' time budget."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Figures in unit tests are drawn off screen. (Notebook kernels started by nbval keep their inline backend.)
matplotlib.use("Agg")

# Tests and nbval's notebook kernels never download: CIFAR-10 comes from the folder CI provides beside the
# clone. The loader's download path is tested on a small archive built in the test itself.
if "VITUTILS_DATA_DIR" not in os.environ and (SHARED_DATA / "cifar-10-batches-py").is_dir():
    os.environ["VITUTILS_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The notebooks' budget switch (vitutils.notebook.budget): small sizes under the test suite and CI.
os.environ.setdefault("VITUTILS_BUDGET", "small")

# Each chapter must run top to bottom within its budget on a 2-core CPU (seconds, nbval's execution time).
# Chapters 1 and 3 went from 30 to 60 s when their experiment exercises arrived: each trains three tiny
# models and scores them on the 5,000 validation images (ch3 measured 25-28 s on this machine).
NOTEBOOK_BUDGET_S = {
    "01": 60,
    "02": 30,
    "03": 60,
    "04": 60,
    "05": 60,
    "06": 60,
    "07": 120,
    "08": 120,
    "09": 120,
    "10": 120,
}


def pytest_configure(config):
    config.notebook_seconds = {}  # notebook path -> seconds nbval spent on it (kernel start included)
    # Measured values printed by vitutils.notebook's checks are masked before nbval compares outputs
    # (tests/nbval_sanitize.cfg says which); set here so that it works from any working directory.
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(ROOT / "tests" / "nbval_sanitize.cfg")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    yield
    path = item.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        times = item.config.notebook_seconds
        times[path] = times.get(path, 0.0) + time.perf_counter() - start


def notebook_budget(path: str) -> int:
    return NOTEBOOK_BUDGET_S.get(Path(path).name[:2], 60)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.notebook_seconds:
        terminalreporter.section("notebook execution time (budget)")
        for path, seconds in sorted(config.notebook_seconds.items()):
            terminalreporter.write_line(
                f"{path}: {seconds:.1f} s (budget {notebook_budget(path)} s)"
            )


def pytest_collection_modifyitems(session, config, items):
    # The budget check reads the times measured on the notebooks, so it runs after every notebook.
    last = [item for item in items if item.nodeid.endswith("test_notebook_time_budget")]
    items[:] = [item for item in items if item not in last] + last


# A real browser for the tests that open pages: Debian's Chromium driven by Playwright (never a browser
# download). One per session, shared by every test that needs it.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("VIT_BOOK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "the browser checks need Chromium: `apt-get install -y chromium` on Debian/Ubuntu, "
            "or point VIT_BOOK_CHROMIUM at a Chromium or Chrome binary"
        )
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()
