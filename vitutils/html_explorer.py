"""The client-side HTML engine of the explorers: pre-rendered frames and a few lines of JavaScript.

The rendered book is static HTML with no Python behind it. `render` draws a figure for every combination of
the controls' values, embeds the frames as data: URIs in one self-contained `<div>`, and adds an inline
script that swaps the picture as the reader moves a slider, ticks a box or picks from a menu. No CDN, no
network, and several explorers on one page do not interfere: every lookup is scoped to the explorer's own
root element. Explorers are declared in `vitutils.explorer`, which calls this module for their static
version; nothing here knows about ViTs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["StaticControl", "encode_figure", "render"]

MAX_FRAMES = 200  # more would make a page of many megabytes: pre-render fewer values

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


@dataclass(frozen=True)
class StaticControl:
    """What the engine needs of one control: its keyword, its label, how it is drawn, its values."""

    name: str  # keyword argument of the figure function
    label: str  # text beside the control
    kind: str  # "slider", "menu" or "checkbox"
    values: tuple  # the values to pre-render, in order
    labels: tuple[str, ...]  # how each value is written beside the control
    start: int  # index of the initial value


def encode_figure(fig: Figure, fmt: str, dpi: int) -> str:
    """A figure as a data: URI (PNG without a timestamp, or JPEG for photos), then closed."""
    buffer = io.BytesIO()
    if fmt == "png":
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    elif fmt == "jpeg":
        fig.savefig(buffer, format="jpeg", dpi=dpi, pil_kwargs={"quality": 72, "optimize": True})
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    plt.close(fig)
    return f"data:image/{fmt};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _control_html(uid: str, control: StaticControl, stride: int) -> str:
    name, labels, start = control.name, control.labels, control.start
    common = (
        f'id="{uid}-{name}" data-control="{name}" data-stride="{stride}" '
        f'data-labels="{html.escape(json.dumps(list(labels)), quote=True)}"'
    )
    label = f'<label for="{uid}-{name}">{html.escape(control.label)}</label>'
    if control.kind == "checkbox":
        checked = " checked" if control.values[start] else ""
        on, off = control.values.index(True), control.values.index(False)
        return f'<span>{label} <input type="checkbox" {common} data-on="{on}" data-off="{off}"{checked}></span>'
    if control.kind == "slider":  # a slider over the value indices, with the value shown beside it
        return (
            f'<span>{label} <input type="range" min="0" max="{len(labels) - 1}" step="1" '
            f'value="{start}" {common}> <output data-for="{name}">{html.escape(labels[start])}</output></span>'
        )
    options = "".join(
        f'<option value="{i}"{" selected" if i == start else ""}>{html.escape(t)}</option>'
        for i, t in enumerate(labels)
    )
    return f"<span>{label} <select {common}>{options}</select></span>"


def render(
    figure: Callable[..., Figure],
    controls: Sequence[StaticControl],
    *,
    title: str,
    fmt: str = "png",
    dpi: int = 70,
) -> str:
    """The HTML of a client-side explorer: `figure(**values)` pre-rendered for every combination.

    A control with a single value is not drawn (there is nothing to change); its value is still passed to
    `figure`. The root element has class `vit-explorer` and `data-frames` = the number of frames.
    """
    if not controls:
        raise ValueError("an explorer needs at least one control")
    count = math.prod(len(c.values) for c in controls)
    if count > MAX_FRAMES:
        raise ValueError(f"{count} frames to pre-render; keep it at most {MAX_FRAMES}")
    strides = [math.prod(len(c.values) for c in controls[i + 1 :]) for i in range(len(controls))]
    frames = [
        encode_figure(figure(**{c.name: v for c, v in zip(controls, combo, strict=True)}), fmt, dpi)
        for combo in itertools.product(*(c.values for c in controls))
    ]
    digest = hashlib.sha1("".join(frames).encode()).hexdigest()[:10]
    uid = f"vit-explorer-{digest}-{next(_counter)}"  # unique on the page, stable from run to run
    initial = frames[sum(c.start * s for c, s in zip(controls, strides, strict=True))]
    row = "\n    ".join(
        _control_html(uid, c, s)
        for c, s in zip(controls, strides, strict=True)
        if len(c.values) > 1
    )
    return f"""<div class="vit-explorer" id="{uid}" data-frames="{len(frames)}" style="font-family: sans-serif;">
  <div style="font-weight: 600;">{html.escape(title)}</div>
  <div style="display: flex; flex-wrap: wrap; gap: 0.3em 1.5em; align-items: center; margin: 0.3em 0;">
    {row}
  </div>
  <img class="vit-explorer-frame" src="{initial}" alt="{html.escape(title)}" style="max-width: 100%; height: auto;">
  <script type="application/json" class="vit-explorer-data">{json.dumps(frames)}</script>
  <script>{_SCRIPT.replace("__UID__", uid)}</script>
</div>"""


_counter = itertools.count()


def format_value(value: Any) -> str:
    """How a control value is written beside its control: floats with `g`, the rest with `str`."""
    return f"{value:g}" if isinstance(value, float) else str(value)
