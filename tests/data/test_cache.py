"""On-disk cache: decode once, invalidation, skips, concurrent builders, and the torch Dataset."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tlcore.data.cache import CachedArray, ImageCache, dataset_fingerprint, default_cache_dir
from tlcore.data.dataset import CachedImageDataset
from tlcore.data.imageio import read_image
from tlcore.data.preprocess import PreprocessConfig, preprocess_image
from tlcore.data.records import ImageRecord

CFG = PreprocessConfig(image_size=(32, 24))


def _breast(seed: int, h: int = 80, w: int = 60) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    chest_left = seed % 2 == 0
    d = xx if chest_left else (w - 1 - xx)
    img = np.full((h, w), 10, dtype=np.float64)
    inside = (d / (0.6 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2 < 1
    img[inside] = 90 + 120 * rng.random() + 40 * np.exp(-d[inside] / 20.0)
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_files(root: Path, n: int = 8) -> list[ImageRecord]:
    """``n`` real images (PNG and PGM alternating) plus one corrupt and one missing file."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        arr = _breast(i)
        if i % 2:
            path = root / f"img{i:02d}.pgm"
            path.write_bytes(b"P5\n%d %d\n255\n" % (arr.shape[1], arr.shape[0]) + arr.tobytes())
        else:
            path = root / f"img{i:02d}.png"
            Image.fromarray(arr).save(path)
        side = "L" if i % 2 == 0 else "R"
        records.append(ImageRecord(image_id=f"t-{i:02d}", dataset="t", path=path, label=int(i % 3 == 0), side=side))
    bad = root / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    records.append(ImageRecord(image_id="t-bad", dataset="t", path=bad, label=1))
    records.append(ImageRecord(image_id="t-gone", dataset="t", path=root / "missing.png", label=0))
    return records


def expected_image(rec: ImageRecord, cfg: PreprocessConfig = CFG) -> np.ndarray:
    return preprocess_image(read_image(rec.path).pixels, cfg, rec.side)


# --------------------------------------------------------------------------- build and hit


def test_build_decodes_once_then_hits(tmp_path):
    records = make_files(tmp_path / "data")
    cache = ImageCache(tmp_path / "cache")
    first = cache.build(records, CFG, progress=False)
    good = records[:-2]
    assert first.n_decoded == len(good) + 1  # the corrupt file is attempted, the missing one cannot be
    assert [r.image_id for r in first.records] == [r.image_id for r in good]
    assert [r.label for r in first.records] == [r.label for r in good]  # labels untouched
    assert first.images.shape == (len(good), 32, 24) and first.images.dtype == np.uint8
    assert isinstance(first.images, np.memmap)
    for row, rec in enumerate(good):
        np.testing.assert_array_equal(first.images[row], expected_image(rec))
    reasons = {Path(s.path).name: s.reason for s in first.skipped}
    assert set(reasons) == {"broken.png", "missing.png"}
    assert reasons["missing.png"].startswith("cannot read file")

    second = cache.build(records, CFG, progress=False)
    assert second.n_decoded == 0 and second.consolidated_hit
    np.testing.assert_array_equal(np.asarray(second.images), np.asarray(first.images))
    assert {Path(s.path).name for s in second.skipped} == {"broken.png", "missing.png"}

    # Another list of the same files (reordered subset): new array, no decoding.
    subset = [good[3], good[0], good[5]]
    third = cache.build(subset, CFG, progress=False)
    assert third.n_decoded == 0 and not third.consolidated_hit
    np.testing.assert_array_equal(third.images[0], first.images[3])
    np.testing.assert_array_equal(third.images[1], first.images[0])


def test_other_config_is_cached_separately(tmp_path):
    records = make_files(tmp_path / "data", n=3)[:3]
    cache = ImageCache(tmp_path / "cache")
    a = cache.build(records, CFG, progress=False)
    b = cache.build(records, PreprocessConfig(image_size=(16, 16)), progress=False)
    assert a.n_decoded == 3 and b.n_decoded == 3
    assert b.images.shape == (3, 16, 16)
    assert cache.config_dir(CFG) != cache.config_dir(PreprocessConfig(image_size=(16, 16)))
    assert (cache.config_dir(CFG) / "config.json").is_file()


@pytest.mark.parametrize("change", ["touch", "rewrite"])
def test_changed_file_is_decoded_again(tmp_path, change):
    records = make_files(tmp_path / "data", n=4)[:4]
    cache = ImageCache(tmp_path / "cache")
    before = cache.build(records, CFG, progress=False)
    target = records[2].path
    st = target.stat()
    if change == "rewrite":
        Image.fromarray(255 - _breast(7)).save(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    after = cache.build(records, CFG, progress=False)
    assert after.n_decoded == 1 and not after.consolidated_hit
    np.testing.assert_array_equal(after.images[2], expected_image(records[2]))
    for row in (0, 1, 3):
        np.testing.assert_array_equal(after.images[row], before.images[row])
    if change == "rewrite":
        assert not np.array_equal(after.images[2], before.images[2])


def test_content_hash_keys_survive_a_copy(tmp_path):
    records = make_files(tmp_path / "a", n=3)[:3]
    cache = ImageCache(tmp_path / "cache", content_hash=True)
    assert cache.build(records, CFG, progress=False).n_decoded == 3
    copies = []
    for r in records:
        dst = tmp_path / "b" / r.path.name
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes(r.path.read_bytes())
        copies.append(ImageRecord(image_id=r.image_id, dataset="t", path=dst, label=r.label, side=r.side))
    assert cache.build(copies, CFG, progress=False).n_decoded == 0


def test_damaged_entry_is_rebuilt(tmp_path):
    records = make_files(tmp_path / "data", n=2)[:2]
    cache = ImageCache(tmp_path / "cache")
    first = cache.build(records, CFG, progress=False)
    entry = cache.entry_path(first.entry_keys[1], CFG)
    entry.write_bytes(b"garbage")
    again = cache.build(list(reversed(records)), CFG, progress=False)  # new list: reads entries
    assert again.n_decoded == 1
    np.testing.assert_array_equal(again.images[0], expected_image(records[1]))


def test_parallel_decoding_matches_serial(tmp_path):
    records = make_files(tmp_path / "data", n=6)
    serial = ImageCache(tmp_path / "c1").build(records, CFG, progress=False)
    # fork keeps the test quick; the library's default start method is spawn
    parallel = ImageCache(tmp_path / "c2").build(records, CFG, num_workers=2, progress=False, mp_context="fork")
    assert parallel.n_decoded == serial.n_decoded
    np.testing.assert_array_equal(np.asarray(parallel.images), np.asarray(serial.images))
    assert [s.path for s in parallel.skipped] == [s.path for s in serial.skipped]


def test_empty_result_when_nothing_decodes(tmp_path):
    records = make_files(tmp_path / "data", n=0)
    out = ImageCache(tmp_path / "cache").build(records, CFG, progress=False)
    assert out.images.shape == (0, 32, 24) and out.records == [] and len(out.skipped) == 2


# --------------------------------------------------------------------------- concurrency


def _stable_records(data_dir: Path) -> list[ImageRecord]:
    """The records of ``make_files`` without rewriting the files (so keys are stable)."""
    recs = []
    for i in range(24):
        suffix = "pgm" if i % 2 else "png"
        recs.append(
            ImageRecord(
                image_id=f"t-{i:02d}", dataset="t", path=data_dir / f"img{i:02d}.{suffix}",
                label=int(i % 3 == 0), side="L" if i % 2 == 0 else "R",
            )
        )
    recs.append(ImageRecord(image_id="t-bad", dataset="t", path=data_dir / "broken.png", label=1))
    return recs


@pytest.mark.parametrize("lock", [True, False], ids=["locked", "lock-free"])
def test_two_processes_build_the_same_cache(tmp_path, lock):
    data_dir = tmp_path / "data"
    make_files(data_dir, n=24)
    records = _stable_records(data_dir)
    cache_dir = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")  # quick start; each child is a separate real process
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_build_in_child_stable, args=(str(cache_dir), str(data_dir), lock, barrier, queue))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode is None:
            p.kill()
        assert p.exitcode == 0

    expected = np.stack([expected_image(r) for r in records[:-1]])
    want = hashlib.sha256(expected.tobytes()).hexdigest()
    for _, digest, ids in results:
        assert digest == want
        assert ids == [r.image_id for r in records[:-1]]
    if lock:  # the second builder waits, then finds the finished array
        assert sorted(n for n, _, _ in results) == [0, 25]

    again = ImageCache(cache_dir).build(records, CFG, progress=False)
    assert again.n_decoded == 0 and again.consolidated_hit
    np.testing.assert_array_equal(np.asarray(again.images), expected)
    leftovers = [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for key in again.entry_keys:
        assert np.load(ImageCache(cache_dir).entry_path(key, CFG)).shape == (32, 24)


def _build_in_child_stable(cache_dir: str, data_dir: str, lock: bool, barrier, queue) -> None:
    torch.set_num_threads(1)  # no OpenMP pool inherited across fork
    records = _stable_records(Path(data_dir))
    barrier.wait()
    out = ImageCache(cache_dir, lock=lock).build(records, CFG, progress=False)
    digest = hashlib.sha256(np.ascontiguousarray(out.images).tobytes()).hexdigest()
    queue.put((out.n_decoded, digest, [r.image_id for r in out.records]))


# --------------------------------------------------------------------------- fingerprints


def test_dataset_fingerprint(tmp_path):
    records = make_files(tmp_path / "data", n=4)
    fp = dataset_fingerprint(records)
    assert len(fp) == 12 and all(c in "0123456789abcdef" for c in fp)
    assert dataset_fingerprint(list(reversed(records))) == fp
    relabelled = [records[0].__class__(**{**records[0].__dict__, "label": 1 - records[0].label})] + records[1:]
    assert dataset_fingerprint(relabelled) != fp
    st = records[1].path.stat()
    os.utime(records[1].path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert dataset_fingerprint(records) != fp


def test_default_cache_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TLSTUDY_CACHE", str(tmp_path / "cc"))
    assert default_cache_dir() == tmp_path / "cc"
    assert ImageCache().cache_dir == tmp_path / "cc"
    monkeypatch.delenv("TLSTUDY_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "tlstudy"


# --------------------------------------------------------------------------- dataset


def _cached(tmp_path) -> tuple[CachedArray, list[ImageRecord]]:
    records = make_files(tmp_path / "data", n=6)
    return ImageCache(tmp_path / "cache").build(records, CFG, progress=False), records


def test_dataset_items_and_metadata(tmp_path):
    cached, records = _cached(tmp_path)
    ds = CachedImageDataset(cached)
    assert len(ds) == 6
    img, label = ds[4]
    assert img.shape == (1, 32, 24) and img.dtype == torch.uint8
    assert label.dtype == torch.float32 and label.dim() == 0 and float(label) == float(records[4].label)
    np.testing.assert_array_equal(img[0].numpy(), cached.images[4])
    assert ds.image_ids == [r.image_id for r in records[:6]]
    np.testing.assert_array_equal(ds.labels, [r.label for r in records[:6]])
    assert len(ds.skipped) == 2

    sub = CachedImageDataset(cached, indices=[5, 1])
    assert sub.image_ids == ["t-05", "t-01"]
    np.testing.assert_array_equal(sub[0][0][0].numpy(), cached.images[5])
    nested = sub.subset([1])
    assert nested.image_ids == ["t-01"] and float(nested[0][1]) == float(records[1].label)
    with pytest.raises(IndexError):
        CachedImageDataset(cached, indices=[6])

    rows = cached.indices_of([records[2], "t-00"])
    assert rows.tolist() == [2, 0]
    with pytest.raises(KeyError, match="t-bad"):
        cached.indices_of(["t-01", "t-bad"])
    assert cached.indices_of(["t-01", "t-bad"], strict=False).tolist() == [1]


def test_dataset_pickles_without_the_pixels_and_batches(tmp_path):
    cached, _ = _cached(tmp_path)
    ds = CachedImageDataset(cached)
    blob = pickle.dumps(ds)
    assert len(blob) < cached.images.nbytes  # the memmap travels as a path
    clone = pickle.loads(blob)
    assert torch.equal(clone[3][0], ds[3][0])

    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 1, 32, 24), (2, 1, 32, 24)]
    assert batches[0][1].dtype == torch.float32
    x, y = ds.tensors()
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    assert torch.equal(torch.cat([b[1] for b in batches]), y)


def test_dataset_from_records(tmp_path):
    records = make_files(tmp_path / "data", n=3)
    ds = CachedImageDataset.from_records(records, CFG, ImageCache(tmp_path / "cache"), progress=False)
    assert len(ds) == 3 and len(ds.skipped) == 2
