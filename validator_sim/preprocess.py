"""Pixels exactly as the validator feeds them: resize/crop (contract §2, §7) and frame selection.

Everything is uint8 and OpenCV `INTER_LINEAR`, because only OpenCV reproduces the
validator's resized pixels bit for bit. The size arithmetic copies the validator's
float64 expressions, truncation and floor offsets included.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def shortest_edge_size(h: int, w: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The (new_h, new_w) the `onnx-2026-02` resize scales to before cropping.

    The shorter side (height on a tie) goes to the target; the other is scaled by a
    float64 ratio and truncated, then both are clamped up to the target.
    """
    if h < w:
        new_h, new_w = target_h, int(w * (target_h / h))
    else:
        new_w, new_h = target_w, int(h * (target_w / w))
    return max(new_h, target_h), max(new_w, target_w)


def center_crop(img: np.ndarray, target_h: int, target_w: int) -> np.ndarray:
    """Crop the centre with floor offsets: an odd spare pixel goes to the bottom/right."""
    h, w = img.shape[:2]
    top, left = (h - target_h) // 2, (w - target_w) // 2
    return img[top:top + target_h, left:left + target_w]


def resize_shortest_edge_center_crop(img: np.ndarray, target_h: int, target_w: int) -> np.ndarray:
    """`onnx-2026-02` (contract §2): resize the shortest edge to the target, then centre crop."""
    h, w = img.shape[:2]
    new_h, new_w = shortest_edge_size(h, w, target_h, target_w)
    if (new_h, new_w) != (h, w):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(center_crop(img, target_h, target_w))


def aspect_crop_size(h: int, w: int, target_h: int, target_w: int) -> tuple[int, int]:
    """The (crop_h, crop_w) the `current` profile cuts before resizing: the target's aspect, as large as fits."""
    scale = min(h / target_h, w / target_w)
    return min(int(round(scale * target_h)), h), min(int(round(scale * target_w)), w)


def center_crop_resize(img: np.ndarray, target_h: int, target_w: int) -> np.ndarray:
    """`current` (contract §7): centre crop to the target's aspect ratio, then resize to the target."""
    h, w = img.shape[:2]
    crop_h, crop_w = aspect_crop_size(h, w, target_h, target_w)
    cropped = center_crop(img, crop_h, crop_w)
    if (crop_h, crop_w) == (target_h, target_w):
        return np.ascontiguousarray(cropped)
    return cv2.resize(np.ascontiguousarray(cropped), (target_w, target_h), interpolation=cv2.INTER_LINEAR)


#: Profile field `resize` → the function that implements it.
RESIZERS = {
    "shortest_edge_center_crop": resize_shortest_edge_center_crop,
    "center_crop_resize": center_crop_resize,
}


def frame_step(fps: float | None, frame_rate: float | None, fallback_fps: float = 30.0) -> int:
    """Keep every n-th frame to approximate `frame_rate` (1 when no rate is asked for)."""
    if not frame_rate:
        return 1
    source_fps = fps if fps and fps > 0 else fallback_fps
    return max(1, int(round(source_fps / frame_rate)))


def select_frames(frames: Sequence[np.ndarray], num_frames: int, step: int = 1) -> list[np.ndarray]:
    """Frames 0, step, 2·step, … up to `num_frames`; the last one is repeated when the clip is short."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be ≥ 1, got {num_frames}")
    chosen = list(frames[::step][:num_frames])
    if not chosen:
        raise ValueError("a clip with no frames cannot be padded")
    chosen.extend([chosen[-1]] * (num_frames - len(chosen)))
    return chosen


def image_to_chw(img: np.ndarray, target_h: int, target_w: int, resize: str) -> np.ndarray:
    """One decoded RGB image → the model's [3, H, W] uint8."""
    return RESIZERS[resize](img, target_h, target_w).transpose(2, 0, 1)


def clip_to_tchw(frames: Sequence[np.ndarray], num_frames: int, target_h: int, target_w: int, resize: str) -> np.ndarray:
    """Decoded RGB frames (already stepped) → the model's [T, 3, H, W] uint8, padding with the last frame."""
    chosen = select_frames(frames, num_frames)
    out = np.empty((num_frames, 3, target_h, target_w), dtype=np.uint8)
    resizer = RESIZERS[resize]
    last_source, last_result = None, None
    for i, frame in enumerate(chosen):
        if frame is not last_source:  # padded frames repeat the same array: resize it once
            last_source, last_result = frame, resizer(frame, target_h, target_w).transpose(2, 0, 1)
        out[i] = last_result
    return out
