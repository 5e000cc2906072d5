"""Timing whole cementscan commands: median wall time over several runs and each run's peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CEMENTSCAN = [sys.executable, "-m", "cementscan.cli.main"]
SHARED_DATA = Path(
    os.environ.get(
        "CEMENTSCAN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@dataclass(frozen=True)
class Timing:
    label: str
    runs: int
    median_s: float
    min_s: float
    max_s: float
    peak_rss_mb: float

    def line(self) -> str:
        return (
            f"{self.label:<48} median {self.median_s:7.2f} s  (min {self.min_s:.2f}, "
            f"max {self.max_s:.2f}, n={self.runs})  peak RSS {self.peak_rss_mb:7.0f} MB"
        )


def time_command(label: str, args: list[str], runs: int = 5) -> Timing:
    """Run ``cementscan ARGS`` ``runs`` times in fresh processes (start-up included)."""
    walls: list[float] = []
    peaks: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(
            [*CEMENTSCAN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        walls.append(time.perf_counter() - start)
        if status != 0:
            assert process.stderr is not None
            raise SystemExit(f"{label}: exit status {status}: {process.stderr.read().decode()}")
        peaks.append(usage.ru_maxrss / 1024.0)  # Linux reports KiB
    return Timing(label, runs, statistics.median(walls), min(walls), max(walls), max(peaks))
