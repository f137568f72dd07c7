"""The robustness pass (current-contract §6): a few samples per dataset, re-encoded, scored, blended into sn34.

`sn34 = (1 − w)·base + w·aug`, w = `--aug-weight` (0.2 on the network). The samples are
chosen by a separate seeded pass (seed 42, independent of `--seed`); sample i of a
dataset gets the per-sample seed 42 + i, recorded with it (the chain below has no random
step, so the seed changes nothing today).

* Image chain: if both sides stay above 256 after halving, ×0.5 with INTER_AREA and
  back up with INTER_LINEAR; JPEG q55 (4:2:0); WebP q75 (method 4); JPEG q80 — all with
  Pillow; then the profile's resize.
* Video chain: each decoded frame scaled ×0.5 with INTER_AREA (never below 256 px on
  the short side, never up), trimmed to even H/W, encoded with PyAV's libx264 at CRF 23,
  25 fps, yuv420p, decoded back with PyAV, then padded and resized as in the base pass.
  The evaluator runs the ffmpeg command-line tool; the kit uses the libx264 inside the
  PyAV wheel with `cpu-independent=1`, so its bytes are the same on every machine but
  may differ from the evaluator's ffmpeg build (docs/validator-sim.md).
"""

from __future__ import annotations

import io
import time
import zlib
from typing import TYPE_CHECKING, Any

import av
import cv2
import numpy as np
from PIL import Image

from validator_sim.datasets import Listing, binary_label, class_label, iter_payloads
from validator_sim.decode import DecodeError, decode_image, decode_video, frame_to_rgb, video_decoder
from validator_sim.preprocess import clip_to_tchw, image_to_chw
from validator_sim.scoring import score_row

if TYPE_CHECKING:
    from validator_sim.run import RunState
    from validator_sim.session import ModelSession

ROBUSTNESS_SEED = 42
#: Sides at or below this are not halved (image chain) / not scaled below (video chain).
MIN_SIDE = 256
VIDEO_CRF = 23
VIDEO_FPS = 25
X264_OPTIONS = {"crf": str(VIDEO_CRF), "x264-params": "cpu-independent=1"}
ENCODER = f"PyAV {av.__version__} libx264 crf {VIDEO_CRF}, {VIDEO_FPS} fps, yuv420p, cpu-independent=1"


def choose_robustness_samples(listing: Listing, count: int, seed: int = ROBUSTNESS_SEED) -> list[int]:
    """`count` indices of a dataset for the pass: a shuffle seeded by (seed, dataset name), in listing order."""
    rng = np.random.default_rng([seed, zlib.crc32(listing.dataset.name.encode())])
    return sorted(int(i) for i in rng.permutation(len(listing.keys))[:count])


def _pillow_roundtrip(rgb: np.ndarray, fmt: str, **params: Any) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=fmt, **params)
    with Image.open(io.BytesIO(buffer.getvalue())) as img:
        return np.asarray(img.convert("RGB"))


def augment_image(rgb: np.ndarray) -> np.ndarray:
    """The image chain on one decoded H×W×3 RGB image."""
    h, w = rgb.shape[:2]
    if h * 0.5 > MIN_SIDE and w * 0.5 > MIN_SIDE:
        small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        rgb = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb = _pillow_roundtrip(rgb, "JPEG", quality=55, subsampling=2)
    rgb = _pillow_roundtrip(rgb, "WEBP", quality=75, method=4)
    return _pillow_roundtrip(rgb, "JPEG", quality=80)


def video_scaled_size(h: int, w: int) -> tuple[int, int]:
    """(H, W) after ×0.5 with the short side kept at ≥ 256 (never enlarged), trimmed to even numbers."""
    scale = min(1.0, max(0.5, MIN_SIDE / min(h, w)))
    new_h, new_w = int(h * scale), int(w * scale)
    return max(2, new_h - new_h % 2), max(2, new_w - new_w % 2)


def augment_clip(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The video chain on decoded RGB frames: scale, trim to even, H.264 CRF 23 at 25 fps, decode back."""
    h, w = frames[0].shape[:2]
    new_h, new_w = video_scaled_size(h, w)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS, options=X264_OPTIONS)
        stream.width, stream.height, stream.pix_fmt = new_w, new_h, "yuv420p"
        for rgb in frames:
            if (new_h, new_w) != (h, w):
                rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(io.BytesIO(buffer.getvalue()), mode="r") as container:
        return [frame_to_rgb(frame) for frame in container.decode(video=0)]


def run_robustness_pass(state: "RunState", session: "ModelSession", per_dataset: int, aug_weight: float) -> dict[str, Any]:
    """Score `per_dataset` re-encoded samples of every dataset; returns the records for the report."""
    io_, profile = state.model_io, state.profile
    records: list[dict[str, Any]] = []
    skipped: dict[str, list[tuple[str, str]]] = {}
    counts: dict[str, int] = {}
    for plan in state.plans:
        if plan.listing is None or not plan.listing.keys:
            continue
        dataset = plan.dataset
        indices = choose_robustness_samples(plan.listing, per_dataset)
        counts[dataset.name] = len(indices)
        base = {"dataset": dataset.name, "media_type": dataset.media_type,
                "label": binary_label(dataset.media_type, state.rendered),
                "class_label": class_label(dataset.media_type, state.rendered)}
        batch_keys: list[tuple[str, int]] = []
        arrays: list[np.ndarray] = []
        for position, (key, payload) in enumerate(iter_payloads(plan.listing, indices)):
            try:
                if io_.modality == "image":
                    sample = image_to_chw(augment_image(decode_image(payload, profile.image_resave)),
                                          io_.height, io_.width, profile.resize)
                else:
                    assert io_.frames is not None
                    frames = decode_video(payload, io_.frames, state.frame_rate, profile.fallback_fps, 1,
                                          video_decoder(profile))
                    sample = clip_to_tchw(augment_clip(frames), io_.frames, io_.height, io_.width, profile.resize)
            except (DecodeError, cv2.error, av.FFmpegError) as exc:
                skipped.setdefault(dataset.name, []).append((key, getattr(exc, "reason", str(exc)[:120])))
                continue
            batch_keys.append((key, ROBUSTNESS_SEED + position))
            arrays.append(sample)
            if len(arrays) == state.batch_size:
                _infer(state, session, base, batch_keys, arrays, records, score_row)
                batch_keys, arrays = [], []
        if arrays:
            _infer(state, session, base, batch_keys, arrays, records, score_row)
    return {"records": records, "per_dataset": counts, "aug_weight": aug_weight, "seed": ROBUSTNESS_SEED,
            "skipped": {name: len(items) for name, items in skipped.items()}, "encoder": ENCODER}


def _infer(state: "RunState", session: "ModelSession", base: dict[str, Any], keys: list[tuple[str, int]],
           arrays: list[np.ndarray], records: list[dict[str, Any]], score_row: Any) -> None:
    """One batch of augmented samples through the model; a failure is an error (and voids a `current` run)."""
    started = time.perf_counter()
    try:
        logits = session.run(np.stack(arrays))
    except Exception as exc:  # the model's own failure: under current it voids the run, as in the base pass
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        state.errors.append(f"robustness pass: inference failed on {base['dataset']}/{keys[0][0]}: {message}")
        if state.profile.on_batch_failure[state.model_io.modality] == "invalidate_run":
            state.invalidated = f"inference failed in the robustness pass on {base['dataset']}/{keys[0][0]}: {message}"
        return
    per_sample_ms = (time.perf_counter() - started) * 1000 / len(keys)
    for (key, sample_seed), row in zip(keys, logits):
        records.append({**base, "sample": key, "aug_seed": sample_seed, "inference_ms": per_sample_ms,
                        **score_row(row, state, base["label"], base["class_label"])})
