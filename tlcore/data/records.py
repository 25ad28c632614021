"""Plain records that every dataset reader produces.

A reader turns a dataset root, in the layout its distributor ships, into a
:class:`ReadResult`: a list of :class:`ImageRecord` (one per image file, the unit of
classification) and a list of :class:`Skipped` entries for anything it could not use.

Privacy rule: ``ImageRecord.patient`` may hold a patient identifier (CBIS-DDSM
``patient_id``, INbreast patient hash). It exists only so that splits can keep one
patient on one side. It must never be written to a tracking server, a manifest or a
log; :attr:`ImageRecord.image_id` is the anonymous id to use everywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MALIGNANT = 1
NOT_MALIGNANT = 0


def anonymous_id(dataset: str, key: str) -> str:
    """Stable anonymous id for an image: a keyed hash (HMAC-SHA256) of dataset and key.

    ``key`` is whatever identifies the image uniquely inside its dataset (e.g. the
    relative path). The HMAC key is the site secret of :mod:`tlcore.data.site_key`, kept
    outside the tracking store: ids are stable for one site and cannot be recomputed
    from the public dataset tables by a reader of the store.
    """
    from tlcore.data.site_key import site_key

    message = f"tlstudy:{dataset}:{key}".encode("utf-8")
    digest = hmac.new(site_key(), message, hashlib.sha256).hexdigest()
    return f"{dataset}-{digest[:16]}"


@dataclass(frozen=True)
class Finding:
    """One annotated abnormality on an image.

    ``pathology`` is the dataset's own word (``MALIGNANT``, ``BENIGN``,
    ``BENIGN_WITHOUT_CALLBACK``, a BI-RADS category, ``B``/``M``...); ``malignant`` is
    the study's binary reading of it. Geometry is in pixel coordinates of the full
    image with the origin at the top-left corner (x = column, y = row).
    """

    malignant: bool
    pathology: str
    kind: str | None = None  # mass / calcification / MIAS class (CIRC, SPIC, ...) / ROI name
    center: tuple[float, float] | None = None  # (x, y), top-left origin
    radius: float | None = None
    outline: tuple[tuple[float, float], ...] | None = None  # polygon (x, y) points
    roi_mask_path: Path | None = None
    crop_path: Path | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecord:
    """One image file and everything the dataset says about it.

    ``label`` is 1 when any finding is malignant, else 0. ``split`` is the
    distributor's official split where one exists (CBIS-DDSM ``train``/``test``),
    else None. ``side`` is ``L``/``R``; ``view`` is ``CC``/``MLO``/... as normalised
    by the reader. ``meta`` holds dataset-specific extras (BI-RADS, tissue, ...).
    """

    image_id: str
    dataset: str
    path: Path
    label: int
    split: str | None = None
    patient: str | None = None  # PRIVATE: grouping only, never logged
    side: str | None = None
    view: str | None = None
    findings: tuple[Finding, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def public_dict(self) -> dict[str, Any]:
        """The fields safe to write anywhere (no patient identifier, no path)."""
        return {
            "image_id": self.image_id,
            "dataset": self.dataset,
            "label": self.label,
            "split": self.split,
            "side": self.side,
            "view": self.view,
        }


@dataclass(frozen=True)
class Skipped:
    """Something a reader or check could not use, and why."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ReadResult:
    """What a reader returns: usable records plus skip entries."""

    dataset: str
    root: Path
    records: list[ImageRecord]
    skipped: list[Skipped] = field(default_factory=list)
    metadata: Path | None = None  # the file (or folder) that lists the images

    @property
    def n_malignant(self) -> int:
        return sum(r.label == MALIGNANT for r in self.records)

    @property
    def n_benign(self) -> int:
        """Every image that is not malignant (normal and benign alike)."""
        return len(self.records) - self.n_malignant


class DatasetError(Exception):
    """The dataset cannot be read at all (missing root, unparseable metadata).

    The message names the file and the problem.
    """


def require_usable(result: "ReadResult", records: list[ImageRecord] | None = None) -> None:
    """Raise :class:`DatasetError` naming the metadata file when no image is usable.

    ``records`` defaults to ``result.records`` (``data check`` passes the ones that opened);
    the message gives the number skipped and the first reason (not its path), on one line.
    """
    kept = result.records if records is None else records
    if kept:
        return
    where = result.metadata or result.root
    skipped = result.skipped
    if not skipped:
        raise DatasetError(f"{where}: lists no images")
    # The reason, not the file: CBIS-DDSM and INbreast file names hold patient ids, and this
    # message may end up in a log that is uploaded.
    raise DatasetError(
        f"{where}: no usable image ({len(skipped)} skipped; first reason: {skipped[0].reason})"
    )


class ImageDecodeError(Exception):
    """One image file cannot be decoded. The message names the file and the problem."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
