"""Synthetic faces with the 15 keypoints of the Kaggle data: the offline stand-in for seed 004.

A face is drawn *from its keypoints*: the eyes are almonds between their corners with a pupil
at the eye centre, the eyebrows are thick strokes between their ends, the nostrils sit either
side of the nose tip, the mouth is the quadrilateral of its four points and the head is an
ellipse placed and oriented by the eyes and the mouth. A handful of style numbers (skin and
hair tone, eye opening, stroke widths, head proportions, lighting gradient, noise) vary the
look. Because every element is a distance to keypoints, and pixel centres sit at integer
coordinates, mirroring a rendered face equals rendering the mirrored keypoints (with the
lighting mirrored too): the points stay on their features under the flip augmentation.

Keypoints vary by pose (position, scale, in-plane rotation) and by feature shape (eye spacing
and size, eyebrow height and tilt, nose length, mouth width, opening and smile).
"""

from __future__ import annotations

import numpy as np

from lrtune.data.keypoints import KEYPOINT_NAMES, pixels_to_unit

N_KEYPOINTS = len(KEYPOINT_NAMES)
_CHUNK = 256  # faces rendered at once; bounds the (chunk, S, S) temporaries

# style numbers: name -> (low, high) of the uniform draw
STYLE_RANGES = {
    "background": (0.05, 0.45),
    "skin": (0.55, 0.9),
    "hair": (0.02, 0.3),
    "sclera": (0.85, 1.0),
    "iris": (0.0, 0.2),
    "lips": (0.15, 0.4),
    "eye_open": (0.07, 0.12),  # eye half-height, fraction of the eye distance
    "iris_radius": (0.09, 0.13),
    "brow_width": (0.04, 0.08),
    "nostril_radius": (0.04, 0.07),
    "head_width": (1.05, 1.3),  # head semi-axes, in eye distances
    "head_height": (1.4, 1.75),
    "light_x": (-0.5, 0.5),  # lighting gradient across the image, left to right / top down
    "light_y": (-0.5, 0.5),
    "noise": (0.0, 0.06),  # standard deviation of the pixel noise
}


def sample_keypoints(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Keypoints ``(n, 15, 2)`` in pixel coordinates (x right, y down), all inside the image."""
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    eye_dx, eye_y, eye_w = u(0.32, 0.42), u(-0.32, -0.18), u(0.11, 0.16)
    brow_up, brow_tilt, brow_in = u(0.14, 0.24), u(-0.08, 0.08), u(-0.04, 0.04)
    nose_y = u(0.02, 0.2)
    mouth_y, mouth_w, smile = u(0.42, 0.55), u(0.2, 0.33), u(-0.05, 0.03)
    lip_top, lip_bottom = u(0.07, 0.11), u(0.06, 0.14)
    zero = np.zeros(n)
    # face-local coordinates, face half-width 1; the subject's left is the image's right
    local = np.stack([
        np.stack([eye_dx, eye_y], -1),  # left_eye_center
        np.stack([-eye_dx, eye_y], -1),  # right_eye_center
        np.stack([eye_dx - eye_w, eye_y], -1),  # left_eye_inner_corner
        np.stack([eye_dx + eye_w, eye_y], -1),  # left_eye_outer_corner
        np.stack([-eye_dx + eye_w, eye_y], -1),  # right_eye_inner_corner
        np.stack([-eye_dx - eye_w, eye_y], -1),  # right_eye_outer_corner
        np.stack([eye_dx - eye_w + brow_in, eye_y - brow_up], -1),  # left_eyebrow_inner_end
        np.stack([eye_dx + eye_w + 0.06, eye_y - brow_up + brow_tilt], -1),  # ..._outer_end
        np.stack([-eye_dx + eye_w - brow_in, eye_y - brow_up], -1),  # right_eyebrow_inner_end
        np.stack([-eye_dx - eye_w - 0.06, eye_y - brow_up + brow_tilt], -1),
        np.stack([zero, nose_y], -1),  # nose_tip
        np.stack([mouth_w, mouth_y + smile], -1),  # mouth_left_corner
        np.stack([-mouth_w, mouth_y + smile], -1),  # mouth_right_corner
        np.stack([zero, mouth_y - lip_top], -1),  # mouth_center_top_lip
        np.stack([zero, mouth_y + lip_bottom], -1),  # mouth_center_bottom_lip
    ], axis=1)
    local += rng.normal(0.0, 0.012, local.shape)  # a little asymmetry
    scale = rng.uniform(0.28, 0.4, n) * size  # pixels per face unit
    angle = rng.uniform(-0.35, 0.35, n)  # radians, about +-20 degrees
    centre = (size - 1) / 2 + rng.uniform(-0.1, 0.1, (n, 2)) * size
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=1)
    return centre[:, None, :] + scale[:, None, None] * np.einsum("nij,nkj->nki", rotation, local)


def sample_style(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One draw of every :data:`STYLE_RANGES` number per face."""
    return {name: rng.uniform(lo, hi, n) for name, (lo, hi) in STYLE_RANGES.items()}


def flip_style(style: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The style of the mirrored face: the horizontal lighting gradient changes sign."""
    return {**style, "light_x": -style["light_x"]}


def _point_distance(gx, gy, p):
    """Distance from every pixel centre to points ``p`` ``(n, 2)``: ``(n, S, S)``."""
    return np.sqrt((gx - p[:, 0, None, None]) ** 2 + (gy - p[:, 1, None, None]) ** 2)


def _segment_distance(gx, gy, a, b):
    """Distance from every pixel centre to the segments ``a -> b`` (``(n, 2)`` each)."""
    abx, aby = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    apx, apy = gx - a[:, 0, None, None], gy - a[:, 1, None, None]
    t = np.clip((apx * abx + apy * aby) / np.maximum(abx * abx + aby * aby, 1e-12), 0.0, 1.0)
    return np.sqrt((apx - t * abx) ** 2 + (apy - t * aby) ** 2)


def _polygon_inside(gx, gy, vertices):
    """Signed distance inside a convex polygon ``(n, V, 2)`` (> 0 inside), orientation-free."""
    rolled = np.roll(vertices, -1, axis=1)
    edges = rolled - vertices
    area = (vertices[..., 0] * rolled[..., 1] - rolled[..., 0] * vertices[..., 1]).sum(1)
    orientation = np.where(area >= 0, 1.0, -1.0).astype(vertices.dtype)
    inside = None
    for k in range(vertices.shape[1]):
        ex, ey = edges[:, k, 0], edges[:, k, 1]
        scale = (orientation / np.sqrt(ex * ex + ey * ey))[:, None, None]
        rx, ry = gx - vertices[:, k, 0, None, None], gy - vertices[:, k, 1, None, None]
        d = (ex[:, None, None] * ry - ey[:, None, None] * rx) * scale
        inside = d if inside is None else np.minimum(inside, d)
    return inside


def _paint(image, value, coverage):
    """Alpha-blend ``value`` (per face) where ``coverage`` (clipped to 0-1) says, in place."""
    np.clip(coverage, 0.0, 1.0, out=coverage)
    image += (value[:, None, None] - image) * coverage


def render_faces(keypoints: np.ndarray, style: dict[str, np.ndarray], size: int,
                 noise: np.ndarray | None = None) -> np.ndarray:
    """Draw faces from pixel keypoints ``(n, 15, 2)``; returns ``(n, size, size)`` in [0, 1].

    Args:
        keypoints: pixel coordinates, pixel centres at ``0 … size-1``.
        style: the numbers of :data:`STYLE_RANGES`, one per face.
        size: image side in pixels.
        noise: standard normal ``(n, size, size)`` scaled by ``style["noise"]``; None for none.
    """
    out = np.empty((len(keypoints), size, size), dtype=np.float32)
    for start in range(0, len(keypoints), _CHUNK):
        part = slice(start, start + _CHUNK)
        chunk_style = {k: np.asarray(v[part], dtype=np.float32) for k, v in style.items()}
        out[part] = _render_chunk(np.asarray(keypoints[part], dtype=np.float32), chunk_style,
                                  size)
        if noise is not None:
            out[part] += chunk_style["noise"][:, None, None] * noise[part]
    return np.clip(out, 0.0, 1.0, out=out)


def _render_chunk(kp, st, size):
    coords = np.arange(size, dtype=np.float32)
    gx, gy = coords[None, None, :], coords[None, :, None]  # pixel centres, broadcastable
    eye_l, eye_r = kp[:, 0], kp[:, 1]
    eye_dist = np.sqrt(((eye_l - eye_r) ** 2).sum(-1))
    per_face = lambda name: (st[name] * eye_dist)[:, None, None]  # noqa: E731

    # head: ellipse along the eye line, centred between the eyes' midpoint and the mouth
    across = (eye_l - eye_r) / eye_dist[:, None]
    centre = ((eye_l + eye_r) / 2 + kp[:, 11:15].mean(1)) / 2
    rx, ry = gx - centre[:, 0, None, None], gy - centre[:, 1, None, None]
    cx, cy = across[:, 0, None, None], across[:, 1, None, None]
    a, b = per_face("head_width"), per_face("head_height")
    u, v = (rx * cx + ry * cy) / a, (ry * cx - rx * cy) / b
    # approximately the signed distance in pixels: a soft one-pixel edge
    head = (1.0 - np.sqrt(u * u + v * v)) * np.minimum(a, b) + 0.5

    image = np.empty((len(kp), size, size), dtype=np.float32)
    image[:] = st["background"][:, None, None]
    _paint(image, st["skin"], head)
    for centre_i, inner_i, outer_i in ((0, 2, 3), (1, 4, 5)):
        almond = _segment_distance(gx, gy, kp[:, inner_i], kp[:, outer_i])
        _paint(image, st["sclera"], per_face("eye_open") - almond + 0.5)
        pupil = _point_distance(gx, gy, kp[:, centre_i])
        _paint(image, st["iris"], per_face("iris_radius") - pupil + 0.5)
    for inner_i, outer_i in ((6, 7), (8, 9)):
        brow = _segment_distance(gx, gy, kp[:, inner_i], kp[:, outer_i])
        _paint(image, st["hair"], per_face("brow_width") - brow + 0.5)
    for side in (-1.0, 1.0):
        nostril = kp[:, 10] + side * 0.1 * eye_dist[:, None] * across
        _paint(image, st["hair"], per_face("nostril_radius")
               - _point_distance(gx, gy, nostril) + 0.5)
    lips = kp[:, [11, 13, 12, 14]]  # left corner, top, right corner, bottom: a convex loop
    _paint(image, st["lips"], _polygon_inside(gx, gy, lips) + 0.5)
    centred_x, centred_y = (gx - (size - 1) / 2) / size, (gy - (size - 1) / 2) / size
    image *= (1.0 + st["light_x"][:, None, None] * centred_x
              + st["light_y"][:, None, None] * centred_y)
    return image


def make_synthetic_faces(n: int, *, size: int = 48, seed: int = 0,
                         noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``n`` faces and their keypoints, deterministic for a given ``seed``.

    Args:
        n: number of faces.
        size: image side in pixels (>= 16).
        seed: seed of the private NumPy generator (global RNGs are untouched).
        noise: add the per-face pixel noise of the style.

    Returns:
        ``(images, targets)``: ``(n, 1, size, size)`` float32 in [0, 1] and ``(n, 30)``
        float32 unit coordinates in the layout of :mod:`lrtune.data.keypoints`.

    Examples:
        >>> X, y = make_synthetic_faces(4, size=32, seed=1)
        >>> X.shape, y.shape, bool(abs(y).max() < 1)
        ((4, 1, 32, 32), (4, 30), True)
    """
    if n <= 0:
        raise ValueError(f"n must be > 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    rng = np.random.default_rng(seed)
    keypoints = sample_keypoints(rng, n, size)
    style = sample_style(rng, n)
    pixel_noise = rng.standard_normal((n, size, size), dtype=np.float32) if noise else None
    images = render_faces(keypoints, style, size, pixel_noise)
    targets = pixels_to_unit(keypoints, size).reshape(n, 2 * N_KEYPOINTS)
    return images[:, None], targets.astype(np.float32)


def load_synthetic_faces(seed: int = 0, *, n: int = 4000, size: int = 48):
    """``n`` synthetic faces (default 4 000 of 48×48, about a second), split 70/15/15.

    Same layout and ``extra`` as the Kaggle data, so the same model, loss and flip apply.
    """
    from lrtune.data.keypoints import keypoint_extra
    from lrtune.data.splits import split_three_ways

    X, y = make_synthetic_faces(n, size=size, seed=seed)
    return split_three_ways(
        X, y, valid_fraction=0.15, test_fraction=0.15, seed=seed, stratify=False,
        task="regression", name="synthetic-faces", extra=keypoint_extra(size),
    )
