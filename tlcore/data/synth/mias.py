"""mini-MIAS look-alike: flat ``mdbNNN.pgm`` (P5, 8-bit), ``Info.txt``, ``README``, ``Licence.txt``.

``Info.txt`` quirks: header line with a trailing space, 3/4/7-field lines, trailing spaces,
repeated lines for several findings (one image with a ``B`` and an ``M`` line), last line
without a newline. Coordinates have their origin at the bottom-left corner of the image
(``row = height - Y``; the height is 1024 at paper scale, as in the real set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tlcore.data.synth.config import SynthConfig, image_rng, plan_rng, scale_counts
from tlcore.data.synth.phantoms import CALCIFICATION, MASS, render_mammogram, to_uint

NAME = "mias"
PAPER_COUNTS = {"N": 207, "B": 63, "M": 52}
TOTAL = {"paper": 322, "small": 322, "tiny": 24}
SIZE = {"paper": 1024, "small": 192, "tiny": 128}
INFO_HEADER = "REFNUM BG CLASS SEVERITY X Y RADIUS "
# paper scale: the real set's multi-line images and coordinate-less lines
PAPER_MULTI = {
    5: ["B", "B"],
    132: ["B", "B"],
    144: ["B", "M"],
    223: ["B", "B"],
    226: ["B", "B", "B"],
    239: ["M", "M"],
    249: ["M", "M"],
}
PAPER_NO_COORDS = {59: "B", 216: "M", 233: "M", 245: "M"}
_BENIGN_CLASS = (
    ("CIRC", 0.45),
    ("CALC", 0.2),
    ("MISC", 0.15),
    ("ASYM", 0.1),
    ("ARCH", 0.1),
)
_MALIGNANT_CLASS = (
    ("SPIC", 0.35),
    ("CALC", 0.25),
    ("MISC", 0.15),
    ("ARCH", 0.15),
    ("CIRC", 0.05),
    ("ASYM", 0.05),
)


@dataclass
class _Finding:
    cls: str
    severity: str  # "B" | "M"
    coords: bool = True


@dataclass
class _Img:
    number: int  # 1-based: mdbNNN
    bg: str
    findings: list[_Finding] = field(default_factory=list)
    comment: bool = False

    @property
    def name(self) -> str:
        return f"mdb{self.number:03d}"

    @property
    def malignant(self) -> bool:
        return any(f.severity == "M" for f in self.findings)


def _cls(rng: np.random.Generator, severity: str) -> str:
    table = _MALIGNANT_CLASS if severity == "M" else _BENIGN_CLASS
    p = np.array([w for _, w in table])
    return table[int(rng.choice(len(table), p=p / p.sum()))][0]


def plan(config: SynthConfig) -> list[_Img]:
    """Draw the MIAS catalogue (severities, classes, multi-finding images) for ``config``."""
    rng = plan_rng(config.seed, NAME)
    n = TOTAL[config.scale]
    counts = PAPER_COUNTS if config.scale == "paper" else scale_counts(PAPER_COUNTS, n)
    if config.scale == "paper":
        multi = {k - 1: v for k, v in PAPER_MULTI.items()}
        no_coords = {k - 1: v for k, v in PAPER_NO_COORDS.items()}
    else:
        slots = [int(i) for i in rng.permutation(n)]
        multi = {slots[0]: ["B", "B"], slots[1]: ["B", "M"], slots[2]: ["B", "B", "B"]}
        no_coords = {slots[3]: "M"}
        if config.scale == "small":
            multi[slots[4]] = ["M", "M"]
            no_coords[slots[5]] = "B"
    severity: dict[int, str] = {}
    for i, sev in multi.items():
        severity[i] = "M" if "M" in sev else "B"
    for i, sev in no_coords.items():
        severity[i] = sev
    need = {"B": counts["B"], "M": counts["M"]}
    for sev in severity.values():
        need[sev] -= 1
    free = [int(i) for i in rng.permutation(n) if int(i) not in severity]
    for i in free[: need["B"]]:
        severity[i] = "B"
    for i in free[need["B"] : need["B"] + need["M"]]:
        severity[i] = "M"
    images: list[_Img] = []
    for i in range(n):
        if i % 2 == 0:
            bg = str(rng.choice(["F", "G", "D"]))
        img = _Img(i + 1, bg, comment=(i == 0 or rng.random() < 0.25))
        if i in multi:
            cls = "CALC" if len(multi[i]) > 2 else None
            for sev in multi[i]:
                img.findings.append(_Finding(cls or _cls(rng, sev), sev))
        elif i in no_coords:
            img.findings.append(
                _Finding(_cls(rng, no_coords[i]), no_coords[i], coords=False)
            )
        elif i in severity:
            img.findings.append(_Finding(_cls(rng, severity[i]), severity[i]))
        images.append(img)
    return images


def _pgm(px: np.ndarray, comment: bool) -> bytes:
    h, w = px.shape
    head = "P5\n"
    if comment:
        head += "# mini-MIAS look-alike (synthetic, tlstudy synth)\n"
    head += f"{w} {h}\n255\n"
    return head.encode("ascii") + px.astype(np.uint8).tobytes()


def write_image(config: SynthConfig, root: Path, im: _Img) -> list[str]:
    """Render and write ``mdbNNN.pgm``; return its ``Info.txt`` lines."""
    size = SIZE[config.scale]
    rng = image_rng(config.seed, NAME, im.number)
    side = "L" if im.number % 2 else "R"
    density = {"F": 1, "G": 2, "D": 4}[im.bg]
    lesions = [
        (CALCIFICATION if f.cls == "CALC" else MASS, f.severity == "M")
        for f in im.findings
    ]
    phantom = render_mammogram(rng, size, size, side, "MLO", density, lesions)
    (root / f"{im.name}.pgm").write_bytes(_pgm(to_uint(phantom.image, 255), im.comment))
    if not im.findings:
        return [f"{im.name} {im.bg} NORM "]
    lines = []
    for f, les in zip(im.findings, phantom.lesions):
        if f.coords:
            x = int(np.rint(les.center[0]))
            y = size - int(np.rint(les.center[1]))
            line = f"{im.name} {im.bg} {f.cls} {f.severity} {x} {y} {max(1, int(np.rint(les.radius)))}"
        else:
            line = f"{im.name} {im.bg} {f.cls} {f.severity}"
        if rng.random() < 0.4:
            line += " "
        lines.append(line)
    return lines


_README = """mini-MIAS look-alike (SYNTHETIC)

Written by `tlstudy synth`. These images are computer-generated phantoms in the layout of
the mini-MIAS database (Suckling et al. 1994); they contain no patient data and have no
clinical meaning. Info.txt lists REFNUM BG CLASS SEVERITY X Y RADIUS with the origin of the
coordinates at the bottom-left corner of the image.
"""

_LICENCE = """Synthetic look-alike data generated by tlstudy for software testing only.
It is not the MIAS database and carries none of its content.
"""


def generate_mias(
    root: Path, config: SynthConfig, progress: Callable[[list, str], list] | None = None
) -> dict:
    """Write the MIAS look-alike under ``root``; return its expected counts."""
    images = plan(config)
    root.mkdir(parents=True, exist_ok=True)
    lines = [INFO_HEADER]
    for im in progress(images, "mias") if progress else images:
        lines.extend(write_image(config, root, im))
    # last line without a newline
    (root / config.mias_info_name).write_bytes("\n".join(lines).encode("ascii"))
    (root / "README").write_text(_README, encoding="utf-8")
    (root / "Licence.txt").write_text(_LICENCE, encoding="utf-8")
    n_mal = sum(im.malignant for im in images)
    return {
        "n_images": len(images),
        "n_malignant": n_mal,
        "n_benign": len(images) - n_mal,
        "n_normal": sum(not im.findings for im in images),
        "n_info_lines": len(lines) - 1,
    }
