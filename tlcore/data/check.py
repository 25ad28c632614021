"""Dataset check: parse a dataset's metadata, open every image, and report counts and problems.

Used by ``tlstudy data check``. A missing or unreadable image becomes a ``skipped`` entry;
a missing root, unparseable metadata or a dataset with no usable image raises
:class:`DatasetError` naming the metadata file.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tlcore.data.imageio import probe_image, read_image
from tlcore.data.records import ImageDecodeError, ImageRecord, Skipped, require_usable
from tlcore.data.registry import get_reader


@dataclass
class CheckReport:
    """What ``data check`` found. ``n_images`` counts the images that opened."""

    dataset: str
    root: str
    modality: str
    deep: bool
    n_listed: int
    records: list[ImageRecord]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.records)

    @property
    def n_malignant(self) -> int:
        return sum(r.label == 1 for r in self.records)

    @property
    def n_benign(self) -> int:
        return self.n_images - self.n_malignant

    def split_counts(self) -> dict[str, dict[str, int]]:
        """Per official split (CBIS-DDSM ``train``/``test``), images and malignant counts."""
        counts: dict[str, Counter] = {}
        for r in self.records:
            if r.split is None:
                continue
            c = counts.setdefault(r.split, Counter())
            c["n_images"] += 1
            c["n_malignant"] += r.label
        return {k: {"n_images": v["n_images"], "n_malignant": v["n_malignant"]} for k, v in sorted(counts.items())}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (anonymous: no patient ids, no per-image records)."""
        out: dict[str, Any] = {
            "dataset": self.dataset,
            "root": self.root,
            "modality": self.modality,
            "deep": self.deep,
            "n_listed": self.n_listed,
            "n_images": self.n_images,
            "n_malignant": self.n_malignant,
            "n_benign": self.n_benign,
            "skipped": [s.as_dict() for s in self.skipped],
        }
        splits = self.split_counts()
        if splits:
            out["splits"] = splits
        return out

    def summary_text(self) -> str:
        """A readable multi-line summary for the terminal."""
        lines = [
            f"dataset   {self.dataset} ({self.modality})",
            f"root      {self.root}",
            f"check     {'full decode' if self.deep else 'headers'}",
            f"images    {self.n_images} usable of {self.n_listed} listed",
            f"labels    {self.n_malignant} malignant, {self.n_benign} not malignant (normal/benign)",
        ]
        for split, c in self.split_counts().items():
            lines.append(f"split     {split}: {c['n_images']} images, {c['n_malignant']} malignant")
        if self.skipped:
            lines.append(f"skipped   {len(self.skipped)}:")
            for s in self.skipped[:20]:
                lines.append(f"  - {s.path}: {s.reason}")
            if len(self.skipped) > 20:
                lines.append(f"  ... and {len(self.skipped) - 20} more (use --json for all)")
        else:
            lines.append("skipped   none")
        return "\n".join(lines)


def check_dataset(name: str, root: str | Path, *, deep: bool = False, progress: bool = True) -> CheckReport:
    """Read ``name`` at ``root`` and open every image (header only, or full decode if ``deep``)."""
    reader = get_reader(name)
    result = reader.read(Path(root))
    opener = read_image if deep else probe_image
    kept: list[ImageRecord] = []
    skipped = list(result.skipped)
    for record in tqdm(result.records, desc=f"checking {name}", unit="img", disable=not progress):
        try:
            opener(record.path)
        except ImageDecodeError as exc:
            skipped.append(Skipped(path=str(record.path), reason=exc.reason))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad image must not end the whole check
            reason = f"unexpected {type(exc).__name__} while reading the image: {exc}"
            skipped.append(Skipped(path=str(record.path), reason=reason))
            continue
        kept.append(record)
    # Every listed image failed to open: an error naming the metadata file, not "0 usable".
    require_usable(replace(result, skipped=skipped), kept)
    n_listed = len(result.records) + sum(1 for s in result.skipped if _is_image_skip(s))
    return CheckReport(
        dataset=name,
        root=str(Path(root)),
        modality=reader.modality,
        deep=deep,
        n_listed=n_listed,
        records=kept,
        skipped=skipped,
    )


_IMAGE_SUFFIXES = (".dcm", ".pgm", ".bmp", ".png", ".jpg", ".jpeg")
# Reader skips for files on disk that no metadata lists as an image (so not "listed").
_UNLISTED_REASONS = ("not listed in", "mask without")
# Reader skips for a listed image that is absent; CBIS-DDSM names the CSV line, not the file.
_MISSING_REASONS = ("not found", "no such file")


def _is_image_skip(entry: Skipped) -> bool:
    """Reader-level skips that stand for a listed image (missing or unreadable file), not
    e.g. a broken outline XML, a malformed metadata line or a file the metadata does not list."""
    reason = entry.reason.lower()
    if reason.startswith(_UNLISTED_REASONS):
        return False
    if any(word in reason for word in _MISSING_REASONS):
        return True
    return entry.path.lower().endswith(_IMAGE_SUFFIXES)
