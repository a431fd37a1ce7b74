"""Each chapter runs top to bottom within its time budget (measured on nbval's run in this session)."""

import pytest

from conftest import notebook_budget


def test_notebook_time_budget(request):
    times = request.config.notebook_seconds
    if not times:
        pytest.skip("no notebook ran in this session (run pytest over notebooks/ too)")
    over = {path: s for path, s in times.items() if s > notebook_budget(path)}
    assert not over, "over budget: " + ", ".join(
        f"{path} {s:.1f} s > {notebook_budget(path)} s" for path, s in over.items()
    )
