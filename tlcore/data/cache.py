"""On-disk cache of preprocessed images: decode each source file once per settings.

Layout under the cache directory (``$TLSTUDY_CACHE``, else ``~/.cache/tlstudy``)::

    <config fingerprint>/
        config.json                     the PreprocessConfig, for people
        entries/<ab>/<entry key>.npy    one (H, W) uint8 image per source file
        arrays/<list key>.npy           consolidated (N, H, W) uint8, memory-mapped on read
        arrays/<list key>.json          which inputs it holds, and which were skipped
        locks/<list key>.lock           fcntl lock held while one process builds a list

An *entry key* hashes the file's absolute path, size and ``st_mtime_ns`` (or, with
``content_hash=True``, its bytes), so a changed file gets a new key and is decoded
again. A *list key* hashes the ordered entry keys of one build request, so the same
records in the same order map to the same consolidated array.

Every file is written to a temporary name in its final directory and moved into place
with :func:`os.replace`, so readers only ever see complete files and two processes
building the same cache at once cannot corrupt it (the lock only saves duplicate work).
Images that cannot be decoded become :class:`~tlcore.data.records.Skipped` entries and
are left out; labels are never touched. Temporary files of a killed build
(``.*.tmp*``) may be left behind and are safe to delete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcore.data.preprocess import PreprocessConfig, preprocess_image
from tlcore.data.records import ImageDecodeError, ImageRecord, Skipped
from tlcore.locking import LOCKS_AVAILABLE, file_lock


CACHE_FORMAT_VERSION = 1
_HASH_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$TLSTUDY_CACHE`` when set, else ``~/.cache/tlstudy``."""
    env = os.environ.get("TLSTUDY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tlstudy"


def file_key(path: str | Path, *, content_hash: bool = False) -> str:
    """Cache key of one source file (24 hex); raises OSError when the file cannot be read.

    By default it hashes the absolute path, size and modification time in nanoseconds;
    with ``content_hash`` it hashes the file's bytes (slower, survives moves and copies).
    """
    p = Path(path).absolute()
    st = p.stat()
    h = hashlib.sha256()
    if content_hash:
        h.update(b"content:")
        with open(p, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                h.update(chunk)
    else:
        h.update(f"stat:{p}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def dataset_fingerprint(records: Sequence[ImageRecord]) -> str:
    """Short hash (12 hex) of the image ids, labels and file sizes/mtimes; order-independent.

    Meant for provenance tags: it holds no patient identifier and no path. A missing
    file contributes size and mtime ``-1``.
    """
    lines = []
    for r in records:
        try:
            st = Path(r.path).stat()
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        lines.append(f"{r.image_id}|{r.label}|{size}|{mtime}")
    lines.sort()
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:12]


@dataclass
class CachedArray:
    """Preprocessed images of a list of records, as one ``(N, H, W)`` uint8 array.

    ``records[i]`` is the record of ``images[i]`` (kept records in input order);
    ``skipped`` lists the inputs left out and why. ``n_decoded`` counts source files
    decoded by the build that returned this object (0 on a full cache hit).
    """

    images: np.ndarray
    records: list[ImageRecord]
    skipped: list[Skipped]
    config: PreprocessConfig
    path: Path | None = None
    key: str = ""
    n_decoded: int = 0
    n_reused: int = 0
    consolidated_hit: bool = False
    entry_keys: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        """Labels of the kept records, int64, in array order."""
        return np.asarray([r.label for r in self.records], dtype=np.int64)

    @property
    def image_ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def indices_of(self, items: Iterable[ImageRecord | str], *, strict: bool = True) -> np.ndarray:
        """Rows of the given records or image ids, in the given order (e.g. one part of a split).

        With ``strict`` an id that is not in the array (unknown, or skipped at build time)
        raises KeyError; otherwise such ids are dropped.
        """
        pos = {r.image_id: i for i, r in enumerate(self.records)}
        out, missing = [], []
        for item in items:
            key = item.image_id if isinstance(item, ImageRecord) else str(item)
            if key in pos:
                out.append(pos[key])
            else:
                missing.append(key)
        if missing and strict:
            raise KeyError(
                f"{len(missing)} image(s) are not in the cached array (skipped at build time or unknown), "
                f"e.g. {missing[0]!r}"
            )
        return np.asarray(out, dtype=np.int64)


class ImageCache:
    """Decode-once cache of preprocessed images under ``cache_dir``.

    ``lock`` serialises builds of the same record list across processes (POSIX
    ``fcntl``); correctness does not depend on it.
    """

    def __init__(self, cache_dir: str | Path | None = None, *, content_hash: bool = False, lock: bool = True):
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.content_hash = content_hash
        self.lock = lock

    # ------------------------------------------------------------------ paths
    def config_dir(self, config: PreprocessConfig) -> Path:
        """Folder holding everything cached for one preprocessing configuration."""
        return self.cache_dir / config.fingerprint()

    def entry_path(self, key: str, config: PreprocessConfig) -> Path:
        """Path of the cached image for entry ``key`` (see :func:`file_key`)."""
        return self.config_dir(config) / "entries" / key[:2] / f"{key}.npy"

    # ------------------------------------------------------------------ build
    def build(
        self,
        records: Sequence[ImageRecord],
        config: PreprocessConfig,
        *,
        num_workers: int = 0,
        progress: bool = True,
        refresh: bool = False,
        mp_context: str = "spawn",
    ) -> CachedArray:
        """Preprocess ``records`` (decoding only what is not cached) into a :class:`CachedArray`.

        ``num_workers > 0`` decodes in a process pool of that size started with
        ``mp_context`` (``spawn`` by default: safe with torch's thread pools). Missing or
        undecodable files are reported in ``skipped`` and left out; the failures are
        remembered with the consolidated array of this list, and ``refresh=True`` ignores
        that array so they are tried again (e.g. after installing a DICOM codec). Cached
        entries are reused either way.
        """
        records = list(records)
        cdir = self.config_dir(config)
        skipped_stat: list[Skipped] = []
        cand: list[tuple[ImageRecord, str]] = []
        for r in records:
            try:
                cand.append((r, _entry_key(file_key(r.path, content_hash=self.content_hash), r.side)))
            except OSError as exc:
                skipped_stat.append(Skipped(str(r.path), f"cannot read file: {exc.strerror or exc}"))

        keys = [k for _, k in cand]
        list_key = _hash_lines([f"v{CACHE_FORMAT_VERSION}", config.fingerprint(), *keys])[:24]
        arrays = cdir / "arrays"
        npy_path, meta_path = arrays / f"{list_key}.npy", arrays / f"{list_key}.json"

        # Without POSIX locks, atomic renames alone keep the cache consistent.
        lock = file_lock(cdir / "locks" / f"{list_key}.lock") if self.lock and LOCKS_AVAILABLE else contextlib.nullcontext()
        with lock:
            if not refresh:
                hit = self._load_consolidated(npy_path, meta_path, cand, config, list_key)
                if hit is not None:
                    hit.skipped = skipped_stat + hit.skipped
                    return hit
            self._write_config(cdir, config)

            missing = [i for i, (_, k) in enumerate(cand) if not self.entry_path(k, config).is_file()]
            errors = self._decode([cand[i] for i in missing], config, num_workers, progress, mp_context)
            n_decoded = len({cand[i][1] for i in missing})

            failed = {cand[missing[j]][1]: reason for j, reason in errors.items()}
            kept: list[int] = []
            skipped: list[tuple[int, str]] = []
            for i, (rec, key) in enumerate(cand):
                if key in failed:
                    skipped.append((i, failed[key]))
                    continue
                entry = self.entry_path(key, config)
                if _load_entry(entry, config) is None:  # vanished or damaged: decode it here
                    n_decoded += 1
                    reason = _decode_one(str(rec.path), rec.side, config, str(entry))
                    if reason is None and _load_entry(entry, config) is None:
                        reason = f"cached entry {entry} could not be read back"
                    if reason is not None:
                        failed[key] = reason
                        skipped.append((i, reason))
                        continue
                kept.append(i)
            self._write_consolidated(npy_path, [self.entry_path(cand[i][1], config) for i in kept], config)
            skipped.sort()
            h, w = config.image_size
            meta = {
                "format": CACHE_FORMAT_VERSION,
                "config": config.fingerprint(),
                "shape": [len(kept), h, w],
                "kept": kept,
                "kept_keys": [cand[i][1] for i in kept],
                "skipped": [{"index": i, "reason": reason} for i, reason in skipped],
            }
            _atomic_write_text(meta_path, json.dumps(meta))
            images = _open_npy_for_read(npy_path)
        return CachedArray(
            images=images,
            records=[cand[i][0] for i in kept],
            skipped=skipped_stat + [Skipped(str(cand[i][0].path), reason) for i, reason in skipped],
            config=config,
            path=npy_path,
            key=list_key,
            n_decoded=n_decoded,
            n_reused=len(cand) - n_decoded,
            consolidated_hit=False,
            entry_keys=[cand[i][1] for i in kept],
        )

    # ------------------------------------------------------------------ internals
    def _load_consolidated(
        self,
        npy_path: Path,
        meta_path: Path,
        cand: list[tuple[ImageRecord, str]],
        config: PreprocessConfig,
        list_key: str,
    ) -> CachedArray | None:
        """The consolidated array of a previous build of the same list, or None."""
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            images = _open_npy_for_read(npy_path)
        except (OSError, ValueError):
            return None
        h, w = config.image_size
        kept = meta.get("kept")
        if (
            meta.get("format") != CACHE_FORMAT_VERSION
            or not isinstance(kept, list)
            or images.dtype != np.uint8
            or images.shape != (len(kept), h, w)
            or any(not 0 <= i < len(cand) for i in kept)
            or meta.get("kept_keys") != [cand[i][1] for i in kept]
        ):
            return None
        skipped = [Skipped(str(cand[s["index"]][0].path), s["reason"]) for s in meta.get("skipped", [])]
        return CachedArray(
            images=images,
            records=[cand[i][0] for i in kept],
            skipped=skipped,
            config=config,
            path=npy_path,
            key=list_key,
            n_decoded=0,
            n_reused=len(cand),
            consolidated_hit=True,
            entry_keys=[cand[i][1] for i in kept],
        )

    def _decode(
        self,
        todo: list[tuple[ImageRecord, str]],
        config: PreprocessConfig,
        num_workers: int,
        progress: bool,
        mp_context: str,
    ) -> dict[int, str]:
        """Decode ``todo`` into entry files; returns {position in todo: skip reason}."""
        from tqdm import tqdm

        if not todo:
            return {}
        seen: dict[str, int] = {}
        tasks = []
        for j, (rec, key) in enumerate(todo):
            if key in seen:  # the same file listed twice: decode once
                continue
            seen[key] = j
            out = self.entry_path(key, config)
            out.parent.mkdir(parents=True, exist_ok=True)
            tasks.append((j, (str(rec.path), rec.side, config, str(out))))
        errors: dict[int, str] = {}
        bar = tqdm(total=len(tasks), desc="decode images", unit="img", disable=not progress, leave=False)
        try:
            if num_workers > 0 and len(tasks) > 1:
                ctx = multiprocessing.get_context(mp_context)
                chunk = max(1, len(tasks) // (num_workers * 8))
                with ProcessPoolExecutor(max_workers=num_workers, mp_context=ctx, initializer=_worker_init) as pool:
                    results = pool.map(_decode_task, [t for _, t in tasks], chunksize=chunk)
                    for (j, _), reason in zip(tasks, results, strict=True):
                        if reason:
                            errors[j] = reason
                        bar.update(1)
            else:
                for j, task in tasks:
                    reason = _decode_task(task)
                    if reason:
                        errors[j] = reason
                    bar.update(1)
        finally:
            bar.close()
        # duplicates share the outcome of the first occurrence
        for j, (_, key) in enumerate(todo):
            first = seen[key]
            if first != j and first in errors:
                errors[j] = errors[first]
        return errors

    @staticmethod
    def _write_consolidated(npy_path: Path, entries: list[Path], config: PreprocessConfig) -> None:
        """Stack the entry files into one (N, H, W) uint8 .npy, written atomically."""
        h, w = config.image_size
        npy_path.parent.mkdir(parents=True, exist_ok=True)
        if not entries:
            _atomic_save_npy(npy_path, np.zeros((0, h, w), dtype=np.uint8))
            return
        tmp = _tmp_name(npy_path)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(entries), h, w))
            for row, entry in enumerate(entries):
                arr = _load_entry(entry, config)
                if arr is None:
                    raise OSError(f"{entry}: cached entry disappeared while the array was assembled")
                out[row] = arr
            out.flush()
            del out
            os.replace(tmp, npy_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    @staticmethod
    def _write_config(cdir: Path, config: PreprocessConfig) -> None:
        path = cdir / "config.json"
        if not path.is_file():
            cdir.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(path, json.dumps(config.as_dict(), indent=2, sort_keys=True))


# ---------------------------------------------------------------------- helpers


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _decode_task(task: tuple[str, str | None, PreprocessConfig, str]) -> str | None:
    path, side, config, out = task
    return _decode_one(path, side, config, out)


def _decode_one(path: str, side: str | None, config: PreprocessConfig, out: str) -> str | None:
    """Decode, preprocess and store one image; returns a skip reason or None on success."""
    from tlcore.data.imageio import read_image

    try:
        decoded = read_image(path)
        arr = preprocess_image(decoded.pixels, config, side)
    except ImageDecodeError as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - one bad image must never stop a build
        return f"preprocessing failed: {type(exc).__name__}: {exc}"
    _atomic_save_npy(Path(out), arr)
    return None


def _entry_key(source_key: str, side: str | None) -> str:
    """Entry key: the file key plus the laterality the reader gave (it can steer the flip)."""
    return hashlib.sha256(f"{source_key}|{side or ''}".encode()).hexdigest()[:24]


def _hash_lines(lines: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _atomic_save_npy(final: Path, arr: np.ndarray) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _atomic_write_text(final: Path, text: str) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _load_entry(path: Path, config: PreprocessConfig) -> np.ndarray | None:
    """A cached entry, or None when it is missing, damaged or of the wrong shape."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.uint8 or arr.shape != tuple(config.image_size):
        return None
    return arr


def _open_npy_for_read(path: Path) -> np.ndarray:
    """Read-only memory map of a consolidated (N, H, W) array."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    if arr.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D (N, H, W) array, found shape {arr.shape}")
    return arr


