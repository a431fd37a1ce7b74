"""Interactive explorers: thin ipywidgets controls wired to the plotting functions of `vitutils.viz`.

Each live explorer (`patch_explorer`, `positional_explorer`, `attention_explorer`) needs a running Python
kernel. The static HTML book has none, so each has a twin (`..._html`) built by `html_explorer`: it renders
the figure once for every combination of a few control values and returns self-contained HTML whose inline
script swaps the pictures as the reader moves a slider. No CDN, no network, and several on one page do not
interfere (every lookup is scoped to the explorer's own root element).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML
from matplotlib.figure import Figure

from vitutils import data, viz
from vitutils.patches import grid_size as _grid_size

_explorer_count = itertools.count()


def valid_patch_sizes(
    height: int, width: int, *, min_size: int = 2, max_size: int | None = None
) -> list[int]:
    """Patch sizes P in [min_size, max_size] that divide both `height` and `width`, ascending.

    Book: chapter 1, "Images as sequences of patches".
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {(height, width)}")
    common = math.gcd(height, width)
    top = common if max_size is None else min(common, max_size)
    return [p for p in range(max(1, min_size), top + 1) if common % p == 0]


def _photo(image: str | np.ndarray, size: int) -> np.ndarray:
    """A sample name or an (H, W, 3) array -> a size × size uint8 photo (short side resized, centre crop)."""
    array = data.sample_image(image) if isinstance(image, str) else np.asarray(image)
    return data.resize_and_center_crop(array, size, crop_pct=1.0)


def _wire(
    plot: Callable[..., Figure], controls: dict[str, widgets.Widget], dpi: int = 90
) -> widgets.Widget:
    """Controls above an image that `plot(**values)` redraws whenever a control changes.

    The figure goes to an `ipywidgets.Image` as PNG bytes (then is closed), not through an `Output`
    widget: nothing is printed into the notebook, and notebooks that build an explorer still execute
    under nbclient/nbconvert with `store_widget_state=False` (its Output-widget mimic fails there).
    """
    picture = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))

    def redraw(_change: Any = None) -> None:
        fig = plot(**{name: control.value for name, control in controls.items()})
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        plt.close(fig)
        picture.value = buffer.getvalue()

    for control in controls.values():
        control.observe(redraw, names="value")
        if hasattr(control, "continuous_update"):
            control.continuous_update = False  # redraw when a slider is released, not at every step
    redraw()
    row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
    return widgets.VBox([row, picture])


# --- live explorers (need a kernel) ---------------------------------------------------------------------------


def patch_explorer(
    images: Sequence[str] | Mapping[str, np.ndarray] | None = None, *, size: int = 224
) -> widgets.Widget:
    """Image dropdown, patch-size slider (divisors of `size` only) and grid checkbox, wired to
    `viz.plot_patch_explorer`. `images`: sample names (default `SAMPLE_IMAGES`) or {name: array}.

    Book: chapter 1, "Images as sequences of patches".
    """
    items = (
        images.items()
        if isinstance(images, Mapping)
        else ((n, n) for n in images or data.SAMPLE_IMAGES)
    )
    photos = {name: _photo(image, size) for name, image in items}
    sizes = valid_patch_sizes(size, size, min_size=4)
    controls = {
        "name": widgets.Dropdown(options=list(photos), description="image"),
        "patch_size": widgets.SelectionSlider(
            options=sizes,
            value=16 if 16 in sizes else sizes[len(sizes) // 2],
            description="patch size P",
        ),
        "show_grid": widgets.Checkbox(value=True, description="grid overlay"),
    }
    return _wire(lambda name, **kw: viz.plot_patch_explorer(photos[name], **kw), controls)


def positional_explorer(*, grid_size: tuple[int, int] = (8, 8)) -> widgets.Widget:
    """Kind dropdown, width D and position sliders, wired to `viz.plot_positional_explorer`.

    Book: chapter 3, "Positional encodings".
    """
    gh, gw = grid_size
    controls = {
        "kind": widgets.Dropdown(
            options=viz.POSITIONAL_KINDS, value="sincos_2d", description="kind"
        ),
        "dim": widgets.SelectionSlider(
            options=[8, 16, 32, 64, 128, 256], value=64, description="D"
        ),
        "position": widgets.IntSlider(
            value=(gh // 2) * gw + gw // 2, min=0, max=gh * gw - 1, description="position"
        ),
    }
    return _wire(lambda **kw: viz.plot_positional_explorer(**kw, grid_size=(gh, gw)), controls)


def attention_explorer(
    image: str | np.ndarray | None = None, *, patch_size: int = 16
) -> widgets.Widget:
    """Query row/column sliders, feature kind and a log-scale temperature, wired to
    `viz.plot_patch_attention`. `image`: a sample name (resized to 224 × 224, default "chelsea") or an
    (H, W, 3) array whose sides are multiples of `patch_size`.

    Book: chapter 4, "Attention on a real photo".
    """
    image = "chelsea" if image is None else image
    photo = _photo(image, 224) if isinstance(image, str) else np.asarray(image)
    gh, gw = _grid_size(np.shape(photo)[:2], patch_size)
    controls = {
        "row": widgets.IntSlider(value=gh // 2, min=0, max=gh - 1, description="query row"),
        "col": widgets.IntSlider(value=gw // 2, min=0, max=gw - 1, description="query col"),
        "kind": widgets.Dropdown(
            options=viz.PATCH_FEATURE_KINDS, value="pixels", description="features"
        ),
        "temperature": widgets.FloatLogSlider(
            value=1.0, base=10, min=-2, max=1, step=0.1, description="temperature"
        ),
    }
    return _wire(
        lambda row, col, **kw: viz.plot_patch_attention(photo, patch_size, (row, col), **kw),
        controls,
    )


# --- client-side twins for the static book --------------------------------------------------------------------

_SCRIPT = """
(function () {
  var root = document.getElementById("__UID__");
  if (!root || root.getAttribute("data-ready")) return;
  root.setAttribute("data-ready", "1");
  var frames = JSON.parse(root.querySelector("script.vit-explorer-data").textContent);
  var img = root.querySelector("img.vit-explorer-frame");
  var inputs = root.querySelectorAll("[data-control]");
  function update() {
    var index = 0;
    for (var i = 0; i < inputs.length; i++) {
      var el = inputs[i];
      var k = el.type === "checkbox" ? (el.checked ? el.getAttribute("data-on") : el.getAttribute("data-off"))
                                     : el.value;
      k = parseInt(k, 10);
      index += k * parseInt(el.getAttribute("data-stride"), 10);
      var out = root.querySelector('output[data-for="' + el.getAttribute("data-control") + '"]');
      if (out) out.textContent = JSON.parse(el.getAttribute("data-labels"))[k];
    }
    img.src = frames[index];
  }
  for (var i = 0; i < inputs.length; i++) {
    inputs[i].addEventListener("input", update);
    inputs[i].addEventListener("change", update);
  }
  update();
})();
"""


def _label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _encode(fig: Figure, fmt: str, dpi: int) -> str:
    """A figure as a data: URI (PNG without a timestamp, or JPEG for photos), then closed."""
    buffer = io.BytesIO()
    if fmt == "png":
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    else:
        fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": 72, "optimize": True})
    plt.close(fig)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _control_html(uid: str, name: str, values: list, start: int, stride: int) -> str:
    labels = [_label(v) for v in values]
    common = (
        f'id="{uid}-{name}" data-control="{name}" data-stride="{stride}" '
        f'data-labels="{html.escape(json.dumps(labels), quote=True)}"'
    )
    label = f'<label for="{uid}-{name}">{html.escape(name.replace("_", " "))}</label>'
    if sorted(values, key=str) == [False, True]:  # a boolean control: a checkbox
        checked = " checked" if values[start] else ""
        on, off = values.index(True), values.index(False)
        return f'<span>{label} <input type="checkbox" {common} data-on="{on}" data-off="{off}"{checked}></span>'
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if (
        numeric and len(values) > 1
    ):  # a slider over the value indices, with the value shown beside it
        return (
            f'<span>{label} <input type="range" min="0" max="{len(values) - 1}" step="1" '
            f'value="{start}" {common}> <output data-for="{name}">{html.escape(labels[start])}</output></span>'
        )
    options = "".join(
        f'<option value="{i}"{" selected" if i == start else ""}>{html.escape(t)}</option>'
        for i, t in enumerate(labels)
    )
    return f"<span>{label} <select {common}>{options}</select></span>"


def html_explorer(
    plot_fn: Callable[..., Figure],
    controls: Mapping[str, Sequence],
    *,
    title: str | None = None,
    start: Mapping[str, Any] | None = None,
    dpi: int = 70,
    fmt: str = "png",
    **fixed: Any,
) -> HTML:
    """A self-contained, client-side explorer: `plot_fn(**fixed, **combo)` pre-rendered for every
    combination of control values, with a slider (numbers), checkbox (booleans) or menu (anything else)
    per control and the current value shown beside it.

    `controls` maps keyword names of `plot_fn` to the values to offer; `start` picks the initial values
    (default: the first of each). `fmt` is "png" or "jpeg" (much smaller for photos). The root element has
    class `vit-explorer` and `data-frames` = the number of frames; keep the page light (< 1.5 MB).

    Book: chapter 1, "Images as sequences of patches".
    """
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    names = list(controls)
    values = [list(controls[name]) for name in names]
    if not names or any(len(v) == 0 for v in values):
        raise ValueError(f"every control needs at least one value, got {dict(controls)}")
    start = dict(start or {})
    unknown = set(start) - set(names)
    if unknown:
        raise ValueError(f"start names {sorted(unknown)} are not controls {names}")
    missing = {name: v for name, v in start.items() if v not in controls[name]}
    if missing:
        raise ValueError(f"start values {missing} are not among the control values")
    first = [
        vals.index(start[name]) if name in start else 0
        for name, vals in zip(names, values, strict=True)
    ]
    strides = [math.prod(len(v) for v in values[i + 1 :]) for i in range(len(values))]

    frames = [
        _encode(plot_fn(**fixed, **dict(zip(names, combo, strict=True))), fmt, dpi)
        for combo in itertools.product(*values)
    ]
    digest = hashlib.sha1("".join(frames).encode()).hexdigest()[:10]
    uid = f"vit-explorer-{digest}-{next(_explorer_count)}"  # unique on the page, stable from run to run
    initial = frames[sum(i * s for i, s in zip(first, strides, strict=True))]
    row = "\n    ".join(
        _control_html(uid, n, v, i, s)
        for n, v, i, s in zip(names, values, first, strides, strict=True)
    )
    heading = f'<div style="font-weight: 600;">{html.escape(title)}</div>' if title else ""
    page = f"""<div class="vit-explorer" id="{uid}" data-frames="{len(frames)}" style="font-family: sans-serif;">
  {heading}
  <div style="display: flex; flex-wrap: wrap; gap: 0.3em 1.5em; align-items: center; margin: 0.3em 0;">
    {row}
  </div>
  <img class="vit-explorer-frame" src="{initial}" alt="{html.escape(title or "explorer frame")}" style="max-width: 100%; height: auto;">
  <script type="application/json" class="vit-explorer-data">{json.dumps(frames)}</script>
  <script>{_SCRIPT.replace("__UID__", uid)}</script>
</div>"""
    return HTML(page)


def patch_explorer_html(
    image: str | np.ndarray = "chelsea",
    *,
    patch_sizes: Sequence[int] = (7, 8, 14, 16, 28, 32, 56),
    size: int = 224,
) -> HTML:
    """Client-side twin of `patch_explorer` for one photo: patch size slider and grid checkbox.

    Book: chapter 1, "Images as sequences of patches".
    """
    photo = _photo(image, size)
    bad = [p for p in patch_sizes if p not in valid_patch_sizes(size, size, min_size=1)]
    if bad:
        raise ValueError(f"patch sizes {bad} do not divide the {size} × {size} image")
    controls = {"patch_size": list(patch_sizes), "show_grid": [True, False]}
    start = {"patch_size": 16} if 16 in patch_sizes else None
    return html_explorer(
        viz.plot_patch_explorer,
        controls,
        title="Patch explorer",
        start=start,
        dpi=65,
        fmt="jpeg",
        image=photo,
    )


def positional_explorer_html(
    *,
    grid_size: tuple[int, int] = (8, 8),
    dims: Sequence[int] = (16, 64),
    positions: Sequence[int] | None = None,
) -> HTML:
    """Client-side twin of `positional_explorer`: kind menu, D slider, a few positions (corner, edge, centre).

    Book: chapter 3, "Positional encodings".
    """
    gh, gw = grid_size
    if positions is None:
        positions = sorted({0, gw - 1, (gh // 2) * gw, (gh // 2) * gw + gw // 2})
    controls = {"kind": list(viz.POSITIONAL_KINDS), "dim": list(dims), "position": list(positions)}
    start = {"kind": "sincos_2d"}
    return html_explorer(
        viz.plot_positional_explorer,
        controls,
        title="Positional-encoding explorer",
        start=start,
        dpi=60,
        grid_size=(gh, gw),
    )


def attention_explorer_html(
    image: str | np.ndarray = "chelsea",
    *,
    patch_size: int = 16,
    queries: Sequence[tuple[int, int]] | None = None,
    kinds: Sequence[str] = viz.PATCH_FEATURE_KINDS,
    temperatures: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
) -> HTML:
    """Client-side twin of `attention_explorer`: a few query patches, the feature kind, the temperature.

    `queries` are (row, col) pairs (default: three spread over the grid).

    Book: chapter 4, "Attention on a real photo".
    """
    photo = _photo(image, 224) if isinstance(image, str) else image
    gh, gw = _grid_size(np.shape(photo)[:2], patch_size)
    if queries is None:
        queries = [(gh // 4, gw // 4), (gh // 2, gw // 2), (3 * gh // 4, 3 * gw // 4)]
    controls = {"query": list(queries), "kind": list(kinds), "temperature": list(temperatures)}
    start = {"temperature": 1.0} if 1.0 in temperatures else None
    return html_explorer(
        _query_frame,
        controls,
        title="Attention explorer",
        start=start,
        dpi=60,
        fmt="jpeg",
        image=photo,
        patch_size=patch_size,
    )


def _query_frame(image, patch_size, query, kind, temperature) -> Figure:
    return viz.plot_patch_attention(image, patch_size, query, kind=kind, temperature=temperature)
