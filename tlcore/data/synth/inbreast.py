"""INbreast look-alike: ``INbreast.csv``, ``AllDICOMs/`` (14-bit DICOM) and ``AllXML/`` plists."""

from __future__ import annotations

import plistlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcore.data.synth.config import (
    SynthConfig,
    fake_birth_date,
    fake_person_name,
    image_rng,
    plan_rng,
    scale_counts,
    stable_hex,
    stable_uid,
)
from tlcore.data.synth.dicom import DIGITAL_MAMMOGRAPHY_PRESENTATION, write_dicom
from tlcore.data.synth.phantoms import (
    CALCIFICATION,
    MASS,
    Lesion,
    render_mammogram,
    to_uint,
)

NAME = "inbreast"
CSV_HEADER = (
    "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
)
BIRADS_PAPER = {
    "1": 67,
    "2": 220,
    "3": 23,
    "4a": 13,
    "4b": 8,
    "4c": 22,
    "5": 49,
    "6": 8,
}
MALIGNANT_BIRADS = ("4a", "4b", "4c", "5", "6")
# patients with four images (both breasts) and with two (one breast). Tiny has two-image
# patients only, so that the patient-grouped 10% fine-tuning portion of 40 images can
# still hold both classes in training and validation.
PATIENTS = {"paper": (90, 25), "small": (90, 25), "tiny": (0, 20)}
# the two detector sizes (width, height) and the divisor per scale
SIZES = ((2560, 3328), (3328, 4084))
DIVISOR = {"tiny": 20.8, "small": 17.33, "paper": 3.25}
PIXEL_MM = 0.07


@dataclass
class _Img:
    index: int
    patient_hash: str
    file_name: int
    side: str  # "L" | "R"
    view: str  # "CC" | "MLO" | "FB"
    date: str  # YYYYMM
    acr: str
    birads: str
    width: int
    height: int
    lesions: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def malignant(self) -> bool:
        return self.birads in MALIGNANT_BIRADS

    @property
    def dicom_name(self) -> str:
        view = "ML" if self.view == "MLO" else self.view
        return f"{self.file_name}_{self.patient_hash}_MG_{self.side}_{view}_ANON.dcm"


def plan(config: SynthConfig) -> list[_Img]:
    """Draw the INbreast catalogue (patients, views, BI-RADS, lesions) for ``config``."""
    rng = plan_rng(config.seed, NAME)
    n4, n2 = PATIENTS[config.scale]
    total = 4 * n4 + 2 * n2
    birads = (
        BIRADS_PAPER if config.scale == "paper" else scale_counts(BIRADS_PAPER, total)
    )
    cats = [c for c, n in birads.items() for _ in range(n)]
    cats = [cats[int(i)] for i in rng.permutation(len(cats))]
    div = DIVISOR[config.scale]
    kinds = [4] * n4 + [2] * n2
    kinds = [kinds[int(i)] for i in rng.permutation(len(kinds))]
    used_numbers: set[int] = set()
    n_views: dict[str, int] = {}
    images: list[_Img] = []
    for p, k in enumerate(kinds):
        phash = stable_hex(config.seed, 16, NAME, "patient", p)
        n_views[phash] = k
        base = int(rng.integers(20_000_000, 53_999_000))
        while any(base + 24 * j in used_numbers for j in range(4)):
            base = int(rng.integers(20_000_000, 53_999_000))
        date = f"{int(rng.integers(2008, 2011))}{int(rng.integers(1, 13)):02d}"
        acr = str(int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1])))
        ws, hs = SIZES[0] if rng.random() < 0.6 else SIZES[1]
        w, h = 2 * round(ws / div / 2), 2 * round(hs / div / 2)
        if k == 4:
            slots = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
        else:
            side = "L" if rng.random() < 0.5 else "R"
            slots = [(side, "CC"), (side, "MLO")]
        for j, (side, view) in enumerate(slots):
            number = base + 24 * j
            used_numbers.add(number)
            images.append(
                _Img(
                    len(images),
                    phash,
                    number,
                    side,
                    view,
                    date,
                    acr,
                    cats[len(images)],
                    w,
                    h,
                )
            )
    # quirks: one FB view (on a one-breast patient), one ACR cell of blanks
    two = [im for im in images if n_views[im.patient_hash] == 2]
    (two[0] if two else images[0]).view = "FB"
    images[int(rng.integers(len(images)))].acr = "   "
    for im in images:
        im.lesions = _lesions_for(rng, im.birads)
    return images


def _lesions_for(rng: np.random.Generator, birads: str) -> list[tuple[str, bool]]:
    if birads == "1":
        return []
    if birads in MALIGNANT_BIRADS:
        out = [(MASS if rng.random() < 0.6 else CALCIFICATION, True)]
        if rng.random() < 0.2:
            out.append((CALCIFICATION, False))
        return out
    out = [(MASS if rng.random() < 0.45 else CALCIFICATION, False)]
    if rng.random() < 0.2:
        out.append((CALCIFICATION, False))
    return out


def _pt(x: float, y: float) -> str:
    return f"({x:.6f}, {y:.6f})"


def _roi(
    lesion: Lesion, index: int, points: list[tuple[float, float]], name: str, kind: int
) -> dict:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    cx, cy = float(np.mean(xs)), float(np.mean(ys))
    area = float(lesion.mask.sum()) * PIXEL_MM * PIXEL_MM if len(points) > 1 else 0.0
    return {
        "Area": area,
        "Center": f"({cx * PIXEL_MM:.6f}, {cy * PIXEL_MM:.6f}, 0.000000)",
        "Dev": 0.0,
        "IndexInImage": index,
        "Max": 0.0,
        "Mean": 0.0,
        "Min": 0.0,
        "Name": name,
        "NumberOfPoints": len(points),
        "Point_mm": [
            f"({x * PIXEL_MM:.6f}, {y * PIXEL_MM:.6f}, 0.000000)" for x, y in points
        ],
        "Point_px": [_pt(x, y) for x, y in points],
        "Total": 0.0,
        "Type": 15 if len(points) > 1 else 19,
    }


def _plist(im: _Img, lesions: list[Lesion]) -> bytes:
    rois: list[dict] = []
    for les in lesions:
        if les.kind == MASS:
            rois.append(_roi(les, len(rois), list(les.outline), "Mass", 15))
        else:
            for speck in les.specks[:10]:
                rois.append(_roi(les, len(rois), [speck], "Calcification", 19))
    doc = {
        "Images": [
            {
                "ImageHeight": im.height,
                "ImageIndex": 0,
                "ImageWidth": im.width,
                "NumberOfROIs": len(rois),
                "ROIs": rois,
            }
        ]
    }
    return plistlib.dumps(doc, fmt=plistlib.FMT_XML, sort_keys=True)


def write_image(config: SynthConfig, root: Path, im: _Img) -> None:
    """Render one image; write its DICOM and (for BI-RADS above 1) its XML outline file."""
    rng = image_rng(config.seed, NAME, im.index)
    density = int(im.acr) if im.acr.strip() else 2
    phantom = render_mammogram(
        rng, im.height, im.width, im.side, im.view, density, im.lesions
    )
    px = to_uint(phantom.image, 16383)
    tags = {
        "PatientID": im.patient_hash,
        "PatientName": fake_person_name(config.seed, NAME, im.patient_hash),
        "PatientBirthDate": fake_birth_date(config.seed, NAME, im.patient_hash),
        "PatientSex": "F",
        "StudyDate": f"{im.date}15",
        "StudyTime": "100000",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "InstitutionName": "SYNTHETIC BREAST CENTRE",
        "Manufacturer": "SYNTHETIC",
        "BodyPartExamined": "BREAST",
        "Laterality": im.side,
        "ImageLaterality": im.side,
        "ViewPosition": im.view,
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        "PresentationIntentType": "FOR PRESENTATION",
        "SeriesDescription": f"{im.side} {im.view}",
    }
    write_dicom(
        root / "AllDICOMs" / im.dicom_name,
        px,
        sop_class_uid=DIGITAL_MAMMOGRAPHY_PRESENTATION,
        sop_instance_uid=stable_uid(config.seed, NAME, im.file_name, "sop"),
        study_uid=stable_uid(config.seed, NAME, im.patient_hash, "study"),
        series_uid=stable_uid(config.seed, NAME, im.file_name, "series"),
        bits_stored=14,
        tags=tags,
    )
    if im.birads != "1":
        xml = root / "AllXML" / f"{im.file_name}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_bytes(_plist(im, phantom.lesions))


def write_csv(root: Path, images: list[_Img]) -> None:
    """Write ``INbreast.csv`` (``;`` separated, CRLF)."""
    lines = [CSV_HEADER]
    for im in images:
        lines.append(
            ";".join(
                [
                    "removed",
                    "removed",
                    im.side,
                    im.view,
                    im.date,
                    str(im.file_name),
                    im.acr,
                    im.birads,
                ]
            )
        )
    (root / "INbreast.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))


def generate_inbreast(
    root: Path, config: SynthConfig, progress: Callable[[list, str], list] | None = None
) -> dict:
    """Write the INbreast look-alike under ``root``; return its expected counts."""
    images = plan(config)
    root.mkdir(parents=True, exist_ok=True)
    (root / "AllDICOMs").mkdir(exist_ok=True)
    (root / "AllXML").mkdir(exist_ok=True)
    for im in progress(images, "inbreast") if progress else images:
        write_image(config, root, im)
    write_csv(root, images)
    n_mal = sum(im.malignant for im in images)
    birads: dict[str, int] = {}
    for im in images:
        birads[im.birads] = birads.get(im.birads, 0) + 1
    return {
        "n_images": len(images),
        "n_malignant": n_mal,
        "n_benign": len(images) - n_mal,
        "birads": {k: birads.get(k, 0) for k in BIRADS_PAPER},
        "n_xml": sum(im.birads != "1" for im in images),
        "n_patients": len({im.patient_hash for im in images}),
    }
