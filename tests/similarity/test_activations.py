from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tlcore.similarity import (
    ActivationSampler,
    PairedActivationSampler,
    layerwise_similarity,
    stream_activations,
)


class TinyNet(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)  # (B, 4, 8, 8)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)  # (B, 6, 4, 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 2)  # (B, 2)

    def forward(self, x):
        x = self.c2(torch.relu(self.bn(self.c1(x))))
        return self.fc(self.pool(x).flatten(1))

    def layers(self) -> dict[str, nn.Module]:
        return {"c1": self.c1, "c2": self.c2, "fc": self.fc}


def _batches(n_batches=3, b=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, 8, 8, generator=g) for _ in range(n_batches)]


@torch.no_grad()
def _in_memory(net: TinyNet, batches) -> dict[str, torch.Tensor]:
    """Every layer output for all batches at once, computed by hand (eval mode)."""
    net.eval()
    x = torch.cat(batches)
    c1 = net.c1(x)
    c2 = net.c2(torch.relu(net.bn(c1)))
    fc = net.fc(net.pool(c2).flatten(1))
    return {"c1": c1, "c2": c2, "fc": fc}


def _positions(t: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) -> (B*H*W, C) in stream order (image, then h*W + w)."""
    return t.flatten(2).permute(0, 2, 1).reshape(-1, t.shape[1]).numpy()


def test_pool_mode_equals_in_memory():
    net, batches = TinyNet(0), _batches()
    acts = stream_activations(net, net.layers(), batches, mode="pool")
    ref = _in_memory(net, batches)
    assert acts["c1"].shape == (15, 4) and acts["c2"].shape == (15, 6) and acts["fc"].shape == (15, 2)
    np.testing.assert_allclose(acts["c1"], ref["c1"].mean(dim=(2, 3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(acts["c2"], ref["c2"].mean(dim=(2, 3)).numpy(), atol=1e-6)
    np.testing.assert_allclose(acts["fc"], ref["fc"].numpy(), atol=1e-6)


def test_positions_mode_with_room_for_everything_equals_in_memory():
    net, batches = TinyNet(0), _batches()
    acts = stream_activations(net, net.layers(), batches, mode="positions", max_positions=10_000)
    ref = _in_memory(net, batches)
    assert acts["c1"].shape == (15 * 64, 4)
    assert acts["c2"].shape == (15 * 16, 6)
    assert acts["fc"].shape == (15, 2)  # (B, C) outputs: one position per image
    np.testing.assert_allclose(acts["c1"], _positions(ref["c1"]), atol=1e-6)
    np.testing.assert_allclose(acts["c2"], _positions(ref["c2"]), atol=1e-6)
    np.testing.assert_allclose(acts["fc"], ref["fc"].numpy(), atol=1e-6)
    # None means no budget at all
    unbounded = stream_activations(net, net.layers(), batches, max_positions=None)
    np.testing.assert_array_equal(unbounded["c1"], acts["c1"])


def test_positions_subsampling_shapes_and_rows():
    net, batches = TinyNet(0), _batches(n_batches=4)
    sampler = ActivationSampler(net, net.layers(), mode="positions", max_positions=50, seed=3)
    acts = sampler.run(batches)
    idx = sampler.kept_indices()
    ref = _in_memory(net, batches)
    assert acts["c1"].shape == (50, 4) and acts["c2"].shape == (50, 6)
    assert acts["fc"].shape == (20, 2)  # only 20 positions exist
    for name in ("c1", "c2"):
        assert np.all(np.diff(idx[name]) > 0)  # unique, stream order
        np.testing.assert_allclose(acts[name], _positions(ref[name])[idx[name]], atol=1e-6)
    # the sample spreads over the whole stream, not just the first or last batch
    total = 20 * 64
    assert idx["c1"].min() < total // 4 and idx["c1"].max() > 3 * total // 4


def test_subsampling_is_seeded():
    net, batches = TinyNet(0), _batches()
    a = ActivationSampler(net, net.layers(), max_positions=40, seed=1)
    b = ActivationSampler(net, net.layers(), max_positions=40, seed=1)
    c = ActivationSampler(net, net.layers(), max_positions=40, seed=2)
    for s in (a, b, c):
        s.run(batches)
    np.testing.assert_array_equal(a.kept_indices()["c1"], b.kept_indices()["c1"])
    assert not np.array_equal(a.kept_indices()["c1"], c.kept_indices()["c1"])


def test_reservoir_is_roughly_uniform():
    net = TinyNet(0)
    batches = _batches(n_batches=10, b=10)
    counts = np.zeros(10)
    for seed in range(20):
        s = ActivationSampler(net, {"c1": net.c1}, max_positions=64, seed=seed)
        s.run(batches)
        counts += np.bincount(s.kept_indices()["c1"] // (10 * 64), minlength=10)
    # each batch holds 10% of the positions; expect 128 of 1280 picks per batch
    assert counts.sum() == 20 * 64
    assert counts.min() > 80 and counts.max() < 180


def test_paired_sampler_keeps_the_same_positions_in_both_models():
    net_a, net_b, batches = TinyNet(0), TinyNet(1), _batches(n_batches=4)
    paired = PairedActivationSampler(net_a, net_b, net_a.layers(), net_b.layers(), max_positions=30, seed=5)
    acts_a, acts_b = paired.run(batches)
    idx = paired.a.kept_indices()
    ref_a, ref_b = _in_memory(net_a, batches), _in_memory(net_b, batches)
    for name in ("c1", "c2"):
        assert acts_a[name].shape == acts_b[name].shape == (30, acts_a[name].shape[1])
        np.testing.assert_array_equal(idx[name], paired.b.kept_indices()[name])
        np.testing.assert_allclose(acts_a[name], _positions(ref_a[name])[idx[name]], atol=1e-6)
        np.testing.assert_allclose(acts_b[name], _positions(ref_b[name])[idx[name]], atol=1e-6)
    # the paired activations feed the similarity table directly
    df = layerwise_similarity({"c1": acts_a["c1"]}, {"c1": acts_b["c1"]}, measures=("cka",))
    assert 0.0 <= df["value"].iloc[0] <= 1.0


def test_paired_sampler_rejects_mismatched_layers():
    net_a, net_b = TinyNet(0), TinyNet(1)
    with pytest.raises(ValueError, match="same layers"):
        PairedActivationSampler(net_a, net_b, {"c1": net_a.c1}, {"c2": net_b.c2})


def test_batches_may_be_tuples_and_model_state_is_restored():
    net, batches = TinyNet(0), _batches()
    net.train()
    before = net.bn.running_mean.clone()
    acts = stream_activations(net, {"c2": net.c2}, [(x, torch.zeros(len(x))) for x in batches], mode="pool")
    assert acts["c2"].shape == (15, 6)
    assert net.training  # restored
    assert torch.equal(net.bn.running_mean, before)  # eval mode: BN statistics untouched


def test_early_stop_skips_the_rest_of_the_forward_pass_after_the_first_batch():
    class Counter(nn.Module):
        calls = 0

        def forward(self, x):
            Counter.calls += 1
            return x

    model = nn.Sequential(nn.Conv2d(3, 2, 1), Counter())
    acts = stream_activations(model, {"conv": model[0]}, _batches(3), mode="pool")
    assert acts["conv"].shape == (15, 2)
    assert Counter.calls == 1  # only the first (checking) batch ran in full
    stream_activations(model, {"conv": model[0]}, _batches(3), mode="pool", early_stop=False)
    assert Counter.calls == 4


def test_clear_errors():
    net = TinyNet(0)
    with pytest.raises(ValueError, match="not part of the model"):
        ActivationSampler(net, {"x": nn.Conv2d(3, 3, 1)})
    with pytest.raises(ValueError, match="mode must be"):
        ActivationSampler(net, net.layers(), mode="mean")

    shared = nn.ReLU()
    reused = nn.Sequential(nn.Conv2d(3, 2, 1), shared, nn.Conv2d(2, 2, 1), shared)
    with pytest.raises(RuntimeError, match="more than once"):
        stream_activations(reused, {"relu": shared}, _batches(1))
    with pytest.raises(TypeError, match="a batch must be a Tensor"):
        stream_activations(net, net.layers(), [np.zeros((2, 3, 8, 8))])
