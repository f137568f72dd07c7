"""Pixels for the demo dataset: scenes, and the traces that tell real from generated.

Every function here draws from the `numpy.random.Generator` it is given and nothing
else, so one seed gives one picture. Images are float32 arrays `H×W×3` in [0, 255]
until `to_uint8`; clips are lists of such frames.

* **real** — a smooth scene (gradient, low-frequency colour field, soft shapes),
  a little camera motion in clips, and fresh Gaussian sensor noise on every frame.
* **synthetic** — the same families of scene, but over-smoothed (no sensor noise)
  and carrying a generator trace: a small periodic tile, like the checkerboard of
  a transposed-convolution upsampler, fixed to the pixel grid; in clips the trace
  and the overall gain flicker from frame to frame.
* **semisynthetic** — a real picture with a generated patch (another scene with
  the synthetic trace) pasted over 25–50 % of its central square, the part the
  validator's centre crop keeps: every crop holds both the patch and real
  surroundings. (Data version 2 drew the patch over 30–60 % of the whole picture;
  on wide media it could fill the crop, leaving a semisynthetic sample that no
  detector can tell from a synthetic one.)

The trace's period and amplitude are drawn per sample (see `TRACE`), and its mean
is zero, so brightness and file size do not give the class away; a local look at
high frequencies does.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import cv2
import numpy as np

Frame = np.ndarray  # float32, H×W×3, nominally [0, 255]


@dataclass(frozen=True)
class TraceRanges:
    """How strong each class's telltales are; every sample draws inside these ranges."""

    sensor_noise_sigma: tuple[float, float]  # real: per-pixel Gaussian noise, grey levels
    smoothing_sigma: tuple[float, float]  # synthetic: Gaussian blur before the trace, pixels
    periods: tuple[int, ...]  # synthetic images: tile period in source pixels
    clip_periods: tuple[int, ...]  # synthetic clips: tile period in source pixels (latent-VAE-like 8–16 px grids)
    tile_amplitude: tuple[float, float]  # synthetic: tile standard deviation, grey levels
    flicker_gain: tuple[float, float]  # synthetic clips: std of the per-frame gain
    pasted_area: tuple[float, float]  # semisynthetic: share of the central square that is generated


TRACE = TraceRanges(
    sensor_noise_sigma=(4.0, 8.0),
    smoothing_sigma=(0.6, 1.2),
    periods=(4, 6, 8),
    clip_periods=(8, 12, 16),
    tile_amplitude=(10.0, 16.0),
    flicker_gain=(0.03, 0.06),
    pasted_area=(0.25, 0.50),
)


def scene(rng: np.random.Generator, height: int, width: int) -> Frame:
    """A natural-looking still: a colour gradient, a smooth colour field and a few soft shapes.

    Drawn at half resolution and enlarged: the scene has no fine detail of its own,
    which leaves the finest scales to the class traces.
    """
    small_h, small_w = max(2, -(-height // 2)), max(2, -(-width // 2))
    ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / small_w + np.sin(angle) * ys / small_h) * 0.5 + 0.5
    start, end = rng.uniform(40, 215, size=(2, 3)).astype(np.float32)
    picture = start + (end - start) * ramp[..., None]

    field = rng.normal(0.0, 1.0, size=(int(rng.integers(3, 7)), int(rng.integers(3, 7)), 3)).astype(np.float32)
    picture += cv2.resize(field, (small_w, small_h), interpolation=cv2.INTER_CUBIC) * rng.uniform(12, 30)

    for _ in range(int(rng.integers(2, 7))):
        mask = np.zeros((small_h, small_w), np.float32)
        centre = (int(rng.integers(0, small_w)), int(rng.integers(0, small_h)))
        radius = max(1, int(rng.uniform(0.08, 0.35) * min(small_h, small_w)))
        if rng.random() < 0.5:
            axes = (radius, max(1, int(radius * rng.uniform(0.4, 1.0))))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        else:
            corner = (centre[0] + radius, centre[1] + int(radius * rng.uniform(0.5, 1.5)))
            cv2.rectangle(mask, centre, corner, 1.0, -1, cv2.LINE_AA)
        colour = rng.uniform(20, 235, size=3).astype(np.float32)
        opacity = mask[..., None] * rng.uniform(0.5, 0.9)
        picture += (colour - picture) * opacity
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_LINEAR)


def generator_tile(rng: np.random.Generator, periods: tuple[int, ...] = TRACE.periods) -> np.ndarray:
    """One generator's fingerprint: a zero-mean P×P tile with unit standard deviation, P drawn from `periods`."""
    period = int(rng.choice(periods))
    tile = rng.normal(0.0, 1.0, size=(period, period)).astype(np.float32)
    tile -= tile.mean()
    return tile / max(float(tile.std()), 1e-6)


def tiled(tile: np.ndarray, height: int, width: int) -> np.ndarray:
    """The tile repeated over an H×W grid, anchored at the top-left pixel."""
    period = tile.shape[0]
    reps = (-(-height // period), -(-width // period))
    return np.tile(tile, reps)[:height, :width]


#: Standard normal quantiles at 256 evenly spaced probabilities: Gaussian noise from random bytes,
#: four times faster than `Generator.normal` and plenty for sensor noise (tails cut at ±2.9σ).
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)


def add_sensor_noise(rng: np.random.Generator, frame: Frame, sigma: float) -> Frame:
    """Independent Gaussian noise of standard deviation `sigma` on every pixel and channel."""
    noise = np.take(_NORMAL_QUANTILES * np.float32(sigma), rng.integers(0, 256, size=frame.shape, dtype=np.uint8))
    return frame + noise


def over_smooth(frame: Frame, sigma: float) -> Frame:
    """The too-clean look of generated texture: a Gaussian blur that removes the finest scales."""
    return cv2.GaussianBlur(frame, (0, 0), sigma)


def add_generator_trace(smooth: Frame, pattern: np.ndarray, amplitude: float, gain: float = 1.0) -> Frame:
    """Add the periodic pattern to an over-smoothed frame, stronger where the picture is brighter."""
    channel_sum = smooth[..., 0] + smooth[..., 1] + smooth[..., 2]
    trace = pattern * (np.float32(0.6 * amplitude) + channel_sum * np.float32(0.8 * amplitude / 765))
    return smooth * np.float32(gain) + trace[..., None]


def pasted_region(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A feathered rectangular mask (1 inside) over 25–50 % of the central min(H, W) square, inside it.

    The validator crops that square (then resizes), so the patch always reaches the
    detector together with real pixels around it."""
    side = min(height, width)
    share = rng.uniform(*TRACE.pasted_area)
    aspect = rng.uniform(0.7, 1.4)
    region_h = int(min(side, round(side * np.sqrt(share / aspect))))
    region_w = int(min(side, round(share * side * side / max(region_h, 1))))
    square_top, square_left = (height - side) // 2, (width - side) // 2
    top = square_top + int(np.clip((side - region_h) / 2 + rng.normal(0, 0.08) * side, 0, side - region_h))
    left = square_left + int(np.clip((side - region_w) / 2 + rng.normal(0, 0.08) * side, 0, side - region_w))
    mask = np.zeros((height, width), np.float32)
    mask[top : top + region_h, left : left + region_w] = 1.0
    return cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]


def to_uint8(frame: Frame) -> np.ndarray:
    """Round to the nearest grey level and saturate at 0 and 255."""
    return (np.clip(frame, 0, 255) + np.float32(0.5)).astype(np.uint8)


def image(rng: np.random.Generator, media_type: str, height: int, width: int) -> np.ndarray:
    """One H×W×3 uint8 picture of the given media type."""
    if media_type == "real":
        return to_uint8(add_sensor_noise(rng, scene(rng, height, width), rng.uniform(*TRACE.sensor_noise_sigma)))
    pattern = tiled(generator_tile(rng), height, width)
    smoothing, amplitude = rng.uniform(*TRACE.smoothing_sigma), rng.uniform(*TRACE.tile_amplitude)
    if media_type == "synthetic":
        return to_uint8(add_generator_trace(over_smooth(scene(rng, height, width), smoothing), pattern, amplitude))
    if media_type == "semisynthetic":
        real = add_sensor_noise(rng, scene(rng, height, width), rng.uniform(*TRACE.sensor_noise_sigma))
        patch = add_generator_trace(over_smooth(scene(rng, height, width), smoothing), pattern, amplitude)
        mask = pasted_region(rng, height, width)
        return to_uint8(real * (1 - mask) + patch * mask)
    raise ValueError(f"unknown media type {media_type!r}")


class _CameraPath:
    """A wide scene seen through a moving H×W window: smooth random drift, whole-pixel steps."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, frames: int, smoothing: float = 0.0):
        speed = rng.uniform(0.0, 2.5, size=2)
        direction = rng.choice([-1.0, 1.0], size=2)
        wobble = rng.normal(0.0, 0.6, size=(frames, 2)).cumsum(axis=0) * 0.3
        path = np.arange(frames)[:, None] * speed * direction + wobble
        path -= path.min(axis=0)
        self.offsets = np.rint(path).astype(int)
        margin = self.offsets.max(axis=0)
        self.canvas = scene(rng, height + int(margin[0]), width + int(margin[1]))
        if smoothing > 0:
            self.canvas = over_smooth(self.canvas, smoothing)
        self.height, self.width = height, width

    def frame(self, index: int) -> Frame:
        top, left = self.offsets[index]
        return self.canvas[top : top + self.height, left : left + self.width]


def clip(rng: np.random.Generator, media_type: str, height: int, width: int, frames: int) -> list[np.ndarray]:
    """`frames` H×W×3 uint8 frames of the given media type."""
    if media_type not in ("real", "synthetic", "semisynthetic"):
        raise ValueError(f"unknown media type {media_type!r}")
    noise_sigma = rng.uniform(*TRACE.sensor_noise_sigma)
    pattern = tiled(generator_tile(rng, TRACE.clip_periods), height, width)
    smoothing, amplitude = rng.uniform(*TRACE.smoothing_sigma), rng.uniform(*TRACE.tile_amplitude)
    camera = _CameraPath(rng, height, width, frames, smoothing if media_type == "synthetic" else 0.0)
    flicker = rng.uniform(*TRACE.flicker_gain)
    gains = 1.0 + rng.normal(0.0, flicker, size=frames)
    strengths = amplitude * (1.0 + rng.normal(0.0, 0.15, size=frames))
    patch_camera = _CameraPath(rng, height, width, frames, smoothing) if media_type == "semisynthetic" else None
    mask = pasted_region(rng, height, width) if media_type == "semisynthetic" else None

    out = []
    for index in range(frames):
        view = camera.frame(index)
        if media_type == "synthetic":
            picture = add_generator_trace(view, pattern, strengths[index], gains[index])
        else:
            picture = add_sensor_noise(rng, view, noise_sigma)
            if patch_camera is not None and mask is not None:
                patch = add_generator_trace(patch_camera.frame(index), pattern, strengths[index], gains[index])
                picture = picture * (1 - mask) + patch * mask
        out.append(to_uint8(picture))
    return out
