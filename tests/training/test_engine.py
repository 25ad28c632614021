from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from tests.training.helpers import BlobDataset, TinyNet
from tlcore.training.checkpoint import load_checkpoint
from tlcore.training.config import AugmentConfig, TrainConfig
from tlcore.training.engine import (
    BinaryObjective,
    EpochRecord,
    MulticlassObjective,
    evaluate,
    fit,
    lr_factor,
    predict,
)


def _config(**kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 16, "lr": 3e-3, "deterministic": True, "device": "cpu",
            "early_stopping_patience": 0, "augment": AugmentConfig.for_modality("mammogram")}
    base.update(kw)
    return TrainConfig(**base)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fit_learns_blobs_and_evaluate_reports_auc(blob_data):
    train, val = blob_data
    torch.manual_seed(0)
    model = TinyNet()
    result = fit(model, train, val, _config(epochs=6, augment=AugmentConfig.off()), progress=False)
    assert len(result.history) == 6
    assert result.monitor == "val_auc"
    assert result.best_val_auc is not None and result.best_val_auc > 0.85
    test = BlobDataset(64, seed=3)
    evaluation, predictions = evaluate(model, test, seed=0, device="cpu")
    assert evaluation.auc > 0.85
    assert list(predictions.columns[:3]) == ["image_id", "label", "score"]
    assert predictions["image_id"].tolist() == test.image_ids
    scores = predict(model, test, device="cpu")
    assert scores.shape == (64,) and np.all((scores >= 0) & (scores <= 1))
    np.testing.assert_allclose(scores, predictions["probability"].to_numpy(), rtol=1e-6)
    logits = predict(model, test, device="cpu", output="logit")
    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits, predictions["score"].to_numpy(), rtol=1e-6)


class _Saturated(torch.nn.Module):
    """Logits of +-1e6 scale, like a randomly initialised Inception-v3 in eval mode."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return 1e6 + self.inner(x) * 1e3


def test_auc_ranks_logits_so_saturated_probabilities_do_not_tie(blob_data):
    train, val = blob_data
    torch.manual_seed(0)
    inner = TinyNet()
    fit(inner, train, val, _config(epochs=4, augment=AugmentConfig.off()), progress=False)
    test = BlobDataset(64, seed=3)
    reference, _ = evaluate(inner, test, device="cpu")
    saturated = _Saturated(inner)
    assert np.all(predict(saturated, test, device="cpu") == 1.0)  # every probability ties at 1
    evaluation, predictions = evaluate(saturated, test, device="cpu")
    assert evaluation.auc == pytest.approx(reference.auc, abs=0.02) and evaluation.auc > 0.85
    assert np.all(predictions["probability"] == 1.0)


def test_epoch_records_and_callback(blob_data):
    train, val = blob_data
    seen: list[EpochRecord] = []
    result = fit(TinyNet(), train, val, _config(epochs=2, warmup_epochs=1), progress=False, on_epoch_end=seen.append)
    assert [r.epoch for r in seen] == [1, 2] and seen == result.history
    first = seen[0]
    assert first.train_loss > 0 and first.images_per_s > 0 and first.seconds > 0
    assert first.val_loss is not None and 0 <= first.val_auc <= 1
    # warm-up: the first epoch starts at a small fraction of the rate
    assert first.lr < 3e-3 / 2 and math.isclose(seen[1].lr, 3e-3, rel_tol=1e-6)


def _run_to_end(tmp_path, name, interrupt_after=None, split_call=False):
    train, val = BlobDataset(64, seed=1), BlobDataset(32, seed=2)
    torch.manual_seed(0)
    model = TinyNet(dropout=0.2)
    cfg = _config(epochs=4, early_stopping_patience=0, imbalance="balanced_sampler")
    ckpt = tmp_path / name

    class Stop(Exception):
        pass

    def crash(record: EpochRecord) -> None:
        if record.epoch == interrupt_after:
            raise Stop

    if interrupt_after is not None:
        with pytest.raises(Stop):
            fit(model, train, val, cfg, checkpoint_dir=ckpt, progress=False, on_epoch_end=crash)
        torch.manual_seed(123)  # a fresh process: different global RNG, fresh model
        model = TinyNet(dropout=0.2)
    if split_call:
        partial = fit(model, train, val, cfg, checkpoint_dir=ckpt, progress=False, stop_after_epoch=2)
        assert not partial.finished and len(partial.history) == 2
        model = TinyNet(dropout=0.2)
    result = fit(model, train, val, cfg, checkpoint_dir=ckpt, progress=False)
    return model, result


def test_resume_after_crash_equals_uninterrupted(tmp_path):
    ref_model, ref = _run_to_end(tmp_path, "ref")
    model, res = _run_to_end(tmp_path, "crash", interrupt_after=2)
    assert res.resumed_from == 2 and ref.resumed_from is None
    for a, b in zip(ref.history, res.history):
        assert (a.epoch, a.train_loss, a.val_auc, a.val_loss, a.lr) == (b.epoch, b.train_loss, b.val_auc, b.val_loss, b.lr)
    assert res.best_epoch == ref.best_epoch
    ref_w, w = _weights(ref_model), _weights(model)
    assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)


def test_resume_after_stop_after_epoch_equals_uninterrupted(tmp_path):
    ref_model, ref = _run_to_end(tmp_path, "ref")
    model, res = _run_to_end(tmp_path, "split", split_call=True)
    assert res.resumed_from == 2
    assert [r.train_loss for r in ref.history] == [r.train_loss for r in res.history]
    ref_w, w = _weights(ref_model), _weights(model)
    assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)


def test_checkpoint_is_weights_only_and_finished_run_is_not_repeated(tmp_path, blob_data):
    train, val = blob_data
    fit(TinyNet(), train, val, _config(epochs=2), checkpoint_dir=tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")  # weights_only=True inside
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert not list(tmp_path.glob("*.tmp"))
    again = fit(TinyNet(), train, val, _config(epochs=2), checkpoint_dir=tmp_path, progress=False)
    assert again.resumed_from == 2 and len(again.history) == 2


def test_checkpoint_interval_skips_cheap_epochs_but_not_the_end_of_a_slice(tmp_path, blob_data):
    train, val = blob_data
    fit(TinyNet(), train, val, _config(epochs=2), checkpoint_dir=tmp_path / "a", progress=False,
        checkpoint_interval_s=3600)
    # Changed deliberately (issue 12): the first epoch is always saved, the second quick one is not.
    assert load_checkpoint(tmp_path / "a" / "last.pt")["epoch"] == 1
    part = fit(TinyNet(), train, val, _config(epochs=3), checkpoint_dir=tmp_path / "b", progress=False,
               checkpoint_interval_s=3600, stop_after_epoch=2)
    assert not part.finished and load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
    rest = fit(TinyNet(), train, val, _config(epochs=3), checkpoint_dir=tmp_path / "b", progress=False,
               checkpoint_interval_s=3600)
    assert rest.resumed_from == 2 and rest.finished and len(rest.history) == 3


def test_resume_with_changed_config_is_refused(tmp_path, blob_data):
    train, val = blob_data
    fit(TinyNet(), train, val, _config(epochs=1), checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit(TinyNet(), train, val, _config(epochs=2, lr=1e-2), checkpoint_dir=tmp_path, progress=False)


def test_early_stopping_restores_best_weights(blob_data):
    train, val = blob_data
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    model = TinyNet()
    # A rate this high makes validation AUC wander, so early stopping triggers.
    cfg = _config(epochs=30, lr=0.5, optimizer="sgd", schedule="constant", early_stopping_patience=2,
                  grad_clip_norm=None, augment=AugmentConfig.off())
    result = fit(model, train, val, cfg, progress=False,
                 on_epoch_end=lambda r: snapshots.__setitem__(r.epoch, _weights(model)))
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2
    best_auc = max(r.val_auc for r in result.history)
    assert result.best_val_auc == best_auc == result.history[result.best_epoch - 1].val_auc
    final = _weights(model)
    assert all(torch.equal(final[k], snapshots[result.best_epoch][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[len(result.history)][k]) for k in final)


def test_best_weights_are_stored_once_and_survive_resume_epoch_by_epoch(tmp_path, blob_data):
    train, val = blob_data
    # At this rate validation AUC peaks at epoch 2, then stalls until early stopping.
    cfg = _config(epochs=12, lr=0.05, optimizer="sgd", schedule="constant", early_stopping_patience=2,
                  grad_clip_norm=None, augment=AugmentConfig.off())
    torch.manual_seed(0)
    ref_model = TinyNet()
    ref = fit(ref_model, train, val, cfg, progress=False)
    assert ref.stopped_early and 1 < ref.best_epoch < len(ref.history)

    kinds = set()
    for stop in range(1, len(ref.history) + 1):  # one fresh process per epoch, resuming each time
        # the first call starts like the reference; later ones start from other weights and
        # another global RNG state, as a new process would, and must resume from the checkpoint
        torch.manual_seed(0 if stop == 1 else 100 + stop)
        model = TinyNet()
        res = fit(model, train, val, cfg, checkpoint_dir=tmp_path, progress=False, stop_after_epoch=stop)
        saved = load_checkpoint(tmp_path / "last.pt")
        if saved["best_epoch"] == saved["epoch"]:
            # the best weights are the model's own: the checkpoint holds them once
            assert saved["best_state"] is None and saved["best_is_current"]
            kinds.add("current")
        else:
            assert saved["best_state"] is not None and not saved["best_is_current"]
            kinds.add("earlier")
    assert kinds == {"current", "earlier"}
    assert res.best_epoch == ref.best_epoch and res.stopped_early
    assert [r.val_auc for r in res.history] == [r.val_auc for r in ref.history]
    ref_w, w = _weights(ref_model), _weights(model)
    assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)


def test_single_class_validation_monitors_loss(blob_data):
    train, _ = blob_data
    val = BlobDataset(20, seed=5, pos_fraction=0.0)
    val.labels[:] = 0
    result = fit(TinyNet(), train, val, _config(epochs=2), progress=False)
    assert result.monitor == "val_loss"
    assert all(r.val_auc is None and r.val_loss is not None for r in result.history)


def test_pos_weight_and_balanced_sampler_paths():
    data = BlobDataset(80, seed=7, pos_fraction=0.15)
    labels = data.labels
    loss = BinaryObjective().make_loss(labels, True, torch.device("cpu"))
    logits = torch.zeros(2, 1)
    # pos_weight = negatives / positives multiplies the loss of positive targets
    n_pos = labels.sum()
    ratio = (len(labels) - n_pos) / n_pos
    pos = loss(logits[:1], torch.ones(1)).item()
    neg = loss(logits[:1], torch.zeros(1)).item()
    assert math.isclose(pos / neg, ratio, rel_tol=1e-5)

    drawn: list[float] = []

    class Recording(BlobDataset):
        def __getitem__(self, i):
            drawn.append(float(self.labels[i]))
            return super().__getitem__(i)

    rec = Recording(80, seed=7, pos_fraction=0.15)
    fit(TinyNet(), rec, None, _config(epochs=3, imbalance="balanced_sampler"), progress=False)
    assert 0.35 < np.mean(drawn) < 0.65  # about half the draws are positives, against 15% in the data
    drawn.clear()
    fit(TinyNet(), rec, None, _config(epochs=1, imbalance="weighted_loss"), progress=False)
    assert math.isclose(np.mean(drawn), labels.mean())


def test_trainable_top_leaves_body_unchanged(blob_data):
    train, val = blob_data
    model = TinyNet()
    before = _weights(model)
    fit(model, train, val, _config(epochs=2, trainable="top"), progress=False)
    after = _weights(model)
    body_keys = [k for k in before if k.startswith("body.")]
    assert any("running_mean" in k for k in body_keys)
    assert all(torch.equal(before[k], after[k]) for k in body_keys)  # BN statistics included
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_aux_logits_add_to_the_training_loss(blob_data):
    train, _ = blob_data
    sub = Subset(train, list(range(32)))
    cfg = _config(epochs=1, augment=AugmentConfig.off(), imbalance="none")
    torch.manual_seed(0)
    with_aux = fit(TinyNet(aux=True), sub, None, cfg, progress=False)
    torch.manual_seed(0)
    no_aux = fit(TinyNet(aux=True), sub, None, cfg.replace(aux_loss_weight=0.0), progress=False)
    assert with_aux.history[0].train_loss > no_aux.history[0].train_loss * 1.2
    assert with_aux.monitor == "none" and with_aux.best_epoch == 1


def test_multiclass_objective_trains(blob_data):
    train, val = blob_data

    tr = BlobDataset(64, seed=1)
    # blob images become class 1 or 2 (alternating), the rest class 0
    tr.labels = (tr.labels * (1 + np.arange(64) % 2)).astype(np.float32)
    result = fit(TinyNet(num_outputs=3), tr, None, _config(epochs=1), progress=False,
                 objective=MulticlassObjective(3))
    assert result.history[0].train_loss > 0
    with pytest.raises(ValueError, match=r"\(B, 1\)"):
        fit(TinyNet(num_outputs=3), train, val, _config(epochs=1), progress=False)


def test_lr_schedules():
    cfg = _config(epochs=4, warmup_epochs=1, schedule="cosine")
    factors = [lr_factor(s, cfg, 10) for s in range(40)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:])) and factors[-1] < 0.01
    step = _config(epochs=9, schedule="step", step_every=3, step_gamma=0.1)
    assert [lr_factor(e * 10, step, 10) for e in (0, 2, 3, 6)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_factor(25, _config(schedule="constant"), 10) == 1.0


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="optimizer.*adamw"):
        TrainConfig(optimizer="adamm")
    with pytest.raises(ValueError, match="Did you mean 'lr'"):
        TrainConfig.from_dict({"lrr": 1.0})
    cfg = TrainConfig(augment=AugmentConfig.for_modality("ultrasound"))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_progress_output_reports_loss_and_rate(blob_data, capsys):
    train, val = blob_data
    fit(TinyNet(), Subset(train, range(32)), val, _config(epochs=1), progress=True)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "epoch 1/1" in text and "img/s" in text and "val_auc" in text


# --------------------------------------------------------------------------- checkpoints a short run can rely on


def _uninterrupted(tmp_path, train, val, cfg):
    torch.manual_seed(5)
    model = TinyNet(dropout=0.2)
    ref = fit(model, train, val, cfg, checkpoint_dir=tmp_path / "ref", progress=False, checkpoint_interval_s=3600)
    return _weights(model), ref


def test_short_run_killed_before_the_interval_resumes_after_its_first_epoch(tmp_path, blob_data):
    """A run killed in epoch 2, long before the 60 s interval, resumes from epoch 1, bit-exact."""
    train, val = blob_data
    cfg = _config(epochs=3)
    ref_w, ref = _uninterrupted(tmp_path, train, val, cfg)

    class Killed(Exception):
        pass

    def kill_in_epoch_2(record: EpochRecord) -> None:
        if record.epoch == 2:
            raise Killed

    torch.manual_seed(5)
    with pytest.raises(Killed):
        fit(TinyNet(dropout=0.2), train, val, cfg, checkpoint_dir=tmp_path / "run", progress=False,
            checkpoint_interval_s=60, on_epoch_end=kill_in_epoch_2)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
    torch.manual_seed(99)
    model = TinyNet(dropout=0.2)
    res = fit(model, train, val, cfg, checkpoint_dir=tmp_path / "run", progress=False, checkpoint_interval_s=60)
    assert res.resumed_from == 1 and [r.train_loss for r in res.history] == [r.train_loss for r in ref.history]
    w = _weights(model)
    assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)


_SIGTERM_CHILD = """
import os, signal, sys
import torch
from tests.training.helpers import BlobDataset, TinyNet
from tlcore.training.config import AugmentConfig, TrainConfig
from tlcore.training.engine import fit

class SigtermAt(BlobDataset):
    calls = 0
    def __getitem__(self, i):
        SigtermAt.calls += 1
        if SigtermAt.calls == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGTERM)
        return super().__getitem__(i)

if sys.argv[3] == "study":  # the study runner's children turn SIGTERM into KeyboardInterrupt
    signal.signal(signal.SIGTERM, signal.default_int_handler)
cfg = TrainConfig(epochs=4, batch_size=16, lr=3e-3, deterministic=True, device="cpu",
                  early_stopping_patience=0, augment=AugmentConfig.for_modality("mammogram"))
torch.manual_seed(5)
try:
    fit(TinyNet(dropout=0.2), SigtermAt(96, seed=1), BlobDataset(48, seed=2), cfg, checkpoint_dir=sys.argv[1],
        progress=False, checkpoint_interval_s=3600)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
print("finished", flush=True)
"""


@pytest.mark.parametrize("handler", ["default", "study"])
def test_sigterm_mid_epoch_saves_that_epoch_then_stops(tmp_path, blob_data, handler):
    """SIGTERM in epoch 3 (epoch 1 saved, epoch 2 not: interval not reached): epoch 3 is finished
    and saved, the signal then takes its course, and the resumed run equals an uninterrupted one."""
    import subprocess
    import sys
    from pathlib import Path

    train, val = blob_data
    cfg = _config(epochs=4)
    ref_w, ref = _uninterrupted(tmp_path, train, val, cfg)
    root = Path(__file__).resolve().parents[2]
    per_epoch = 96  # training items read per epoch (validation reads another dataset)
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_CHILD, str(tmp_path / "run"), str(2 * per_epoch + 10), handler],
                          cwd=root, capture_output=True, text=True, timeout=600, check=False)
    if handler == "default":
        assert proc.returncode == -15, proc.stderr[-2000:]
    else:
        assert proc.returncode == 3 and proc.stdout.strip() == "interrupted", proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    torch.manual_seed(99)
    model = TinyNet(dropout=0.2)
    res = fit(model, train, val, cfg, checkpoint_dir=tmp_path / "run", progress=False, checkpoint_interval_s=3600)
    assert res.resumed_from == 3 and [r.train_loss for r in res.history] == [r.train_loss for r in ref.history]
    w = _weights(model)
    assert all(torch.equal(ref_w[k], w[k]) for k in ref_w)


def test_sigterm_with_nothing_unsaved_stops_at_once(tmp_path):
    """SIGTERM in epoch 2 while the checkpoint holds every finished epoch (epoch 1): the
    process ends at once, without finishing epoch 2."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    # validation reads another dataset: the 5th training item of epoch 2
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_CHILD, str(tmp_path / "run"), str(96 + 5), "default"],
                          cwd=root, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == -15, proc.stderr[-2000:]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 1
