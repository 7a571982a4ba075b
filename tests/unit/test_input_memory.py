"""A worker's peak memory does not grow with the size of a compressed input or of a folder of
many input files: each is measured in a fresh process, for an input and one 4x larger.

No time is asserted. ``benchmarks/json_inputs.py`` prints the same figures as ratios.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (VmHWM)"
)

_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pydantic import BaseModel
    from zoopipe_hpc import CSVInputAdapter, ParquetOutputAdapter, Pipe

    class Row(BaseModel):
        id: int
        text: str

    source, target = sys.argv[1], Path(sys.argv[2])
    report = Pipe(CSVInputAdapter(source), ParquetOutputAdapter(target), Row).run()
    # VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forking parent.
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))
    print(report.success_count, peak)
    """
)

#: Rows of the small input (34 MB of CSV); the large one has 4x as many. Smaller inputs would
#: not show streaming: a worker's memory reaches its plateau (Arrow blocks and buffers, the
#: allocator's arenas) only after some 100,000 rows, for a plain file as for these.
_ROWS = 160_000
_TEXT = "é" * 100  # 200 bytes a row, plus its id


def _csv(rows: int, start: int = 0) -> bytes:
    lines = [f"{i},{_TEXT}{i}\n" for i in range(start, start + rows)]
    return ("id,text\n" + "".join(lines)).encode("utf-8")


def _gzip_input(folder: Path, rows: int) -> str:
    path = folder / "in.csv.gz"
    path.write_bytes(gzip.compress(_csv(rows), compresslevel=1))
    return str(path)


def _many_files(folder: Path, rows: int) -> str:
    """``rows`` spread over files of 4,000 rows each (40 files, then 160)."""
    inputs = folder / "in"
    inputs.mkdir()
    for n, start in enumerate(range(0, rows, 4000)):
        (inputs / f"part-{n:04d}.csv").write_bytes(_csv(4000, start))
    return str(inputs)


def _peak_mib(tmp_path: Path, make: object, rows: int) -> float:
    folder = tmp_path / f"{rows}"
    folder.mkdir()
    source = make(folder, rows)  # type: ignore[operator]
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, source, str(folder / "out.parquet")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    written, peak_kib = map(int, done.stdout.split())
    assert written == rows
    return peak_kib / 1024


@pytest.mark.parametrize("make", [_gzip_input, _many_files], ids=["gzip", "many-files"])
def test_peak_rss_does_not_grow_with_the_input(tmp_path: Path, make: object) -> None:
    small = _peak_mib(tmp_path, make, _ROWS)
    large = _peak_mib(tmp_path, make, 4 * _ROWS)
    more_input = 3 * _ROWS * (len(_TEXT.encode()) + 8) / 2**20  # MiB more decompressed CSV
    assert large / small < 1.5, f"peak RSS {small:.0f} -> {large:.0f} MiB for 4x the input"
    # Stricter than the ratio (the interpreter and libraries are most of the peak): the peak
    # grows by less than half of what the input did (holding the input, even as bytes, would
    # grow it by all of it). Runs measured here grew by 2 to 25 MiB of the 95 MiB more input:
    # the Arrow pool and the allocator keep a varying amount, not a share of the input.
    assert large - small < more_input / 2, f"peak RSS {small:.0f} -> {large:.0f} MiB"
