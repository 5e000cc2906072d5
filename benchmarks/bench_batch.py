"""Benchmark ``cementscan batch``: studies per hour locally (1 and 2 workers) and on a Dask cluster.

Generates a synthetic cohort (``make_cohort``: small phantoms of several presets, plus a
truncated file and a 2-D image that are refused) and runs the whole batch on it three times,
each into a fresh output folder. For each run it prints the wall time of the batch (discovery,
database, scheduling and recording included; the Dask cluster's start-up is not: the cluster
exists before the batch), studies per hour, the speed-up over one local worker, and the
overhead of the batch machinery: worker-seconds available (wall time x workers) minus the sum
of the studies' own analysis times (duration_s in the results database: analyze +
write_outputs in the worker), per study and as a share. With several workers it includes
the idle tail (the last studies running while other workers have nothing left to do).

Run: .venv/bin/python benchmarks/bench_batch.py [--studies N] [--workdir DIR]
     [--runs local1,local2,dask]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cementscan.cohort.batch import BatchConfig, run_batch
from cementscan.cohort.database import ResultsDatabase
from cementscan.synth.cohort import make_cohort

DASK_WORKERS = 2
RUNS = ("local1", "local2", "dask")


@dataclass(frozen=True)
class BatchTiming:
    label: str
    workers: int
    studies: int
    wall_s: float
    analysis_s: float

    @property
    def studies_per_hour(self) -> float:
        return self.studies / self.wall_s * 3600.0

    @property
    def overhead_s(self) -> float:
        return self.wall_s * self.workers - self.analysis_s


def time_batch(label: str, root: Path, out: Path, workers: int, cluster: str | None) -> BatchTiming:
    config = BatchConfig(
        root=root,
        out_dir=out,
        workers=None if cluster else workers,
        cluster=cluster,
        progress=False,
    )
    start = time.perf_counter()
    run_batch(config, out=io.StringIO())
    wall_s = time.perf_counter() - start
    with ResultsDatabase.open(None, out) as database:
        records = database.load_cohort()
    analysis_s = sum(float(r.extra["duration_s"] or 0.0) for r in records)
    return BatchTiming(label, workers, len(records), wall_s, analysis_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100, help="phantom studies (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the cohort and outputs here")
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma-separated, from {', '.join(RUNS)}"
    )
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if unknown := set(runs) - set(RUNS):
        parser.error(f"--runs: unknown {sorted(unknown)}")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as scratch:
        work = args.workdir or Path(scratch)
        root = work / "cohort"
        start = time.perf_counter()
        truth = make_cohort(root, args.studies, seed=args.seed)
        print(
            f"cohort: {len(truth['studies'])} studies ({args.studies} phantoms + bad inputs) "
            f"written in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        timings = []
        for workers in (1, 2):
            if f"local{workers}" in runs:
                label = f"local, {workers} worker{'s' if workers > 1 else ''}"
                out = work / f"out-local-{workers}"
                timings.append(time_batch(label, root, out, workers, None))
        if "dask" in runs:
            from distributed import LocalCluster

            with LocalCluster(
                n_workers=DASK_WORKERS, processes=True, threads_per_worker=1, dashboard_address=None
            ) as cluster:
                address = cluster.scheduler_address
                label = f"Dask LocalCluster, {DASK_WORKERS} workers"
                timings.append(time_batch(label, root, work / "out-dask", DASK_WORKERS, address))
    if not timings:
        return
    base = timings[0].wall_s  # the speed-up is over the first run listed
    print(
        f"{'run':<32} {'studies':>7} {'wall s':>8} {'studies/h':>10} {'speed-up':>8} "
        f"{'analyse s':>10} {'overhead s/study':>16} {'overhead %':>10}"
    )
    for t in timings:
        print(
            f"{t.label:<32} {t.studies:>7} {t.wall_s:>8.1f} {t.studies_per_hour:>10.0f} "
            f"{base / t.wall_s:>8.2f} {t.analysis_s:>10.1f} {t.overhead_s / t.studies:>16.2f} "
            f"{100.0 * t.overhead_s / (t.wall_s * t.workers):>10.1f}"
        )


if __name__ == "__main__":
    main()
