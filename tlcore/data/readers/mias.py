"""Reader for MIAS / mini-MIAS (Suckling 1994): ``mdbNNN.pgm`` files plus ``Info.txt``.

``Info.txt`` lines are ``REFNUM BG CLASS SEVERITY X Y RADIUS`` separated by spaces, with
3 fields for normal images, 4 for abnormal ones without coordinates and 7 otherwise.
An image with several findings is listed on several lines; it is malignant when any of
its lines says ``M``. Coordinates have their origin at the bottom-left corner and are
converted to top-left using the height in each image's own PGM header.

Images come in pairs from one patient (even number = left, odd = right, per the MIAS
README), which gives the grouping key used to keep a patient on one side of a split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tlcore.data.imageio import detect_format, probe_image
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
    require_usable,
)
from tlcore.data.registry import register_reader

BACKGROUNDS = frozenset({"F", "G", "D"})
CLASSES = frozenset({"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM"})
SEVERITIES = frozenset({"B", "M"})
_REFNUM = re.compile(r"^mdb(\d+)$", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


@dataclass
class _Line:
    """One parsed Info.txt line."""

    number: int
    refnum: str
    background: str
    kind: str
    severity: str | None
    x: float | None = None
    y: float | None = None
    radius: float | None = None


@dataclass
class _Entry:
    """All Info.txt lines for one image."""

    refnum: str
    lines: list[_Line] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)


def find_info_file(root: Path) -> Path:
    """Locate ``Info.txt`` (any case) in ``root`` or one wrapper folder below it."""

    def candidates(folder: Path) -> list[Path]:
        try:
            return sorted(
                p
                for p in folder.iterdir()
                if p.is_file() and p.name.lower() == "info.txt" and not p.name.startswith(".")
            )
        except OSError:
            return []

    here = candidates(root)
    if here:
        return here[0]
    below: list[Path] = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith(".") and sub.name != "__MACOSX":
            below.extend(candidates(sub))
    if len(below) == 1:
        return below[0]
    if len(below) > 1:
        found = ", ".join(str(p.relative_to(root)) for p in below)
        raise DatasetError(
            f"{root}: several MIAS Info.txt files found ({found}); point to one of their folders"
        )
    raise DatasetError(
        f"{root}: no Info.txt found (looked for Info.txt, any case, in this folder and "
        "one folder below); MIAS needs Info.txt beside the mdbNNN.pgm files"
    )


def _parse_line(number: int, tokens: list[str]) -> _Line:
    """Parse a split line; raise ValueError with the reason when it is malformed."""
    if len(tokens) not in (3, 4, 7):
        raise ValueError(f"expected 3, 4 or 7 fields, found {len(tokens)}")
    refnum, background, kind = tokens[0], tokens[1].upper(), tokens[2].upper()
    if not _REFNUM.match(refnum):
        raise ValueError(f"reference number {refnum!r} is not like mdbNNN")
    if background not in BACKGROUNDS:
        raise ValueError(f"background tissue {tokens[1]!r} is not one of F, G, D")
    if kind not in CLASSES:
        raise ValueError(f"class {tokens[2]!r} is not one of {', '.join(sorted(CLASSES))}")
    if kind == "NORM":
        if len(tokens) != 3:
            raise ValueError("a NORM line must have exactly 3 fields")
        return _Line(number, refnum.lower(), background, kind, None)
    if len(tokens) == 3:
        raise ValueError(f"class {kind} needs a severity (B or M)")
    severity = tokens[3].upper()
    if severity not in SEVERITIES:
        raise ValueError(f"severity {tokens[3]!r} is not B or M")
    line = _Line(number, refnum.lower(), background, kind, severity)
    if len(tokens) == 7:
        bad = [t for t in tokens[4:] if not _NUMBER.match(t)]
        if bad:
            raise ValueError(f"coordinates/radius must be numbers, found {bad[0]!r}")
        line.x, line.y, line.radius = (float(t) for t in tokens[4:])
    return line


def parse_info(info_path: Path) -> tuple[dict[str, _Entry], list[Skipped]]:
    """Parse Info.txt into entries per image plus Skipped entries for malformed lines."""
    try:
        text = info_path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(f"{info_path}: cannot read ({exc.strerror or exc})") from None
    entries: dict[str, _Entry] = {}
    skipped: list[Skipped] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        if tokens[0].upper() == "REFNUM":
            continue  # header line
        try:
            line = _parse_line(number, tokens)
        except ValueError as exc:
            skipped.append(
                Skipped(str(info_path), f"{info_path.name} line {number}: {exc}: {raw.strip()!r}")
            )
            if _REFNUM.match(tokens[0]):
                entries.setdefault(tokens[0].lower(), _Entry(tokens[0].lower())).bad_lines.append(
                    number
                )
            continue
        entries.setdefault(line.refnum, _Entry(line.refnum)).lines.append(line)
    return entries, skipped


def _pair_key(refnum: str) -> tuple[str | None, str | None]:
    """(patient grouping key, side) from the MIAS pairing: even = left, odd = right."""
    match = _REFNUM.match(refnum)
    if not match:
        return None, None
    n = int(match.group(1))
    return f"mias-pair-{(n + 1) // 2:03d}", "L" if n % 2 == 0 else "R"


@register_reader
class MiasReader:
    """MIAS / mini-MIAS: flat folder of ``mdbNNN.pgm`` plus ``Info.txt``."""

    name = "mias"
    modality = "mammogram"

    def read(self, root: Path) -> ReadResult:
        """Read ``root`` (the MIAS folder or a folder holding it) into image records."""
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: MIAS root folder not found")
        info_path = find_info_file(root)
        folder = info_path.parent
        entries, skipped = parse_info(info_path)
        if not entries:
            raise DatasetError(f"{info_path}: no image lines found")

        on_disk = {
            p.name.lower(): p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() == ".pgm" and not p.name.startswith(".")
        }
        records: list[ImageRecord] = []
        for refnum in sorted(entries):
            entry = entries[refnum]
            path = on_disk.pop(f"{refnum}.pgm", None)
            first = entry.bad_lines[0] if entry.bad_lines else entry.lines[0].number
            if path is None:
                skipped.append(
                    Skipped(
                        str(folder / f"{refnum}.pgm"),
                        f"listed in {info_path.name} (line {first}) but not found on disk",
                    )
                )
                continue
            if entry.bad_lines:
                lines = ", ".join(str(n) for n in entry.bad_lines)
                skipped.append(
                    Skipped(
                        str(path),
                        f"{info_path.name} line(s) {lines} for this image are "
                        "malformed; its label cannot be trusted",
                    )
                )
                continue
            try:
                detect_format(path)  # magic bytes: the .pgm slot must hold a PGM
            except ImageDecodeError as exc:
                skipped.append(Skipped(str(path), exc.reason))
                continue
            try:
                record = self._record(refnum, path, entry)
            except ImageDecodeError as exc:
                skipped.append(
                    Skipped(
                        str(path),
                        f"cannot read the image header to convert coordinates: {exc.reason}",
                    )
                )
                continue
            records.append(record)

        for name in sorted(on_disk):
            skipped.append(Skipped(str(on_disk[name]), f"not listed in {info_path.name}"))
        result = ReadResult(
            dataset=self.name, root=root, records=records, skipped=skipped, metadata=info_path
        )
        require_usable(result)
        return result

    def _record(self, refnum: str, path: Path, entry: _Entry) -> ImageRecord:
        height: int | None = None
        findings: list[Finding] = []
        for line in entry.lines:
            center = None
            if line.x is not None and line.y is not None:
                if height is None:
                    height = probe_image(path).height
                center = (line.x, height - line.y)
            pathology = "NORMAL" if line.severity is None else line.severity
            findings.append(
                Finding(
                    malignant=line.severity == "M",
                    pathology=pathology,
                    kind=line.kind,
                    center=center,
                    radius=line.radius,
                    attributes={"bg": line.background, "info_line": line.number},
                )
            )
        label = MALIGNANT if any(f.malignant for f in findings) else NOT_MALIGNANT
        severities = {line.severity for line in entry.lines if line.severity}
        patient, side = _pair_key(refnum)
        meta = {
            "refnum": refnum,
            "background_tissue": entry.lines[0].background,
            "classes": sorted({line.kind for line in entry.lines}),
            "severity": "M" if "M" in severities else ("B" if "B" in severities else "NORMAL"),
        }
        return ImageRecord(
            image_id=anonymous_id(self.name, refnum),
            dataset=self.name,
            path=path,
            label=label,
            split=None,
            patient=patient,
            side=side,
            view="MLO",  # every MIAS film is a medio-lateral oblique view
            findings=tuple(findings),
            meta=meta,
        )
