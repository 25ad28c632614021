"""CBIS-DDSM look-alike: four case-description CSVs plus DICOM full images, crops and masks.

Layout and quirks follow the distributor's files (see the reference notes): CRLF CSVs with
the verbatim headers, quoted cells holding a bare newline, ``NA``/``N/A`` descriptors,
density/subtlety ``0``, trailing newlines in crop/mask path cells, crop/mask file names
swapped between calc and mass rows, some crops and masks in different series folders;
DICOM files in the NBIA "classic" layout (files at the CSV paths under ``CBIS-DDSM/``) or
the "descriptive" layout.
"""

from __future__ import annotations

import csv
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
    stable_uid,
)
from tlcore.data.synth.dicom import SECONDARY_CAPTURE, write_dicom
from tlcore.data.synth.phantoms import CALCIFICATION, MASS, render_mammogram, to_uint

NAME = "ddsm"

MASS_HEADER = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "mass shape",
    "mass margins",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]
CALC_HEADER = [
    "patient_id",
    "breast density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "calc type",
    "calc distribution",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]


@dataclass(frozen=True)
class _CsvSpec:
    key: str
    prefix: str
    kind: str  # "mass" | "calcification"
    split: str  # "train" | "test"
    filename: str


CSV_SPECS = (
    _CsvSpec(
        "mass_train",
        "Mass-Training",
        MASS,
        "train",
        "mass_case_description_train_set.csv",
    ),
    _CsvSpec(
        "mass_test", "Mass-Test", MASS, "test", "mass_case_description_test_set.csv"
    ),
    _CsvSpec(
        "calc_train",
        "Calc-Training",
        CALCIFICATION,
        "train",
        "calc_case_description_train_set.csv",
    ),
    _CsvSpec(
        "calc_test",
        "Calc-Test",
        CALCIFICATION,
        "test",
        "calc_case_description_test_set.csv",
    ),
)
_SPEC = {s.key: s for s in CSV_SPECS}

PAPER_IMAGES = {
    "mass_train": 1231,
    "mass_test": 361,
    "calc_train": 1227,
    "calc_test": 284,
}
PAPER_ROWS = {
    "mass_train": 1318,
    "mass_test": 378,
    "calc_train": 1546,
    "calc_test": 326,
}
TINY_IMAGES = {"mass_train": 15, "mass_test": 5, "calc_train": 15, "calc_test": 5}
TINY_ROWS = {"mass_train": 16, "mass_test": 6, "calc_train": 19, "calc_test": 6}
SMALL_FRACTION = 0.25
MIXED = {
    "paper": {"mass_train": 4, "mass_test": 1, "calc_train": 10, "calc_test": 2},
    "small": {"mass_train": 1, "mass_test": 0, "calc_train": 2, "calc_test": 0},
    "tiny": {"mass_train": 1, "mass_test": 0, "calc_train": 1, "calc_test": 0},
}
OVERLAP = {"paper": 31, "small": 4, "tiny": 2}
P_MALIGNANT = {
    "mass_train": 0.47,
    "mass_test": 0.40,
    "calc_train": 0.38,
    "calc_test": 0.40,
}
P_BWC = {MASS: 0.08, CALCIFICATION: 0.35}
HEIGHTS = {"tiny": (160, 192), "small": (160, 192), "paper": (960, 1088)}

_MASS_SHAPE = {
    True: (
        ("IRREGULAR", 0.5),
        ("LOBULATED", 0.15),
        ("ARCHITECTURAL_DISTORTION", 0.15),
        ("OVAL", 0.1),
        ("ROUND", 0.05),
        ("IRREGULAR-ARCHITECTURAL_DISTORTION", 0.05),
    ),
    False: (("OVAL", 0.4), ("ROUND", 0.3), ("LOBULATED", 0.2), ("IRREGULAR", 0.1)),
}
_MASS_MARGIN = {
    True: (
        ("SPICULATED", 0.45),
        ("ILL_DEFINED", 0.3),
        ("MICROLOBULATED", 0.1),
        ("OBSCURED", 0.05),
        ("CIRCUMSCRIBED", 0.1),
    ),
    False: (
        ("CIRCUMSCRIBED", 0.5),
        ("OBSCURED", 0.25),
        ("ILL_DEFINED", 0.2),
        ("SPICULATED", 0.05),
    ),
}
_CALC_TYPE = {
    True: (
        ("PLEOMORPHIC", 0.45),
        ("FINE_LINEAR_BRANCHING", 0.2),
        ("AMORPHOUS", 0.2),
        ("PUNCTATE", 0.1),
        ("PLEOMORPHIC-FINE_LINEAR_BRANCHING", 0.05),
    ),
    False: (
        ("ROUND_AND_REGULAR", 0.25),
        ("LUCENT_CENTER", 0.2),
        ("PUNCTATE", 0.2),
        ("COARSE", 0.1),
        ("VASCULAR", 0.1),
        ("EGGSHELL", 0.05),
        ("AMORPHOUS", 0.1),
    ),
}
_CALC_DIST = {
    True: (
        ("CLUSTERED", 0.55),
        ("SEGMENTAL", 0.15),
        ("LINEAR", 0.15),
        ("REGIONAL", 0.15),
    ),
    False: (
        ("CLUSTERED", 0.35),
        ("DIFFUSELY_SCATTERED", 0.25),
        ("REGIONAL", 0.25),
        ("SEGMENTAL", 0.15),
    ),
}
_FULL_DATES = ("07-20-2016", "08-07-2016", "08-29-2016", "09-08-2016")
_ROI_DATES = ("08-29-2017", "09-06-2017", "07-21-2016")


def _pick(rng: np.random.Generator, table: tuple[tuple[str, float], ...]) -> str:
    names = [n for n, _ in table]
    p = np.array([w for _, w in table], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


@dataclass
class _Abn:
    abn_id: int
    malignant: bool
    pathology: str
    assessment: int
    subtlety: int
    desc1: str
    desc2: str
    crop_rel: str = ""
    mask_rel: str = ""
    crop_series_desc: str = "ROI mask images"
    mask_series_desc: str = "ROI mask images"
    study_uid: str = ""
    crop_series_uid: str = ""
    mask_series_uid: str = ""
    crop_sop: str = ""
    mask_sop: str = ""
    crop_trailing_nl: bool = False
    mask_trailing_nl: bool = False


@dataclass
class _Img:
    index: int
    key: str
    patient: str
    side: str  # "LEFT" | "RIGHT"
    view: str  # "CC" | "MLO"
    density: int
    height: int
    width: int
    photometric: str = "MONOCHROME2"
    abns: list[_Abn] = field(default_factory=list)
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    full_date: str = ""
    roi_date: str = ""

    @property
    def spec(self) -> _CsvSpec:
        return _SPEC[self.key]

    @property
    def case(self) -> str:
        return f"{self.spec.prefix}_{self.patient}_{self.side}_{self.view}"

    @property
    def full_rel(self) -> str:
        return f"{self.case}/{self.study_uid}/{self.series_uid}/000000.dcm"

    @property
    def malignant(self) -> bool:
        return any(a.malignant for a in self.abns)


def _counts(scale: str) -> tuple[dict[str, int], dict[str, int]]:
    if scale == "paper":
        return dict(PAPER_IMAGES), dict(PAPER_ROWS)
    if scale == "tiny":
        return dict(TINY_IMAGES), dict(TINY_ROWS)
    images = {k: max(4, round(v * SMALL_FRACTION)) for k, v in PAPER_IMAGES.items()}
    rows = {
        k: images[k] + max(1, round((PAPER_ROWS[k] - PAPER_IMAGES[k]) * SMALL_FRACTION))
        for k in PAPER_IMAGES
    }
    return images, rows


_COMBOS = (("LEFT", "CC"), ("LEFT", "MLO"), ("RIGHT", "CC"), ("RIGHT", "MLO"))


def _slots_for_patient(rng: np.random.Generator) -> list[tuple[str, str]]:
    n = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.5, 0.08, 0.07]))
    if n == 2:
        if rng.random() < 0.8:
            side = "LEFT" if rng.random() < 0.5 else "RIGHT"
            return [(side, "CC"), (side, "MLO")]
        view = "CC" if rng.random() < 0.5 else "MLO"
        return [("LEFT", view), ("RIGHT", view)]
    order = rng.permutation(4)[:n]
    return [_COMBOS[i] for i in sorted(order)]


def plan(config: SynthConfig) -> list[_Img]:
    """Draw the CBIS-DDSM catalogue (images, abnormality rows, names, UIDs) for ``config``."""
    rng = plan_rng(config.seed, NAME)
    seed = config.seed
    n_images, n_rows = _counts(config.scale)
    mixed = MIXED[config.scale]
    n_overlap = OVERLAP[config.scale]
    lo, hi = HEIGHTS[config.scale]

    counter = [0]

    def new_patient() -> str:
        counter[0] += int(rng.integers(1, 3))
        return f"P_{counter[0]:05d}"

    density: dict[tuple[str, str], int] = {}
    patients_of: dict[str, list[str]] = {k: [] for k in _SPEC}
    overlap_for = {"mass_test": n_overlap // 2, "calc_test": n_overlap - n_overlap // 2}
    overlap_source = {"mass_test": "calc_train", "calc_test": "mass_train"}
    same_split_source = {"calc_train": "mass_train", "calc_test": "mass_test"}
    overlap_used: set[str] = set()
    images: list[_Img] = []
    index = 0
    for key in ("mass_train", "calc_train", "mass_test", "calc_test"):
        slots: list[tuple[str, str, str]] = []
        used_here: set[str] = set()
        to_overlap = overlap_for.get(key, 0)
        while len(slots) < n_images[key]:
            patient = None
            if to_overlap > 0:
                pool = [
                    p for p in patients_of[overlap_source[key]] if p not in overlap_used
                ]
                if not pool:
                    raise RuntimeError(
                        "CBIS-DDSM plan: not enough training patients to share with test"
                    )
                patient = pool[int(rng.integers(len(pool)))]
                overlap_used.add(patient)
                to_overlap -= 1
            elif key in same_split_source and rng.random() < 0.25:
                pool = [
                    p for p in patients_of[same_split_source[key]] if p not in used_here
                ]
                if pool:
                    patient = pool[int(rng.integers(len(pool)))]
            if patient is None:
                patient = new_patient()
            used_here.add(patient)
            patients_of[key].append(patient)
            for side, view in _slots_for_patient(rng):
                if len(slots) < n_images[key]:
                    slots.append((patient, side, view))
        for patient, side, view in slots:
            dens = density.setdefault(
                (patient, side), int(rng.choice([1, 2, 3, 4], p=[0.15, 0.4, 0.3, 0.15]))
            )
            h = int(rng.integers(lo // 2, hi // 2 + 1)) * 2
            w = int(np.rint(h * rng.uniform(0.55, 0.65) / 2)) * 2
            images.append(_Img(index, key, patient, side, view, dens, h, w))
            index += 1

    for spec in CSV_SPECS:
        _plan_rows(
            rng,
            [im for im in images if im.key == spec.key],
            n_rows[spec.key],
            mixed[spec.key],
            spec,
        )
    _apply_quirks(rng, images)
    firsts = {k: [im for im in images if im.key == k] for k in _SPEC}
    separate_first = {firsts["mass_train"][0].index, firsts["calc_test"][0].index}
    reversed_first = firsts["mass_train"][1].index
    for im in images:
        _assign_uids(
            rng, seed, im, im.index in separate_first, im.index == reversed_first
        )
    return images


def _plan_rows(
    rng: np.random.Generator,
    imgs: list[_Img],
    n_rows: int,
    n_mixed: int,
    spec: _CsvSpec,
) -> None:
    n = len(imgs)
    n_abn = np.ones(n, dtype=int)
    extra = n_rows - n
    if extra < n_mixed:
        raise RuntimeError(
            f"CBIS-DDSM plan: {spec.key} needs at least {n_mixed} extra rows"
        )
    mixed_idx = [int(i) for i in rng.permutation(n)[:n_mixed]]
    for i in mixed_idx:
        n_abn[i] += 1
    extra -= n_mixed
    cap = 6 if spec.kind == CALCIFICATION else 4
    while extra > 0:
        i = int(rng.integers(n))
        if n_abn[i] < cap:
            n_abn[i] += 1
            extra -= 1
    n_mal = int(np.clip(round(P_MALIGNANT[spec.key] * n), max(1, n_mixed), n - 1))
    others = [i for i in rng.permutation(n) if int(i) not in mixed_idx]
    malignant = set(mixed_idx) | {int(i) for i in others[: n_mal - n_mixed]}
    mass = spec.kind == MASS
    for i, im in enumerate(imgs):
        bwc = rng.random() < P_BWC[spec.kind]
        for a in range(int(n_abn[i])):
            if i in mixed_idx:
                mal = a == 0 or (a > 1 and rng.random() < 0.5)
            else:
                mal = i in malignant
            if mal:
                pathology = "MALIGNANT"
                assessment = int(rng.choice([3, 4, 5], p=[0.1, 0.5, 0.4]))
            else:
                pathology = "BENIGN_WITHOUT_CALLBACK" if bwc else "BENIGN"
                assessment = 2 if bwc else int(rng.choice([2, 3, 4], p=[0.3, 0.3, 0.4]))
            d1 = _pick(rng, (_MASS_SHAPE if mass else _CALC_TYPE)[mal])
            d2 = _pick(rng, (_MASS_MARGIN if mass else _CALC_DIST)[mal])
            im.abns.append(
                _Abn(a + 1, mal, pathology, assessment, int(rng.integers(1, 6)), d1, d2)
            )


def _apply_quirks(rng: np.random.Generator, images: list[_Img]) -> None:
    """Mark the distributor's oddities on the plan; each appears at least once per CSV."""
    for spec in CSV_SPECS:
        imgs = [im for im in images if im.key == spec.key]
        rows = [a for im in imgs for a in im.abns]
        for a in rows:
            a.mask_trailing_nl = rng.random() < 0.7
            a.crop_trailing_nl = rng.random() < 0.3
            if rng.random() < 0.03:
                a.desc1 = "N/A"
            if rng.random() < 0.03:
                a.desc2 = "NA"
        rows[0].mask_trailing_nl = True
        rows[1 % len(rows)].desc1 = "N/A"
        rows[2 % len(rows)].desc2 = "NA"
        multi = rows[3 % len(rows)]
        multi.desc1 = (
            "IRREGULAR-\nARCHITECTURAL_DISTORTION"
            if spec.kind == MASS
            else "PLEOMORPHIC-\nAMORPHOUS"
        )
    first = {
        spec.key: next(im for im in images if im.key == spec.key) for spec in CSV_SPECS
    }
    for im in images:
        if rng.random() < 0.01:
            im.density = 0
        if rng.random() < 0.1:
            im.photometric = "MONOCHROME1"
    first["mass_test"].density = 0
    first["calc_train"].photometric = "MONOCHROME1"
    first["calc_train"].abns[0].subtlety = 0


def _assign_uids(
    rng: np.random.Generator,
    seed: int,
    im: _Img,
    force_separate: bool,
    force_reversed: bool,
) -> None:
    case = im.case
    im.study_uid = stable_uid(seed, NAME, case, "study")
    im.series_uid = stable_uid(seed, NAME, case, "series")
    im.sop_uid = stable_uid(seed, NAME, case, "sop")
    im.full_date = _FULL_DATES[int(rng.integers(len(_FULL_DATES)))]
    im.roi_date = _ROI_DATES[int(rng.integers(len(_ROI_DATES)))]
    is_mass = im.spec.kind == MASS
    for a in im.abns:
        acase = f"{case}_{a.abn_id}"
        a.study_uid = stable_uid(seed, NAME, acase, "study")
        a.crop_sop = stable_uid(seed, NAME, acase, "crop")
        a.mask_sop = stable_uid(seed, NAME, acase, "mask")
        separate = rng.random() < 0.03 or (force_separate and a.abn_id == 1)
        series = stable_uid(seed, NAME, acase, "series")
        if separate:
            salt = 0
            other = stable_uid(seed, NAME, acase, "series2", salt)
            while other[-5:] == series[-5:]:
                salt += 1
                other = stable_uid(seed, NAME, acase, "series2", salt)
            a.crop_series_uid, a.mask_series_uid = series, other
            a.crop_series_desc, a.mask_series_desc = "cropped images", "ROI mask images"
            crop_name = mask_name = "000000.dcm"
        else:
            a.crop_series_uid = a.mask_series_uid = series
            reversed_names = is_mass and (
                rng.random() < 0.1 or (force_reversed and a.abn_id == 1)
            )
            if is_mass and not reversed_names:
                crop_name, mask_name = "000000.dcm", "000001.dcm"
            else:
                crop_name, mask_name = "000001.dcm", "000000.dcm"
        a.crop_rel = f"{acase}/{a.study_uid}/{a.crop_series_uid}/{crop_name}"
        a.mask_rel = f"{acase}/{a.study_uid}/{a.mask_series_uid}/{mask_name}"


def descriptive_rel(rel: str, date: str, description: str) -> str:
    """Map a CSV (classic) path to the NBIA descriptive layout."""
    case, study, series, fname = rel.split("/")
    number = {"000000.dcm": "1-1.dcm", "000001.dcm": "1-2.dcm"}[fname]
    return (
        f"{case}/{date}-DDSM-{study[-5:]}/1.000000-{description}-{series[-5:]}/{number}"
    )


def _disk_rel(config: SynthConfig, rel: str, date: str, description: str) -> str:
    return (
        rel
        if config.ddsm_layout == "classic"
        else descriptive_rel(rel, date, description)
    )


def _crop_box(mask: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    mx = max(4, (x1 - x0) // 5)
    my = max(4, (y1 - y0) // 5)
    return max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)


def write_image(config: SynthConfig, image_root: Path, im: _Img) -> None:
    """Render one full mammogram and write it with its crops and ROI masks."""
    rng = image_rng(config.seed, NAME, im.index)
    lesions = [(im.spec.kind, a.malignant) for a in im.abns]
    side = "L" if im.side == "LEFT" else "R"
    phantom = render_mammogram(
        rng,
        im.height,
        im.width,
        side,
        im.view,
        im.density or 2,
        lesions,
        label_box=True,
    )
    px = to_uint(phantom.image, 65535)
    stored = (65535 - px).astype(np.uint16) if im.photometric == "MONOCHROME1" else px
    patient_tags = {
        "PatientID": im.patient,
        "PatientName": fake_person_name(config.seed, NAME, im.patient),
        "PatientBirthDate": fake_birth_date(config.seed, NAME, im.patient),
        "PatientSex": "F",
        "StudyDate": "20160807",
        "StudyTime": "120000",
        "StudyID": "DDSM",
        "AccessionNumber": "",
        "ReferringPhysicianName": "",
        "InstitutionName": "SYNTHETIC IMAGING CENTRE",
        "BodyPartExamined": "BREAST",
        "Laterality": side,
        "ImageLaterality": side,
        "ViewPosition": im.view,
        "SeriesNumber": 1,
        "InstanceNumber": 1,
        "ConversionType": "DI",
    }
    write_dicom(
        image_root
        / _disk_rel(config, im.full_rel, im.full_date, "full mammogram images"),
        stored,
        sop_class_uid=SECONDARY_CAPTURE,
        sop_instance_uid=im.sop_uid,
        study_uid=im.study_uid,
        series_uid=im.series_uid,
        bits_stored=16,
        photometric=im.photometric,
        tags={**patient_tags, "SeriesDescription": "full mammogram images"},
    )
    for a, lesion in zip(im.abns, phantom.lesions):
        mask = lesion.mask.astype(np.uint8) * 255
        x0, y0, x1, y1 = _crop_box(lesion.mask, im.height, im.width)
        crop = np.ascontiguousarray(px[y0:y1, x0:x1])
        write_dicom(
            image_root / _disk_rel(config, a.mask_rel, im.roi_date, a.mask_series_desc),
            mask,
            sop_class_uid=SECONDARY_CAPTURE,
            sop_instance_uid=a.mask_sop,
            study_uid=a.study_uid,
            series_uid=a.mask_series_uid,
            bits_stored=8,
            tags={
                **patient_tags,
                "SeriesDescription": a.mask_series_desc,
                "InstanceNumber": 1,
            },
        )
        write_dicom(
            image_root / _disk_rel(config, a.crop_rel, im.roi_date, a.crop_series_desc),
            crop,
            sop_class_uid=SECONDARY_CAPTURE,
            sop_instance_uid=a.crop_sop,
            study_uid=a.study_uid,
            series_uid=a.crop_series_uid,
            bits_stored=16,
            tags={
                **patient_tags,
                "SeriesDescription": a.crop_series_desc,
                "InstanceNumber": 2,
            },
        )


def _csv_rows(imgs: list[_Img]) -> list[list[str]]:
    rows = []
    for im in sorted(imgs, key=lambda i: (i.patient, i.side, i.view)):
        for a in im.abns:
            rows.append(
                [
                    im.patient,
                    str(im.density),
                    im.side,
                    im.view,
                    str(a.abn_id),
                    im.spec.kind,
                    a.desc1,
                    a.desc2,
                    str(a.assessment),
                    a.pathology,
                    str(a.subtlety),
                    im.full_rel,
                    a.crop_rel + ("\n" if a.crop_trailing_nl else ""),
                    a.mask_rel + ("\n" if a.mask_trailing_nl else ""),
                ]
            )
    return rows


def write_csvs(root: Path, images: list[_Img]) -> dict[str, int]:
    """Write the four case-description CSVs (CRLF, minimal quoting); return rows per file."""
    counts = {}
    for spec in CSV_SPECS:
        rows = _csv_rows([im for im in images if im.key == spec.key])
        with open(root / spec.filename, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow(MASS_HEADER if spec.kind == MASS else CALC_HEADER)
            writer.writerows(rows)
        counts[spec.filename] = len(rows)
    return counts


def _write_metadata(root: Path, images: list[_Img]) -> None:
    header = [
        "Series UID",
        "Collection",
        "Subject ID",
        "Study UID",
        "Study Description",
        "Study Date",
        "Series Description",
        "Modality",
        "SOP Class UID",
        "Number of Images",
        "File Location",
    ]
    rows = []
    for im in images:
        loc = descriptive_rel(
            im.full_rel, im.full_date, "full mammogram images"
        ).rsplit("/", 1)[0]
        rows.append(
            [
                im.series_uid,
                "CBIS-DDSM",
                im.case,
                im.study_uid,
                "DDSM",
                im.full_date,
                "full mammogram images",
                "MG",
                SECONDARY_CAPTURE,
                "1",
                f"./CBIS-DDSM/{loc}",
            ]
        )
        for a in im.abns:
            series = {
                (a.crop_series_uid, a.crop_rel, a.crop_series_desc),
                (a.mask_series_uid, a.mask_rel, a.mask_series_desc),
            }
            for uid, rel, desc in sorted(series):
                n = 2 if a.crop_series_uid == a.mask_series_uid else 1
                loc = descriptive_rel(rel, im.roi_date, desc).rsplit("/", 1)[0]
                rows.append(
                    [
                        uid,
                        "CBIS-DDSM",
                        rel.split("/")[0],
                        a.study_uid,
                        "DDSM",
                        im.roi_date,
                        desc,
                        "MG",
                        SECONDARY_CAPTURE,
                        str(n),
                        f"./CBIS-DDSM/{loc}",
                    ]
                )
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)


def generate_ddsm(
    root: Path, config: SynthConfig, progress: Callable[[list, str], list] | None = None
) -> dict:
    """Write the CBIS-DDSM look-alike under ``root``; return its expected counts."""
    images = plan(config)
    root.mkdir(parents=True, exist_ok=True)
    image_root = root / "CBIS-DDSM"
    for im in progress(images, "ddsm") if progress else images:
        write_image(config, image_root, im)
    rows = write_csvs(root, images)
    if config.ddsm_layout == "descriptive":
        _write_metadata(root, images)
    n_mal = sum(im.malignant for im in images)
    train_patients = {im.patient for im in images if im.spec.split == "train"}
    test_patients = {im.patient for im in images if im.spec.split == "test"}
    return {
        "n_images": len(images),
        "n_malignant": n_mal,
        "n_benign": len(images) - n_mal,
        "n_rows": rows,
        "n_train": sum(im.spec.split == "train" for im in images),
        "n_test": sum(im.spec.split == "test" for im in images),
        "n_train_malignant": sum(
            im.malignant for im in images if im.spec.split == "train"
        ),
        "n_test_malignant": sum(
            im.malignant for im in images if im.spec.split == "test"
        ),
        "n_patients_both_splits": len(train_patients & test_patients),
        "n_mixed_images": sum(
            any(a.malignant for a in im.abns) and not all(a.malignant for a in im.abns)
            for im in images
        ),
        "n_monochrome1": sum(im.photometric == "MONOCHROME1" for im in images),
    }
