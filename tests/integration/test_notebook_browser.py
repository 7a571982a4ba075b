"""The notebook widget as a user sees it: JupyterLab, headless Chromium, a real PipeManager run.

JupyterLab serves a notebook generated in the test's folder; Chromium (driven by Selenium
through Debian's ``chromium-driver``) opens it and runs every cell; the last cell runs a
``PipeManager`` on local processes, with invalid records, and the test reads the rendered
ipywidgets progress bar from the page while it runs and once it is over. A screenshot of the
final page is saved as ``notebook.png`` in the test's folder.

Needs ``jupyterlab``, ``selenium`` and ``ipywidgets`` (the ``test`` extra) and the Debian
packages ``chromium`` and ``chromium-driver`` (``scripts/test`` installs them as root).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from _frontends import free_port, kernel_spec, need_tools, session, wait_until

SHARDS = 3
ROWS = 240  # 80 a shard, 20 ms each: about 1.6 s of work a shard
BAD_EVERY = 40  # ids 0, 40, 80, ... are not integers: 6 invalid records

RUN_CELL = textwrap.dedent(
    f"""
    import time, zoopipe_hpc
    from pydantic import BaseModel, field_validator
    from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
    from zoopipe_hpc.engines import MultiProcessEngine

    print("ZOOPIPE", zoopipe_hpc.__file__)

    class Row(BaseModel):
        id: int
        name: str

        @field_validator("name")
        @classmethod
        def slow(cls, value):
            time.sleep(0.02)
            return value

    with open("rows.csv", "w") as f:
        f.write("id,name\\n")
        for i in range({ROWS}):
            f.write(f"{{'x' if i % {BAD_EVERY} == 0 else i}},row{{i}}\\n")
    pipe = Pipe(
        CSVInputAdapter("rows.csv"),
        JSONOutputAdapter("rows.jsonl"),
        Row,
        error_output_adapter=JSONOutputAdapter("errors.jsonl"),
    )
    manager = PipeManager.parallelize_pipe(pipe, workers={SHARDS}, engine=MultiProcessEngine())
    print("RUN", manager.run())
    """
)

# A second cell: a validator that raises (a bug in the model, not an invalid record) fails
# the shard holding row 100, so the run fails and commits nothing. Its message quotes markup,
# which the label must show as text.
FAIL_CELL = textwrap.dedent(
    f"""
    class Strict(Row):
        @field_validator("name")
        @classmethod
        def strict(cls, value):
            if value == "row100":
                raise RuntimeError("<b>lookup table</b> missing")
            return value

    strict = Pipe(
        CSVInputAdapter("rows.csv"),
        JSONOutputAdapter("strict.jsonl"),
        Strict,
        error_output_adapter=JSONOutputAdapter("strict-errors.jsonl"),
    )
    failing = PipeManager.parallelize_pipe(strict, workers={SHARDS}, engine=MultiProcessEngine())
    print("FAILED-RUN", failing.run())
    """
)

# Reads the widget of code cell ``arguments[0]`` off the page: the FloatProgress (its bar's
# width, its colour class, its size on the screen), the HTML label next to it (its text, and
# the text of its bold elements), and the text of the cell's whole output area.
READ_WIDGET = """
const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[arguments[0]];
const area = cell && cell.querySelector('.jp-OutputArea');
const box = area && area.querySelector('.widget-hbox');
if (!box) { return null; }
const bar = box.querySelector('.widget-hprogress .progress-bar');
const label = box.querySelector('.widget-html-content');
if (!bar || !label) { return null; }
return {
  width: bar.style.width,
  bar_px: Math.round(box.querySelector('.widget-hprogress').getBoundingClientRect().width),
  classes: bar.className,
  label: label.textContent,
  bold: Array.from(label.querySelectorAll('b')).map((b) => b.textContent).join('|'),
  outputs: area.textContent,
};
"""


def _have_python_stack() -> bool:
    names = ("jupyterlab", "selenium", "ipywidgets", "ipykernel", "nbformat")
    return all(importlib.util.find_spec(name) is not None for name in names)


def _notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(RUN_CELL), nbformat.v4.new_code_cell(FAIL_CELL)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def _server_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _lab_env(tmp_path: Path) -> dict[str, str]:
    """JupyterLab's configuration, data, runtime, settings and workspaces all in ``tmp_path``,
    the kernel being this interpreter with this checkout first on its path. No news toast over
    the notebook."""
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    env = dict(os.environ)
    checkout = str(Path(__file__).parents[2])
    env.update(
        JUPYTER_PATH=str(kernel_spec(tmp_path)),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        PYTHONPATH=os.pathsep.join([checkout, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def _browser_env(tmp_path: Path) -> dict[str, str]:
    """Chromium's home, configuration (its crash reports) and cache in ``tmp_path``."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = dict(os.environ)
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache")
    )
    return env


def _chrome(port: int, tmp_path: Path) -> Any:
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container: the sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    return webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=options)


def _percent(width: str) -> float:
    match = re.fullmatch(r"([\d.]+)%", width.strip())
    if match is None:
        raise AssertionError(f"the bar's width is not a percentage: {width!r}")
    return float(match.group(1))


@pytest.mark.skipif(
    not _have_python_stack(), reason="needs jupyterlab, selenium, ipywidgets, ipykernel, nbformat"
)
def test_the_widget_in_jupyterlab_in_chromium(tmp_path: Path) -> None:
    need_tools("chromium", "chromedriver", packages="chromium and chromium-driver")
    _notebook(tmp_path / "progress.ipynb")
    token = uuid.uuid4().hex
    lab_port, driver_port = free_port(), free_port()
    lab = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={lab_port}",
        "--ServerApp.port_retries=0",  # the port we chose, or an error
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={tmp_path}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run cells without clicking
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no look-ups on PyPI from a test
    ]
    base = f"http://127.0.0.1:{lab_port}"
    with (
        session(lab, log=tmp_path / "jupyterlab.log", env=_lab_env(tmp_path), cwd=tmp_path),
        session(
            ["chromedriver", f"--port={driver_port}"],
            log=tmp_path / "chromedriver.log",
            env=_browser_env(tmp_path),
        ),
    ):
        wait_until("JupyterLab", lambda: _server_up(f"{base}/api/status?token={token}"), 60)
        wait_until("chromedriver", lambda: _server_up(f"http://127.0.0.1:{driver_port}/status"), 30)
        driver = _chrome(driver_port, tmp_path)
        try:
            seen, failure = _run_and_watch(driver, f"{base}/lab/tree/progress.ipynb?token={token}")
        finally:  # the page as it was, also for a look when this failed
            driver.save_screenshot(str(tmp_path / "notebook.png"))
            (tmp_path / "notebook.html").write_text(driver.page_source)
            driver.quit()
    _check(seen, tmp_path)
    _check_failure(failure, tmp_path)
    # A long failure message wraps beside the bar; it does not squeeze the bar.
    assert failure["bar_px"] == seen[-1]["bar_px"] > 100, (failure, seen[-1])


def _run_and_watch(driver: Any, url: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Open the notebook, wait for its kernel, run every cell: the first cell's widget states
    read on the way (the last one read after the cell printed its result), and the second
    cell's widget once that cell printed its own."""
    driver.get(url)
    idle = (
        "const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        "const k = w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel;"
        "return !!(k && k.status === 'idle' && w.content.widgets.length === 2);"
    )
    wait_until("the notebook and an idle kernel", lambda: driver.execute_script(idle), 90, 0.3)
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    seen: list[dict[str, str]] = []

    def finished() -> bool:
        state = driver.execute_script(READ_WIDGET, 0)
        if state is not None and (not seen or state != seen[-1]):
            seen.append(state)
        return state is not None and "RUN " in state["outputs"]

    wait_until("the run to end in the notebook", finished, 60, 0.1)
    # The cell printed its result; the last widget update came before it. Read it once more.
    time.sleep(0.3)
    seen.append(driver.execute_script(READ_WIDGET, 0))

    def failed() -> dict[str, str] | None:
        state: dict[str, str] | None = driver.execute_script(READ_WIDGET, 1)
        return state if state is not None and "FAILED-RUN " in state["outputs"] else None

    wait_until("the failing run to end in the notebook", failed, 60, 0.1)
    time.sleep(0.3)
    driver.execute_script(
        "window.jupyterapp.commands.execute('application:toggle-left-area');"
        "const boxes = document.querySelectorAll('.jp-OutputArea .widget-hbox');"
        "boxes[boxes.length - 1].scrollIntoView({block: 'center'});"
    )
    return seen, driver.execute_script(READ_WIDGET, 1)


def _check(seen: list[dict[str, str]], tmp_path: Path) -> None:
    final = seen[-1]
    assert "RUN True" in final["outputs"], final
    assert f"ZOOPIPE {Path(__file__).parents[2] / 'zoopipe_hpc'}" in final["outputs"], final
    invalid = len(range(0, ROWS, BAD_EVERY))
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == invalid
    # The bar: full and green; the label: every row, the invalid ones, every shard, success.
    assert _percent(final["width"]) == 100.0, final
    assert "progress-bar-success" in final["classes"], final
    label = final["label"]
    assert label.startswith("100% · "), label
    assert f"{ROWS:,} rows" in label, label
    assert f"{invalid} errors" in label, label
    assert f"shards {SHARDS}/{SHARDS}" in label, label
    assert re.search(r"done in \d+:\d\d:\d\d", label), label
    assert "failed" not in label, label
    # While it ran, the page showed it running: a blue bar that only grew, shards not all done.
    running = [s for s in seen[:-1] if "progress-bar-success" not in s["classes"]]
    assert running, seen
    assert all("progress-bar-info" in s["classes"] for s in running), running
    assert all(f"/{SHARDS}" in s["label"] and "done in" not in s["label"] for s in running)
    widths = [_percent(s["width"]) for s in seen]
    assert widths == sorted(widths), widths
    assert (tmp_path / "notebook.png").stat().st_size > 10_000


def _check_failure(final: dict[str, str], tmp_path: Path) -> None:
    """The failed run: a full red bar, the failed shard counted and its message shown as text
    (its markup escaped, not rendered), nothing committed."""
    assert "FAILED-RUN False" in final["outputs"], final
    assert _percent(final["width"]) == 100.0, final  # every shard is over
    assert "progress-bar-danger" in final["classes"], final
    label = final["label"]
    assert re.search(r"FAILED in \d+:\d\d:\d\d", label), label
    assert f"shards {SHARDS}/{SHARDS}" in label and "1 failed" in label, label
    assert "rows.csv:102" in label and "RuntimeError: <b>lookup table</b> missing" in label, label
    assert final["bold"] == "1 failed", final  # the only bold text is the display's own
    assert not (tmp_path / "strict.jsonl").exists()
