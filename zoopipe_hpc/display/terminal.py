"""The terminal progress bar: one line redrawn in place on a TTY, plain lines elsewhere."""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from .._text import printable, printable_lines
from ..report import PipeReport, PipeStatus
from ._common import (
    _CLEAR_EOL,
    _GREEN,
    _RED,
    _RESET,
    _errors,
    _Estimate,
    _estimate,
    _Field,
    _final_estimate,
    _isatty,
    _outcome_word,
    _problems,
    _succeeded,
    _Throttle,
    format_eta,
    format_rate,
)

__all__ = ["TerminalProgress"]


class TerminalProgress:
    """A progress line on ``stream`` (default ``sys.stderr``).

    On a TTY, one line is redrawn in place, at most every ``min_interval`` seconds::

        clean-users  [#########-----------]  45%  1,234,567 rows  98,765 rows/s  12 errors
            ETA 0:01:23  shards 5/12          (one line, cut here to fit this page)

    Elsewhere (CI logs, files), a plain line is written at most every ``min_interval * 25``
    seconds (5 s by default), without ``"\\r"`` or colours, and a last one on :meth:`close`.
    ``width`` is the line width on a TTY (default: the terminal's width). Colours are off when
    ``NO_COLOR`` is set.

    The title and the failure message (written by the pipes, possibly on other nodes) are shown
    with their control characters escaped (:mod:`zoopipe_hpc._text`): the only escape
    sequences written are the display's own colours and its clear-to-end-of-line.
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
        self._line: str | None = None  # the bar on a TTY's screen, redrawn after a write above it

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
            self._line = None
        else:
            self._write(self._plain_line(est, final=True) + "\n")
        if report.message and not _succeeded(est):
            self._write(f"  {printable_lines(report.message, indent='    ')}\n")

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
        head = f"{printable(self.title)}: " if self.title else ""
        return head + "  ".join(field.text for field in self._fields(est, final))

    def _tty_line(self, est: _Estimate, final: bool = False) -> str:
        fields = self._fields(est, final)
        head = f"{printable(self.title)}  " if self.title else ""
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

    def write(self, text: str) -> None:
        """Write ``text`` above the bar, as whole lines (a newline is added if it lacks one).

        On a TTY with the bar drawn, the bar's line is cleared, ``text`` written, and the bar
        drawn again below it: a log line or a message printed during the run never glues onto
        the bar. Elsewhere, and once closed, ``text`` is simply written. :meth:`above` gives a
        stream that writes through here, for a ``logging.StreamHandler``.
        """
        if not text:
            return
        if not text.endswith("\n"):
            text += "\n"
        if self._line is None:
            self._write(text)
            return
        self._write("\r" + _CLEAR_EOL + text)
        self._redraw(self._line)

    def above(self) -> io.TextIOBase:
        """A text stream whose writes go through :meth:`write` (above the bar)."""
        return _Above(self)

    def _redraw(self, line: str) -> None:
        self._line = line
        self._write("\r" + line + _CLEAR_EOL)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream must not break the run
            pass


class _Above(io.TextIOBase):
    """What :meth:`TerminalProgress.above` returns: lines written above a progress bar."""

    def __init__(self, progress: TerminalProgress) -> None:
        self._progress = progress

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._progress.write(text)
        return len(text)
