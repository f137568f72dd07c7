"""Builders shared by the `kit bench` tests: tiny ONNX models with a closed-form output, and media files.

The models compute logits from per-channel pixel sums, which are exact in float32
(every partial sum is an integer below 2^24), followed by one multiply and one
subtract; so a test can recompute every logit bit for bit with numpy alone.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

#: The model's logits are sum_c · scale − OFFSET with scale = SPREAD / (pixels · 255).
SPREAD = np.float32(8.0)
OFFSET = np.float32(4.0)
OPSET = 17


def channel_sum_model(path: Path, shape: list, num_logits: int = 2, reduce_axes: tuple[int, ...] = (2, 3),
                      pixels_per_channel: int | None = None, input_type: int = TensorProto.UINT8) -> Path:
    """An ONNX detector whose logit k is (sum of channel k) · scale − 4, for k < num_logits (≤ 3)."""
    if pixels_per_channel is None:
        pixels_per_channel = int(np.prod([shape[a] for a in reduce_axes]))
    scale = SPREAD / np.float32(pixels_per_channel * 255)
    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["as_float", "axes"], ["sums"], keepdims=0),
        helper.make_node("Mul", ["sums", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "offset"], ["all_logits"]),
        helper.make_node("Slice", ["all_logits", "starts", "ends", "slice_axes"], ["logits"]),
    ]
    initializers = [
        helper.make_tensor("axes", TensorProto.INT64, [len(reduce_axes)], list(reduce_axes)),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [float(scale)]),
        helper.make_tensor("offset", TensorProto.FLOAT, [], [float(OFFSET)]),
        helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [num_logits]),
        helper.make_tensor("slice_axes", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes, "channel_sum_detector",
        [helper.make_tensor_value_info("pixels", input_type, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_logits])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def image_model(path: Path, height: int = 40, width: int = 48, num_logits: int = 2) -> Path:
    return channel_sum_model(path, ["batch", 3, height, width], num_logits, (2, 3))


def video_model(path: Path, frames: int | str = "frames", height: int = 32, width: int = 32, num_logits: int = 3,
                sent_frames: int = 16) -> Path:
    """A [B,T,3,H,W] detector; `sent_frames` is the T the validator will send (for the scale)."""
    t = frames if isinstance(frames, int) else sent_frames
    return channel_sum_model(path, ["batch", frames, 3, height, width], num_logits, (1, 3, 4),
                             pixels_per_channel=t * height * width)


def expected_logits(chw_or_tchw: np.ndarray, num_logits: int) -> np.ndarray:
    """The channel-sum model's logits for one preprocessed sample, computed in numpy."""
    axes = (1, 2) if chw_or_tchw.ndim == 3 else (0, 2, 3)
    sums = chw_or_tchw.astype(np.int64).sum(axis=axes).astype(np.float32)
    pixels = int(np.prod([chw_or_tchw.shape[a] for a in axes]))
    scale = SPREAD / np.float32(pixels * 255)
    return (sums * scale - OFFSET)[:num_logits]


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth-ish RGB image (a gradient plus noise), so resizing has something to interpolate."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), ((xx + yy) * 3) % 256], axis=-1)
    noise = rng.integers(0, 60, size=(height, width, 3))
    tint = rng.integers(0, 120, size=3)
    return np.clip(base * 0.6 + noise + tint, 0, 255).astype(np.uint8)


def image_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


#: Pixel format per codec: png (in .mov/.avi) and ffv1 (in .mkv) are lossless RGB; libx264 is the usual lossy mp4.
CODEC_PIX_FMT = {"png": "rgb24", "ffv1": "bgr0", "libx264": "yuv420p", "mpeg4": "yuv420p"}
#: The lossless codec each container accepts.
LOSSLESS_CODEC = {".mov": "png", ".avi": "png", ".mkv": "ffv1"}


def write_video(path: Path, frames: list[np.ndarray], codec: str | None = None, fps: int = 30) -> Path:
    """Encode RGB frames; without `codec`, a lossless one, so decoding gives the frames back exactly."""
    codec = codec or LOSSLESS_CODEC[path.suffix.lower()]
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = CODEC_PIX_FMT[codec]
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def random_clip(rng: np.random.Generator, count: int, height: int, width: int) -> list[np.ndarray]:
    return [random_image(rng, height, width) for _ in range(count)]


#: x264 settings that make an encode the same bytes on any CPU (current-contract §7), plus lossless coding.
X264_STABLE = {"x264-params": "cpu-independent=1", "qp": "0"}


def write_flat_yuv_clip(path: Path, yuv: tuple[int, int, int], count: int = 3, pix_fmt: str = "yuv420p",
                        colorspace: int = 2, color_range: int = 0, fps: int = 25, height: int = 32,
                        width: int = 64) -> Path:
    """A lossless H.264 clip whose every sample is the given (Y, U, V) code value, tagged as asked.

    Code values are at the format's depth (0–1023 for 10-bit). `colorspace`/`color_range` are
    FFmpeg's AVColorSpace/AVColorRange numbers (1 = BT.709, 5 = BT.601; 1 = limited, 2 = full).
    """
    dtype = np.uint16 if "10" in pix_fmt else np.uint8
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane, value in zip(frame.planes, yuv):
        plane.update(np.full(plane.buffer_size // np.dtype(dtype).itemsize, value, dtype).tobytes())
    frame.colorspace, frame.color_range = colorspace, color_range
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options=X264_STABLE)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.colorspace, stream.codec_context.color_range = colorspace, color_range
        for _ in range(count):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def bt_formula_rgb(yuv: tuple[int, int, int], matrix: str, full_range: bool, depth: int = 8) -> np.ndarray:
    """RGB of one (Y, U, V) sample by the textbook BT.601/BT.709 equations, rounded (an independent reference)."""
    kr, kb = {"bt709": (0.2126, 0.0722), "bt601": (0.299, 0.114)}[matrix]
    y, u, v = (value / 2 ** (depth - 8) for value in yuv)
    if full_range:
        luma, cb, cr = y, u - 128, v - 128
    else:
        luma, cb, cr = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    r, b = luma + 2 * (1 - kr) * cr, luma + 2 * (1 - kb) * cb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.round([r, g, b]), 0, 255)


def set_display_matrix(path: Path, a: int, b: int, c: int, d: int) -> Path:
    """Rewrite the MP4 track header's display matrix (tkhd) in place: [a b; c d] in 16.16 fixed point.

    (0, 1, -1, 0) is the matrix a phone writes for a portrait clip; PyAV reports it as rotation −90.
    """
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    assert box > 0 and data[box + 4] == 0, "expected a version-0 tkhd box"
    start = box + 4 + 40  # version/flags, times, track id, reserved, duration, reserved, layer, group, volume

    def fixed(value: int) -> bytes:
        return int(value * 65536).to_bytes(4, "big", signed=True)

    data[start:start + 36] = (fixed(a) + fixed(b) + bytes(4) + fixed(c) + fixed(d) + bytes(4) + bytes(8)
                              + (1 << 30).to_bytes(4, "big"))
    path.write_bytes(bytes(data))
    return path
