"""Tests for zoopipe_hpc.display: terminal line, notebook widget, estimates."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import types
from collections.abc import Sequence
from typing import Any

import pytest

import zoopipe_hpc.display as display_mod
from zoopipe_hpc.display import (
    NotebookProgress,
    ProgressDisplay,
    TerminalProgress,
    auto_display,
    format_eta,
    format_rate,
    in_notebook,
)
from zoopipe_hpc.display._common import _estimate
from zoopipe_hpc.report import PipeReport, PipeStatus

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def shard(
    index: int,
    status: PipeStatus = PipeStatus.RUNNING,
    rows: int = 0,
    errors: int = 0,
    elapsed: float = 10.0,
    message: str = "",
    now: float | None = None,
) -> PipeReport:
    now = time.time() if now is None else now
    started = status is not PipeStatus.PENDING
    return PipeReport(
        pipe_index=index,
        status=status,
        total_processed=rows,
        success_count=rows - errors,
        error_count=errors,
        start_time=now - elapsed if started else None,
        end_time=now if status.is_final else None,
        message=message,
        is_alive=status is PipeStatus.RUNNING,
    )


def run_of(
    statuses: Sequence[PipeStatus], rows: Sequence[int], elapsed: float = 10.0
) -> list[PipeReport]:
    now = time.time()
    return [
        shard(i, status, n, elapsed=elapsed, now=now)
        for i, (status, n) in enumerate(zip(statuses, rows, strict=True))
    ]


def visible(text: str) -> str:
    return ANSI.sub("", text)


# -- helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (98765.4, "98,765 rows/s"),
        (1_234_567.0, "1,234,567 rows/s"),
        (100.0, "100 rows/s"),
        (12.34, "12.3 rows/s"),
        (0.25, "0.25 rows/s"),
        (0.0, "0 rows/s"),
        (-5.0, "0 rows/s"),
        (float("nan"), "0 rows/s"),
        (float("inf"), "? rows/s"),
    ],
)
def test_format_rate(rate: float, text: str) -> None:
    assert format_rate(rate) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (float("nan"), "?"),
        (float("inf"), ">99d"),
        (1e12, ">99d"),
        (0.0, "0:00:00"),
        (-30.0, "0:00:00"),
        (0.4, "0:00:00"),
        (83.0, "0:01:23"),
        (3600 * 27 + 46 * 60 + 40, "27:46:40"),
        (99 * 86400.0, "2376:00:00"),
    ],
)
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text


# -- estimates ------------------------------------------------------------------------------


def test_no_shard_finished_gives_percent_from_shards_and_unknown_eta() -> None:
    shards = run_of([PipeStatus.RUNNING] * 4, [500, 600, 700, 800])
    est = _estimate(PipeReport.aggregate(shards), shards)
    assert est.fraction == 0.0
    assert est.eta is None
    assert est.finished == 0 and est.total == 4
    assert est.rows == 2600 and not est.done


def test_finished_shards_give_the_expected_total() -> None:
    # 2 of 8 shards finished with 1000 rows each: about 8000 rows expected.
    statuses = [PipeStatus.COMPLETED] * 2 + [PipeStatus.RUNNING] * 6
    shards = run_of(statuses, [1000, 1000, 500, 500, 500, 500, 0, 0], elapsed=10.0)
    est = _estimate(PipeReport.aggregate(shards), shards)
    assert est.fraction == pytest.approx(4000 / 8000)
    assert est.rate == pytest.approx(400.0, rel=0.01)
    # 4000 rows to go at 400 rows/s.
    assert est.eta == pytest.approx(10.0, rel=0.01)
    assert est.finished == 2 and est.total == 8


def test_percent_is_capped_until_every_shard_finished() -> None:
    statuses = [PipeStatus.COMPLETED, PipeStatus.RUNNING]
    shards = run_of(statuses, [10, 5000])  # the running shard is far past the estimate
    est = _estimate(PipeReport.aggregate(shards), shards)
    assert est.fraction == 0.99
    assert est.eta is None  # not a negative or zero ETA while work remains
    assert not est.done


def test_all_finished_is_one_hundred_percent() -> None:
    shards = run_of([PipeStatus.COMPLETED] * 3, [10, 20, 30])
    est = _estimate(PipeReport.aggregate(shards), shards)
    assert est.fraction == 1.0 and est.done and est.eta == 0.0
    assert est.finished == est.total == 3


def test_zero_everything_never_divides_by_zero() -> None:
    pending = run_of([PipeStatus.PENDING] * 3, [0, 0, 0])
    est = _estimate(PipeReport.aggregate(pending), pending)
    assert (est.fraction, est.eta, est.rate, est.elapsed) == (0.0, None, 0.0, 0.0)
    # finished shards with no rows at all
    empty = run_of([PipeStatus.COMPLETED, PipeStatus.RUNNING], [0, 0], elapsed=0.0)
    est = _estimate(PipeReport.aggregate(empty), empty)
    assert est.fraction == 0.5 and est.eta is None
    # an empty shard list and a bare report
    assert _estimate(PipeReport.aggregate([]), []).fraction == 1.0
    assert _estimate(PipeReport(pipe_index=-1, pipes_total=0)).fraction == 0.0
    assert _estimate(PipeReport()).fraction == 0.0


def test_failed_shards_are_counted_and_not_used_for_the_estimate() -> None:
    statuses = [PipeStatus.FAILED, PipeStatus.CANCELLED, PipeStatus.RUNNING, PipeStatus.RUNNING]
    shards = run_of(statuses, [3, 0, 100, 100])
    est = _estimate(PipeReport.aggregate(shards), shards)
    assert est.failed == 1 and est.cancelled == 1
    assert est.finished == 2
    # only failed shards finished: no row estimate from them, percent from shards, ETA unknown
    assert est.fraction == 0.5 and est.eta is None


def test_aggregate_alone_uses_shards_finished_and_failures_from_the_message() -> None:
    statuses = [PipeStatus.COMPLETED, PipeStatus.RUNNING, PipeStatus.RUNNING, PipeStatus.FAILED]
    shards = run_of(statuses, [1000, 300, 300, 10], elapsed=10.0)
    shards[3].message = "boom; really"
    aggregate = PipeReport.aggregate(shards)
    est = _estimate(aggregate)
    assert est.finished == 2 and est.total == 4
    assert est.fraction == pytest.approx(0.5)
    assert est.failed == 1
    # every row seen is counted as the finished shards': ETA = elapsed * remaining / finished
    assert est.eta == pytest.approx(10.0, rel=0.01)


def test_a_single_pipe_report_counts_as_one_shard() -> None:
    running = shard(0, PipeStatus.RUNNING, 50)
    assert _estimate(running).total == 1 and _estimate(running).finished == 0
    done = shard(0, PipeStatus.COMPLETED, 50)
    est = _estimate(done)
    assert est.done and est.fraction == 1.0 and est.finished == 1


def test_final_failed_aggregate_without_messages_still_shows_a_failure() -> None:
    shards = run_of([PipeStatus.COMPLETED, PipeStatus.FAILED], [5, 5])
    est = _estimate(PipeReport.aggregate(shards))
    assert est.done and est.failed == 1 and est.finished == 2


# -- terminal -------------------------------------------------------------------------------


def test_tty_redraws_in_place_with_every_field() -> None:
    stream = FakeTTY()
    progress = TerminalProgress(stream, width=200, min_interval=0, title="clean-users")
    statuses = [PipeStatus.COMPLETED] * 5 + [PipeStatus.RUNNING] * 7
    shards = run_of(statuses, [100_000] * 5 + [50_000] * 7, elapsed=10.0)
    for s in shards:
        s.error_count = 1
    progress.update(PipeReport.aggregate(shards), shards)
    progress.update(PipeReport.aggregate(shards), shards)
    out = stream.getvalue()
    assert out.count("\r") == 2
    assert "\n" not in out
    assert out.count("\x1b[K") == 2  # each redraw clears the rest of the old line
    line = visible(out.split("\r")[-1])
    assert line.startswith("clean-users  [")
    assert "850,000 rows" in line
    assert re.search(r"[\d,]+ rows/s", line)
    assert "12 errors" in line
    assert re.search(r"ETA \d+:\d\d:\d\d", line)
    assert "shards 5/12" in line
    assert " 71%" in line  # 850,000 of an expected 1,200,000
    assert "#" * 14 + "-" * 6 in line


def test_tty_line_fits_the_width_and_keeps_what_matters() -> None:
    shards = run_of([PipeStatus.FAILED, PipeStatus.RUNNING], [5, 50])
    for width in (200, 100, 80, 60, 40, 20):
        stream = FakeTTY()
        TerminalProgress(stream, width=width, title="job").update(
            PipeReport.aggregate(shards), shards
        )
        line = visible(stream.getvalue()).lstrip("\r")
        assert len(line) <= width - 1
        if width >= 40:
            assert "1 failed" in line
            assert "50%" in line


def test_tty_failures_are_red_and_close_ends_the_line() -> None:
    stream = FakeTTY()
    progress = TerminalProgress(stream, width=200, min_interval=0)
    shards = run_of([PipeStatus.FAILED, PipeStatus.FAILED, PipeStatus.RUNNING], [1, 2, 3])
    shards[0].message = "disk full"
    progress.update(PipeReport.aggregate(shards), shards)
    assert "\x1b[31m2 failed\x1b[0m" in stream.getvalue()
    shards[2].status = PipeStatus.COMPLETED
    shards[2].end_time = time.time()
    final = PipeReport.aggregate(shards)
    progress.close(final)
    out = stream.getvalue()
    assert out.endswith("\n  pipe 0: disk full\n")
    last = visible(out.split("\r")[-1])
    assert "FAILED in" in last and "shards 3/3" in last and "2 failed" in last
    progress.close(final)  # a second close writes nothing
    progress.update(final)
    assert stream.getvalue() == out


def test_tty_close_on_success_is_green_and_100_percent() -> None:
    stream = FakeTTY()
    progress = TerminalProgress(stream, width=200, title="t")
    shards = run_of([PipeStatus.COMPLETED] * 2, [10, 10])
    progress.close(PipeReport.aggregate(shards))
    out = stream.getvalue()
    assert out.startswith("\r") and out.endswith("\x1b[K\n")
    assert "\x1b[32mdone\x1b[0m in 0:00:10" in out
    assert "100%" in out and "shards 2/2" in out and "failed" not in out


def test_close_before_the_end_says_stopped() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    shards = run_of([PipeStatus.COMPLETED, PipeStatus.RUNNING], [10, 5])
    progress.close(PipeReport.aggregate(shards))
    line = stream.getvalue()
    assert "stopped in" in line and "shards 1/2" in line and "%" in line
    assert line.count("\n") == 1


def test_close_keeps_the_failures_seen_in_updates() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    shards = run_of([PipeStatus.FAILED, PipeStatus.FAILED, PipeStatus.CANCELLED], [1, 1, 1])
    shards[0].message = "only this one has a message"
    progress.update(PipeReport.aggregate(shards), shards)
    progress.close(PipeReport.aggregate(shards))  # the aggregate alone names one failed pipe
    last = stream.getvalue().splitlines()[1]
    assert "2 failed" in last and "1 cancelled" in last and "FAILED in" in last


def test_a_completed_run_closes_as_done_whatever_an_earlier_update_saw() -> None:
    """A shard seen failed, then retried (a Slurm retry, a watch that misread a task for a
    moment): the run that completed is done, on the terminal and in the notebook."""
    shards = run_of([PipeStatus.FAILED, PipeStatus.COMPLETED], [3, 10])
    shards[0].message = "node n2 went down"
    retried = run_of([PipeStatus.COMPLETED, PipeStatus.COMPLETED], [10, 10])
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.update(PipeReport.aggregate(shards), shards)
    progress.close(PipeReport.aggregate(retried))
    last = stream.getvalue().splitlines()[-1]
    assert "done in" in last and "failed" not in last and "FAILED" not in last, last
    assert "shards 2/2" in last, last
    # Without the shards, a failure the aggregate named in an update is equally outdated.
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.update(PipeReport.aggregate(shards))
    progress.close(PipeReport.aggregate(retried))
    last = stream.getvalue().splitlines()[-1]
    assert "done in" in last and "failed" not in last, last


def test_lines_written_during_a_run_go_above_the_bar_never_onto_it() -> None:
    import logging

    stream = FakeTTY()
    progress = TerminalProgress(stream, width=200, title="job")
    progress.write("before any bar")  # nothing drawn yet: written as is
    shards = run_of([PipeStatus.RUNNING, PipeStatus.RUNNING], [5, 5])
    progress.update(PipeReport.aggregate(shards), shards)
    bar = stream.getvalue().split("\r")[-1]
    handler = logging.StreamHandler(progress.above())
    logger = logging.getLogger("zoopipe-test-above")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("job j failed: shard 1: boom")
    finally:
        logger.removeHandler(handler)
    shards[1].status = PipeStatus.FAILED
    progress.close(PipeReport.aggregate(shards))
    progress.write("after the end")
    out = stream.getvalue()
    # The bar's line is cleared, the log line written, the bar drawn again under it.
    assert out.startswith("before any bar\n\r")
    assert f"{bar}\r\x1b[Kjob j failed: shard 1: boom\n\r{bar}" in out
    assert out.count("job j failed") == 1 and out.endswith("\nafter the end\n")
    # Not a TTY: the text as it is, a newline added.
    plain = io.StringIO()
    TerminalProgress(plain).write("no bar here")
    assert plain.getvalue() == "no bar here\n"


def test_no_color_disables_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    stream = FakeTTY()
    shards = run_of([PipeStatus.FAILED, PipeStatus.RUNNING], [1, 2])
    TerminalProgress(stream, width=200).update(PipeReport.aggregate(shards), shards)
    assert "\x1b[31m" not in stream.getvalue() and "1 failed" in stream.getvalue()


def test_tty_throttles_to_min_interval_but_shows_finished_shards_at_once() -> None:
    stream = FakeTTY()
    progress = TerminalProgress(stream, width=200, min_interval=0.2)
    clock = FakeClock()
    progress._clock = clock
    shards = run_of([PipeStatus.RUNNING] * 2, [1, 1])
    progress.update(PipeReport.aggregate(shards), shards)
    clock.now += 0.1
    progress.update(PipeReport.aggregate(shards), shards)
    assert stream.getvalue().count("\r") == 1
    clock.now += 0.1
    progress.update(PipeReport.aggregate(shards), shards)
    assert stream.getvalue().count("\r") == 2
    clock.now += 0.01
    shards[0].status = PipeStatus.COMPLETED
    progress.update(PipeReport.aggregate(shards), shards)
    assert stream.getvalue().count("\r") == 3


def test_plain_stream_prints_full_lines_and_throttles() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, title="clean-users")
    assert not progress.is_tty and progress.interval == pytest.approx(5.0)
    clock = FakeClock()
    progress._clock = clock
    shards = run_of([PipeStatus.COMPLETED, PipeStatus.RUNNING], [1000, 400])
    for _ in range(20):  # 20 updates over 2 s: one line
        progress.update(PipeReport.aggregate(shards), shards)
        clock.now += 0.1
    assert stream.getvalue().count("\n") == 1
    shards.append(shard(2, PipeStatus.FAILED, 1))  # no extra line in a log for this
    progress.update(PipeReport.aggregate(shards), shards)
    shards.pop()
    assert stream.getvalue().count("\n") == 1
    clock.now += 3.0
    progress.update(PipeReport.aggregate(shards), shards)
    assert stream.getvalue().count("\n") == 2
    shards[1].status = PipeStatus.COMPLETED
    shards[1].end_time = time.time()
    progress.close(PipeReport.aggregate(shards))
    out = stream.getvalue()
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("clean-users: ")
    for text in ("rows", "rows/s", "errors", "ETA", "shards 1/2", "70%"):
        assert text in lines[0]
    assert "100%" in lines[-1] and "done in" in lines[-1] and "shards 2/2" in lines[-1]


def test_plain_stream_shows_failures_as_text() -> None:
    stream = io.StringIO()
    shards = run_of([PipeStatus.FAILED, PipeStatus.COMPLETED], [1, 2])
    shards[0].message = "bad input"
    progress = TerminalProgress(stream)
    progress.update(PipeReport.aggregate(shards), shards)
    progress.close(PipeReport.aggregate(shards))
    lines = stream.getvalue().splitlines()
    assert "1 failed" in lines[0]
    assert "FAILED in" in lines[1] and "1 failed" in lines[1]
    assert lines[2] == "  pipe 0: bad input"


def test_pending_run_says_it_waits_for_workers() -> None:
    stream = io.StringIO()
    pending = run_of([PipeStatus.PENDING] * 2, [0, 0])
    TerminalProgress(stream).update(PipeReport.aggregate(pending), pending)
    assert "waiting for workers" in stream.getvalue()
    assert "0 rows" in stream.getvalue() and "shards 0/2" in stream.getvalue()


def test_closed_stream_does_not_break_the_run() -> None:
    stream = FakeTTY()
    progress = TerminalProgress(stream)
    stream.close()
    progress.update(PipeReport())
    progress.close(PipeReport())


def test_update_fits_the_on_report_update_callback() -> None:
    stream = io.StringIO()
    callback = TerminalProgress(stream).update
    callback(PipeReport.aggregate(run_of([PipeStatus.RUNNING], [5])))
    assert "5 rows" in stream.getvalue()


def test_displays_implement_the_protocol() -> None:
    assert isinstance(TerminalProgress(io.StringIO()), ProgressDisplay)
    assert isinstance(NotebookProgress(), ProgressDisplay)


# -- notebook -------------------------------------------------------------------------------


class FakeWidget:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        for key, value in kwargs.items():
            setattr(self, key, value)


class FakeDisplay:
    """A stand-in for IPython.display recording what was shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[Any, str | None]] = []
        self.updated: list[tuple[Any, str]] = []
        module = types.ModuleType("IPython.display")

        class HTML:
            def __init__(self, data: str) -> None:
                self.data = data

        def display(obj: Any, display_id: str | None = None) -> None:
            self.shown.append((obj, display_id))

        def update_display(obj: Any, *, display_id: str) -> None:
            self.updated.append((obj, display_id))

        module.HTML = HTML  # type: ignore[attr-defined]
        module.display = display  # type: ignore[attr-defined]
        module.update_display = update_display  # type: ignore[attr-defined]
        self.module = module


@pytest.fixture
def fake_display(monkeypatch: pytest.MonkeyPatch) -> FakeDisplay:
    fake = FakeDisplay()
    monkeypatch.setitem(sys.modules, "IPython.display", fake.module)
    return fake


@pytest.fixture
def fake_widgets(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("ipywidgets")
    for name in ("FloatProgress", "IntProgress", "HTML", "HBox"):
        setattr(module, name, type(name, (FakeWidget,), {}))
    monkeypatch.setitem(sys.modules, "ipywidgets", module)
    return module


def test_notebook_with_ipywidgets_sets_the_widget_values(
    fake_widgets: types.ModuleType, fake_display: FakeDisplay
) -> None:
    progress = NotebookProgress("clean-users", min_interval=0)
    assert progress.uses_widgets
    assert fake_display.shown == []  # nothing shown before the first update
    shards = run_of([PipeStatus.COMPLETED] + [PipeStatus.RUNNING] * 3, [1000, 500, 500, 0])
    progress.update(PipeReport.aggregate(shards), shards)
    bar, label = progress.bar, progress.label
    assert isinstance(bar, fake_widgets.FloatProgress)
    assert isinstance(label, fake_widgets.HTML)
    assert isinstance(progress.box, fake_widgets.HBox)
    assert progress.box.args == ([bar, label],)
    assert fake_display.shown == [(progress.box, None)]
    assert (bar.min, bar.max) == (0.0, 100.0)
    assert bar.value == pytest.approx(50.0)
    assert bar.bar_style == "info"
    assert bar.description == "clean-users"
    for text in ("50%", "2,000 rows", "rows/s", "0 errors", "ETA", "shards 1/4"):
        assert text in label.value
    # updates change the same widgets
    shards[1].total_processed = 1000
    progress.update(PipeReport.aggregate(shards), shards)
    assert progress.bar is bar and len(fake_display.shown) == 1
    assert bar.value == pytest.approx(62.5)
    for s in shards:
        s.status, s.end_time = PipeStatus.COMPLETED, time.time()
    progress.close(PipeReport.aggregate(shards))
    assert bar.value == 100.0 and bar.bar_style == "success"
    assert "done in" in label.value and "shards 4/4" in label.value


def test_notebook_widget_turns_red_on_failure(
    fake_widgets: types.ModuleType, fake_display: FakeDisplay
) -> None:
    progress = NotebookProgress(min_interval=0)
    shards = run_of([PipeStatus.FAILED, PipeStatus.RUNNING], [1, 1])
    shards[0].message = "<disk> full"
    progress.update(PipeReport.aggregate(shards), shards)
    assert "1 failed" in progress.label.value
    shards[1].status = PipeStatus.CANCELLED
    progress.close(PipeReport.aggregate(shards))
    assert progress.bar.bar_style == "danger"
    assert "FAILED" in progress.label.value
    assert "&lt;disk&gt; full" in progress.label.value  # escaped


def test_notebook_throttles_updates(
    fake_widgets: types.ModuleType, fake_display: FakeDisplay
) -> None:
    progress = NotebookProgress(min_interval=1.0)
    clock = FakeClock()
    progress._clock = clock
    shards = run_of([PipeStatus.RUNNING] * 2, [1, 1])
    progress.update(PipeReport.aggregate(shards), shards)
    shards[0].total_processed = 99
    progress.update(PipeReport.aggregate(shards), shards)
    assert "2 rows" in progress.label.value
    clock.now += 1.0
    progress.update(PipeReport.aggregate(shards), shards)
    assert "100 rows" in progress.label.value


def test_notebook_html_fallback_without_ipywidgets(
    monkeypatch: pytest.MonkeyPatch, fake_display: FakeDisplay
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    progress = NotebookProgress("a <b> title", min_interval=0)
    assert not progress.uses_widgets
    shards = run_of([PipeStatus.COMPLETED, PipeStatus.RUNNING], [100, 30])
    progress.update(PipeReport.aggregate(shards), shards)
    assert len(fake_display.shown) == 1
    content, display_id = fake_display.shown[0]
    assert display_id and display_id == progress.display_id
    assert '<progress value="65.0" max="100"' in content.data
    assert "a &lt;b&gt; title" in content.data
    assert "130 rows" in content.data and "shards 1/2" in content.data
    progress.update(PipeReport.aggregate(shards), shards)
    assert len(fake_display.shown) == 1 and len(fake_display.updated) == 1
    assert fake_display.updated[0][1] == display_id
    shards[1].status, shards[1].end_time = PipeStatus.COMPLETED, time.time()
    progress.close(PipeReport.aggregate(shards))
    final = fake_display.updated[-1][0].data
    assert '<progress value="100.0"' in final
    assert 'data-state="success"' in final and "#2e7d32" in final  # green


def test_notebook_html_fallback_turns_red(
    monkeypatch: pytest.MonkeyPatch, fake_display: FakeDisplay
) -> None:
    progress = NotebookProgress(use_widgets=False)
    shards = run_of([PipeStatus.FAILED], [1])
    shards[0].message = "boom"
    progress.close(PipeReport.aggregate(shards))
    content, _ = fake_display.shown[0]
    assert 'data-state="danger"' in content.data and "#c62828" in content.data
    assert "boom" in content.data and "FAILED" in content.data


def test_notebook_without_ipython_or_widgets_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(ImportError, match="IPython"):
        NotebookProgress().update(PipeReport())
    with pytest.raises(ImportError, match="ipywidgets"):
        NotebookProgress(use_widgets=True).update(PipeReport())


# -- detection ------------------------------------------------------------------------------


def fake_ipython(shell_class_name: str | None) -> types.ModuleType:
    module = types.ModuleType("IPython")
    shell = None if shell_class_name is None else type(shell_class_name, (), {})()
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    return module


def test_in_notebook_is_false_in_pytest() -> None:
    assert in_notebook() is False


@pytest.mark.parametrize(
    ("shell", "expected"),
    [("ZMQInteractiveShell", True), ("TerminalInteractiveShell", False), (None, False)],
)
def test_in_notebook_looks_at_the_shell(
    monkeypatch: pytest.MonkeyPatch, shell: str | None, expected: bool
) -> None:
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython(shell))
    assert in_notebook() is expected


def test_in_notebook_accepts_subclasses_of_the_kernel_shell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("IPython")
    base = type("ZMQInteractiveShell", (), {})
    colab = type("Shell", (base,), {})
    module.get_ipython = lambda: colab()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)
    assert in_notebook() is True


def test_in_notebook_never_imports_ipython() -> None:
    code = (
        "import sys\n"
        "from zoopipe_hpc.display import in_notebook, auto_display\n"
        "assert in_notebook() is False\n"
        "auto_display()\n"
        "assert 'IPython' not in sys.modules and 'ipywidgets' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, stdin=subprocess.DEVNULL)


def test_auto_display_picks_where_people_look(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert auto_display() is None
    monkeypatch.setattr(sys, "stderr", FakeTTY())
    chosen = auto_display("t")
    assert isinstance(chosen, TerminalProgress) and chosen.title == "t" and chosen.is_tty
    monkeypatch.setitem(sys.modules, "IPython", fake_ipython("ZMQInteractiveShell"))
    chosen = auto_display("nb")
    assert isinstance(chosen, NotebookProgress) and chosen.title == "nb"


def test_module_has_no_side_effects_at_import() -> None:
    assert set(display_mod.__all__) == {
        "ProgressDisplay",
        "TerminalProgress",
        "NotebookProgress",
        "in_notebook",
        "auto_display",
        "format_rate",
        "format_eta",
    }
