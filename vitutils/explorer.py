"""Interactive explorers, each declared once and rendered two ways: live (ipywidgets) and static (HTML).

An `Explorer` is data: a title, a pure plotting function of `vitutils.viz`, and its `Control`s, each a
keyword argument of that function with the values it may take. From that one declaration:

- `explorer.live()` builds ipywidgets controls above a picture that the plotting function redraws whenever a
  control changes; it needs a running Python kernel (a notebook, Colab, Binder);
- `explorer.static()` pre-renders the figure for a subset of the values (`Control.static`) with
  `vitutils.html_explorer`, for the static book, where no Python runs and a dead slider must never appear.

Both call `explorer.figure(**values)`, so they cannot drift: the same controls, labels, initial values and
plotting function. The explorers of the chapters are declared in `vitutils.viz` (`patch_explorer`,
`positional_explorer`, `attention_explorer`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import HTML
from matplotlib.figure import Figure

from vitutils import html_explorer
from vitutils.html_explorer import StaticControl, format_value

__all__ = ["Control", "Explorer"]

_FIRST = object()  # the default of `Control.default`: the first value


@dataclass(frozen=True)
class Control:
    """One control of an explorer: a keyword argument of its plotting function and the values it may take.

    Its kind follows from the values: a checkbox for (False, True), a menu when any value is a string, a
    slider otherwise (numbers, or tuples such as (row, col) positions, in the order given).

    Book: chapter 1, "Explore".
    """

    name: str  # keyword argument of the plotting function
    values: tuple  # every value the live control offers, in order
    label: str = ""  # text beside the control; default: the name with spaces
    default: Any = _FIRST  # initial value; default: the first of `values`
    static: tuple | None = None  # the values the static book pre-renders; default: all of them
    format: Callable[[Any], str] = format_value  # how a value is written beside the control

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError(f"control {self.name!r} needs at least one value")
        if not self.label:
            object.__setattr__(self, "label", self.name.replace("_", " "))
        if self.default is _FIRST:
            object.__setattr__(self, "default", self.values[0])
        static = self.values if self.static is None else tuple(self.static)
        object.__setattr__(self, "static", static)
        if self.default not in self.values:
            raise ValueError(
                f"control {self.name!r}: default {self.default!r} is not among its values"
            )
        stray = [v for v in static if v not in self.values]
        if stray:
            raise ValueError(
                f"control {self.name!r}: static values {stray} are not among its values"
            )
        if self.default not in static:  # both renderings start in the same state
            raise ValueError(
                f"control {self.name!r}: the default {self.default!r} must be one of the static values"
            )

    @property
    def kind(self) -> str:
        """ "checkbox", "menu" or "slider": how both renderings draw this control."""
        if set(self.values) <= {False, True} and all(isinstance(v, bool) for v in self.values):
            return "checkbox"
        if any(isinstance(v, str) for v in self.values):
            return "menu"
        return "slider"

    def widget(self) -> widgets.Widget:
        """The live ipywidgets control, set to the default."""
        if self.kind == "checkbox":
            return widgets.Checkbox(value=self.default, description=self.label)
        options = [(self.format(v), v) for v in self.values]
        if self.kind == "menu":
            return widgets.Dropdown(options=options, value=self.default, description=self.label)
        return widgets.SelectionSlider(
            options=options,
            value=self.default,
            description=self.label,
            continuous_update=False,  # redraw when the slider is released, not at every step
        )

    def static_control(self) -> StaticControl:
        """What the HTML engine needs to draw this control over its static values."""
        return StaticControl(
            name=self.name,
            label=self.label,
            kind=self.kind,
            values=self.static,
            labels=tuple(self.format(v) for v in self.static),
            start=self.static.index(self.default),
        )


@dataclass(frozen=True)
class Explorer:
    """An explorer, declared once: `plot(**fixed, **{control.name: value, ...})` returns its figure.

    Book: chapter 1, "Explore".
    """

    title: str
    plot: Callable[..., Figure]  # a pure plotting function of vitutils.viz
    controls: tuple[Control, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)  # arguments that no control changes
    static_format: str = "png"  # "jpeg" for photos: several times smaller
    static_dpi: int = 70
    live_dpi: int = 90

    def __post_init__(self) -> None:
        object.__setattr__(self, "controls", tuple(self.controls))
        names = [c.name for c in self.controls]
        if len(set(names)) != len(names):
            raise ValueError(f"control names must be unique, got {names}")
        clash = set(names) & set(self.fixed)
        if clash:
            raise ValueError(f"{sorted(clash)} are both controls and fixed arguments")

    def figure(self, **values: Any) -> Figure:
        """The figure for one value of every control (missing ones take their default)."""
        unknown = set(values) - {c.name for c in self.controls}
        if unknown:
            raise ValueError(f"unknown controls {sorted(unknown)} of explorer {self.title!r}")
        chosen = {c.name: values.get(c.name, c.default) for c in self.controls}
        for control in self.controls:
            if chosen[control.name] not in control.values:
                raise ValueError(
                    f"{chosen[control.name]!r} is not a value of control {control.name!r}"
                )
        return self.plot(**self.fixed, **chosen)

    def live(self) -> widgets.Widget:
        """ipywidgets controls above a picture that redraws whenever a control changes (needs a kernel).

        The figure goes to an `ipywidgets.Image` as PNG bytes (then is closed), not through an `Output`
        widget: nothing is printed into the notebook, and notebooks that build an explorer still execute
        under nbclient/nbconvert with `store_widget_state=False` (its Output-widget mimic fails there).
        """
        controls = {c.name: c.widget() for c in self.controls}
        picture = widgets.Image(
            format="png", layout=widgets.Layout(max_width="100%", height="auto")
        )

        def redraw(_change: Any = None) -> None:
            fig = self.figure(**{name: w.value for name, w in controls.items()})
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=self.live_dpi)
            plt.close(fig)
            picture.value = buffer.getvalue()

        for control in controls.values():
            control.observe(redraw, names="value")
        redraw()
        row = widgets.HBox(list(controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        return widgets.VBox([row, picture])

    def static(self) -> HTML:
        """A self-contained, client-side version for the static book: every combination of the controls'
        static values pre-rendered, the picture swapped in the browser."""
        page = html_explorer.render(
            self.figure,
            [c.static_control() for c in self.controls],
            title=self.title,
            fmt=self.static_format,
            dpi=self.static_dpi,
        )
        return HTML(page)
