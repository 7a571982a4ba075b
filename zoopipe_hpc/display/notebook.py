"""The Jupyter progress widget, and the choice of display for where the code runs."""

from __future__ import annotations

import html
import importlib
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from .._text import printable, printable_lines
from ..report import PipeReport, PipeStatus
from ._common import (
    ProgressDisplay,
    _errors,
    _Estimate,
    _estimate,
    _final_estimate,
    _isatty,
    _outcome_word,
    _problems,
    _succeeded,
    _Throttle,
    format_eta,
    format_rate,
)

__all__ = ["NotebookProgress", "in_notebook", "auto_display"]


from .terminal import TerminalProgress

# -- Jupyter --------------------------------------------------------------------------------


def in_notebook() -> bool:
    """True inside an IPython kernel (Jupyter, VS Code notebooks), False in a terminal IPython
    or plain Python. Never imports IPython: if it is not loaded yet, this is no notebook."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    if not callable(get_ipython):
        return False
    try:
        shell = get_ipython()
    except Exception:  # noqa: BLE001 - a half-initialised IPython is no notebook
        return False
    if shell is None:
        return False
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _try_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


_BAR_COLOURS = {"info": "#1976d2", "success": "#2e7d32", "danger": "#c62828"}


class NotebookProgress:
    """A progress bar and a label in a Jupyter notebook.

    Uses ipywidgets (``FloatProgress`` and ``HTML`` in an ``HBox``) when it can be imported,
    otherwise an HTML ``<progress>`` element shown with ``IPython.display.display`` and
    replaced in place with ``update_display``. The bar turns green on success, red on failure.
    ``use_widgets=False`` forces the HTML fallback. Nothing is displayed before the first
    :meth:`update` or :meth:`close`.
    """

    def __init__(
        self,
        title: str = "",
        *,
        min_interval: float = 0.2,
        use_widgets: bool | None = None,
    ) -> None:
        self.title = title
        self.min_interval = max(0.0, min_interval)
        self._use_widgets = use_widgets
        self._clock: Callable[[], float] = time.monotonic
        self._throttle = _Throttle()
        self._seen: _Estimate | None = None
        self._closed = False
        self._started = False
        self._widgets: ModuleType | None = None
        self._display: ModuleType | None = None
        self.bar: Any = None  # the ipywidgets progress bar, once shown
        self.label: Any = None  # the ipywidgets HTML label, once shown
        self.box: Any = None
        self.display_id: str | None = None  # the HTML fallback's display id, once shown

    @property
    def uses_widgets(self) -> bool:
        """True when the widgets are (or will be) ipywidgets, False for the HTML fallback."""
        self._load()
        return self._widgets is not None

    def _load(self) -> None:
        if self._started:
            return
        self._started = True
        if self._use_widgets is not False:
            self._widgets = _try_import("ipywidgets")
            if self._widgets is None and self._use_widgets:
                raise ImportError("NotebookProgress(use_widgets=True) needs ipywidgets")
        self._display = _try_import("IPython.display")
        if self._widgets is None and self._display is None:
            raise ImportError("NotebookProgress needs IPython (or ipywidgets)")

    # -- ProgressDisplay --------------------------------------------------------------------

    def update(self, report: PipeReport, shards: Sequence[PipeReport] | None = None) -> None:
        if self._closed:
            return
        est = _estimate(report, shards)
        self._seen = est
        if not self._throttle.due(self._clock(), est, self.min_interval, early_on_change=True):
            return
        self._render(est, "info", _label(est, final=False), message="")

    def close(self, report: PipeReport) -> None:
        if self._closed:
            return
        self._closed = True
        est = _final_estimate(report, self._seen)
        style = "success" if _succeeded(est) else "danger"
        message = "" if _succeeded(est) else report.message
        self._render(est, style, _label(est, final=True), message=message)

    # -- rendering --------------------------------------------------------------------------

    def _render(self, est: _Estimate, style: str, label: str, message: str) -> None:
        self._load()
        percent = round(est.fraction * 100, 1)
        if message:
            # HTML-escaped for the markup, and its control characters shown escaped, as in a
            # terminal: the message is written by the pipes, possibly on other nodes.
            shown = html.escape(printable_lines(message, indent=""))
            label += f'<br><span style="color:{_BAR_COLOURS["danger"]}">{shown}</span>'
        if self._widgets is not None:
            self._render_widgets(self._widgets, percent, style, label)
        elif self._display is not None:
            self._render_html(self._display, percent, style, label)

    def _render_widgets(self, widgets: ModuleType, percent: float, style: str, label: str) -> None:
        if self.bar is None:
            self.bar = widgets.FloatProgress(
                value=percent,
                min=0.0,
                max=100.0,
                description=printable(self.title),  # shown as text: description_allow_html is off
                bar_style=style,
                style={"description_width": "initial"},
                # The label beside it grows (a failure message is long): it wraps, the bar
                # keeps its width instead of shrinking in the flex box.
                layout={"flex": "0 0 auto"},
            )
            self.label = widgets.HTML(value=label)
            self.box = widgets.HBox([self.bar, self.label])
            if self._display is not None:
                self._display.display(self.box)
            return
        self.bar.value = percent
        self.bar.bar_style = style
        self.label.value = label

    def _render_html(self, display: ModuleType, percent: float, style: str, label: str) -> None:
        colour = _BAR_COLOURS[style]
        title = f"<b>{html.escape(printable(self.title))}</b> " if self.title else ""
        markup = (
            f'<div class="zoopipe-progress" data-state="{style}">{title}'
            f'<progress value="{percent}" max="100" '
            f'style="width:20em;vertical-align:middle;accent-color:{colour}"></progress> '
            f'<span style="color:{colour}">{label}</span></div>'
        )
        content = display.HTML(markup)
        if self.display_id is None:
            self.display_id = f"zoopipe-progress-{uuid.uuid4().hex}"
            display.display(content, display_id=self.display_id)
        else:
            display.update_display(content, display_id=self.display_id)


def _label(est: _Estimate, final: bool) -> str:
    parts = [f"{est.fraction * 100:.0f}%", f"{est.rows:,} rows", format_rate(est.rate)]
    parts.append(_errors(est.errors))
    if final:
        parts.append(f"{_outcome_word(est)} in {format_eta(est.elapsed)}")
    elif est.status is PipeStatus.PENDING:
        parts.append("waiting for workers")
    else:
        parts.append(f"ETA {format_eta(est.eta)}")
    parts.append(f"shards {est.finished}/{est.total}")
    text = html.escape(" · ".join(parts))
    problems = _problems(est)
    if problems:
        text += f' · <b style="color:{_BAR_COLOURS["danger"]}">{", ".join(problems)}</b>'
    return text


# -- choosing -------------------------------------------------------------------------------


def auto_display(title: str = "") -> ProgressDisplay | None:
    """A :class:`NotebookProgress` in a notebook, a :class:`TerminalProgress` when stderr is a
    TTY, None otherwise (batch jobs and CI keep their log lines)."""
    if in_notebook():
        return NotebookProgress(title)
    if _isatty(sys.stderr):
        return TerminalProgress(title=title)
    return None
