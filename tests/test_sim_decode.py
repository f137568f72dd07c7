"""Decoding as the validator does: Pillow modes to RGB, JPEG re-save, PyAV first-T frames, and clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.sim_helpers import image_bytes, random_clip, random_image, write_video
from validator_sim.decode import DecodeError, decode_image, decode_video


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "RGB"])
def test_every_image_mode_becomes_rgb_uint8(mode: str) -> None:
    rgb = Image.fromarray(random_image(np.random.default_rng(0), 12, 17))
    img = rgb.convert(mode) if mode != "I;16" else Image.fromarray(np.full((12, 17), 40000, dtype=np.uint16))
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    pixels = decode_image(buffer.getvalue())
    assert pixels.shape == (12, 17, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")))


def test_png_is_decoded_exactly(tmp_path: Path) -> None:
    pixels = random_image(np.random.default_rng(1), 30, 20)
    path = tmp_path / "a.png"
    path.write_bytes(image_bytes(pixels))
    np.testing.assert_array_equal(decode_image(path), pixels)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), pixels)


def test_jpeg_is_resaved_at_quality_75_first() -> None:
    pixels = random_image(np.random.default_rng(2), 64, 64)
    source = image_bytes(pixels, "JPEG")
    resaved = io.BytesIO()
    Image.open(io.BytesIO(source)).convert("RGB").save(resaved, format="JPEG", quality=75)
    expected = np.asarray(Image.open(io.BytesIO(resaved.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(decode_image(source), expected)
    direct = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    assert not np.array_equal(decode_image(source), direct)
    np.testing.assert_array_equal(decode_image(source, resave=False), direct)


@pytest.mark.parametrize(("data", "reason"), [(b"", "empty file"), (b"not an image at all", "not a decodable image")])
def test_bad_images_raise_decode_error_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_image(data)
    assert caught.value.reason == reason


def test_truncated_image_is_a_decode_error() -> None:
    data = image_bytes(random_image(np.random.default_rng(3), 80, 80), "PNG")
    with pytest.raises(DecodeError):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("suffix", [".mov", ".avi", ".mkv"])
def test_lossless_video_gives_the_first_frames_exactly(tmp_path: Path, suffix: str) -> None:
    frames = random_clip(np.random.default_rng(4), 7, 18, 26)
    path = write_video(tmp_path / f"clip{suffix}", frames)
    decoded = decode_video(path, max_frames=5)
    assert len(decoded) == 5
    for got, want in zip(decoded, frames):
        np.testing.assert_array_equal(got, want)
    assert len(decode_video(path.read_bytes(), max_frames=64)) == 7  # short clips are not padded here


def test_frame_rate_steps_through_the_clip(tmp_path: Path) -> None:
    frames = random_clip(np.random.default_rng(5), 12, 8, 8)
    path = write_video(tmp_path / "clip.mov", frames, fps=30)
    decoded = decode_video(path, max_frames=3, frame_rate=10.0)
    for got, index in zip(decoded, (0, 3, 6)):
        np.testing.assert_array_equal(got, frames[index])


def test_lossy_mp4_decodes_close_to_the_source(tmp_path: Path) -> None:
    frames = [np.full((32, 48, 3), (200, 40, 90), dtype=np.uint8)] * 4
    decoded = decode_video(write_video(tmp_path / "clip.mp4", frames, codec="libx264"), max_frames=16)
    assert len(decoded) == 4 and decoded[0].shape == (32, 48, 3)
    assert np.abs(decoded[0].astype(int) - frames[0]).mean() < 8


def test_bad_videos_raise_decode_error(tmp_path: Path) -> None:
    with pytest.raises(DecodeError, match="empty file"):
        decode_video(b"", 4)
    with pytest.raises(DecodeError, match="not a decodable video"):
        decode_video(b"\x00\x01garbage" * 50, 4)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty file"):
        decode_video(empty, 4)
    image_only = tmp_path / "still.png"
    image_only.write_bytes(image_bytes(random_image(np.random.default_rng(6), 8, 8)))
    assert len(decode_video(image_only, 4)) == 1  # FFmpeg reads a still as a one-frame clip; padding follows


def test_truncated_video_keeps_what_decodes_or_is_dropped(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mov", random_clip(np.random.default_rng(7), 10, 24, 24))
    data = path.read_bytes()
    with pytest.raises(DecodeError):
        decode_video(data[:200], 16)
    partial = data[: int(len(data) * 0.6)]
    try:
        frames = decode_video(partial, 16)
    except DecodeError as exc:
        assert exc.reason in ("not a decodable video", "no frames")
    else:
        assert 1 <= len(frames) <= 10
