"""Live progress displays: a redrawn bar in a terminal, a widget in Jupyter.

Both displays take the aggregate :class:`~zoopipe_hpc.report.PipeReport` of a run (and, when
available, the per-shard reports) through ``update``, and render a final success or failure
line through ``close``. ``update`` has the shape of ``PipeManager.run(on_report_update=...)``,
so ``run(on_report_update=TerminalProgress().update)`` works as is. See
``docs/progress-display.md``. Nothing here imports IPython or ipywidgets at import time.
"""

from ._common import ProgressDisplay, format_eta, format_rate
from .notebook import NotebookProgress, auto_display, in_notebook
from .terminal import TerminalProgress

__all__ = [
    "ProgressDisplay",
    "TerminalProgress",
    "NotebookProgress",
    "in_notebook",
    "auto_display",
    "format_rate",
    "format_eta",
]
