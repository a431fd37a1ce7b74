"""Tests for vitutils.notebook: what the checks print, what they return and when they raise."""

import re

import matplotlib.pyplot as plt
import pytest
import torch
from IPython.display import Code

import vitutils.notebook as notebook
from vitutils.notebook import check_close, check_equal, check_range, show_jpeg, show_source


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ----------------------------------------------------------------------------- check_close


@pytest.mark.parametrize("shape", [(3,), (2, 5), (1, 1, 4)])
def test_check_close_prints_the_max_difference(shape, capsys):
    torch.manual_seed(0)
    a = torch.randn(shape)
    b = a + 1e-6 * torch.randn(shape)
    reference = (a.double() - b.double()).abs().max().item()
    assert 0 < reference < 1e-5
    assert check_close(a, b, atol=1e-5, label="patchify vs unfold") is None  # no stray output
    out = capsys.readouterr().out
    assert out == (
        f"patchify vs unfold: max |difference| = {reference:.1e}, within tolerance atol 1e-05\n"
    )


def test_check_close_raises_outside_the_tolerance(capsys):
    a, b = torch.zeros(4), torch.tensor([0.0, 0.0, 3e-5, -1e-6])
    with pytest.raises(AssertionError, match="x: expected the difference to be within"):
        check_close(a, b, atol=1e-5, label="x")
    assert "max |difference| = 3.0e-05, NOT within tolerance atol 1e-05" in capsys.readouterr().out


def test_check_close_expect_false_demonstrates_a_mismatch(capsys):
    a, b = torch.zeros(3), torch.tensor([0.0, 2.0, 0.5])
    check_close(a, b, atol=1e-5, label="wrong order", expect=False)
    assert "max |difference| = 2.0e+00, NOT within tolerance" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="same: expected the difference to be outside"):
        check_close(a, a + 1e-7, atol=1e-5, label="same", expect=False)


@pytest.mark.parametrize(
    ("a", "b"), [(torch.zeros(3), torch.zeros(1, 3)), (torch.zeros(2), torch.zeros(3))]
)
def test_check_close_rejects_different_shapes(a, b):
    # (3,) and (1, 3) broadcast, but a check that compares them is not the claim it prints.
    with pytest.raises(AssertionError, match="shapes differ"):
        check_close(a, b, atol=1.0, label="shapes")


def test_check_close_honours_rtol_like_allclose(capsys):
    expected = torch.tensor([1000.0, 1.0])
    actual = expected + torch.tensor(
        [0.05, 0.0]
    )  # off by 0.05: too far for atol, fine for rtol 1e-4
    assert not torch.allclose(actual, expected, atol=1e-3, rtol=0)
    assert torch.allclose(actual, expected, atol=1e-3, rtol=1e-4)
    with pytest.raises(AssertionError):
        check_close(actual, expected, atol=1e-3, label="atol only")
    check_close(actual, expected, atol=1e-3, rtol=1e-4, label="with rtol")
    out = capsys.readouterr().out
    assert "with rtol: max |difference| = 5.0e-02, within tolerance atol 1e-03 + rtol 1e-04" in out


# ----------------------------------------------------------------------------- check_equal


def test_check_equal_prints_bit_identical(capsys):
    a = torch.arange(12.0).reshape(3, 4)
    check_equal(a, a.clone(), label="round trip")
    assert capsys.readouterr().out == "round trip: bit-identical (torch.equal)\n"


def test_check_equal_raises_with_the_max_difference(capsys):
    a = torch.zeros(2, 3)
    b = a.clone()
    b[1, 2] = 0.25
    with pytest.raises(
        AssertionError, match=re.escape("copy: not identical (max |difference| 2.5e-01)")
    ):
        check_equal(a, b, label="copy")
    with pytest.raises(AssertionError):  # even a difference below any tolerance
        check_equal(a, a + 1e-12, label="tiny")
    assert "bit-identical" not in capsys.readouterr().out


def test_check_equal_raises_for_different_shapes_and_dtypes():
    a = torch.zeros(6)
    with pytest.raises(AssertionError, match=r"shapes differ: \(6,\) and \(2, 3\)"):
        check_equal(a, a.reshape(2, 3), label="reshaped")
    # torch.equal alone promotes dtypes; "bit-identical" must mean the same dtype too
    with pytest.raises(AssertionError, match=r"dtypes differ: torch\.float32 and torch\.float64"):
        check_equal(a, a.double(), label="promoted")


# ----------------------------------------------------------------------------- check_range


@pytest.mark.parametrize(
    ("value", "bounds", "printed"),
    [
        (0.5, {"above": 0.0, "below": 1.0}, "accuracy = 0.5 (required > 0 and < 1)"),
        (12.345, {"above": 10}, "ratio = 12.3 (required > 10)"),
        (-3, {"below": 0.25}, "ratio = -3 (required < 0.25)"),
    ],
)
def test_check_range_prints_value_and_bounds(value, bounds, printed, capsys):
    label = printed.split(" = ")[0]
    assert check_range(value, label=label, **bounds) is None
    assert capsys.readouterr().out == printed + "\n"


@pytest.mark.parametrize(
    ("value", "bounds"),
    [
        (1.0, {"above": 0.0, "below": 1.0}),
        (0.0, {"above": 0.0}),
        (5, {"below": 2}),
        (-1, {"above": 0}),
    ],
)
def test_check_range_raises_outside(value, bounds, capsys):
    # The bounds are strict: a value on a bound is outside.
    with pytest.raises(AssertionError, match=r"speed-up = .* is not"):
        check_range(value, label="speed-up", **bounds)
    assert capsys.readouterr().out.rstrip().endswith(": FAILED")


def test_check_range_needs_a_bound():
    with pytest.raises(ValueError, match="at least one bound"):
        check_range(1.0, label="x")


# ----------------------------------------------------------------------------- display helpers


def test_show_source_returns_python_code():
    code = show_source(check_close)
    assert isinstance(code, Code)
    assert "def check_close" in code.data
    assert "torch.allclose" in code.data  # the body, not only the signature


def test_show_jpeg_displays_a_jpeg_and_closes_the_figure(monkeypatch):
    shown = []
    monkeypatch.setattr(notebook, "display", shown.append)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(torch.rand(8, 8, 3).numpy())
    show_jpeg(fig)
    assert len(shown) == 1
    data = shown[0].data
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"  # JPEG start and end markers
    assert plt.get_fignums() == []
