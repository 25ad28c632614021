"""Training throughput: the real data path against the model alone.

For ResNet-50 at 224x224 and the patch CNN at a reduced 288x224, this measures

* end-to-end images/s: look-alike CBIS-DDSM files -> preprocessing cache ->
  CachedImageDataset -> DataLoader -> to_model_batch -> augmentation -> training step,
  i.e. :func:`tlcore.training.engine.fit` itself (the last epoch's ``images_per_s``);
* model-only images/s: the same model, batch size, optimiser, loss, autocast and memory
  format, on a batch already in memory on the device;

and prints their ratio (the data path should cost at most 10%: ratio >= 0.9), plus the data
path's own time per batch (loader + to_model_batch + augmentation, no model) next to the
model step's, a comparison that stays meaningful on a busy machine where rates are noisy.

Run: ``python benchmarks/train_throughput.py [--steps 3] [--repeats 2] [--batch-size 8] [--device auto]``.
Takes a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tlcore.data.cache import ImageCache
from tlcore.data.dataset import CachedImageDataset
from tlcore.data.preprocess import PreprocessConfig, to_model_batch
from tlcore.data.registry import read_dataset
from tlcore.data.synth import SynthConfig, generate
from tlcore.models import create_model
from tlcore.training.augment import BatchAugmenter
from tlcore.training.config import AugmentConfig, TrainConfig
from tlcore.training.engine import fit, resolve_device


@dataclass
class Case:
    model: str
    size: tuple[int, int]


CASES = (Case("resnet50", (224, 224)), Case("patch_cnn", (288, 224)))


class ModelOnly:
    """Forward + backward + clip + AdamW step on a batch already in memory on the device:
    the same work as a training step of :func:`fit`, without the data path."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, size: tuple[int, int]):
        self.device = resolve_device(config.device)
        self.cuda = self.device.type == "cuda"
        fmt = torch.channels_last if self.cuda else torch.contiguous_format
        self.model = model.to(self.device).train()
        if self.cuda:
            self.model.to(memory_format=fmt)
        self.x = torch.rand(config.batch_size, 3, *size, device=self.device).contiguous(memory_format=fmt)
        self.y = (torch.arange(config.batch_size, device=self.device) % 2).float()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.config = config
        self._step()  # warm-up (optimiser state, allocator)

    def _step(self) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            logits, _aux = self.model.forward_train(self.x)
        loss = F.binary_cross_entropy_with_logits(logits[:, 0].float(), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip_norm)
        self.opt.step()
        return loss.detach()

    def rate(self, steps: int) -> float:
        """Images/s over ``steps`` steps (one host sync at the end, like an epoch of fit)."""
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        total = torch.zeros((), device=self.device)
        for _ in range(steps):
            total += self._step()
        float(total.item())
        return steps * self.config.batch_size / (time.perf_counter() - start)


def data_path_ms(dataset: CachedImageDataset, config: TrainConfig, size: tuple[int, int]) -> float:
    """Milliseconds per batch of the data path alone: DataLoader -> to_model_batch -> augmentation."""
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=config.num_workers,
                        pin_memory=cuda, drop_last=True)
    augment = BatchAugmenter(config.augment, seed=0)
    start = time.perf_counter()
    n = 0
    for x, _y in loader:
        batch = augment(to_model_batch(x, device, channels_last=cuda))
        n += 1
    if cuda:
        torch.cuda.synchronize()
    assert batch.shape[-2:] == size
    return 1000 * (time.perf_counter() - start) / max(n, 1)


def run_case(case: Case, records, cache: ImageCache, args) -> dict[str, float]:
    preprocess = PreprocessConfig(image_size=case.size, modality="mammogram")
    cached = cache.build(records, preprocess, progress=False)
    n_images = args.steps * args.batch_size
    indices = np.resize(np.arange(len(cached.records)), n_images)  # repeat the look-alike images as needed
    dataset = CachedImageDataset(cached, indices=indices)
    config = TrainConfig(
        epochs=1 + args.repeats, batch_size=args.batch_size, lr=1e-4, device=args.device,
        num_workers=args.num_workers, augment=AugmentConfig.for_modality("mammogram"),
        early_stopping_patience=0, imbalance="weighted_loss", drop_last=True,
    )
    torch.manual_seed(0)
    reference = ModelOnly(create_model(case.model), config, case.size)
    model_only: list[float] = []
    torch.manual_seed(0)
    model = create_model(case.model)
    # Interleave: after every fit epoch, time the same number of model-only steps, so that a
    # change in machine load hits both measurements alike.
    result = fit(model, dataset, None, config, progress=False,
                 on_epoch_end=lambda _record: model_only.append(reference.rate(args.steps)))
    # the first epoch is warm-up (allocator, caches): compare the later pairs
    pairs = [(r.images_per_s, m) for r, m in zip(result.history[1:], model_only[1:])]
    end_to_end = float(np.median([e for e, _ in pairs]))
    model_rate = float(np.median([m for _, m in pairs]))
    return {
        "end_to_end": end_to_end,
        "model_only": model_rate,
        "ratio": float(np.median([e / m for e, m in pairs])),
        "data_ms": data_path_ms(dataset, config, case.size),
        "step_ms": 1000 * args.batch_size / model_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measured epochs after a warm-up epoch (median shown)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=[c.model for c in CASES], choices=[c.model for c in CASES])
    args = parser.parse_args()

    device = resolve_device(args.device)
    print(f"device: {device}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    if device.type == "cuda":
        print(f"  {torch.cuda.get_device_name(device)}: bf16 autocast on, channels_last on (TrainConfig amp/channels_last='auto')")
    else:
        print("  CPU: float32, contiguous memory format (bf16 autocast and channels_last are CUDA-only)")
    with tempfile.TemporaryDirectory(prefix="tlstudy-bench-") as tmp:
        summary = generate(Path(tmp) / "synth", SynthConfig(scale="tiny"))
        records = read_dataset("ddsm", summary.roots["ddsm"]).records
        cache = ImageCache(Path(tmp) / "cache")
        print(f"data: {len(records)} look-alike CBIS-DDSM images, batch {args.batch_size}, {args.steps} steps per measurement")
        print(f"{'model':<10} {'input':>8} {'end-to-end img/s':>17} {'model-only img/s':>17} {'ratio':>6}"
              f" {'data ms/batch':>14} {'step ms/batch':>14}")
        for case in CASES:
            if case.model not in args.models:
                continue
            r = run_case(case, records, cache, args)
            flag = "" if r["ratio"] >= 0.9 else "  (below the 0.9 target)"
            print(f"{case.model:<10} {case.size[0]}x{case.size[1]:<4} {r['end_to_end']:>17.2f} "
                  f"{r['model_only']:>17.2f} {r['ratio']:>6.2f} {r['data_ms']:>14.1f} {r['step_ms']:>14.1f}{flag}",
                  flush=True)


if __name__ == "__main__":
    main()
