"""Tests for the look-alike data generator (tlcore.data.synth) at tiny scale."""

from __future__ import annotations

import csv
import hashlib
import plistlib
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from tlcore.data.registry import read_dataset
from tlcore.data.synth import SCALES, SynthConfig, generate
from tlcore.data.synth import ddsm as synth_ddsm
from tlcore.data.synth import inbreast as synth_inbreast
from tlcore.data.synth import mias as synth_mias
from tlcore.data.synth.phantoms import render_calcifications, render_mass
from tlcore.data.synth.ultrasound import render_ultrasound

DATASETS = ("ddsm", "inbreast", "mias", "ultrasound")


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "out"
    summary = generate(out, SynthConfig(scale="tiny", seed=0))
    return out, summary


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """The other layouts: NBIA descriptive DDSM, BUSI ultrasound, lower-case info.txt."""
    out = tmp_path_factory.mktemp("synth_variant") / "out"
    config = SynthConfig(
        scale="tiny",
        seed=5,
        ddsm_layout="descriptive",
        ultrasound_layout="busi",
        mias_info_name="info.txt",
    )
    return out, generate(out, config)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- summary, determinism


def test_tiny_expected_counts_and_note(tiny):
    out, summary = tiny
    assert SCALES == ("tiny", "small", "paper")
    assert summary.roots == {name: out / name for name in DATASETS}
    exp = summary.expected
    assert {k: exp[k]["n_images"] for k in DATASETS} == {
        "ddsm": 40,
        "inbreast": 40,
        "mias": 24,
        "ultrasound": 24,
    }
    for name in DATASETS:
        e = exp[name]
        assert e["n_malignant"] + e["n_benign"] == e["n_images"]
        assert 0 < e["n_malignant"] < e["n_images"], name
    d = exp["ddsm"]
    assert d["n_rows"] == {
        "mass_case_description_train_set.csv": 16,
        "mass_case_description_test_set.csv": 6,
        "calc_case_description_train_set.csv": 19,
        "calc_case_description_test_set.csv": 6,
    }
    assert (d["n_train"], d["n_test"]) == (30, 10)
    assert 0 < d["n_train_malignant"] < 30 and 0 < d["n_test_malignant"] < 10
    assert d["n_patients_both_splits"] == 2 and d["n_mixed_images"] == 2
    assert 0 < d["n_monochrome1"] < 20
    note = (out / "SYNTHETIC_DATA.txt").read_text()
    assert "SYNTHETIC DATA - NOT PATIENT DATA" in note and "seed=0" in note
    # files on disk match the counts
    full = [
        p
        for p in (out / "ddsm" / "CBIS-DDSM").glob("*/*/*/*.dcm")
        if not re.search(r"_\d+$", p.parts[-4])
    ]
    assert len(full) == 40
    assert len(list((out / "inbreast" / "AllDICOMs").glob("*.dcm"))) == 40
    assert len(list((out / "mias").glob("mdb*.pgm"))) == 24
    assert len(list((out / "ultrasound").glob("*/us*.bmp"))) == 24


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    out, _ = tiny
    again = tmp_path / "again"
    generate(again, SynthConfig(scale="tiny", seed=0))
    first, second = _tree_digest(out), _tree_digest(again)
    assert first == second
    other = tmp_path / "other"
    generate(other, SynthConfig(scale="tiny", seed=1))
    third = _tree_digest(other)
    assert set(first) != set(third)  # UIDs, names and numbers depend on the seed
    shared = set(first) & set(third)
    assert shared and all(
        first[k] != third[k] for k in shared if k.endswith((".pgm", ".bmp"))
    )


def test_rerun_replaces_own_output_and_refuses_foreign_folder(tiny, tmp_path):
    out = tmp_path / "o"
    shutil.copytree(tiny[0], out)
    stale = out / "mias" / "stale.pgm"
    stale.write_bytes(b"P5\n1 1\n255\n\x00")
    generate(out, SynthConfig(scale="tiny", seed=2))
    assert not stale.exists()
    foreign = tmp_path / "foreign"
    (foreign / "ddsm").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="SYNTHETIC_DATA.txt"):
        generate(foreign, SynthConfig())


def test_config_validation_names_the_choices():
    with pytest.raises(ValueError, match="tiny, small, paper"):
        SynthConfig(scale="huge")
    with pytest.raises(ValueError, match="rodrigues, busi"):
        SynthConfig(ultrasound_layout="kaggle")
    with pytest.raises(ValueError, match="classic, descriptive"):
        SynthConfig(ddsm_layout="flat")
    with pytest.raises(ValueError, match="seed"):
        SynthConfig(seed=-1)


def test_paper_and_small_plans_match_real_counts():
    paper = SynthConfig(scale="paper")
    images = synth_ddsm.plan(paper)
    assert len(images) == 3103
    rows = {
        k: sum(len(im.abns) for im in images if im.key == k)
        for k in synth_ddsm.PAPER_ROWS
    }
    assert rows == synth_ddsm.PAPER_ROWS
    train = {im.patient for im in images if im.spec.split == "train"}
    test = {im.patient for im in images if im.spec.split == "test"}
    assert len(train & test) == 31
    mixed = [
        im for im in images if im.malignant and not all(a.malignant for a in im.abns)
    ]
    assert len(mixed) == 17
    assert 0.40 <= sum(im.malignant for im in images) / len(images) <= 0.45
    keys = [(im.key, im.patient, im.side, im.view) for im in images]
    assert len(set(keys)) == len(keys)

    ib = synth_inbreast.plan(paper)
    counts: dict[str, int] = {}
    for im in ib:
        counts[im.birads] = counts.get(im.birads, 0) + 1
    assert counts == synth_inbreast.BIRADS_PAPER
    assert sum(im.view == "FB" for im in ib) == 1

    mi = synth_mias.plan(paper)
    assert len(mi) == 322
    assert sum(not im.findings for im in mi) == 207
    assert sum(im.malignant for im in mi) == 52
    assert [f.severity for f in mi[143].findings] == ["B", "M"]  # mdb144

    # small (the demo study): CBIS-DDSM at a quarter of its size, the targets at their real
    # counts (so that the targets' test-set CIs are as narrow as the paper's)
    small = synth_ddsm.plan(SynthConfig(scale="small"))
    assert 0.20 <= len(small) / 3103 <= 0.30
    small_ib = synth_inbreast.plan(SynthConfig(scale="small"))
    assert {im.birads for im in small_ib} == set(synth_inbreast.BIRADS_PAPER)
    assert len(small_ib) == 410
    assert len(synth_mias.plan(SynthConfig(scale="small"))) == 322


# --------------------------------------------------------------------------- CBIS-DDSM quirks


def test_ddsm_csv_quirks(tiny):
    root = tiny[0] / "ddsm"
    mass_raw = (root / "mass_case_description_train_set.csv").read_bytes()
    calc_raw = (root / "calc_case_description_train_set.csv").read_bytes()
    assert mass_raw.startswith(",".join(synth_ddsm.MASS_HEADER).encode() + b"\r\n")
    assert b"breast_density" in mass_raw.split(b"\r\n")[0]
    assert calc_raw.split(b"\r\n")[0].decode() == (
        "patient_id,breast density,left or right breast,image view,abnormality id,abnormality type,"
        "calc type,calc distribution,assessment,pathology,subtlety,image file path,"
        "cropped image file path,ROI mask file path"
    )
    all_rows = []
    raw_all = b""
    for spec in synth_ddsm.CSV_SPECS:
        raw = (root / spec.filename).read_bytes()
        raw_all += raw
        assert raw.endswith(b"\r\n")
        assert re.search(rb'\.dcm\n"\r\n', raw), (
            spec.filename
        )  # trailing newline in a path cell
        rows = _read_csv(root / spec.filename)
        all_rows += rows
        descriptor_cols = (
            ("mass shape", "mass margins")
            if spec.kind == "mass"
            else ("calc type", "calc distribution")
        )
        values = [r[c] for r in rows for c in descriptor_cols]
        assert "N/A" in values and "NA" in values, spec.filename
        assert any("\n" in v for v in values), (
            spec.filename
        )  # bare newline in a quoted descriptor
        assert {r["pathology"] for r in rows} <= {
            "MALIGNANT",
            "BENIGN",
            "BENIGN_WITHOUT_CALLBACK",
        }
        assert all(re.fullmatch(r"P_\d{5}", r["patient_id"]) for r in rows)
        assert all(r["image file path"].startswith(spec.prefix + "_") for r in rows)
    assert b"\n" in raw_all.replace(b"\r\n", b"")  # bare LF only inside quoted cells
    dens = [r.get("breast_density", r.get("breast density")) for r in all_rows]
    assert "0" in dens
    assert "0" in [r["subtlety"] for r in all_rows]


def test_ddsm_files_crop_mask_naming_and_headers(tiny):
    root = tiny[0] / "ddsm"
    image_root = root / "CBIS-DDSM"
    separate = 0
    reversed_mass = 0
    monochrome = []
    for spec in synth_ddsm.CSV_SPECS:
        for r in _read_csv(root / spec.filename):
            full_p = r["image file path"].strip()
            crop_p = r["cropped image file path"].strip()
            mask_p = r["ROI mask file path"].strip()
            full = pydicom.dcmread(image_root / full_p)
            crop = pydicom.dcmread(image_root / crop_p)
            mask = pydicom.dcmread(image_root / mask_p)
            assert (
                full.BitsAllocated == 16
                and crop.BitsAllocated == 16
                and mask.BitsAllocated == 8
            )
            m = mask.pixel_array
            assert m.shape == full.pixel_array.shape
            assert set(np.unique(m)) <= {0, 255} and m.max() == 255
            assert crop.Rows < full.Rows
            assert full.PatientID == r["patient_id"] and str(full.PatientName)
            monochrome.append(full.PhotometricInterpretation)
            if crop_p.split("/")[2] != mask_p.split("/")[2]:
                separate += 1
            elif spec.kind == "calcification":
                assert crop_p.endswith("000001.dcm") and mask_p.endswith("000000.dcm")
            elif crop_p.endswith("000001.dcm"):
                reversed_mass += 1
    assert separate >= 2 and reversed_mass >= 1
    assert 0 < monochrome.count("MONOCHROME1") < monochrome.count("MONOCHROME2")


def test_ddsm_descriptive_layout(variant):
    root = variant[0] / "ddsm"
    rows = _read_csv(root / "calc_case_description_test_set.csv")
    folders = set()
    for r in rows:
        case, study, series, _name = r["image file path"].strip().split("/")
        matches = list(
            (root / "CBIS-DDSM" / case).glob(
                f"*-DDSM-{study[-5:]}/1.000000-full mammogram images-{series[-5:]}/1-1.dcm"
            )
        )
        assert len(matches) == 1, r["image file path"]
        assert re.fullmatch(r"\d\d-\d\d-\d{4}-DDSM-\d{5}", matches[0].parts[-3])
        mcase, mstudy, mseries, mname = r["ROI mask file path"].strip().split("/")
        number = {"000000.dcm": "1-1.dcm", "000001.dcm": "1-2.dcm"}[mname]
        found = list(
            (root / "CBIS-DDSM" / mcase).glob(
                f"*-DDSM-{mstudy[-5:]}/1.000000-*-{mseries[-5:]}/{number}"
            )
        )
        assert len(found) == 1
        assert pydicom.dcmread(found[0]).BitsAllocated == 8
        folders.add(case)
    assert folders and (root / "metadata.csv").is_file()
    assert not list((root / "CBIS-DDSM").glob("*/2.25.*"))  # no classic UID folders


# --------------------------------------------------------------------------- INbreast quirks


def test_inbreast_csv_dicom_and_xml(tiny):
    root = tiny[0] / "inbreast"
    raw = (root / "INbreast.csv").read_bytes()
    lines = raw.decode().split("\r\n")
    assert (
        lines[0]
        == "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
    )
    assert lines[-1] == "" and b"\n" not in raw.replace(b"\r\n", b"")
    rows = [line.split(";") for line in lines[1:-1]]
    assert len(rows) == 40
    assert all(r[0] == "removed" and r[1] == "removed" for r in rows)
    assert all(re.fullmatch(r"20(0[89]|10)(0[1-9]|1[0-2])", r[4]) for r in rows)
    assert [r[3] for r in rows].count("FB") == 1
    assert sum(r[6].strip() == "" and len(r[6]) > 1 for r in rows) == 1
    files = {p.name.split("_")[0]: p for p in (root / "AllDICOMs").glob("*.dcm")}
    hashes = set()
    for r in rows:
        p = files[r[5]]
        m = re.fullmatch(
            r"(\d{8})_([0-9a-f]{16})_MG_([LR])_(CC|ML|FB)_ANON\.dcm", p.name
        )
        assert m and m.group(3) == r[2]
        assert m.group(4) == {"MLO": "ML"}.get(r[3], r[3])
        hashes.add(m.group(2))
        xml = root / "AllXML" / f"{r[5]}.xml"
        assert xml.exists() == (r[7] != "1")
        if xml.exists():
            doc = plistlib.loads(xml.read_bytes())
            rois = doc["Images"][0]["ROIs"]
            assert rois and all(
                roi["Name"] in ("Mass", "Calcification") for roi in rois
            )
            for roi in rois:
                assert roi["NumberOfPoints"] == len(roi["Point_px"])
                assert all(
                    re.fullmatch(r"\(-?\d+\.\d+, -?\d+\.\d+\)", s)
                    for s in roi["Point_px"]
                )
    assert len(hashes) < len(rows)  # several images per patient
    ds = pydicom.dcmread(next(iter(files.values())))
    assert (ds.BitsAllocated, ds.BitsStored, ds.PhotometricInterpretation) == (
        16,
        14,
        "MONOCHROME2",
    )
    assert ds.pixel_array.max() < 2**14 and str(ds.PatientName)


# --------------------------------------------------------------------------- MIAS quirks


def test_mias_info_and_pgm(tiny):
    root = tiny[0] / "mias"
    raw = (root / "Info.txt").read_bytes()
    assert raw.startswith(b"REFNUM BG CLASS SEVERITY X Y RADIUS \n")
    assert not raw.endswith(b"\n")
    assert (root / "README").is_file() and (root / "Licence.txt").is_file()
    lines = raw.decode().split("\n")[1:]
    sizes = {len(line.split()) for line in lines}
    assert sizes == {3, 4, 7}
    assert any(line.endswith(" ") for line in lines) and any(
        not line.endswith(" ") for line in lines
    )
    by_ref: dict[str, list[list[str]]] = {}
    for line in lines:
        by_ref.setdefault(line.split()[0], []).append(line.split())
    assert any({f[3] for f in fs if len(f) > 3} == {"B", "M"} for fs in by_ref.values())
    assert max(len(fs) for fs in by_ref.values()) >= 3
    comments = 0
    for pgm in sorted(root.glob("mdb*.pgm")):
        data = pgm.read_bytes()
        assert data.startswith(b"P5\n")
        comments += b"\n#" in data[:80]
    assert comments >= 1
    # the lesion sits at (X, height - Y): brighter there than the image on average
    contrast = []
    for ref, fs in by_ref.items():
        for f in fs:
            if len(f) == 7:
                img = _read_pgm(root / f"{ref}.pgm")
                x, y = int(f[4]), int(f[5])
                row = img.shape[0] - y
                contrast.append(
                    img[max(0, row - 2) : row + 3, max(0, x - 2) : x + 3].mean()
                    - img.mean()
                )
    assert np.mean(contrast) > 20


def _read_pgm(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im, dtype=np.float32)


# --------------------------------------------------------------------------- ultrasound


def test_rodrigues_bmp_layout(tiny):
    root = tiny[0] / "ultrasound"
    benign = sorted(p.name for p in (root / "benign").glob("*.bmp"))
    malignant = sorted(p.name for p in (root / "malignant").glob("*.bmp"))
    assert benign == sorted(f"us{i}.bmp" for i in range(1, 11))
    assert malignant == sorted(f"us{i}.bmp" for i in range(11, 25))
    for p in (root / "benign" / "us1.bmp", root / "malignant" / "us11.bmp"):
        data = p.read_bytes()
        assert data[:2] == b"BM" and int.from_bytes(data[28:30], "little") == 8
        palette = data[54 : 54 + 1024]
        assert len(palette) == 1024 and palette[4 * 200 : 4 * 200 + 3] == bytes(
            [200, 200, 200]
        )
        with Image.open(p) as im:
            assert 75 <= im.width <= 199 and 57 <= im.height <= 161


def test_busi_layout_with_masks(variant):
    out, summary = variant
    base = out / "ultrasound" / "Dataset_BUSI_with_GT"
    e = summary.expected["ultrasound"]
    for label, n in (("benign", 13), ("malignant", 6), ("normal", 5)):
        images = [p for p in (base / label).glob("*.png") if "_mask" not in p.name]
        assert sorted(p.name for p in images) == sorted(
            f"{label} ({i}).png" for i in range(1, n + 1)
        )
        for p in images:
            assert (base / label / p.name.replace(".png", "_mask.png")).is_file()
    assert list(base.glob("*/* (*)_mask_1.png"))
    with Image.open(base / "benign" / "benign (1).png") as im:
        assert im.mode == "RGB"
    with Image.open(base / "benign" / "benign (1)_mask.png") as im:
        assert set(np.unique(np.asarray(im))) <= {0, 255}
    assert (e["n_images"], e["n_malignant"], e["n_benign"]) == (24, 6, 18)
    assert (base / "benign" / "benign (1).png").read_bytes() == (
        base / "benign" / "benign (13).png"
    ).read_bytes()


# --------------------------------------------------------------------------- the learnable signal


def test_mass_signal_spiculated_with_the_same_density_budget():
    # the shared signal is shape (spicules), not brightness: both classes of one size add
    # the same integrated density on average
    total = {True: [], False: []}
    outside = {True: [], False: []}
    compact = {True: [], False: []}
    for i in range(24):
        for malignant in (True, False):
            img = np.zeros((160, 160), dtype=np.float32)
            rng = np.random.default_rng([i, int(malignant)])
            les = render_mass(img, rng, (80.0, 80.0), 14.0, malignant)
            total[malignant].append(img.sum())
            outside[malignant].append(img[~les.mask].sum() / img.sum())
            m = les.mask
            perimeter = np.sum(m[1:, :] != m[:-1, :]) + np.sum(m[:, 1:] != m[:, :-1])
            compact[malignant].append(perimeter**2 / m.sum())
    assert 0.85 < np.mean(total[True]) / np.mean(total[False]) < 1.15
    assert np.mean(outside[True]) > 1.3 * np.mean(outside[False])  # spicules reach beyond the outline
    assert np.mean(compact[True]) > np.mean(compact[False])  # irregular outline


def test_calcification_signal_malignant_linear_branching():
    count = {True: [], False: []}
    total = {True: [], False: []}
    for i in range(16):
        for malignant in (True, False):
            img = np.zeros((160, 160), dtype=np.float32)
            les = render_calcifications(
                img,
                np.random.default_rng([i, int(malignant)]),
                (80.0, 80.0),
                10.0,
                malignant,
                0.8,
            )
            pts = np.array(les.specks)
            count[malignant].append(len(pts))
            total[malignant].append(img.sum())
            if malignant:  # specks lie on a few radial branches: few distinct directions
                ang = np.arctan2(pts[:, 1] - 80.0, pts[:, 0] - 80.0)
                hist, _ = np.histogram(ang, bins=36, range=(-np.pi, np.pi))
                assert (hist > 0).sum() <= 24
    assert min(count[True]) > max(count[False])
    assert 0.8 < np.mean(total[True]) / np.mean(total[False]) < 1.25


def test_ultrasound_signal_orientation_only():
    ratio = {True: [], False: []}
    posterior = {True: [], False: []}
    for i in range(24):
        for malignant in (True, False):
            rng = np.random.default_rng([i, int(malignant)])
            ph = render_ultrasound(
                rng, 120, 160, "malignant" if malignant else "benign"
            )
            ys, xs = np.nonzero(ph.masks[0])
            ratio[malignant].append((np.ptp(ys) + 1) / (np.ptp(xs) + 1))
            below = ph.image[
                ys.max() + 2 : ys.max() + 20, xs.min() : xs.max() + 1
            ].mean()
            side = ph.image[ys.max() + 2 : ys.max() + 20].mean()
            posterior[malignant].append(below - side)
    assert min(ratio[True]) > 1.0 > max(ratio[False])  # taller than wide vs wider than tall
    for malignant in (True, False):  # shadowing and enhancement in both classes: a nuisance
        assert min(posterior[malignant]) < 0 < max(posterior[malignant])


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("which", ["tiny", "variant"])
def test_round_trip_through_readers(which, request):
    _, summary = request.getfixturevalue(which)
    for name in DATASETS:
        result = read_dataset(name, summary.roots[name])
        e = summary.expected[name]
        assert (len(result.records), result.n_malignant, result.n_benign) == (
            e["n_images"],
            e["n_malignant"],
            e["n_benign"],
        ), name
        assert not result.skipped, (name, result.skipped[:3])
    ddsm = read_dataset("ddsm", summary.roots["ddsm"])
    splits = {r.split for r in ddsm.records}
    assert splits == {"train", "test"}
    for split in splits:
        labels = {r.label for r in ddsm.records if r.split == split}
        assert labels == {0, 1}
