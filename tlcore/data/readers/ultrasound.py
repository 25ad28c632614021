"""Reader for breast ultrasound: the Rodrigues set (Mendeley 2017) or BUSI (Al-Dhabyani 2020).

Layouts, detected automatically (folder names are case-insensitive, and the class
folders may sit inside one or two wrapper folders of any name):

* Rodrigues: ``benign/us*.bmp`` and ``malignant/us*.bmp``.
* BUSI: ``Dataset_BUSI_with_GT/{benign,malignant,normal}/<name> (N).png`` with masks
  ``<name> (N)_mask.png``, ``<name> (N)_mask_1.png``, ... Masks are never images; they
  are attached to their image's Finding.

The label comes from the folder name only: ``malignant`` is 1, ``benign`` and ``normal`` 0.
"""

from __future__ import annotations

import re
from pathlib import Path

from tlcore.data.imageio import detect_format
from tlcore.data.records import (
    MALIGNANT,
    NOT_MALIGNANT,
    DatasetError,
    Finding,
    ImageDecodeError,
    ImageRecord,
    ReadResult,
    Skipped,
    anonymous_id,
)
from tlcore.data.registry import register_reader

CLASS_FOLDERS = {"benign": NOT_MALIGNANT, "malignant": MALIGNANT, "normal": NOT_MALIGNANT}
LAYOUT_EXTENSIONS = {"rodrigues": (".bmp",), "busi": (".png",)}
_MASK = re.compile(r"^(?P<base>.+?)_mask(?:_(?P<n>\d+))?\.png$", re.IGNORECASE)
_MAX_DEPTH = 2  # class folders may sit at most this many folders below the root
_EXPECTED = (
    "expected class folders 'benign' and 'malignant' (any case): Rodrigues layout "
    "benign/us*.bmp and malignant/us*.bmp, or BUSI layout "
    "Dataset_BUSI_with_GT/{benign,malignant,normal}/*.png, at most two folders below the root"
)


def _visible_dirs(folder: Path) -> list[Path]:
    try:
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX"
        )
    except OSError:
        return []


def _class_dirs(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for sub in _visible_dirs(folder):
        key = sub.name.lower()
        if key in CLASS_FOLDERS:
            found.setdefault(key, []).append(sub)
    return found


def find_class_parent(root: Path) -> Path:
    """The shallowest folder under ``root`` holding ``benign``/``malignant`` folders."""
    level = [root]
    for depth in range(_MAX_DEPTH + 1):
        hits = [d for d in level if {"benign", "malignant"} & set(_class_dirs(d))]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            names = ", ".join(str(h.relative_to(root)) or "." for h in hits)
            raise DatasetError(
                f"{root}: several ultrasound datasets found ({names}); point to one of them"
            )
        if depth < _MAX_DEPTH:
            level = [sub for d in level for sub in _visible_dirs(d)]
    raise DatasetError(f"{root}: no ultrasound class folders found; {_EXPECTED}")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def detect_layout(class_dirs: dict[str, list[Path]]) -> str:
    """``busi`` when a ``normal`` folder or masks are present or PNG images outnumber BMP ones,
    else ``rodrigues``."""
    if "normal" in class_dirs:
        return "busi"
    n_bmp = n_png = 0
    for dirs in class_dirs.values():
        for d in dirs:
            for p in _files(d):
                if _MASK.match(p.name):
                    return "busi"
                suffix = p.suffix.lower()
                n_bmp += suffix == ".bmp"
                n_png += suffix == ".png"
    return "busi" if n_png > n_bmp else "rodrigues"


def _mask_order(path: Path) -> int:
    match = _MASK.match(path.name)
    n = match.group("n") if match else None
    return -1 if n is None else int(n)


@register_reader
class UltrasoundReader:
    """Breast ultrasound images (Rodrigues or BUSI layout), labelled by folder name."""

    name = "ultrasound"
    modality = "ultrasound"

    def read(self, root: Path) -> ReadResult:
        """Find the class folders under ``root`` and list one record per image file."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: ultrasound root folder not found")
        parent = find_class_parent(root)
        class_dirs = _class_dirs(parent)
        layout = detect_layout(class_dirs)
        extensions = LAYOUT_EXTENSIONS[layout]
        records: list[ImageRecord] = []
        skipped: list[Skipped] = []

        for class_name in sorted(class_dirs):
            label = CLASS_FOLDERS[class_name]
            for folder in class_dirs[class_name]:
                images: dict[str, Path] = {}
                masks: dict[str, list[Path]] = {}
                for path in _files(folder):
                    mask = _MASK.match(path.name)
                    if mask:
                        masks.setdefault(mask.group("base").lower(), []).append(path)
                    elif path.suffix.lower() in extensions:
                        images[path.stem.lower()] = path
                for base in sorted(set(masks) - set(images)):
                    for m in masks[base]:
                        skipped.append(Skipped(str(m), "mask without a matching image"))
                for key in sorted(images, key=lambda k: images[k].name):
                    path = images[key]
                    try:
                        detect_format(path)  # magic bytes: a .bmp slot must hold a BMP
                    except ImageDecodeError as exc:
                        skipped.append(Skipped(str(path), exc.reason))
                        continue
                    image_masks = sorted(masks.get(key, []), key=_mask_order)
                    finding = Finding(
                        malignant=label == MALIGNANT,
                        pathology=class_name.upper(),
                        roi_mask_path=image_masks[0] if image_masks else None,
                        attributes={"masks": [str(m) for m in image_masks]} if image_masks else {},
                    )
                    records.append(
                        ImageRecord(
                            image_id=anonymous_id(self.name, f"{class_name}/{path.name}"),
                            dataset=self.name,
                            path=path,
                            label=label,
                            findings=(finding,),
                            meta={
                                "layout": layout,
                                "class": class_name,
                                "n_masks": len(image_masks),
                            },
                        )
                    )
        if not records:
            found = ", ".join(f"{k}/" for k in sorted(class_dirs))
            wanted = "/".join(extensions)
            raise DatasetError(
                f"{parent}: class folders {found} hold no {wanted} images; {_EXPECTED}"
            )
        return ReadResult(
            dataset=self.name, root=root, records=records, skipped=skipped, metadata=parent
        )
