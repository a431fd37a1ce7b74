"""Helpers for the chapters' notebooks: showing the package's source, and checks that print what they measured.

A chapter proves a claim by running code. The checks here print the measured value beside the tolerance or
the bound it is held to, and raise `AssertionError` when the claim does not hold, so a notebook that stops
proving what its text says fails under nbval instead of printing a quiet `False`. Measured values are
printed after a fixed marker ("max |difference| = …", "= … (required …)"); the test suite masks exactly
those spans when it compares stored and fresh outputs, so rounding noise in the last digit of a measurement
cannot fail the build, while the claim, the tolerance and the verdict are compared. The checks return
nothing, so that a check on the last line of a cell adds no output of its own.
"""

from __future__ import annotations

import inspect
import io
import os

import matplotlib.pyplot as plt
import torch
from IPython.display import Code, Image, display
from matplotlib.figure import Figure
from torch import Tensor

__all__ = [
    "BUDGET_ENV",
    "budget",
    "check_close",
    "check_equal",
    "check_range",
    "show_jpeg",
    "show_source",
]

# The one budget switch: CI (and the test suite) set VITUTILS_BUDGET=small; readers get the full sizes.
BUDGET_ENV = "VITUTILS_BUDGET"


def show_source(obj: object) -> Code:
    """The source code of a function, class or module of the package, rendered as Python in a notebook.

    Book: chapter 1, "Images as sequences of patches".
    """
    return Code(inspect.getsource(obj), language="python")


def _max_difference(actual: Tensor, expected: Tensor) -> float:
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"shapes differ: {tuple(actual.shape)} and {tuple(expected.shape)}")
    return (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0


def check_close(
    actual: Tensor,
    expected: Tensor,
    *,
    atol: float,
    rtol: float = 0.0,
    label: str,
    expect: bool = True,
) -> None:
    """Print the largest |actual − expected| beside the tolerance.

    Close means ``torch.allclose(actual, expected, rtol=rtol, atol=atol)``: every element within
    atol + rtol·|expected|. With `expect=False` the check demonstrates a mismatch instead (a wrong weight
    order, a bug) and fails if the two are close after all. Raises AssertionError when the verdict is not
    the expected one, or when the shapes differ.

    Book: chapter 1, "Images as sequences of patches".
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    diff = _max_difference(actual, expected)
    close = torch.allclose(actual.double(), expected.double(), rtol=rtol, atol=atol)
    tolerance = f"atol {atol:.0e}" + (f" + rtol {rtol:.0e} × |expected|" if rtol else "")
    verdict = "within" if close else "NOT within"
    print(f"{label}: max |difference| = {diff:.1e}, {verdict} tolerance {tolerance}")
    if close != expect:
        wanted = "within" if expect else "outside"
        raise AssertionError(f"{label}: expected the difference to be {wanted} the tolerance")


def check_equal(actual: Tensor, expected: Tensor, *, label: str) -> None:
    """Print that two tensors are bit-identical (same dtype, same shape, same values); raise if not.

    For results that only move numbers around (patchify, reshapes, copies of the same weights), where no
    rounding is involved and therefore no tolerance is needed.

    Book: chapter 1, "Images as sequences of patches".
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    if actual.dtype != expected.dtype:
        raise AssertionError(f"{label}: dtypes differ: {actual.dtype} and {expected.dtype}")
    if not torch.equal(actual, expected):
        diff = _max_difference(actual, expected)
        raise AssertionError(f"{label}: not identical (max |difference| {diff:.1e})")
    print(f"{label}: bit-identical (torch.equal)")


def check_range(
    value: float,
    *,
    label: str,
    above: float | None = None,
    below: float | None = None,
    fmt: str = ".3g",
) -> None:
    """Print a measured value beside the bound(s) a claim holds it to, ``above < value < below``.

    Raises AssertionError when the value is outside.

    Book: chapter 2, "Patch embedding and the class token".
    """
    if above is None and below is None:
        raise ValueError("give at least one bound: above=… or below=…")
    value = float(value)
    bounds = " and ".join(
        text
        for text in (
            f"> {above:g}" if above is not None else "",
            f"< {below:g}" if below is not None else "",
        )
        if text
    )
    inside = (above is None or value > above) and (below is None or value < below)
    print(f"{label} = {value:{fmt}} (required {bounds}){'' if inside else ': FAILED'}")
    if not inside:
        raise AssertionError(f"{label} = {value:{fmt}} is not {bounds}")


def show_jpeg(fig: Figure, *, dpi: int = 80, quality: int = 85) -> None:
    """Display a figure as JPEG and close it: photos take several times more space as PNG.

    Book: chapter 4, "Attention on a real photo".
    """
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format="jpeg", dpi=dpi, bbox_inches="tight", pil_kwargs={"quality": quality}
    )
    plt.close(fig)
    display(Image(buffer.getvalue(), format="jpeg"))


def budget(small, full):
    """`small` when `$VITUTILS_BUDGET` is "small" (CI, the test suite), else `full`: the one switch that
    shrinks a heavy cell's epochs or sizes. The code path stays the same.

    Book: chapter 7, "A short live run".
    """
    value = os.environ.get(BUDGET_ENV, "full")
    if value not in ("small", "full"):
        raise ValueError(f"{BUDGET_ENV} must be 'small' or 'full', got {value!r}")
    return small if value == "small" else full
