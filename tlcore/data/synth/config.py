"""Configuration, summary and deterministic helpers shared by the look-alike writers."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCALES = ("tiny", "small", "paper")
ULTRASOUND_LAYOUTS = ("rodrigues", "busi")
DDSM_LAYOUTS = ("classic", "descriptive")
MIAS_INFO_NAMES = ("Info.txt", "info.txt")

DATASETS = ("ddsm", "inbreast", "mias", "ultrasound")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    ``scale``: ``tiny`` (tests, seconds), ``small`` (demo study: the targets at their real
    counts -- INbreast 410, MIAS 322, ultrasound 250 (Rodrigues) or 780 (BUSI) images --
    and CBIS-DDSM at 25 %, all at small pixel sizes), ``paper`` (the real counts and sizes). ``seed`` fixes every byte written. ``ultrasound_layout``
    picks the Rodrigues (``rodrigues``) or BUSI (``busi``) folder layout;
    ``ddsm_layout`` the NBIA ``classic`` (paths as in the CSVs) or ``descriptive`` layout;
    ``mias_info_name`` the name of the MIAS metadata file (``Info.txt`` or ``info.txt``).
    """

    scale: str = "tiny"
    seed: int = 0
    ultrasound_layout: str = "rodrigues"  # or "busi"
    ddsm_layout: str = "classic"  # or "descriptive"
    mias_info_name: str = "Info.txt"  # or "info.txt"

    def __post_init__(self) -> None:
        _check_choice("scale", self.scale, SCALES)
        _check_choice("ultrasound_layout", self.ultrasound_layout, ULTRASOUND_LAYOUTS)
        _check_choice("ddsm_layout", self.ddsm_layout, DDSM_LAYOUTS)
        _check_choice("mias_info_name", self.mias_info_name, MIAS_INFO_NAMES)
        if (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or self.seed < 0
        ):
            raise ValueError(
                f"SynthConfig.seed must be a non-negative integer, got {self.seed!r}"
            )


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(
            f"SynthConfig.{name} must be one of {', '.join(valid)}; got {value!r}"
        )


@dataclass
class SynthSummary:
    """Where each dataset was written and the counts a reader must find there.

    ``expected[name]`` always holds ``n_images``, ``n_malignant`` and ``n_benign``
    (image level, malignant = any malignant finding; normal counts as benign); some
    datasets add extra keys (e.g. CBIS-DDSM ``n_rows`` per CSV).
    """

    roots: dict[str, Path] = field(default_factory=dict)
    expected: dict[str, dict] = field(default_factory=dict)


def dataset_code(name: str) -> int:
    """A stable integer for a dataset name (used to seed per-image generators)."""
    return zlib.crc32(name.encode("utf-8"))


def image_rng(seed: int, dataset: str, index: int) -> np.random.Generator:
    """The random generator for image ``index`` of ``dataset``: independent per image."""
    return np.random.default_rng([seed, dataset_code(dataset), index])


def plan_rng(seed: int, dataset: str) -> np.random.Generator:
    """The random generator that draws a dataset's catalogue (labels, names, layout)."""
    return np.random.default_rng([seed, dataset_code(dataset), 2**31 - 1])


def stable_uid(seed: int, *parts: object) -> str:
    """A valid DICOM UID (``2.25.<int>``) derived from the seed and ``parts``."""
    key = ":".join([str(seed), *map(str, parts)])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return "2.25." + str(int(digest[:30], 16) + 10**30)


def stable_hex(seed: int, n: int, *parts: object) -> str:
    """``n`` hex characters derived from the seed and ``parts``."""
    key = ":".join([str(seed), *map(str, parts)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:n]


def scale_counts(
    counts: dict[str, int], total: int, minimum: int = 1
) -> dict[str, int]:
    """Scale category counts to sum to ``total`` (largest remainder), each at least ``minimum``."""
    keys = list(counts)
    if total < minimum * len(keys):
        raise ValueError(
            f"cannot give {len(keys)} categories {minimum} each within {total}"
        )
    whole = sum(counts.values())
    rest = total - minimum * len(keys)
    raw = {k: counts[k] / whole * rest for k in keys}
    out = {k: minimum + int(raw[k]) for k in keys}
    left = total - sum(out.values())
    order = sorted(keys, key=lambda k: (-(raw[k] - int(raw[k])), keys.index(k)))
    for k in order[:left]:
        out[k] += 1
    return out


FAKE_SURNAMES = (
    "DOE",
    "ROE",
    "SAMPLE",
    "TESTER",
    "EXAMPLE",
    "PLACEHOLDER",
    "MOCKWELL",
    "FICTA",
    "SYNTHIA",
    "NOBODY",
    "ANONYMA",
    "PHANTOM",
)
FAKE_GIVEN = (
    "JANE",
    "MARY",
    "ANNA",
    "LINDA",
    "ROSA",
    "EVA",
    "NORA",
    "IDA",
    "VERA",
    "ZOE",
)


def fake_person_name(seed: int, *parts: object) -> str:
    """A deterministic, obviously fake DICOM person name (``SURNAME^GIVEN``)."""
    h = int(stable_hex(seed, 8, "name", *parts), 16)
    return f"{FAKE_SURNAMES[h % len(FAKE_SURNAMES)]}^{FAKE_GIVEN[(h // 97) % len(FAKE_GIVEN)]}"


def fake_birth_date(seed: int, *parts: object) -> str:
    """A deterministic fake birth date ``YYYYMMDD`` between 1930 and 1979."""
    h = int(stable_hex(seed, 8, "birth", *parts), 16)
    return f"{1930 + h % 50:04d}{1 + (h // 50) % 12:02d}{1 + (h // 600) % 28:02d}"
