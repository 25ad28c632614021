"""Calibration of the look-alike controls: does the study's design detect what the data hold?

With tlcore only (no MLflow, no study runner) this generates the look-alike data (or reuses
it), pre-trains each model on the CBIS-DDSM look-alike with :func:`tlcore.experiment.run_pretrain`,
saves its state dict, runs :func:`tlcore.experiment.run_finetune` for every target x init
{random, ddsm} x ft_fraction {0, 0.1, 0.2}, and prints the controls table:

* ``ddsm_auc``: the DDSM model's test AUC (target: >= 0.80);
* ``noft_gap``: No-FT AUC(ddsm init) - AUC(random init) (positive controls INbreast/MIAS:
  >= 0.15 on average; negative control ultrasound: <= 0.08, with ddsm No-FT <= 0.62);
* ``ft20_gap``: the same gap after fine-tuning on 20 % (smaller than at No-FT: masking);
* ``rand_ft20``: random-init FT 0.2 AUC (>= 0.75: fine-tuning learns);

and the wall time of every stage. The training settings come from a study profile
(``--profile``, default ``demo``: image size, epochs, learning rate and batch size per
model) so that what is calibrated here is what ``tlstudy study`` runs. One torch thread.

Run: ``python benchmarks/controls_check.py [--models resnet50] [--targets mias] [--seeds 0 1 2]``
``[--scale small] [--data-root /tmp/controls/data] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

MODELS = ("vgg16", "resnet50", "inception_v3", "patch_cnn")
TARGETS = ("inbreast", "mias", "ultrasound")
INITS = ("random", "ddsm")
FRACTIONS = (0.0, 0.1, 0.2)


def _torch_single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _settings(profile: str, model: str, args: argparse.Namespace) -> dict:
    """Per-model step settings of ``profile``, with command-line overrides."""
    from tracking.study import get_profile

    p = get_profile(profile)
    out = {
        "image_size": p.image_size(model),
        "lr": p.learning_rate(model),
        "batch_size": p.batch_size,
        "pretrain_epochs": p.pretrain_epochs,
        "finetune_epochs": p.finetune_epochs,
    }
    for key in list(out):
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def _pretrain(model: str, seed: int, s: dict, data_root: str, cache_dir: str, out_dir: str) -> dict:
    _torch_single_thread()
    import torch

    from tlcore.experiment import PretrainConfig, run_pretrain

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = PretrainConfig(model=model, seed=seed, image_size=s["image_size"], epochs=s["pretrain_epochs"],
                         lr=s["lr"], batch_size=s["batch_size"], data_root=data_root, cache_dir=cache_dir)
    def report(record) -> None:
        values = record if isinstance(record, dict) else record.as_dict()
        shown = {k: round(v, 3) for k, v in values.items() if isinstance(v, float) and "auc" in k or "loss" in k}
        print(f"  pretrain {model} seed {seed} epoch {values.get('epoch')}: {shown} "
              f"at {time.perf_counter() - t0:.0f} s", flush=True)

    res = run_pretrain(cfg, progress=False, on_epoch_end=report)
    path = Path(out_dir) / f"ddsm-{model}-seed{seed}.pt"
    torch.save(res.model.state_dict(), path)
    epochs = len(res.fit.history) if res.fit is not None else 0
    return {"model": model, "seed": seed, "auc": res.evaluation.auc, "state": str(path),
            "epochs": epochs, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def _finetune(model: str, seed: int, s: dict, data_root: str, cache_dir: str, target: str, init: str,
              ft: float, state: str | None) -> dict:
    _torch_single_thread()
    import torch

    from tlcore.experiment import FinetuneConfig, run_finetune

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = FinetuneConfig(model=model, seed=seed, image_size=s["image_size"], epochs=s["finetune_epochs"],
                         lr=s["lr"], batch_size=s["batch_size"], data_root=data_root, cache_dir=cache_dir,
                         dataset=target, init=init, ft_fraction=ft)
    ddsm_state = torch.load(state, weights_only=True) if init == "ddsm" else None
    res = run_finetune(cfg, ddsm_state=ddsm_state, progress=False)
    return {"model": model, "seed": seed, "target": target, "init": init, "ft": ft,
            "auc": res.evaluation.auc, "n_test": len(res.predictions), "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0}


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    ap.add_argument("--scale", default="small", help="look-alike scale written when --data-root is empty")
    ap.add_argument("--data-root", default=None, help="default: /tmp/controls/<scale>")
    ap.add_argument("--cache-dir", default=None, help="default: <data-root>/../cache")
    ap.add_argument("--out", default=None, help="state dicts and results.json (default: <data-root>/../runs)")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel, one torch thread each")
    ap.add_argument("--image-size", dest="image_size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    ap.add_argument("--pretrain-epochs", dest="pretrain_epochs", type=int, default=None)
    ap.add_argument("--finetune-epochs", dest="finetune_epochs", type=int, default=None)
    ap.add_argument("--reuse-pretrain", action="store_true", help="reuse saved DDSM state dicts")
    args = ap.parse_args(argv)
    _torch_single_thread()

    data_root = Path(args.data_root or f"/tmp/controls/{args.scale}")
    cache_dir = Path(args.cache_dir or data_root.parent / "cache")
    out_dir = Path(args.out or data_root.parent / "runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    if not (data_root / "SYNTHETIC_DATA.txt").is_file():
        from tlcore.data.synth import SynthConfig, generate

        generate(data_root, SynthConfig(scale=args.scale, seed=0))
    times["data generation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from tlcore.experiment import StepConfig, prepare_data

    for model in args.models:  # build the decoded caches once, before any parallel run
        s = _settings(args.profile, model, args)
        cfg = StepConfig(model=model, image_size=s["image_size"], data_root=str(data_root), cache_dir=str(cache_dir))
        for ds in ("ddsm", *args.targets):
            prepare_data(ds, cfg, progress=False)
    times["cache build"] = time.perf_counter() - t0

    settings = {m: _settings(args.profile, m, args) for m in args.models}
    for m, s in settings.items():
        print(f"settings {m}: {json.dumps(s)}", flush=True)
    pool = ProcessPoolExecutor(max_workers=max(1, args.jobs))
    t0 = time.perf_counter()
    pre: dict[tuple[str, int], dict] = {}
    futs = {}
    for m in args.models:
        for seed in args.seeds:
            path = out_dir / f"ddsm-{m}-seed{seed}.pt"
            done = out_dir / f"ddsm-{m}-seed{seed}.json"
            if args.reuse_pretrain and path.is_file() and done.is_file():
                pre[(m, seed)] = json.loads(done.read_text())
                continue
            futs[(m, seed)] = pool.submit(_pretrain, m, seed, settings[m], str(data_root), str(cache_dir),
                                          str(out_dir))
    for key, f in futs.items():
        pre[key] = f.result()
        (out_dir / f"ddsm-{key[0]}-seed{key[1]}.json").write_text(json.dumps(pre[key]))
        print(f"pretrain {key[0]} seed {key[1]}: test AUC {pre[key]['auc']:.3f} "
              f"({pre[key]['epochs']} epochs, {pre[key]['wall_s']:.0f} s wall, {pre[key]['cpu_s']:.0f} s CPU)", flush=True)
    times["pre-training (stage wall)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    futs2 = []
    for m in args.models:
        for seed in args.seeds:
            for target in args.targets:
                for init in INITS:
                    for ft in args.fractions:
                        futs2.append(pool.submit(_finetune, m, seed, settings[m], str(data_root), str(cache_dir),
                                                 target, init, ft, pre[(m, seed)]["state"]))
    rows = []
    for f in futs2:
        r = f.result()
        rows.append(r)
        print(f"  {r['model']} seed {r['seed']} {r['target']} {r['init']} ft {r['ft']}: AUC {r['auc']:.3f} "
              f"({r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU)", flush=True)
    times["fine-tune/eval (stage wall)"] = time.perf_counter() - t0
    pool.shutdown()
    (out_dir / "results.json").write_text(json.dumps({"pretrain": list(pre.values()), "finetune": rows}, indent=1))

    def auc(m, seed, target, init, ft):
        for r in rows:
            if (r["model"], r["seed"], r["target"], r["init"], r["ft"]) == (m, seed, target, init, ft):
                return r["auc"]
        return None

    for clock in ("wall_s", "cpu_s"):
        print(f"\nper-run {clock}: " + ", ".join(
            f"pretrain {m}={_mean([pre[(m, s)].get(clock) for s in args.seeds]):.0f}" for m in args.models))
        for ft in args.fractions:
            print(f"  ft {ft}: " + ", ".join(
                f"{m}={_mean([r[clock] for r in rows if r['model'] == m and r['ft'] == ft]):.1f}"
                for m in args.models))
    print("\ncontrols (AUC; gap = ddsm-init minus random-init)")
    head = f"{'model':13} {'seed':>4} {'target':11} {'n_test':>6} {'ddsm_auc':>8} {'noft_rnd':>8} {'noft_dd':>8} " \
           f"{'noft_gap':>8} {'ft10_gap':>8} {'ft20_gap':>8} {'rand_ft20':>9}"
    print(head)
    summary: dict[tuple[str, str], list[tuple]] = {}
    for m in args.models:
        for seed in args.seeds:
            for t in args.targets:
                r0, d0 = auc(m, seed, t, "random", 0.0), auc(m, seed, t, "ddsm", 0.0)
                r1, d1 = auc(m, seed, t, "random", 0.1), auc(m, seed, t, "ddsm", 0.1)
                r2, d2 = auc(m, seed, t, "random", 0.2), auc(m, seed, t, "ddsm", 0.2)
                g = lambda a, b: (a - b) if a is not None and b is not None else float("nan")  # noqa: E731
                n = next((r["n_test"] for r in rows if r["model"] == m and r["target"] == t), 0)
                vals = (pre[(m, seed)]["auc"], r0, d0, g(d0, r0), g(d1, r1), g(d2, r2), r2)
                summary.setdefault((m, t), []).append(vals)
                f = lambda x: f"{x:8.3f}" if x is not None else "      NA"  # noqa: E731
                print(f"{m:13} {seed:>4} {t:11} {n:>6} " + " ".join(f(v) for v in vals))
    print("\nmeans over seeds, then over models")
    for t in args.targets:
        per_model = {m: [_mean([v[i] for v in summary[(m, t)]]) for i in range(7)] for m in args.models}
        gaps = [v[3] for v in per_model.values()]
        print(f"{t:11} noft_gap mean {_mean(gaps):+.3f} (per model " +
              ", ".join(f"{m} {v[3]:+.3f}" for m, v in per_model.items()) +
              f"); ddsm noft mean {_mean([v[2] for v in per_model.values()]):.3f}; "
              f"ft20_gap mean {_mean([v[5] for v in per_model.values()]):+.3f}; "
              f"rand_ft20 min {min(v[6] for v in per_model.values()):.3f}")
    print("\nwall time by stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
