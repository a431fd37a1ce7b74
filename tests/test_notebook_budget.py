"""Each chapter runs top to bottom within its time budget (measured on nbval's run in this session)."""

import pytest

from conftest import notebook_times


def test_notebook_time_budget():
    times = notebook_times()
    if not times:
        pytest.skip("no notebook ran in this session (run pytest over notebooks/ too)")
    over = {path: t for path, t in times.items() if t[0] > t[1]}
    assert not over, "over budget: " + ", ".join(
        f"{path} {seconds:.1f} s > {budget} s" for path, (seconds, budget) in over.items()
    )
