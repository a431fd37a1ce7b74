"""Lint is part of the test suite: ruff over the package, the tests and the notebooks."""

import subprocess
import sys

import pytest

from conftest import ROOT

TARGETS = ["vitutils", "tests", "notebooks"]


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *TARGETS],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
