"""Turn demo pixels into file bytes: Pillow for images, PyAV for videos, byte-for-byte repeatable.

Images: JPEG, PNG, WebP, BMP, GIF and TIFF, in RGB, L (grey), RGBA or P (palette)
modes. Videos: H.264 (`libx264`) or MPEG-4 Part 2 (`mpeg4`) in MP4, MOV, Matroska
or AVI, yuv420p, one encoder thread, FFmpeg's bitexact flags and x264's macroblock-tree
rate control off, so that the same frames give the same bytes on the same machine
and library versions. (With mbtree on, x264 gave different bytes from one encode to
the next for some frame widths, 400 px among them.)
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ImageFormat:
    """How one image is stored: Pillow format name, file suffix, colour mode and save options."""

    pillow_format: str
    suffix: str
    mode: str = "RGB"
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class VideoFormat:
    """How one clip is stored: container, codec and the codec's options (quality, speed)."""

    container: str  # FFmpeg muxer name
    suffix: str
    codec: str
    options: tuple[tuple[str, str], ...]  # e.g. (("crf", "23"), ("preset", "veryfast")) or (("qmax", "3"),)


def encode_image(pixels: np.ndarray, fmt: ImageFormat) -> bytes:
    """Store an H×W×3 uint8 picture in `fmt`, converting to its colour mode first."""
    picture = Image.fromarray(pixels, "RGB")
    if fmt.mode == "P":
        picture = picture.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    elif fmt.mode == "RGBA":
        height, width = pixels.shape[:2]
        alpha = np.linspace(255, 96, num=width, dtype=np.float32)[None, :].repeat(height, axis=0)
        picture = picture.convert("RGBA")
        picture.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    elif fmt.mode != "RGB":
        picture = picture.convert(fmt.mode)
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt.pillow_format, **dict(fmt.options))
    return buffer.getvalue()


def encode_video(frames: list[np.ndarray], fmt: VideoFormat, fps: int) -> bytes:
    """Encode H×W×3 uint8 frames (even H and W) at `fps` into one file's bytes."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt.container, container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(fmt.codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        options = {"flags": "+bitexact", **dict(fmt.options)}
        if fmt.codec == "libx264":
            options.update({"threads": "1", "x264-params": "mbtree=0"})  # see module docstring
        stream.options = options
        for index, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
