"""Live progress displays: a redrawn bar in a terminal, a widget in Jupyter.

Both displays take the aggregate :class:`~zoopipe_hpc.report.PipeReport` of a run (and, when
available, the per-shard reports) through :meth:`ProgressDisplay.update`, and render a final
success or failure line through :meth:`ProgressDisplay.close`. ``update`` has the shape of
``PipeManager.run(on_report_update=...)``, so ``run(on_report_update=TerminalProgress().update)``
works as is. See ``docs/progress-display.md``.

Nothing here imports IPython or ipywidgets at import time; both are optional.
"""

from __future__ import annotations

import html
import importlib
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any, Protocol, TextIO, runtime_checkable

from ..report import PipeReport, PipeStatus

__all__ = [
    "ProgressDisplay",
    "TerminalProgress",
    "NotebookProgress",
    "in_notebook",
    "auto_display",
    "format_rate",
    "format_eta",
]

# Until at least one shard finished, or past this, the ETA is shown as unknown / ">99d".
_MAX_ETA = 99 * 86400.0
# Percent shown while some shard is still running, whatever the estimate says.
_RUNNING_CAP = 0.99

_RED = "\x1b[31m"
_GREEN = "\x1b[32m"
_RESET = "\x1b[0m"
_CLEAR_EOL = "\x1b[K"

_FAILED_PIPE = re.compile(r"(?:^|; )pipe (\d+): ")


@runtime_checkable
class ProgressDisplay(Protocol):
    """Something that shows the progress of a run."""

    def update(self, report: PipeReport, shards: Sequence[PipeReport] | None = None) -> None:
        """Show ``report`` (the aggregate of a run, or one pipe's report) and its shards."""
        ...

    def close(self, report: PipeReport) -> None:
        """Render the final state (success or failure). Later calls do nothing."""
        ...


# -- formatting helpers ---------------------------------------------------------------------


def format_rate(x: float) -> str:
    """Rows per second for humans: ``"98,765 rows/s"``, ``"12.3 rows/s"``, ``"0.25 rows/s"``.

    Negative, NaN and infinite rates show as ``"0 rows/s"`` and ``"? rows/s"``.
    """
    if math.isnan(x) or x <= 0:
        return "0 rows/s"
    if math.isinf(x):
        return "? rows/s"
    if x >= 100:
        return f"{x:,.0f} rows/s"
    if x >= 10:
        return f"{x:.1f} rows/s"
    return f"{x:.2f} rows/s"


def format_eta(seconds: float | None) -> str:
    """``"0:01:23"``, ``"27:46:40"`` for long runs, ``"?"`` when unknown, ``">99d"`` when absurd.

    Negative values (clocks skew between nodes) show as ``"0:00:00"``.
    """
    if seconds is None or math.isnan(seconds):
        return "?"
    if seconds > _MAX_ETA:
        return ">99d"
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


# -- estimation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Estimate:
    """What every display shows, computed once from a report and its shards."""

    fraction: float  # 0.0 .. 1.0
    eta: float | None  # seconds, None when unknown
    rows: int
    errors: int
    rate: float
    elapsed: float
    finished: int
    total: int
    failed: int
    cancelled: int
    done: bool
    status: PipeStatus


def _estimate(report: PipeReport, shards: Sequence[PipeReport] | None = None) -> _Estimate:
    """Percent done and ETA of ``report``; see ``docs/progress-display.md`` for the method.

    With ``shards``, the finished shards' row counts give the expected rows per shard. Without
    them (the aggregate alone), the rows of the finished shards are unknown: every row seen so
    far is counted as theirs, which reduces to percent = shards finished / shards, an estimate
    that can only err on the pessimistic side.
    """
    if shards is None and report.pipe_index >= 0:
        shards = [report]  # a single pipe's own report
    rows = max(0, report.total_processed)
    elapsed = report.duration
    rate = rows / elapsed if elapsed > 0 else 0.0

    if shards is not None and len(shards) > 0:
        total = len(shards)
        finished = sum(1 for s in shards if s.is_finished)
        failed = sum(1 for s in shards if s.status is PipeStatus.FAILED)
        cancelled = sum(1 for s in shards if s.status is PipeStatus.CANCELLED)
        completed = [s for s in shards if s.status is PipeStatus.COMPLETED]
        basis_shards = len(completed)
        basis_rows = sum(max(0, s.total_processed) for s in completed)
    else:
        total = max(0, report.pipes_total)
        finished = min(max(0, report.pipes_finished), total)
        failed = len(set(_FAILED_PIPE.findall(report.message)))
        if report.status is PipeStatus.FAILED:
            failed = max(failed, 1)
        cancelled = 1 if report.status is PipeStatus.CANCELLED and failed == 0 else 0
        basis_shards = finished
        basis_rows = rows

    done = report.is_finished or (total > 0 and finished >= total)
    if done:
        return _Estimate(
            fraction=1.0,
            eta=0.0,
            rows=rows,
            errors=report.error_count,
            rate=rate,
            elapsed=elapsed,
            finished=total if report.is_finished and shards is None else finished,
            total=total,
            failed=failed,
            cancelled=cancelled,
            done=True,
            status=report.status,
        )

    fraction = finished / total if total > 0 else 0.0
    eta: float | None = None
    if basis_shards > 0 and basis_rows > 0 and total > 0:
        expected = basis_rows / basis_shards * total
        fraction = rows / expected
        remaining = expected - rows
        if rate > 0 and remaining > 0:
            eta = remaining / rate
    fraction = min(_RUNNING_CAP, max(0.0, fraction))
    if eta is not None and (math.isnan(eta) or eta < 0):
        eta = None
    return _Estimate(
        fraction=fraction,
        eta=eta,
        rows=rows,
        errors=report.error_count,
        rate=rate,
        elapsed=elapsed,
        finished=finished,
        total=total,
        failed=failed,
        cancelled=cancelled,
        done=False,
        status=report.status,
    )


def _final_estimate(report: PipeReport, seen: _Estimate | None) -> _Estimate:
    """The estimate of a final ``report`` given alone, keeping the failures seen in updates."""
    est = _estimate(report)
    if seen is None or seen.total != est.total:
        return est
    return replace(
        est, failed=max(est.failed, seen.failed), cancelled=max(est.cancelled, seen.cancelled)
    )


def _succeeded(est: _Estimate) -> bool:
    return est.status is PipeStatus.COMPLETED and est.failed == 0 and est.cancelled == 0


def _outcome_word(est: _Estimate) -> str:
    if _succeeded(est):
        return "done"
    if est.failed or est.status is PipeStatus.FAILED:
        return "FAILED"
    if est.cancelled or est.status is PipeStatus.CANCELLED:
        return "CANCELLED"
    return "stopped"  # closed before the run reached a final state


def _errors(count: int) -> str:
    return f"{count:,} error" + ("" if count == 1 else "s")


def _problems(est: _Estimate) -> list[str]:
    problems = []
    if est.failed:
        problems.append(f"{est.failed} failed")
    if est.cancelled:
        problems.append(f"{est.cancelled} cancelled")
    return problems


# -- terminal -------------------------------------------------------------------------------


@dataclass
class _Field:
    """One field of a terminal line; the highest ``priority`` goes first when space lacks."""

    priority: int
    pieces: list[tuple[str, str]]

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.pieces)


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    if not callable(isatty):
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):  # closed or detached streams
        return False


class _Throttle:
    """When a display redraws: once per interval, and sooner (if asked) when the shards'
    states change (one finished, failed or was cancelled)."""

    def __init__(self) -> None:
        self._last_draw: float | None = None
        self._last_key: tuple[object, ...] | None = None

    def due(self, now: float, est: _Estimate, interval: float, *, early_on_change: bool) -> bool:
        key: tuple[object, ...] = (est.status, est.finished, est.failed, est.cancelled)
        due = self._last_draw is None or now - self._last_draw >= interval
        if not due and (key == self._last_key or not early_on_change):
            return False
        self._last_draw = now
        self._last_key = key
        return True


class TerminalProgress:
    """A progress line on ``stream`` (default ``sys.stderr``).

    On a TTY, one line is redrawn in place, at most every ``min_interval`` seconds::

        clean-users  [#########-----------]  45%  1,234,567 rows  98,765 rows/s  12 errors
            ETA 0:01:23  shards 5/12          (one line, cut here to fit this page)

    Elsewhere (CI logs, files), a plain line is written at most every ``min_interval * 25``
    seconds (5 s by default), without ``"\\r"`` or colours, and a last one on :meth:`close`.
    ``width`` is the line width on a TTY (default: the terminal's width). Colours are off when
    ``NO_COLOR`` is set.
    """

    BAR_WIDTH = 20

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        width: int | None = None,
        min_interval: float = 0.2,
        title: str = "",
    ) -> None:
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self.title = title
        self.min_interval = max(0.0, min_interval)
        self.is_tty = _isatty(self.stream)
        self.color = self.is_tty and not os.environ.get("NO_COLOR")
        self._width = width
        self._clock: Callable[[], float] = time.monotonic
        self._throttle = _Throttle()
        self._seen: _Estimate | None = None
        self._closed = False

    @property
    def width(self) -> int:
        if self._width is not None:
            return max(20, self._width)
        return max(20, shutil.get_terminal_size((100, 24)).columns)

    @property
    def interval(self) -> float:
        """Seconds between two renders: ``min_interval`` on a TTY, 25 times that elsewhere."""
        return self.min_interval if self.is_tty else self.min_interval * 25

    # -- ProgressDisplay --------------------------------------------------------------------

    def update(self, report: PipeReport, shards: Sequence[PipeReport] | None = None) -> None:
        if self._closed:
            return
        est = _estimate(report, shards)
        self._seen = est
        # On a TTY, shards finishing or failing are worth a redraw even inside the interval;
        # a log gets no more than one line per interval.
        if not self._throttle.due(self._clock(), est, self.interval, early_on_change=self.is_tty):
            return
        if self.is_tty:
            self._redraw(self._tty_line(est))
        else:
            self._write(self._plain_line(est) + "\n")

    def close(self, report: PipeReport) -> None:
        if self._closed:
            return
        self._closed = True
        est = _final_estimate(report, self._seen)
        if self.is_tty:
            self._redraw(self._tty_line(est, final=True))
            self._write("\n")
        else:
            self._write(self._plain_line(est, final=True) + "\n")
        if report.message and not _succeeded(est):
            self._write(f"  {report.message}\n")

    # -- rendering --------------------------------------------------------------------------

    def _fields(self, est: _Estimate, final: bool) -> list[_Field]:
        """The fields after the bar, each made of pieces with their colour ("" for none)."""
        fields = [
            _Field(0, [(f"{est.fraction * 100:3.0f}%", "")]),
            _Field(1, [(f"{est.rows:,} rows", "")]),
            _Field(5, [(format_rate(est.rate), "")]),
            _Field(4, [(_errors(est.errors), "")]),
        ]
        if final:
            colour = _GREEN if _succeeded(est) else _RED
            word = _outcome_word(est)
            fields.append(_Field(0, [(word, colour), (f" in {format_eta(est.elapsed)}", "")]))
        elif est.status is PipeStatus.PENDING:
            fields.append(_Field(2, [("waiting for workers", "")]))
        else:
            fields.append(_Field(2, [(f"ETA {format_eta(est.eta)}", "")]))
        fields.append(_Field(3, [(f"shards {est.finished}/{est.total}", "")]))
        fields.extend(_Field(0, [(problem, _RED)]) for problem in _problems(est))
        return fields

    def _plain_line(self, est: _Estimate, final: bool = False) -> str:
        head = f"{self.title}: " if self.title else ""
        return head + "  ".join(field.text for field in self._fields(est, final))

    def _tty_line(self, est: _Estimate, final: bool = False) -> str:
        fields = self._fields(est, final)
        head = f"{self.title}  " if self.title else ""
        # Leave the last column free: writing into it makes some terminals wrap.
        limit = self.width - 1

        def tail_len() -> int:
            return sum(len(field.text) for field in fields) + 2 * (len(fields) - 1)

        # Too narrow: first the bar shrinks, then it goes, then the least useful fields.
        bar_width = min(self.BAR_WIDTH, limit - len(head) - tail_len() - 3)
        while bar_width < 5 and len(head) + tail_len() > limit and len(fields) > 1:
            least = max(fields, key=lambda field: field.priority)
            if least.priority == 0:
                break
            fields.remove(least)
        if bar_width >= 5:
            filled = int(est.fraction * bar_width)
            head += f"[{'#' * filled}{'-' * (bar_width - filled)}] "
        pieces: list[tuple[str, str]] = [(head, "")]
        for index, field in enumerate(fields):
            if index:
                pieces.append(("  ", ""))
            pieces.extend(field.pieces)
        parts: list[str] = []
        used = 0
        for text, colour in pieces:
            text = text[: max(0, limit - used)]
            if not text:
                continue
            used += len(text)
            parts.append(f"{colour}{text}{_RESET}" if colour and self.color else text)
        return "".join(parts)

    def _redraw(self, line: str) -> None:
        self._write("\r" + line + _CLEAR_EOL)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream must not break the run
            pass


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
            label += (
                f'<br><span style="color:{_BAR_COLOURS["danger"]}">{html.escape(message)}</span>'
            )
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
                description=self.title,
                bar_style=style,
                style={"description_width": "initial"},
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
        title = f"<b>{html.escape(self.title)}</b> " if self.title else ""
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
