"""Media bytes → RGB uint8 arrays, the way the validator decodes them (contract §2).

Images go through Pillow (any mode → RGB, no EXIF rotation; JPEG sources are first
re-saved at the dataset cache's quality). Videos go through PyAV: the first frames
at native rate, optionally every n-th one. Anything that cannot be decoded raises
`DecodeError` with a short reason, which the pipeline counts instead of failing.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image

from validator_sim.preprocess import frame_step

#: bytes in memory (archive members, parquet cells) or a file on disk.
MediaSource = bytes | bytearray | memoryview | Path | str


class DecodeError(ValueError):
    """A sample the validator would drop; `reason` is short and groupable ("empty file", "no frames")."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _as_bytes(source: MediaSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise DecodeError("unreadable file", exc.strerror or str(exc)) from exc


def decode_image(source: MediaSource, jpeg_resave_quality: int | None = 75) -> np.ndarray:
    """An image file's pixels as H×W×3 uint8 RGB.

    `jpeg_resave_quality` mirrors the validator's dataset cache, which re-saved JPEG
    sources with Pillow at that quality before anything decoded them (None skips it).
    """
    data = _as_bytes(source)
    if not data:
        raise DecodeError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if jpeg_resave_quality is not None and img.format == "JPEG":
                buffer = io.BytesIO()
                img.convert("RGB").save(buffer, format="JPEG", quality=jpeg_resave_quality)
                with Image.open(io.BytesIO(buffer.getvalue())) as resaved:
                    rgb = resaved.convert("RGB")
            else:
                rgb = img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise DecodeError("image too large", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated image" if "truncated" in str(exc) else "not a decodable image"
        raise DecodeError(reason, str(exc)) from exc
    pixels = np.asarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise DecodeError("image has no pixels")
    return pixels


def decode_video(
    source: MediaSource,
    max_frames: int,
    frame_rate: float | None = None,
    fallback_fps: float = 30.0,
    threads: int = 1,
) -> list[np.ndarray]:
    """Up to `max_frames` RGB frames from the start of a clip, every round(fps / frame_rate)-th one when asked.

    Decoding stops as soon as enough frames are in hand. Raises `DecodeError` for an
    empty or unreadable file, a file without a video stream, no decodable frames, or
    frames of differing sizes (the validator drops such clips).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise DecodeError("empty file")
        handle: io.BytesIO | str = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        try:
            if path.stat().st_size == 0:
                raise DecodeError("empty file")
        except OSError as exc:
            raise DecodeError("unreadable file", exc.strerror or str(exc)) from exc
        handle = str(path)
    frames: list[np.ndarray] = []
    try:
        with av.open(handle, mode="r") as container:
            if not container.streams.video:
                raise DecodeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO" if threads > 1 else "SLICE"
            stream.thread_count = threads
            fps = float(stream.average_rate) if stream.average_rate else None
            step = frame_step(fps, frame_rate, fallback_fps)
            for index, frame in enumerate(container.decode(stream)):
                if index % step:
                    continue
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    break
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        if not frames:
            raise DecodeError("not a decodable video", str(exc)) from exc
        # A clip cut short mid-stream keeps the frames decoded before the damage.
    if not frames:
        raise DecodeError("no frames")
    first_shape = frames[0].shape
    if any(f.shape != first_shape for f in frames):
        raise DecodeError("frames differ in size")
    return frames
