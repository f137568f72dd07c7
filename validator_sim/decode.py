"""Media bytes → RGB uint8 arrays, the way each evaluator era decodes them.

Images (both eras, validator-contract §2): the evaluator's dataset cache re-saves
**every** image with a bare Pillow `save` — same mode as decoded, the format chosen
by the extension (`.jpg` for JPEG/MPO, `.<format>` otherwise), Pillow's defaults —
and the evaluator then opens that copy and converts it to RGB (no EXIF rotation).

Videos:
* `decord` (profile `onnx-2026-02`): decord 0.6.0's `VideoReader`, one thread, the
  first T frames read one by one. That *is* the ONNX-era evaluator's decoder, so its
  10-bit conversion, its rotation handling and its 4- or 6-channel frames on some
  narrow clips come with it (`DecordChannelClip`).
* `pyav` (profile `current`, current-contract §4): PyAV, best video stream, one
  thread, every stride-th frame from frame 0, converted to rgb24 with the stream's
  own colour matrix and range passed explicitly, display-matrix rotation applied
  (`rotation / 90` quarter turns, current-contract §7). A decode error before the
  T-th kept frame drops the whole clip.

Frame-folder clips (a `frames` dataset, current-contract §4): the first T image files in
name order, read with OpenCV and turned to RGB.

Anything that cannot be decoded raises `DecodeError` with a short reason, which the
pipeline counts instead of failing. `decoder_versions()` names the libraries the
pixels depend on; reports and pixel caches record it.
"""

from __future__ import annotations

import io
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange
from PIL import Image

from validator_sim.datasets import IMAGE_EXTENSIONS
from validator_sim.preprocess import frame_step
from validator_sim.profiles import VideoDecoder

if TYPE_CHECKING:
    from validator_sim.profiles import Profile

#: bytes in memory (archive members, parquet cells) or a file on disk.
MediaSource = bytes | bytearray | memoryview | Path | str
#: The distributions whose versions change pixels (constraints.txt pins the evaluator's).
DECODER_DISTRIBUTIONS = ("av", "pillow", "opencv-python-headless", "numpy", "decord")
#: AVColorSpace (what a frame is tagged with) → the swscale matrix that decodes it.
#: Unspecified and unknown tags fall back to swscale's default, BT.601.
SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}
SWS_DEFAULT_MATRIX = 5
SWS_OTHER_MATRIX = 1
#: AVColorRange value of full-range ("JPEG") video.
FULL_RANGE = 2


class DecodeError(ValueError):
    """A sample the validator would drop; `reason` is short and groupable ("empty file", "no frames")."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecordChannelClip(DecodeError):
    """decord handed back frames with other than 3 channels; the ONNX-era evaluator then lost the rest of the dataset.

    decord 0.6.0 derives the channel count from the padded row size, so rows whose
    3·width bytes are not a multiple of 64 come out with 4 (width 48) or 6 (width 16) channels.
    """

    def __init__(self, shape: tuple[int, ...]):
        super().__init__(f"decord returned {shape[-1]}-channel frames", f"frame shape {list(shape)}")
        self.shape = tuple(int(d) for d in shape)


def decoder_versions() -> dict[str, str]:
    """Installed version of every library the decoded pixels depend on ("not installed" when absent)."""
    versions = {}
    for name in DECODER_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["ffmpeg (in av)"] = ".".join(str(part) for part in av.library_versions["libavcodec"])
    return versions


def decord_available() -> bool:
    """Whether decord can be imported here (its wheels exist for a few platforms only)."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def video_decoder(profile: "Profile") -> VideoDecoder:
    """The decoder a profile asks for; PyAV when it asks for decord and decord is not installed here."""
    if profile.video_decoder == "decord" and not decord_available():
        return "pyav"
    return profile.video_decoder


def _as_bytes(source: MediaSource) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise DecodeError("unreadable file", exc.strerror or str(exc)) from exc


def cache_resave(img: Image.Image) -> bytes:
    """The bytes the evaluator's dataset cache writes for `img`: `img.save(path)` with the extension it picks."""
    extension = ".jpg" if img.format in ("JPEG", "MPO") else f".{(img.format or 'png').lower()}"
    save_format = Image.registered_extensions().get(extension)
    if save_format is None:
        raise DecodeError("format the dataset cache cannot re-save", f"{img.format} (extension {extension})")
    buffer = io.BytesIO()
    img.save(buffer, format=save_format)
    return buffer.getvalue()


def _resave_is_identity(img: Image.Image) -> bool:
    """Whether `cache_resave` gives back exactly the pixels `img` holds: a single-frame PNG."""
    return img.format == "PNG" and getattr(img, "n_frames", 1) == 1


def decode_image(source: MediaSource, resave: bool = True) -> np.ndarray:
    """An image file's pixels as H×W×3 uint8 RGB, as the evaluator sees them.

    With `resave` (both profiles) the image first goes through `cache_resave`, as the
    evaluator's dataset cache did; only lossless formats come through unchanged. A still
    PNG is one of them (Pillow writes back the mode, palette and samples it read), so its
    re-save — a zlib encode, most of a PNG's decode time — is skipped: the pixels are the
    same bit for bit (tests/test_sim_media.py compares every mode the PNG reader yields).
    """
    data = _as_bytes(source)
    if not data:
        raise DecodeError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if resave and not _resave_is_identity(img):
                with Image.open(io.BytesIO(cache_resave(img))) as cached:
                    rgb = cached.convert("RGB")
            else:
                rgb = img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise DecodeError("image too large", str(exc)) from exc
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, KeyError) as exc:
        reason = "truncated image" if "truncated" in str(exc) else "not a decodable image"
        raise DecodeError(reason, str(exc)) from exc
    pixels = np.asarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise DecodeError("image has no pixels")
    return pixels


def _video_handle(source: MediaSource) -> io.BytesIO | str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise DecodeError("empty file")
        return io.BytesIO(bytes(source))
    path = Path(source)
    try:
        if path.stat().st_size == 0:
            raise DecodeError("empty file")
    except OSError as exc:
        raise DecodeError("unreadable file", exc.strerror or str(exc)) from exc
    return str(path)


def decode_video(
    source: MediaSource,
    max_frames: int,
    frame_rate: float | None = None,
    fallback_fps: float = 30.0,
    threads: int = 1,
    decoder: VideoDecoder = "pyav",
) -> list[np.ndarray]:
    """Up to `max_frames` RGB frames from the start of a clip (every round(fps / frame_rate)-th with PyAV).

    A folder (a `frames` dataset's clip) is read by `decode_frame_folder` instead.

    Decoding stops as soon as enough frames are in hand. Raises `DecodeError` for an
    empty or unreadable file, a file without a video stream, no decodable frames, a
    decode error before the last wanted frame, or frames of differing sizes.
    """
    if isinstance(source, Path) and source.is_dir():  # a `frames` dataset's clip folder: no stride, no decoder
        return decode_frame_folder(source, max_frames)
    handle = _video_handle(source)
    if decoder == "decord":
        if frame_rate:
            raise ValueError("decord reads consecutive frames; frame_rate needs the pyav decoder")
        frames = _decode_decord(handle, max_frames)
    else:
        frames = _decode_pyav(handle, max_frames, frame_rate, fallback_fps, threads)
    if not frames:
        raise DecodeError("no frames")
    first_shape = frames[0].shape
    if any(f.shape != first_shape for f in frames):
        raise DecodeError("frames differ in size")
    return frames


def decode_frame_folder(folder: Path, max_frames: int) -> list[np.ndarray]:
    """A frame-folder clip (current-contract §4): the first `max_frames` image files in name order, OpenCV → RGB."""
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[:max_frames]
    except OSError as exc:
        raise DecodeError("unreadable folder", exc.strerror or str(exc)) from exc
    frames = []
    for path in names:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DecodeError("a frame is not a decodable image", path.name)
        frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    if not frames:
        raise DecodeError("no frames")
    if any(f.shape != frames[0].shape for f in frames):
        raise DecodeError("frames differ in size")
    return frames


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """One decoded frame → H×W×3 RGB with its own colour matrix and range applied, then its rotation."""
    matrix = SWS_MATRIX.get(int(frame.colorspace), SWS_DEFAULT_MATRIX)
    colour_range = ColorRange.JPEG if int(frame.color_range) == FULL_RANGE else ColorRange.MPEG
    # PyAV only passes a matrix and range to swscale when source and destination differ; the
    # destination matrix is unused for RGB output, so name another one to make the call happen.
    unused_matrix = SWS_OTHER_MATRIX if matrix != SWS_OTHER_MATRIX else SWS_DEFAULT_MATRIX
    pixels = frame.to_ndarray(format="rgb24", src_colorspace=matrix, src_color_range=colour_range,
                              dst_colorspace=unused_matrix, dst_color_range=ColorRange.JPEG)
    rotation = int(round(frame.rotation or 0))
    if rotation % 90 == 0 and rotation % 360:
        pixels = np.ascontiguousarray(np.rot90(pixels, k=rotation // 90))
    return pixels


def _decode_pyav(handle: io.BytesIO | str, max_frames: int, frame_rate: float | None, fallback_fps: float,
                 threads: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    try:
        with av.open(handle, mode="r") as container:
            stream = container.streams.best("video")
            if stream is None:
                raise DecodeError("no video stream")
            stream.thread_type = "AUTO" if threads > 1 else "SLICE"
            stream.thread_count = threads
            fps = float(stream.average_rate) if stream.average_rate else None
            step = frame_step(fps, frame_rate, fallback_fps)
            for index, frame in enumerate(container.decode(stream)):
                if index % step:
                    continue
                frames.append(frame_to_rgb(frame))
                if len(frames) >= max_frames:
                    break
    except DecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
        # current-contract §4: an error before the T-th kept frame drops the whole clip.
        reason = "decode error mid-clip" if frames else "not a decodable video"
        raise DecodeError(reason, str(exc)) from exc
    return frames


def _decode_decord(handle: io.BytesIO | str, max_frames: int) -> list[np.ndarray]:
    import decord

    try:
        reader = decord.VideoReader(handle, ctx=decord.cpu(0), num_threads=1)
        count = min(max_frames, len(reader))
        frames = [reader[i].asnumpy() for i in range(count)]
    except decord.DECORDError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DecodeError("not a decodable video", first_line[:200]) from exc
    except (RuntimeError, OSError, ValueError) as exc:
        raise DecodeError("not a decodable video", str(exc)[:200]) from exc
    if frames and (frames[0].ndim != 3 or frames[0].shape[2] != 3):
        raise DecordChannelClip(frames[0].shape)
    return frames
