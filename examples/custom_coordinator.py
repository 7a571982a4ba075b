"""A coordinator of your own: a summary file written only after the data is committed.

Run it with ``python examples/custom_coordinator.py [OUTPUT_DIR]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from zoopipe_hpc import CSVInputAdapter, JSONOutputAdapter, Pipe, PipeManager
from zoopipe_hpc.coordinators import BaseCoordinator


class Reading(BaseModel):
    sensor: str
    value: float


class SummaryCoordinator(BaseCoordinator):
    """Runs after the FileMergeCoordinator (priority 100) has committed the outputs."""

    priority = 0

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_finish(self, manager: Any, results: list[Any]) -> None:
        report = manager.report
        summary = {"rows": report.total_processed, "invalid": report.error_count}
        self.path.write_text(json.dumps(summary) + "\n")

    def on_error(self, manager: Any, error: BaseException) -> None:
        self.path.write_text(json.dumps({"failed": str(error)}) + "\n")


def main() -> int:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/output")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "readings.csv"
    source.write_text("sensor,value\n" + "".join(f"s{i % 5},{i / 10}\n" for i in range(300)))
    pipe = Pipe(
        input_adapter=CSVInputAdapter(source),
        output_adapter=JSONOutputAdapter(folder / "readings.jsonl"),
        schema_model=Reading,
    )
    summary = folder / "summary.json"
    manager = PipeManager.parallelize_pipe(pipe, workers=3, coordinator=SummaryCoordinator(summary))
    ok = manager.run()
    print(summary.read_text().strip())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
