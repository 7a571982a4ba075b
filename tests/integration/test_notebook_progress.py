"""The progress displays where people look: a real Jupyter kernel, a real PipeManager run.

The notebook tests need ``nbclient``, ``nbformat``, ``ipykernel`` and ``ipywidgets`` (the
``test`` extra); they run a real kernel from this interpreter, not whatever ``python3`` kernel
the machine has registered.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from _frontends import kernel_spec

NOTEBOOK_CODE = textwrap.dedent(
    """
    import time
    from zoopipe_hpc.display import NotebookProgress, in_notebook
    from zoopipe_hpc.report import PipeReport, PipeStatus

    assert in_notebook()
    import sys
    print("EXE", sys.executable)

    def play(progress, fail=False):
        now = time.time()
        shards = [
            PipeReport(pipe_index=i, status=PipeStatus.RUNNING, start_time=now - 5)
            for i in range(4)
        ]
        for step in range(1, 5):
            for s in shards:
                s.total_processed = s.success_count = 250 * step
            shards[step - 1].status = PipeStatus.COMPLETED
            shards[step - 1].end_time = time.time()
            if fail and step == 4:
                shards[3].status = PipeStatus.FAILED
                shards[3].message = "disk full"
            progress.update(PipeReport.aggregate(shards), shards)
        progress.close(PipeReport.aggregate(shards))
        return progress
    """
)

WIDGET_CELL = textwrap.dedent(
    """
    widget = play(NotebookProgress("nb-demo", min_interval=0))
    assert widget.uses_widgets
    print("WIDGET", widget.bar.value, widget.bar.bar_style)
    """
)

HTML_CELL = textwrap.dedent(
    """
    fallback = play(NotebookProgress("nb-html", min_interval=0, use_widgets=False), fail=True)
    print("HTML", fallback.display_id)
    """
)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

RUN_CELL = textwrap.dedent(
    """
    from pydantic import BaseModel
    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager

    class Row(BaseModel):
        id: int

    with open("rows.csv", "w") as f:
        f.write("id\\n" + "".join(f"{i}\\n" for i in range(2000)))
    pipe = Pipe(CSVInputAdapter("rows.csv"), JSONOutputAdapter("rows.jsonl"), Row)
    print("RUN", PipeManager.parallelize_pipe(pipe, workers=2).run())
    """
)


def _have_notebook_stack() -> bool:
    names = ("nbclient", "nbformat", "ipykernel", "ipywidgets")
    return all(importlib.util.find_spec(name) is not None for name in names)


@pytest.mark.skipif(
    not _have_notebook_stack(), reason="needs nbclient, nbformat, ipykernel, ipywidgets"
)
def test_notebook_progress_in_a_real_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    jupyter_path = kernel_spec(tmp_path)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(NOTEBOOK_CODE),
        nbformat.v4.new_code_cell(WIDGET_CELL),
        nbformat.v4.new_code_cell(HTML_CELL),
        nbformat.v4.new_code_cell(RUN_CELL),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "progress.ipynb"
    nbformat.write(nb, path)

    client = NotebookClient(
        nbformat.read(path, as_version=4),
        timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    executed = client.execute()
    nbformat.write(executed, path)  # kept in tmp_path for a look when this fails

    setup = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert f"EXE {sys.executable}" in setup  # the kernel runs this interpreter

    widget_outputs = executed.cells[1].outputs
    views = [o for o in widget_outputs if WIDGET_VIEW in o.get("data", {})]
    assert len(views) == 1, widget_outputs  # one box, updated in place, not one per update
    streams = "".join(o.get("text", "") for o in widget_outputs if o.output_type == "stream")
    assert "WIDGET 100.0 success" in streams

    html_outputs = executed.cells[2].outputs
    shown = [o for o in html_outputs if o.output_type in ("display_data", "update_display_data")]
    assert len(shown) == 1, html_outputs  # updates replace the first display
    markup = shown[0]["data"]["text/html"]
    # nbclient applies update_display_data to the displayed output: this is the final state
    assert "<progress" in markup
    assert 'data-state="danger"' in markup
    assert "FAILED" in markup and "disk full" in markup and "1 failed" in markup
    # PipeManager.run() in a notebook shows the widget by itself, and prints no lines
    run_outputs = executed.cells[3].outputs
    assert [o for o in run_outputs if WIDGET_VIEW in o.get("data", {})], run_outputs
    run_text = "".join(o.get("text", "") for o in run_outputs if o.output_type == "stream")
    assert run_text.strip() == "RUN True", run_outputs
    # the notebook stores the widget state, so the saved file shows the bar too
    state = executed.metadata.get("widgets", {})
    assert "application/vnd.jupyter.widget-state+json" in state


def test_terminal_progress_follows_a_real_run(tmp_path: Path) -> None:
    from _support import User, users, write_csv

    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
    from zoopipe_hpc.display import TerminalProgress

    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    source = write_csv(tmp_path / "in.csv", users(3000, bad_every=100))
    manager = PipeManager.parallelize_pipe(
        Pipe(CSVInputAdapter(source), JSONOutputAdapter(tmp_path / "out.jsonl"), User), workers=3
    )
    stream = TTY()
    progress = TerminalProgress(stream, width=160, title="users", min_interval=0)

    def on_update(report: Any) -> None:
        progress.update(report, manager.pipe_reports)

    assert manager.run(on_report_update=on_update)
    progress.close(manager.report)
    out = stream.getvalue()
    assert out.startswith("\r") and out.endswith("\n")
    last = out.split("\r")[-1]
    assert "users  [####################] 100%" in last
    assert "3,000 rows" in last and "30 errors" in last
    assert "done" in last and "shards 3/3" in last
