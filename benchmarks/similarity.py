"""Benchmarks for tlcore.similarity.

Three measurements (pick with ``--parts``):

1. ``layers``: SVCCA (or other measures) for the five ResNet-50 layers (stem ReLU after
   conv1, layer1..layer4; torchvision resnet50 with random weights, two seeds standing in
   for conditions A and B), timed against the two forward passes that produce the paired
   activations. Reported as ``similarity time / forward time`` (target <= 1).
2. ``cca``: :func:`cca_coefficients` on ``n x d`` float64 data against a classic numpy
   covariance + eigendecomposition implementation, at each of ``--thread-counts`` (torch
   and numpy's BLAS both limited to that count), best of ``--repeats`` interleaved runs.
   Reported as ``classic time / tlcore time`` (target >= 1), with the largest differences
   from the QR route and from the classic answer.
3. ``memory``: peak resident memory of a fresh subprocess that streams ``conv1`` (stem)
   activations of many images through ResNet-50 in positions mode (target < 2 GB).

Run: ``python benchmarks/similarity.py`` (defaults below), e.g.
``python benchmarks/similarity.py --parts cca --cca-n 20000 --cca-d 512``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import torch

from tlcore.similarity import (
    ActivationSampler,
    PairedActivationSampler,
    UnderdeterminedError,
    cca_coefficients,
    layerwise_similarity,
)


def _resnet50(seed: int) -> torch.nn.Module:
    from torchvision.models import resnet50

    torch.manual_seed(seed)
    return resnet50(weights=None).eval()


def _layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    # model.relu is the stem activation (conv1 -> bn1 -> relu); it runs once per forward.
    return {
        "conv1": model.relu,
        "layer1": model.layer1,
        "layer2": model.layer2,
        "layer3": model.layer3,
        "layer4": model.layer4,
    }


def _images(n: int, size: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        yield torch.randn(min(batch, n - start), 3, size, size, generator=g)


def bench_layers(args: argparse.Namespace) -> dict:
    model_a, model_b = _resnet50(0), _resnet50(1)
    paired = PairedActivationSampler(
        model_a, model_b, _layers(model_a), _layers(model_b),
        mode=args.mode, max_positions=args.max_positions, seed=0,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    acts_a, acts_b = paired.run(_images(args.images, args.size, args.batch, seed=0))
    t_forward, c_forward = time.perf_counter() - t0, time.process_time() - c0

    rows = []
    t_sim = c_sim = 0.0
    for name in acts_a:
        t1, c1 = time.perf_counter(), time.process_time()
        try:
            df = layerwise_similarity(
                {name: acts_a[name]}, {name: acts_b[name]}, measures=args.measures, keep=args.keep
            )
            values = dict(zip(df["measure"], df["value"]))
        except UnderdeterminedError as exc:
            values = {"error": str(exc).split(";")[0]}
        dt, dc = time.perf_counter() - t1, time.process_time() - c1
        t_sim += dt
        c_sim += dc
        rows.append({"layer": name, "shape": list(acts_a[name].shape), "seconds": round(dt, 3),
                     "cpu_seconds": round(dc, 3), **values})
    result = {
        "settings": {
            "images": args.images, "size": args.size, "batch": args.batch, "mode": args.mode,
            "max_positions": args.max_positions, "keep": args.keep, "measures": list(args.measures),
            "torch_threads": torch.get_num_threads(),
        },
        "forward_seconds_two_models": round(t_forward, 3),
        "similarity_seconds_all_layers": round(t_sim, 3),
        "ratio_similarity_over_forward": round(t_sim / t_forward, 3),
        "forward_cpu_seconds": round(c_forward, 3),
        "similarity_cpu_seconds": round(c_sim, 3),
        "cpu_ratio_similarity_over_forward": round(c_sim / c_forward, 3),
        "layers": rows,
    }
    return result


def classic_cca(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Textbook CCA: covariances, Sxx^-1/2 and Syy^-1/2 by eigh, singular values of the product."""
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc / (n - 1), yc.T @ yc / (n - 1), xc.T @ yc / (n - 1)

    def inv_sqrt(s: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(s)
        return (v / np.sqrt(w)) @ v.T

    m = inv_sqrt(sxx) @ sxy @ inv_sqrt(syy)
    eig = np.linalg.eigvalsh(m @ m.T)[::-1]
    return np.sqrt(np.clip(eig, 0.0, 1.0))


def _blas_limit(n: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def bench_cca(args: argparse.Namespace) -> dict:
    """Best of ``repeats`` wall times per thread count, all runs interleaved.

    At each thread count both torch (``torch.set_num_threads``) and numpy's BLAS
    (threadpoolctl) get that many threads, so the classic numpy formulation and tlcore run
    under the same limit. The QR route is run once (at the largest count), for its accuracy.
    """
    rng = np.random.default_rng(0)
    n, d = args.cca_n, args.cca_d
    x = rng.standard_normal((n, d))
    y = 0.3 * x @ rng.standard_normal((d, d)) / np.sqrt(d) + rng.standard_normal((n, d))
    fns = {"tlcore": lambda: cca_coefficients(x, y), "classic": lambda: classic_cca(x, y)}
    default_threads = torch.get_num_threads()
    wall: dict[tuple[int, str], list[float]] = {}
    cpu: dict[tuple[int, str], list[float]] = {}
    out: dict[tuple[int, str], np.ndarray] = {}
    for rep in range(args.repeats):  # interleaved, so load changes hit every variant alike
        for nt in args.thread_counts:
            torch.set_num_threads(nt)
            with _blas_limit(nt):
                order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
                for k in order:
                    t0, c0 = time.perf_counter(), time.process_time()
                    out[nt, k] = fns[k]()
                    wall.setdefault((nt, k), []).append(time.perf_counter() - t0)
                    cpu.setdefault((nt, k), []).append(time.process_time() - c0)
    nt_qr = max(args.thread_counts)
    torch.set_num_threads(nt_qr)
    with _blas_limit(nt_qr):
        t0 = time.perf_counter()
        qr = cca_coefficients(x, y, method="qr")
        t_qr = time.perf_counter() - t0
    per_threads = {}
    for nt in args.thread_counts:
        best = {k: min(wall[nt, k]) for k in fns}
        per_threads[str(nt)] = {
            "best_wall_seconds": {k: round(v, 3) for k, v in best.items()},
            "all_wall_seconds": {k: [round(t, 3) for t in wall[nt, k]] for k in fns},
            "ratio_classic_over_tlcore": round(best["classic"] / best["tlcore"], 3),
            # CPU seconds are less disturbed by other processes on a shared machine
            "cpu_ratio_classic_over_tlcore": round(
                min(cpu[nt, "classic"]) / min(cpu[nt, "tlcore"]), 3),
            "max_abs_diff_tlcore_vs_qr": float(np.max(np.abs(out[nt, "tlcore"] - qr))),
            "max_abs_diff_tlcore_vs_classic": float(np.max(np.abs(out[nt, "tlcore"] - out[nt, "classic"]))),
        }
    torch.set_num_threads(default_threads)
    return {
        "settings": {"n": n, "d": d, "repeats": args.repeats, "thread_counts": list(args.thread_counts)},
        "target": "ratio_classic_over_tlcore >= 1.0 at every thread count",
        "qr_route_seconds_once": {"threads": nt_qr, "seconds": round(t_qr, 3)},
        "by_threads": per_threads,
    }


def _peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux ``VmHWM`` belongs to the process's own address space; ``ru_maxrss`` is only a
    fallback because Linux carries the parent's peak over fork + exec into it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _child_memory(args: argparse.Namespace) -> None:
    """Runs in the subprocess: stream conv1 activations and print peak RSS as JSON."""
    model = _resnet50(0)
    base_mb = _peak_rss_mb()
    sampler = ActivationSampler(
        model, {"conv1": model.relu}, mode="positions", max_positions=args.max_positions, seed=0
    )
    t0 = time.perf_counter()
    acts = sampler.run(_images(args.mem_images, args.size, args.batch, seed=1))
    seconds = time.perf_counter() - t0
    peak_mb = _peak_rss_mb()
    print(json.dumps({
        "rows": list(acts["conv1"].shape),
        "seconds": round(seconds, 2),
        "peak_rss_after_imports_and_model_mb": round(base_mb, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "streaming_increment_mb": round(peak_mb - base_mb, 1),
    }))


def bench_memory(args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable, __file__, "--child-memory", "--mem-images", str(args.mem_images),
        "--threads", str(torch.get_num_threads()),
        "--size", str(args.size), "--batch", str(args.batch), "--max-positions", str(args.max_positions),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{proc.stderr}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    all_positions = args.mem_images * (args.size // 2) ** 2
    return {
        "settings": {"images": args.mem_images, "size": args.size, "batch": args.batch,
                     "max_positions": args.max_positions, "layer": "conv1 (stem relu, 64 ch)"},
        "all_positions_float32_gb": round(all_positions * 64 * 4 / 1e9, 2),
        **child,
        "target": "< 2048 MB",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["layers", "cca", "memory"], choices=["layers", "cca", "memory"])
    p.add_argument("--images", type=int, default=64, help="images for the layer benchmark")
    p.add_argument("--size", type=int, default=224, help="image side in pixels")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--mode", choices=["positions", "pool"], default="positions")
    p.add_argument("--max-positions", type=int, default=8192, help="positions kept per layer")
    p.add_argument("--keep", type=float, default=0.99, help="SVCCA variance share (or a count if >= 1)")
    p.add_argument("--measures", nargs="+", default=["svcca"])
    p.add_argument("--cca-n", type=int, default=20000)
    p.add_argument("--cca-d", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2],
                   help="cca part: torch and BLAS thread counts to measure")
    p.add_argument("--mem-images", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep >= 1:
        args.keep = int(args.keep)
    if args.child_memory:
        _child_memory(args)
        return
    runners = {"layers": bench_layers, "cca": bench_cca, "memory": bench_memory}
    for part in args.parts:
        print(json.dumps({part: runners[part](args)}, indent=2), flush=True)


if __name__ == "__main__":
    main()
