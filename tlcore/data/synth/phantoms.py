"""Mammogram-like phantoms: breast silhouette, tissue texture, pectoral muscle, lesions.

Every function draws from the numpy ``Generator`` it is given, so an image depends only on
its own generator (seeded per image by the writers). Images are float32 in ``[0, 1]``,
row-major, origin top-left; the writers convert them to the datasets' bit depths.

The malignancy signal (shared by the CBIS-DDSM-, INbreast- and MIAS-like sets, which is
what makes them a *positive control* for transfer from DDSM pre-training): every malignant
finding carries radiating linear structures around it -- malignant masses are spiculated
(8-14 long, thick spicules), malignant calcifications are fine linear branching clusters
(specks strung along 4-7 radiating branches). Benign masses are smooth round/oval
bodies, benign calcifications a few round specks scattered over a wider area. The lines
are a few percent of the image height long and wide, so the signal survives resizing the
image to 64 px.

Label-independent nuisance, drawn from the same distributions for both classes so that
only the shape tells the classes apart: every image (normal ones included) holds two or
three dense structures -- its findings topped up with unannotated smooth nodules -- so
that the presence of a lesion is no cue either; lesion size, position, peak contrast and the
*integrated* added density (each lesion's added intensity is rescaled to the same
budget, so a malignant lesion is not brighter overall than a benign one), breast
density, texture, gamma and noise. This matters because the output of an untrained
network correlates with global brightness and energy: with a brightness cue, a
random-init network would score well above or below 0.5 without having learnt anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

MASS = "mass"
CALCIFICATION = "calcification"


@dataclass
class Lesion:
    """One rendered lesion: geometry in full-image pixels (x = column, y = row)."""

    kind: str  # "mass" | "calcification"
    malignant: bool
    center: tuple[float, float]
    radius: float  # radius of the annotated region
    mask: np.ndarray  # bool, full image size: the annotated region
    outline: tuple[tuple[float, float], ...]  # polygon around the annotated region
    specks: tuple[tuple[float, float], ...] = ()  # calcification centres

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` of the mask, end-exclusive."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass
class BreastGeometry:
    """Where the breast lies in the image."""

    side: str  # "L": chest wall on the left edge; "R": on the right edge
    view: str
    center_y: float
    depth: float  # horizontal semi-axis of the silhouette (chest wall to nipple)
    half_height: float
    nipple: tuple[float, float]
    mask: np.ndarray  # bool: breast (including pectoral muscle)
    rr: np.ndarray  # normalised elliptical radius (0 at chest wall centre, 1 at skin)
    pectoral: np.ndarray | None = None  # bool, MLO only


@dataclass
class MammoPhantom:
    """A rendered mammogram-like image and its lesions."""

    image: np.ndarray  # float32 [0, 1]
    geometry: BreastGeometry
    lesions: list[Lesion] = field(default_factory=list)


# --------------------------------------------------------------------------- noise


def box_blur(a: np.ndarray, radius: int, passes: int = 3) -> np.ndarray:
    """Separable box blur (``passes`` times, close to a Gaussian); edges replicated."""
    if radius < 1:
        return a.astype(np.float32, copy=True)
    out = a.astype(np.float64)
    k = 2 * radius + 1
    for _ in range(passes):
        for axis in (0, 1):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (radius + 1, radius)
            c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
            if axis == 0:
                out = (c[k:] - c[:-k]) / k
            else:
                out = (c[:, k:] - c[:, :-k]) / k
    return out.astype(np.float32)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise with features about ``cell`` pixels across."""
    cell = max(float(cell), 1.0)
    gh, gw = int(np.ceil(h / cell)) + 3, int(np.ceil(w / cell)) + 3
    low = rng.standard_normal((gh, gw)).astype(np.float32)
    big = Image.fromarray(low, mode="F").resize(
        (int(np.rint(gw * cell)), int(np.rint(gh * cell))), Image.BICUBIC
    )
    arr = np.asarray(big, dtype=np.float32)
    oy = int(cell)
    ox = int(cell)
    arr = arr[oy : oy + h, ox : ox + w]
    arr = arr - arr.mean()
    std = float(arr.std())
    return arr / std if std > 0 else arr


def _smooth_1d(rng: np.random.Generator, n: int, radius: int) -> np.ndarray:
    v = rng.standard_normal(n + 2 * radius * 3)
    k = np.ones(2 * radius + 1) / (2 * radius + 1)
    for _ in range(2):
        v = np.convolve(v, k, mode="same")
    v = v[radius * 3 : radius * 3 + n]
    return (v - v.mean()) / (v.std() + 1e-9)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


# --------------------------------------------------------------------------- breast


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    if a.shape == (h, w):
        return a.astype(np.float32, copy=False)
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.float32)


def render_breast(
    rng: np.random.Generator, h: int, w: int, side: str, view: str, density: int
) -> tuple[np.ndarray, BreastGeometry]:
    """Background plus breast: silhouette on the chest-wall edge, fatty/fibrous texture,
    fibres converging to the nipple, pectoral muscle triangle in MLO-type views.

    ``density`` 1 (fatty) .. 4 (dense) sets how much fibroglandular tissue shows. The
    smooth fields are drawn on a grid of about 192 rows and upsampled; fine texture is
    added at full resolution.
    """
    if side not in ("L", "R"):
        raise ValueError(f"side must be 'L' or 'R', got {side!r}")
    f = max(1, h // 192)
    hs, ws = max(8, round(h / f)), max(8, round(w / f))
    ys = (np.arange(hs, dtype=np.float32) + 0.5) * (h / hs) - 0.5
    xs = (np.arange(ws, dtype=np.float32) + 0.5) * (w / ws) - 0.5
    xx, yy = np.meshgrid(xs, ys)
    d = xx if side == "L" else (w - 1 - xx)  # distance from the chest wall
    mlo = view.upper() in ("MLO", "ML", "LM", "LMO")
    cy = h * rng.uniform(0.38, 0.48) if mlo else h * rng.uniform(0.44, 0.56)
    b = h * (rng.uniform(0.50, 0.58) if mlo else rng.uniform(0.36, 0.45))
    a = w * rng.uniform(0.62, 0.84)
    u = d / a
    v = (yy - cy) / b
    rr = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    # gently irregular skin line
    bump = _smooth_1d(rng, 360, 12)
    pert = 0.03 * np.interp(theta, np.linspace(-np.pi, np.pi, 360), bump)
    rr = (rr / (1.0 + pert)).astype(np.float32)
    thick = np.sqrt(np.clip(1.0 - rr * rr, 0.0, 1.0))

    # fibroglandular tissue: soft-thresholded smooth noise, densest behind the nipple
    fg = smooth_noise(rng, hs, ws, hs / 14) + 0.6 * smooth_noise(rng, hs, ws, hs / 40)
    thr = {1: 1.2, 2: 0.6, 3: 0.0, 4: -0.6}.get(int(density), 0.3)
    central = np.exp(-(((yy - cy) / (0.75 * b)) ** 2)) * np.clip(1.2 - rr, 0, 1)
    gland = sigmoid((fg - thr) / 0.5) * central

    # fibres: streaks radiating from the nipple, patchy
    nx_d = a * 1.0
    ny = cy + b * rng.uniform(-0.05, 0.05)
    phi = np.arctan2(yy - ny, nx_d - d)
    streak = _smooth_1d(rng, 1440, 2)
    fib = np.interp(phi, np.linspace(-np.pi, np.pi, 1440), streak).astype(np.float32)
    dist_n = np.sqrt((d - nx_d) ** 2 + (yy - ny) ** 2) / a
    fib = fib * np.clip(dist_n, 0, 1) * (0.6 + 0.4 * smooth_noise(rng, hs, ws, hs / 10))

    base = rng.uniform(0.22, 0.32)
    tissue = (
        base
        + 0.18 * np.sqrt(thick)
        + rng.uniform(0.13, 0.2) * gland
        + rng.uniform(0.008, 0.016) * fib * thick
    )
    # bright skin rim
    tissue += 0.05 * np.exp(-((((1.0 - rr) * a) / max(1.0, 0.006 * h)) ** 2))

    pect_field = None
    if mlo:
        pw = a * rng.uniform(0.30, 0.50)
        ph = h * rng.uniform(0.30, 0.50)
        curve = 0.06 * np.sin(np.pi * np.clip(yy / ph, 0, 1))
        pect_field = (d / pw + yy / ph - curve).astype(np.float32)
        muscle = rng.uniform(0.66, 0.82) + 0.03 * smooth_noise(rng, hs, ws, hs / 25)
        blend = sigmoid((1.0 - pect_field) * 25.0)
        tissue = tissue * (1 - blend) + muscle * blend

    edge_soft = max(0.8, 0.004 * h) * max(1.0, f / 2)
    edge = sigmoid((1.0 - rr) * a / edge_soft)
    if pect_field is not None:
        edge = np.maximum(edge, (pect_field < 1.0).astype(np.float32))
    img = 0.03 * (1 - edge) + tissue * edge

    img = _upsample(img, h, w)
    rr = _upsample(rr, h, w)
    breast = rr <= 1.0
    pect = None
    if pect_field is not None:
        pect = _upsample(pect_field, h, w) < 1.0
        breast |= pect
    edge = np.clip(_upsample(edge, h, w), 0.0, 1.0)
    fine = smooth_noise(rng, h, w, max(1.5, h / 180))
    img = (
        img
        + 0.015 * fine * edge
        + 0.01 * rng.standard_normal((h, w)).astype(np.float32) * (1 - edge)
    )
    nipple_x = nx_d if side == "L" else (w - 1 - nx_d)
    geom = BreastGeometry(
        side=side,
        view=view,
        center_y=float(cy),
        depth=float(a),
        half_height=float(b),
        nipple=(float(nipple_x), float(ny)),
        mask=breast,
        rr=rr,
        pectoral=pect,
    )
    return img.astype(np.float32), geom


def add_label_box(img: np.ndarray, rng: np.random.Generator, side: str) -> None:
    """Burn a bright film label (with dark 'text' marks) into a corner away from the breast."""
    h, w = img.shape
    bh = max(4, int(h * rng.uniform(0.05, 0.08)))
    bw = max(8, int(w * rng.uniform(0.22, 0.32)))
    y0 = int(h * 0.02) if rng.random() < 0.5 else h - bh - int(h * 0.02)
    x0 = w - bw - int(w * 0.03) if side == "L" else int(w * 0.03)
    img[y0 : y0 + bh, x0 : x0 + bw] = rng.uniform(0.9, 0.98)
    n_marks = int(rng.integers(4, 9))
    step = bw / (n_marks + 1)
    for i in range(n_marks):
        mx = x0 + int((i + 0.6) * step)
        mw = max(1, int(step * 0.6))
        my = y0 + max(1, bh // 4)
        mh = max(1, bh // 2)
        img[my : my + mh, mx : mx + mw] = rng.uniform(0.25, 0.45)


# --------------------------------------------------------------------------- lesions


def _window(
    cx: float, cy: float, reach: float, h: int, w: int
) -> tuple[int, int, int, int]:
    x0 = max(0, int(np.floor(cx - reach)))
    x1 = min(w, int(np.ceil(cx + reach)) + 1)
    y0 = max(0, int(np.floor(cy - reach)))
    y1 = min(h, int(np.ceil(cy + reach)) + 1)
    return x0, y0, x1, y1


def render_mass(
    img: np.ndarray,
    rng: np.random.Generator,
    center: tuple[float, float],
    radius: float,
    malignant: bool,
    contrast: float | None = None,
    limit: np.ndarray | None = None,
) -> Lesion:
    """Add a mass to ``img`` in place and return its annotation.

    Malignant: irregular outline (random harmonics) with radiating spicules, denser.
    Benign: smooth round/oval outline with a soft edge, fainter. ``limit`` (bool) keeps the
    added density inside the breast.
    """
    h, w = img.shape
    cx, cy = center
    r = float(radius)
    if contrast is None:
        contrast = rng.uniform(0.2, 0.36)  # the same for both classes: no brightness cue
    reach = r * (4.0 if malignant else 1.6) + 2
    x0, y0, x1, y1 = _window(cx, cy, reach, h, w)
    X, Y = np.meshgrid(
        np.arange(x0, x1, dtype=np.float32) - cx,
        np.arange(y0, y1, dtype=np.float32) - cy,
    )
    n_out = 48
    th_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    if malignant:
        ks = np.arange(2, 8)
        amps = rng.uniform(0.0, 0.13, ks.size) / np.sqrt(ks / 2.0)
        phases = rng.uniform(0, 2 * np.pi, ks.size)

        def rb(t: np.ndarray) -> np.ndarray:
            return r * (
                1.0
                + np.sum(
                    amps[:, None] * np.cos(ks[:, None] * t[None, :] + phases[:, None]),
                    axis=0,
                )
            )

        theta = np.arctan2(Y, X)
        rho = np.sqrt(X * X + Y * Y)
        rbound = rb(theta.ravel()).reshape(theta.shape)
        soft = max(0.5, 0.06 * r)
        body = sigmoid((rbound - rho) / soft)
        core = np.clip(1.0 - rho / np.maximum(rbound, 1e-3), 0, 1)
        profile = body * (0.7 + 0.3 * np.sqrt(core))
        spic = np.zeros_like(X)
        for _ in range(int(rng.integers(8, 15))):
            ang = rng.uniform(0, 2 * np.pi)
            start = float(rb(np.array([ang]))[0]) * 0.8
            length = r * rng.uniform(2.0, 3.2)
            width = max(0.8, r * rng.uniform(0.16, 0.24))
            amp = rng.uniform(0.7, 1.0)
            ux, uy = np.cos(ang), np.sin(ang)
            px, py = X - ux * start, Y - uy * start
            t = np.clip((px * ux + py * uy) / length, 0.0, 1.0)
            dx, dy = px - t * length * ux, py - t * length * uy
            val = (
                amp * (1.0 - t) ** 0.8 * np.exp(-(dx * dx + dy * dy) / (width * width))
            )
            spic = np.maximum(spic, val)
        lesion = profile + spic * (1.0 - body)
        radii = rb(th_out)
        outline = tuple(
            (float(cx + rr_ * np.cos(t)), float(cy + rr_ * np.sin(t)))
            for rr_, t in zip(radii, th_out)
        )
    else:
        aspect = rng.uniform(0.65, 1.0)
        rot = rng.uniform(0, np.pi)
        c, s = np.cos(rot), np.sin(rot)
        U = X * c + Y * s
        V = -X * s + Y * c
        rho = np.sqrt(U * U + (V / aspect) ** 2)
        soft = max(0.7, 0.14 * r)
        body = sigmoid((r - rho) / soft)
        core = np.clip(1.0 - (rho / r) ** 2, 0, 1)
        lesion = body * (0.75 + 0.25 * np.sqrt(core))
        uo, vo = r * np.cos(th_out), r * aspect * np.sin(th_out)
        outline = tuple(
            (float(cx + a_ * c - b_ * s), float(cy + a_ * s + b_ * c))
            for a_, b_ in zip(uo, vo)
        )
    lesion = lesion * (
        1.0 + 0.12 * rng.standard_normal(lesion.shape).astype(np.float32) * 0.5
    )
    lesion = _same_budget(lesion, r, 3.0)
    add = contrast * lesion
    if limit is not None:
        add = add * limit[y0:y1, x0:x1]
    img[y0:y1, x0:x1] += add.astype(np.float32)
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = body > 0.5
    if not mask.any():
        mask[int(np.clip(round(cy), 0, h - 1)), int(np.clip(round(cx), 0, w - 1))] = (
            True
        )
    return Lesion(MASS, malignant, (float(cx), float(cy)), r, mask, outline)


BUDGET = 1.4  # integrated added density of a lesion of radius r, in units of pi r^2 x contrast


def _same_budget(lesion: np.ndarray, r: float, peak: float) -> np.ndarray:
    """Rescale ``lesion`` so its integrated density is that of a disk of radius ``r``.

    Both classes of one size then add the same total intensity (no brightness cue);
    ``peak`` (at most 1) caps the brightest pixel relative to that disk's level.
    """
    total = float(lesion.sum())
    if total <= 0:
        return lesion
    scaled = lesion * (BUDGET * np.pi * r * r / total)
    top = float(scaled.max())
    return scaled * (peak / top) if top > peak else scaled


def _add_gaussian(
    img: np.ndarray, x: float, y: float, sa: float, sb: float, ang: float, amp: float
) -> None:
    h, w = img.shape
    reach = 3.5 * max(sa, sb) + 1
    x0, y0, x1, y1 = _window(x, y, reach, h, w)
    if x0 >= x1 or y0 >= y1:
        return
    X, Y = np.meshgrid(
        np.arange(x0, x1, dtype=np.float32) - x, np.arange(y0, y1, dtype=np.float32) - y
    )
    c, s = np.cos(ang), np.sin(ang)
    U = X * c + Y * s
    V = -X * s + Y * c
    img[y0:y1, x0:x1] += (amp * np.exp(-0.5 * ((U / sa) ** 2 + (V / sb) ** 2))).astype(
        np.float32
    )


def render_calcifications(
    img: np.ndarray,
    rng: np.random.Generator,
    center: tuple[float, float],
    radius: float,
    malignant: bool,
    speck: float,
    contrast: float | None = None,
) -> Lesion:
    """Add a calcification finding to ``img`` in place and return its annotation.

    Malignant: fine linear branching -- elongated specks strung along 3-6 branches that
    radiate from the centre over up to twice ``radius``, over a faint haze. Benign: 4-9
    larger round specks (some with a lucent centre) scattered over about twice the radius.
    ``speck`` is the base speck size (px). Both classes add the same integrated density
    for the same ``radius`` (``contrast``, drawn from one range for both, sets its level).
    """
    h, w = img.shape
    cx, cy = center
    if contrast is None:
        contrast = rng.uniform(0.2, 0.36)
    pts: list[tuple[float, float]] = []
    extents: list[float] = [radius]
    reach0 = 3.2 * radius + 6 * speck + 2
    x0, y0, x1, y1 = _window(cx, cy, reach0, h, w)
    buf = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)

    def add(x: float, y: float, sa: float, sb: float, ang: float, amp: float) -> None:
        _add_gaussian(buf, x - x0, y - y0, sa, sb, ang, amp)

    if malignant:
        add(cx, cy, radius * 0.7, radius * 0.7, 0.0, 0.15)
        n_branch = int(rng.integers(4, 8))
        base = rng.uniform(0, 2 * np.pi)
        for k in range(n_branch):
            ang = base + 2 * np.pi * k / n_branch + rng.uniform(-0.3, 0.3)
            length = radius * rng.uniform(1.8, 3.0)
            step = max(1.2 * speck, length / 14)
            t = rng.uniform(0.0, 0.5) * step
            while t < length:
                wob = rng.normal(0.0, 0.25 * speck)
                x = cx + t * np.cos(ang) - wob * np.sin(ang)
                y = cy + t * np.sin(ang) + wob * np.cos(ang)
                add(x, y, speck * rng.uniform(1.6, 2.4), speck * rng.uniform(0.8, 1.1),
                    ang, rng.uniform(0.6, 1.0))
                pts.append((float(x), float(y)))
                extents.append(float(t + 2 * speck))
                t += step * rng.uniform(0.8, 1.2)
    else:
        n = int(rng.integers(4, 10))
        spread = radius * 2.0
        for _ in range(n):
            rad = spread * np.sqrt(rng.uniform(0.05, 1.0))
            ang = rng.uniform(0, 2 * np.pi)
            x, y = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
            sg = speck * rng.uniform(2.0, 3.4)
            amp = rng.uniform(0.6, 1.0)
            add(x, y, sg, sg, 0.0, amp)
            if rng.random() < 0.3:
                add(x, y, sg * 0.45, sg * 0.45, 0.0, -0.5 * amp)
            pts.append((float(x), float(y)))
            extents.append(float(rad + 2 * sg))
    buf = _same_budget(np.clip(buf, 0.0, None), radius, 6.0)
    img[y0:y1, x0:x1] += (contrast * buf).astype(np.float32)
    reach = max(extents) + 1.0
    yy, xx = np.ogrid[0:h, 0:w]
    mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= reach * reach
    th = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    outline = tuple(
        (float(cx + reach * np.cos(t)), float(cy + reach * np.sin(t))) for t in th
    )
    return Lesion(
        CALCIFICATION,
        malignant,
        (float(cx), float(cy)),
        float(reach),
        mask,
        outline,
        tuple(pts),
    )


# --------------------------------------------------------------------------- whole image


def _place(
    rng: np.random.Generator,
    geom: BreastGeometry,
    r: float,
    taken: list[tuple[float, float, float]],
    h: int,
    w: int,
) -> tuple[float, float]:
    ok = (geom.rr < 0.78) & geom.mask
    if geom.pectoral is not None:
        ok &= ~geom.pectoral
    margin = int(min(r + 2, min(h, w) / 4))
    ok[:margin] = False
    ok[h - margin :] = False
    ok[:, :margin] = False
    ok[:, w - margin :] = False
    cand = np.flatnonzero(ok)
    if cand.size == 0:
        return w / 2.0, h / 2.0
    best = None
    for _ in range(30):
        idx = int(cand[rng.integers(cand.size)])
        y, x = divmod(idx, w)
        x += rng.uniform(-0.5, 0.5)
        y += rng.uniform(-0.5, 0.5)
        if all(np.hypot(x - tx, y - ty) > (r + tr) * 1.1 for tx, ty, tr in taken):
            return float(x), float(y)
        best = (float(x), float(y))
    return best  # crowded: overlap is acceptable


def render_mammogram(
    rng: np.random.Generator,
    height: int,
    width: int,
    side: str,
    view: str,
    density: int,
    lesions: Sequence[tuple[str, bool]] = (),
    label_box: bool = False,
) -> MammoPhantom:
    """Render a whole mammogram-like image with the given ``(kind, malignant)`` lesions.

    ``kind`` is ``"mass"`` or ``"calcification"``. Sizes scale with ``height``.
    """
    img, geom = render_breast(rng, height, width, side, view, density)
    out: list[Lesion] = []
    taken: list[tuple[float, float, float]] = []
    limit = geom.mask.astype(np.float32)
    speck = max(1.0, 0.004 * height)
    for kind, malignant in lesions:
        if kind == MASS:
            r = height * rng.uniform(0.08, 0.12)
            x, y = _place(rng, geom, r, taken, height, width)
            les = render_mass(img, rng, (x, y), r, malignant, limit=limit)
        elif kind == CALCIFICATION:
            r = height * rng.uniform(0.07, 0.1)
            x, y = _place(rng, geom, r * 2.0, taken, height, width)
            les = render_calcifications(img, rng, (x, y), r, malignant, speck)
        else:
            raise ValueError(
                f"unknown lesion kind {kind!r}; use 'mass' or 'calcification'"
            )
        taken.append((les.center[0], les.center[1], les.radius))
        out.append(les)
    # unannotated smooth nodules (lymph-node / cyst-like) so that every image, normal ones
    # included, holds about as many dense structures: lesion presence is not a cue
    n_structures = int(rng.integers(2, 4))
    for _ in range(max(0, n_structures - len(out))):
        r = height * rng.uniform(0.06, 0.11)
        x, y = _place(rng, geom, r, taken, height, width)
        render_mass(img, rng, (x, y), r, False, limit=limit)
        taken.append((x, y, r))
    if label_box:
        add_label_box(img, rng, side)
    gamma = rng.uniform(0.85, 1.15)
    img = np.clip(img, 0.0, 1.0) ** gamma
    img = img + rng.uniform(0.004, 0.014) * rng.standard_normal(img.shape).astype(
        np.float32
    )
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    return MammoPhantom(img, geom, out)


def to_uint(img: np.ndarray, max_value: int) -> np.ndarray:
    """Quantise a ``[0, 1]`` float image to integers in ``[0, max_value]``."""
    dtype = np.uint8 if max_value <= 255 else np.uint16
    return np.round(np.clip(img, 0.0, 1.0) * max_value).astype(dtype)
