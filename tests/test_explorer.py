"""Tests for the explorers: one declaration (`vitutils.explorer`), rendered live (ipywidgets) and static
(`vitutils.html_explorer`), and the three explorers the chapters declare in `vitutils.viz`."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re

import ipywidgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from vitutils import viz
from vitutils.explorer import Control, Explorer
from vitutils.html_explorer import MAX_FRAMES

MAX_BYTES = 1_500_000  # the heaviest explorer page we accept


@pytest.fixture(autouse=True)
def _agg_and_close():
    matplotlib.use("Agg")
    yield
    plt.close("all")


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


def _toy(**control_kwargs) -> Explorer:
    return Explorer(
        title="Test <explorer>",
        plot=_colour_plot,
        controls=(
            Control("a", (1, 2, 3), **control_kwargs),
            Control("b", ("x", "y")),
            Control("flag", (False, True)),
        ),
        fixed={"scale": 0.5},
        static_dpi=20,
        live_dpi=20,
    )


# --- the declaration -----------------------------------------------------------------------------------------


def test_control_kind_label_and_defaults():
    assert Control("flag", (True, False)).kind == "checkbox"
    assert Control("kind", ("a", "b")).kind == "menu"
    assert Control("p", (4, 8, 16)).kind == "slider"
    assert Control("query", ((0, 0), (0, 1))).kind == "slider"
    assert Control("n", (0, 1)).kind == "slider"  # integers 0 and 1 are not booleans
    c = Control("patch_size", (4, 8, 16), default=8, static=(8, 16))
    assert (c.label, c.default, c.static) == ("patch size", 8, (8, 16))
    assert Control("p", [4, 8]).values == (4, 8) and Control("p", [4, 8]).default == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"values": ()}, "at least one value"),
        ({"values": (1, 2), "default": 3}, "default 3 is not among its values"),
        ({"values": (1, 2), "static": (2, 5)}, r"static values \[5\] are not among its values"),
        ({"values": (1, 2, 3), "default": 1, "static": (2, 3)}, "must be one of the static values"),
    ],
)
def test_control_rejects_inconsistent_declarations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Control("p", **kwargs)


def test_explorer_rejects_clashes_and_bad_values():
    with pytest.raises(ValueError, match="unique"):
        Explorer("t", _colour_plot, (Control("a", (1,)), Control("a", (2,))))
    with pytest.raises(ValueError, match="both controls and fixed"):
        Explorer("t", _colour_plot, (Control("a", (1,)),), fixed={"a": 1})
    toy = _toy()
    with pytest.raises(ValueError, match="unknown controls"):
        toy.figure(c=1)
    with pytest.raises(ValueError, match="4 is not a value of control 'a'"):
        toy.figure(a=4)
    fig = toy.figure(a=3)  # the others take their defaults: b = "x", flag = False
    np.testing.assert_allclose(fig.patch.get_facecolor()[:3], [3 / 8, 0, 0])


# --- static rendering ----------------------------------------------------------------------------------------


def test_static_frames_and_controls():
    calls = []
    toy = _toy()
    recording = dataclasses.replace(toy, plot=lambda **kw: calls.append(kw) or _colour_plot(**kw))
    page = recording.static().data
    assert 'class="vit-explorer"' in page
    assert int(re.search(r'data-frames="(\d+)"', page).group(1)) == 3 * 2 * 2
    assert len(calls) == 12 and all(kw["scale"] == 0.5 for kw in calls)
    assert not re.search(r"<script[^>]*\bsrc=", page)  # inline scripts only
    assert "http" not in "".join(re.findall(r"<script>.*?</script>", page, re.S))
    assert "Test &lt;explorer&gt;" in page
    assert (page.count('type="range"'), page.count("<select"), page.count('type="checkbox"')) == (
        1,
        1,
        1,
    )
    assert '<output data-for="a">1</output>' in page  # the slider's value label

    # frame index = Σ value index × stride: decode each frame's colour and compare
    frames = _frames(page)
    strides = {
        m[0]: int(m[1]) for m in re.findall(r'data-control="(\w+)" data-stride="(\d+)"', page)
    }
    assert strides == {"a": 4, "b": 2, "flag": 1}
    for i, a in enumerate((1, 2, 3)):
        for j in range(2):
            for k, flag in enumerate((False, True)):
                colour = _pixel(frames[i * strides["a"] + j * strides["b"] + k * strides["flag"]])
                np.testing.assert_allclose(colour, [a / 8, j / 2, float(flag)], atol=0.01)
    assert plt.get_fignums() == []


def test_static_starts_at_the_default_and_ids_are_unique():
    first = _toy().static().data
    second = _toy(default=3).static().data
    ids = [re.search(r'class="vit-explorer" id="([\w-]+)"', p).group(1) for p in (first, second)]
    assert ids[0] != ids[1]
    assert f'getElementById("{ids[1]}")' in second
    initial = re.search(r'<img class="vit-explorer-frame" src="([^"]+)"', second).group(1)
    assert initial == _frames(second)[2 * 4]  # a = 3: index 2, stride 4; b, flag at index 0


def test_static_subset_and_single_value_controls():
    calls = []
    toy = dataclasses.replace(
        _toy(static=(2, 3), default=2), plot=lambda **kw: calls.append(kw) or _colour_plot(**kw)
    )
    toy = dataclasses.replace(
        toy, controls=(*toy.controls[:2], Control("flag", (False, True), static=(False,)))
    )
    page = toy.static().data
    assert len(calls) == 2 * 2 * 1 and {kw["a"] for kw in calls} == {2, 3}
    assert 'type="checkbox"' not in page  # one static value: nothing to change, not drawn
    assert {kw["flag"] for kw in calls} == {False}


def test_static_refuses_too_many_frames():
    many = Explorer("t", _colour_plot, (Control("a", tuple(range(MAX_FRAMES + 1))),))
    with pytest.raises(ValueError, match=f"{MAX_FRAMES + 1} frames"):
        many.static()


# --- live rendering ------------------------------------------------------------------------------------------


def test_live_controls_follow_the_declaration_and_redraw():
    calls = []
    toy = dataclasses.replace(_toy(), plot=lambda **kw: calls.append(kw) or _colour_plot(**kw))
    widget = toy.live()
    row, picture = widget.children
    slider, menu, box = row.children
    assert isinstance(slider, ipywidgets.SelectionSlider) and slider.description == "a"
    assert isinstance(menu, ipywidgets.Dropdown) and isinstance(box, ipywidgets.Checkbox)
    assert [v for _, v in slider.options] == [1, 2, 3] and slider.value == 1
    assert not slider.continuous_update
    assert isinstance(picture, ipywidgets.Image) and bytes(picture.value[:4]) == b"\x89PNG"
    first = bytes(picture.value)
    slider.value = 3
    box.value = True
    assert calls[-1] == {"scale": 0.5, "a": 3, "b": "x", "flag": True}
    assert bytes(picture.value) != first
    assert plt.get_fignums() == []  # every drawn figure was closed


# --- the chapters' explorers: one declaration, two renderings that agree -------------------------------------


def _inside_explorer(static_images=None):
    """Chapter 8's explorer with the bundled model's shapes (6 layers, 3 heads and their mean, an 8 × 8
    grid) on 32 × 32 versions of the sample photos, with random maps."""
    from vitutils.data.images import SAMPLE_IMAGES, square_photo

    names = [SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)] for i in range(6)]
    images = torch.stack([torch.from_numpy(square_photo(n, 32)).permute(2, 0, 1) for n in names])
    g = torch.Generator().manual_seed(0)
    maps, rollouts = torch.rand(6, 6, 4, 8, 8, generator=g), torch.rand(6, 8, 8, generator=g)
    titles = [f"right: {n}" for n in names]
    return viz.inside_explorer(images, titles, maps, rollouts, static_images=static_images)


def _axial_explorer(static_images=(0, 1)):
    from vitutils.data.images import SAMPLE_IMAGES, square_photo

    names = [SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)] for i in range(4)]
    images = [square_photo(n, 32) for n in names]
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 4, 6, 64, 64, generator=g).softmax(-1)  # (row, col, reach) × (B, L, N, N)
    return viz.axial_explorer(images, names, *maps, (8, 8), static_images=static_images)


BOOK_EXPLORERS = {
    "patch": lambda: viz.patch_explorer(["chelsea", "coffee"], size=64),
    "positional": lambda: viz.positional_explorer(grid_size=(4, 6)),
    "attention": lambda: viz.attention_explorer("coffee", size=64, patch_size=16),
    "inside": lambda: _inside_explorer(static_images=(0, 3)),
    "cost": lambda: viz.cost_explorer(),
    "axial": _axial_explorer,
}


def _static_controls(page: str) -> dict[str, tuple[str, list[str], int]]:
    """name -> (label, value labels, initial index) of every control drawn on a static page."""
    found = {}
    for m in re.finditer(
        r'<label for="[\w-]+-(\w+)">([^<]*)</label> <(input|select)([^>]*)>', page
    ):
        name, label, tag, attrs = m.groups()
        labels = json.loads(html.unescape(re.search(r'data-labels="([^"]*)"', attrs).group(1)))
        if tag == "select":
            options = re.search(rf'id="[\w-]+-{name}" data-control.*?</select>', page, re.S).group(
                0
            )
            start = int(re.search(r'<option value="(\d+)" selected', options).group(1))
        elif 'type="checkbox"' in attrs:
            state = "on" if " checked" in attrs else "off"
            start = int(re.search(rf'data-{state}="(\d+)"', attrs).group(1))
        else:
            start = int(re.search(r'value="(\d+)"', attrs).group(1))
        found[name] = (html.unescape(label), labels, start)
    return found


@pytest.mark.parametrize("name", BOOK_EXPLORERS)
def test_book_explorer_live_and_static_agree(name):
    explorer = BOOK_EXPLORERS[name]()
    calls = []
    recording = dataclasses.replace(
        explorer, plot=lambda **kw: calls.append(kw) or plt.figure(figsize=(1, 1))
    )
    widget = recording.live()
    live = {c.name: w for c, w in zip(explorer.controls, widget.children[0].children, strict=True)}
    live_first = calls[0]
    calls.clear()
    page = recording.static().data
    static = _static_controls(page)
    for control in explorer.controls:
        w = live[control.name]
        # live: every value, the label, the default
        assert w.description == control.label
        assert w.value == control.default
        if control.kind != "checkbox":
            assert [v for _, v in w.options] == list(control.values)
            assert [t for t, _ in w.options] == [control.format(v) for v in control.values]
        # static: the static values, the same label and value labels, the same initial value
        if len(control.static) > 1:
            label, labels, start = static[control.name]
            assert label == control.label
            assert labels == [control.format(v) for v in control.static]
            assert control.static[start] == control.default
        else:
            assert control.name not in static
    # both draw with the same plotting function and the same arguments at the start
    assert live_first in calls
    assert len(calls) == math.prod(len(c.static) for c in explorer.controls)
    assert live_first == {**explorer.fixed, **{c.name: c.default for c in explorer.controls}}
    assert plt.get_fignums() == []


@pytest.mark.parametrize(
    ("build", "frames"),
    [
        (viz.patch_explorer, 2 * 7 * 2),
        (viz.positional_explorer, 3 * 2 * 2),
        (viz.attention_explorer, 3 * 3 * 4),
        (lambda: _inside_explorer(static_images=(0, 1, 2, 3)), 4 * 6 * 4),
        (viz.cost_explorer, 4 * 3 * 3),
        (_axial_explorer, 2 * 2 * 3),
    ],
)
def test_book_explorers_stay_light(build, frames):
    """Render one frame per explorer and estimate the page its default static version would make."""
    explorer = build()
    assert math.prod(len(c.static) for c in explorer.controls) == frames
    one = dataclasses.replace(
        explorer,
        controls=tuple(dataclasses.replace(c, static=(c.default,)) for c in explorer.controls),
    )
    page = one.static().data
    image = len(_frames(page)[0])
    estimate = len(page) - 2 * image + image * (frames + 1)  # frames + the initial <img>
    assert estimate < MAX_BYTES, f"about {estimate / 1e6:.2f} MB"


def test_attention_explorer_resizes_arrays_and_names_alike():
    photo = viz.attention_explorer("coffee", size=64).fixed["image"]
    from vitutils import data

    same = viz.attention_explorer(data.sample_image("coffee"), size=64).fixed["image"]
    assert photo.shape == (64, 64, 3)
    np.testing.assert_array_equal(photo, same)
    query = viz.attention_explorer("coffee", size=64, patch_size=16).controls[0]
    assert len(query.values) == 16 and query.values[-1] == (3, 3)


def test_patch_explorer_offers_only_divisors():
    explorer = viz.patch_explorer({"noise": np.zeros((50, 70, 3), np.uint8)}, size=64)
    sizes = explorer.controls[1]
    assert sizes.values == (4, 8, 16, 32, 64) and sizes.default == 16
    assert sizes.static == (8, 16, 32)
    with pytest.raises(ValueError, match=r"static values \[15\]"):
        viz.patch_explorer(["chelsea"], static_patch_sizes=(16, 15))


# --- in a real browser ---------------------------------------------------------------------------------------


def test_static_explorers_work_in_a_browser(tmp_path, browser):
    """Two explorers on one page: moving one slider swaps only that explorer's picture and label."""
    pages = [dataclasses.replace(_toy(), fixed={"scale": s}).static().data for s in (1.0, 0.5)]
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
