"""MLflow logging overhead as a share of training step time (target: below 2%).

Fine-tunes a randomly initialised torchvision ResNet-50 at a small size (64 px, batch 8)
against a real ``mlflow server`` started by this script, alternating epochs without and
with the :class:`tracking.logger.RunLogger` (per-step ``step_loss`` plus the per-epoch
``on_epoch_end`` callback, as the study logs), and reports:

* in-loop overhead: time the training thread spends inside logger calls / step time;
* end-to-end overhead: median step time with the logger vs without (includes the
  background sender competing for the CPU; noisy on a shared machine).

Usage: ``python benchmarks/logging_overhead.py [--steps 30 --epochs 3 --size 64 --batch 8]``
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

from tracking.logger import LoggerSettings, RunLogger  # noqa: E402
from tracking.server import start_server  # noqa: E402


@dataclass
class Result:
    device: str
    steps_per_epoch: int
    epochs: int
    size: int
    batch: int
    median_step_s_without: float
    median_step_s_with: float
    in_loop_logger_s: float
    logged_steps_s: float
    in_loop_overhead: float
    end_to_end_overhead: float
    batches_sent: int
    metrics_sent: int
    logger_open_s: float
    logger_finish_s: float


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="training steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per condition")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    # A SIGTERM (e.g. from `timeout`) must still run the clean-up that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = torchvision.models.resnet50(weights=None, num_classes=2).to(device)
    optim = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 2, (args.batch,), device=device)

    def step() -> float:
        optim.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optim.step()
        value = float(loss.detach())  # syncs the device, as a real loop reading the loss does
        return value

    for _ in range(3):  # warm-up
        step()
    print("warm-up done; starting the mlflow server", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="tlstudy-bench-") as tmp:
        tmp_path = Path(tmp)
        server = start_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts",
                              log_path=tmp_path / "server.log", timeout=300)
        try:
            settings = LoggerSettings(work_dir=tmp_path / "work", flush_interval_s=5.0, tag_code_version=False)
            t0 = time.perf_counter()
            run = RunLogger("study logging benchmark", "bench0001", stage="study", tracking_uri=server.url,
                            settings=settings).start()
            logger_open = time.perf_counter() - t0
            run.log_params({"model": "resnet50", "size": args.size, "batch": args.batch})

            without: list[float] = []
            with_logger: list[float] = []
            in_loop = 0.0
            global_step = 0
            for epoch in range(args.epochs):
                order = (False, True) if epoch % 2 == 0 else (True, False)  # ABBA against drift
                for logged in order:
                    losses = []
                    for _ in range(args.steps):
                        t = time.perf_counter()
                        loss = step()
                        if logged:
                            t_log = time.perf_counter()
                            run.log_metric("step_loss", loss, step=global_step)
                            in_loop += time.perf_counter() - t_log
                            global_step += 1
                        (with_logger if logged else without).append(time.perf_counter() - t)
                        losses.append(loss)
                    print(f"epoch {epoch} {'with' if logged else 'without'} logger: "
                          f"{statistics.median((with_logger if logged else without)[-args.steps:]) * 1000:.0f} ms/step",
                          file=sys.stderr, flush=True)
                    if logged:
                        t_log = time.perf_counter()
                        run.on_epoch_end({"epoch": epoch, "train_loss": sum(losses) / len(losses),
                                          "val_auc": 0.5})
                        in_loop += time.perf_counter() - t_log
            t0 = time.perf_counter()
            run.finish()
            logger_finish = time.perf_counter() - t0
        finally:
            server.stop()

    med_without, med_with = statistics.median(without), statistics.median(with_logger)
    logged_total = sum(with_logger)
    result = Result(
        device=str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        steps_per_epoch=args.steps, epochs=args.epochs, size=args.size, batch=args.batch,
        median_step_s_without=med_without, median_step_s_with=med_with,
        in_loop_logger_s=in_loop, logged_steps_s=logged_total,
        in_loop_overhead=in_loop / logged_total,
        end_to_end_overhead=(med_with - med_without) / med_without,
        batches_sent=run.stats.batches_sent, metrics_sent=run.stats.metrics_sent,
        logger_open_s=logger_open, logger_finish_s=logger_finish,
    )
    print(f"device: {result.device}; ResNet-50 {args.size}px batch {args.batch}, "
          f"{args.epochs} epochs x {args.steps} steps per condition")
    print(f"median step: {med_without * 1000:.1f} ms without logger, {med_with * 1000:.1f} ms with")
    print(f"in-loop logging overhead: {result.in_loop_overhead:.4%} of step time "
          f"({in_loop * 1000:.2f} ms over {len(with_logger)} steps)")
    print(f"end-to-end overhead (median step time): {result.end_to_end_overhead:+.2%}")
    print(f"sent {result.metrics_sent} metric values in {result.batches_sent} log_batch requests; "
          f"open {logger_open:.2f} s, finish {logger_finish:.2f} s (one-off, outside the loop)")
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    return result


if __name__ == "__main__":
    main()
