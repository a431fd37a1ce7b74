"""Tests for vitutils.widgets: valid patch sizes, the live explorers and their client-side HTML twins."""

from __future__ import annotations

import base64
import io
import json
import re

import ipywidgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from vitutils import widgets

MAX_BYTES = 1_500_000


@pytest.fixture(autouse=True)
def _agg_and_close():
    matplotlib.use("Agg")
    yield
    plt.close("all")


def test_valid_patch_sizes_square():
    assert widgets.valid_patch_sizes(224, 224) == [p for p in range(2, 225) if 224 % p == 0]
    assert widgets.valid_patch_sizes(224, 224) == [2, 4, 7, 8, 14, 16, 28, 32, 56, 112, 224]


@pytest.mark.parametrize(
    ("h", "w", "kwargs", "expected"),
    [
        (224, 160, {}, [2, 4, 8, 16, 32]),
        (48, 80, {}, [2, 4, 8, 16]),
        (300, 451, {}, []),  # coprime sides: no patch size fits
        (224, 224, {"min_size": 8, "max_size": 32}, [8, 14, 16, 28, 32]),
        (32, 48, {"min_size": 1}, [1, 2, 4, 8, 16]),
    ],
)
def test_valid_patch_sizes_non_square(h, w, kwargs, expected):
    sizes = widgets.valid_patch_sizes(h, w, **kwargs)
    assert sizes == expected
    assert all(h % p == 0 and w % p == 0 for p in sizes)


def test_valid_patch_sizes_rejects_empty_images():
    with pytest.raises(ValueError, match="positive"):
        widgets.valid_patch_sizes(0, 32)


# --- live explorers -------------------------------------------------------------------------------------------


def test_patch_explorer_builds_and_closes_its_figures():
    explorer = widgets.patch_explorer(["chelsea", "coffee"])
    assert isinstance(explorer, ipywidgets.Widget)
    controls = explorer.children[0].children
    slider = next(c for c in controls if isinstance(c, ipywidgets.SelectionSlider))
    assert list(slider.options) == widgets.valid_patch_sizes(224, 224, min_size=4)
    assert slider.value == 16
    picture = explorer.children[1]
    assert isinstance(picture, ipywidgets.Image)
    first = picture.value
    assert bytes(first[:4]) == b"\x89PNG"
    slider.value = 32  # redraws
    assert bytes(picture.value[:4]) == b"\x89PNG" and bytes(picture.value) != bytes(first)
    assert plt.get_fignums() == []  # every rendered figure was closed


def test_patch_explorer_accepts_arrays():
    rng = np.random.default_rng(0)
    explorer = widgets.patch_explorer(
        {"noise": rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)}, size=64
    )
    slider = next(
        c for c in explorer.children[0].children if isinstance(c, ipywidgets.SelectionSlider)
    )
    assert list(slider.options) == [4, 8, 16, 32, 64]


def test_positional_and_attention_explorers_build():
    positional = widgets.positional_explorer(grid_size=(4, 6))
    assert isinstance(positional, ipywidgets.Widget)
    position = next(
        c for c in positional.children[0].children if isinstance(c, ipywidgets.IntSlider)
    )
    assert position.max == 23
    attention = widgets.attention_explorer(patch_size=32)
    assert isinstance(attention, ipywidgets.Widget)
    controls = attention.children[0].children
    assert any(isinstance(c, ipywidgets.FloatLogSlider) for c in controls)
    rows = [c for c in controls if isinstance(c, ipywidgets.IntSlider)]
    assert [s.max for s in rows] == [6, 6]  # 224 / 32 = 7 rows and columns
    kind = next(c for c in controls if isinstance(c, ipywidgets.Dropdown))
    before = attention.children[1].value
    kind.value = "texture"
    assert bytes(attention.children[1].value) != bytes(before)
    assert plt.get_fignums() == []


# --- html_explorer --------------------------------------------------------------------------------------------


def _colour_plot(a, b, flag, scale=1.0):
    """A figure whose background colour encodes the combination it was drawn for."""
    fig = plt.figure(figsize=(1, 1))
    fig.patch.set_facecolor((a / 4 * scale, ["x", "y"].index(b) / 2, float(flag)))
    return fig


def _frames(page: str) -> list[str]:
    match = re.search(
        r'<script type="application/json" class="vit-explorer-data">(.*?)</script>', page, re.S
    )
    return json.loads(match.group(1))


def _pixel(uri: str) -> np.ndarray:
    header, payload = uri.split(",", 1)
    assert header == "data:image/png;base64"
    return plt.imread(io.BytesIO(base64.b64decode(payload)), format="png")[5, 5, :3]


def test_html_explorer_frames_and_controls():
    calls = []

    def plot(**kw):
        calls.append(kw)
        return _colour_plot(**kw)

    controls = {"a": [1, 2, 3], "b": ["x", "y"], "flag": [False, True]}
    page = widgets.html_explorer(plot, controls, title="Test <explorer>", dpi=20, scale=0.5).data
    assert 'class="vit-explorer"' in page
    assert int(re.search(r'data-frames="(\d+)"', page).group(1)) == 3 * 2 * 2
    assert len(calls) == 12 and all(kw["scale"] == 0.5 for kw in calls)
    assert not re.search(r"<script[^>]*\bsrc=", page)  # inline scripts only
    assert "http" not in "".join(re.findall(r"<script>.*?</script>", page, re.S))
    assert "Test &lt;explorer&gt;" in page
    assert (
        page.count('type="range"') == 1
        and page.count("<select") == 1
        and page.count('type="checkbox"') == 1
    )
    assert '<output data-for="a">1</output>' in page  # the slider's value label

    # frame index = Σ value index × stride: decode each frame's colour and compare
    frames = _frames(page)
    strides = {
        m[0]: int(m[1]) for m in re.findall(r'data-control="(\w+)" data-stride="(\d+)"', page)
    }
    assert strides == {"a": 4, "b": 2, "flag": 1}
    for i, a in enumerate(controls["a"]):
        for j in range(len(controls["b"])):
            for k, flag in enumerate(controls["flag"]):
                colour = _pixel(frames[i * strides["a"] + j * strides["b"] + k * strides["flag"]])
                np.testing.assert_allclose(colour, [a / 8, j / 2, float(flag)], atol=0.01)
    assert plt.get_fignums() == []


def test_html_explorer_start_and_unique_ids():
    controls = {"a": [1, 2, 3], "b": ["x", "y"], "flag": [True]}
    first = widgets.html_explorer(_colour_plot, controls, dpi=20).data
    second = widgets.html_explorer(_colour_plot, controls, start={"a": 3, "b": "y"}, dpi=20).data
    ids = [re.search(r'class="vit-explorer" id="([\w-]+)"', p).group(1) for p in (first, second)]
    assert ids[0] != ids[1]
    assert f'getElementById("{ids[1]}")' in second
    initial = re.search(r'<img class="vit-explorer-frame" src="([^"]+)"', second).group(1)
    assert initial == _frames(second)[2 * 2 + 1 * 1]  # a = 3 (index 2, stride 2), b = "y" (index 1)
    with pytest.raises(ValueError, match="not among the control values"):
        widgets.html_explorer(_colour_plot, controls, start={"a": 4})
    with pytest.raises(ValueError, match="at least one value"):
        widgets.html_explorer(_colour_plot, {"a": []})


def _frame_count(page: str) -> int:
    return int(re.search(r'data-frames="(\d+)"', page).group(1))


@pytest.mark.parametrize(
    ("build", "kwargs", "frames", "default_frames"),
    [
        (widgets.patch_explorer_html, {"patch_sizes": (16, 56)}, 4, 7 * 2),
        (widgets.positional_explorer_html, {"dims": (64,), "positions": (0,)}, 3, 3 * 2 * 4),
        (
            widgets.attention_explorer_html,
            {"queries": [(3, 3)], "temperatures": (0.1,)},
            3,
            3 * 3 * 4,
        ),
    ],
)
def test_twins_are_small(build, kwargs, frames, default_frames):
    """A cut-down twin, and the size its default version would have at the same bytes per frame."""
    page = build(**kwargs).data
    assert _frame_count(page) == frames
    images = sum(len(f) for f in _frames(page))
    estimate = len(page) - images + images / frames * (default_frames + 1)  # + the initial <img>
    assert estimate < MAX_BYTES
    assert plt.get_fignums() == []


def test_patch_explorer_html_rejects_non_divisors():
    with pytest.raises(ValueError, match=r"patch sizes \[15\] do not divide"):
        widgets.patch_explorer_html(patch_sizes=(16, 15))


def test_html_explorers_work_in_a_browser(tmp_path, browser):
    """Two explorers on one page: moving one slider swaps only that explorer's picture and label."""
    controls = {"a": [1, 2, 3], "b": ["x", "y"], "flag": [False, True]}
    pages = [widgets.html_explorer(_colour_plot, controls, dpi=20, scale=s).data for s in (1, 0.5)]
    assert _frames(pages[0])[0] != _frames(pages[1])[0]  # so that a mix-up would show
    (tmp_path / "page.html").write_text("<html><body>" + "\n".join(pages) + "</body></html>")
    page = browser.new_page()
    try:
        page.goto((tmp_path / "page.html").as_uri())
        roots = page.locator(".vit-explorer")
        assert roots.count() == 2
        frames = _frames(pages[0])
        src = [roots.nth(i).locator("img").get_attribute("src") for i in range(2)]
        assert src == [frames[0], _frames(pages[1])[0]]
        first = roots.nth(0)
        first.locator('input[type="range"]').fill("2")  # a = 3
        first.locator("select").select_option("1")  # b = "y"
        first.locator('input[type="checkbox"]').check()  # flag = True
        assert first.locator("img").get_attribute("src") == frames[2 * 4 + 1 * 2 + 1]
        assert first.locator('output[data-for="a"]').text_content() == "3"
        second = roots.nth(1)
        assert second.locator("img").get_attribute("src") == _frames(pages[1])[0]  # untouched
        assert second.locator('output[data-for="a"]').text_content() == "1"
    finally:
        page.close()
