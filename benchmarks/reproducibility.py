"""Reproducibility check: the same study twice, and with ``--jobs 1`` against ``--jobs 2``, gives identical AUCs.

Run from the repository root::

    python benchmarks/reproducibility.py [--profile quick] [--runs 1,2,2]

Each entry of ``--runs`` is one complete study with that ``--jobs`` value, into its own fresh
SQLite store in a temporary folder (so nothing is skipped as already done), on the same
look-alike data. The script then compares every configuration's ``test_auc`` (and, for the
CCA runs, every ``cca_<layer>``) across the studies by run name and prints how many are
bit-identical, with the largest difference. On the CPU every child runs with one torch
thread whatever ``--jobs`` is (``StudyProfile.threads_per_run``), which is what makes the
results independent of the parallelism.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

try:
    import tracking  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _values(uri: str, experiment: str) -> pd.Series:
    import mlflow

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment], max_results=50_000)
    runs = runs[runs["status"] == "FINISHED"]
    cols = [c for c in runs.columns if c == "metrics.test_auc" or c.startswith("metrics.cca_")]
    tidy = runs.set_index("tags.mlflow.runName")[cols].stack().dropna()
    return tidy.sort_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--runs", default="1,2,2", help="comma-separated --jobs of each study (default 1,2,2)")
    parser.add_argument("--models", default="", help="the study's --models (default: the profile's)")
    args = parser.parse_args(argv)
    jobs = [int(j) for j in args.runs.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="tlstudy-repro-") as tmp:
        for i, j in enumerate(jobs):
            uri = f"sqlite:///{Path(tmp) / f'store{i}.db'}"
            experiment = f"repro-{i}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pipelines.cli", "study", "--profile", args.profile, "--jobs", str(j),
                            "--experiment", experiment, "--tracking-uri", uri, "--out", str(Path(tmp) / f"r{i}"),
                            *(["--models", args.models] if args.models else [])],
                           check=True)
            print(f"study {i}: --jobs {j}, {time.perf_counter() - t0:.0f} s", flush=True)
            results.append(_values(uri, experiment))
    base = results[0]
    ok = True
    for i, other in enumerate(results[1:], start=1):
        joined = pd.concat([base, other], axis=1, keys=["a", "b"])
        missing = int(joined.isna().any(axis=1).sum())
        both = joined.dropna()
        same = int((both["a"] == both["b"]).sum())
        worst = float((both["a"] - both["b"]).abs().max()) if len(both) else 0.0
        print(f"study 0 (--jobs {jobs[0]}) vs study {i} (--jobs {jobs[i]}): {same} of {len(both)} values "
              f"bit-identical, largest difference {worst:.3g}, {missing} present in only one")
        ok &= same == len(both) and missing == 0
    print("reproducible" if ok else "NOT reproducible")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
