"""Awkward media decoded as each evaluator era decodes it, pinned against independent derivations.

Images: every file goes through the dataset cache's Pillow re-save (own mode, own format,
Pillow defaults) before `convert("RGB")`; the expected pixels are rebuilt here from the
source with explicit Pillow calls and numpy formulas. Video: `current` (PyAV) is compared
with the textbook BT.601/BT.709 equations on lossless clips of known code values, and
`onnx-2026-02` (decord) with OpenCV's own FFmpeg; rotation is checked on clips whose
display matrix the test writes itself.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from tests.sim_helpers import (
    bt_formula_rgb,
    random_clip,
    random_image,
    set_display_matrix,
    write_flat_yuv_clip,
    write_video,
)
from validator_sim.decode import DecodeError, decode_image, decode_video, decoder_versions
from validator_sim.preprocess import clip_to_tchw

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints.txt"


def _save(img: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _pillow_cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """Pillow's CMYK→RGB written out: R = (255 − K) − C·(255 − K)/255 with its rounding division by 255."""
    c = cmyk.astype(np.int64)
    inverse_k = 255 - c[..., 3]

    def muldiv255(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        t = a * b + 128
        return ((t >> 8) + t) >> 8

    return np.stack([np.clip(inverse_k - muldiv255(c[..., i], inverse_k), 0, 255) for i in range(3)], -1).astype(np.uint8)


def test_cmyk_jpeg_is_resaved_in_cmyk_not_rgb() -> None:
    cmyk = Image.fromarray(random_image(np.random.default_rng(0), 48, 64)).convert("CMYK")
    source = _save(cmyk, "JPEG", quality=92)
    cached = Image.open(io.BytesIO(_save(Image.open(io.BytesIO(source)), "JPEG", quality=75)))
    assert cached.mode == "CMYK"
    expected = _pillow_cmyk_to_rgb(np.asarray(cached))
    got = decode_image(source)
    np.testing.assert_array_equal(got, expected)
    rgb_first = Image.open(io.BytesIO(_save(Image.open(io.BytesIO(source)).convert("RGB"), "JPEG", quality=75)))
    assert not np.array_equal(got, np.asarray(rgb_first))  # the kit's old route gave other pixels


def test_webp_is_resaved_as_lossy_webp_at_quality_80() -> None:
    source = _save(Image.fromarray(random_image(np.random.default_rng(1), 40, 56)), "WEBP", lossless=True)
    expected = np.asarray(Image.open(io.BytesIO(_save(Image.open(io.BytesIO(source)), "WEBP", quality=80))).convert("RGB"))
    got = decode_image(source)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, np.asarray(Image.open(io.BytesIO(source)).convert("RGB")))


def test_palette_png_comes_through_as_its_palette_colours() -> None:
    rng = np.random.default_rng(2)
    indices = rng.integers(0, 16, size=(20, 30), dtype=np.uint8)
    palette = rng.integers(0, 256, size=(16, 3), dtype=np.uint8)
    img = Image.fromarray(indices, "P")
    img.putpalette(palette.reshape(-1).tolist())
    np.testing.assert_array_equal(decode_image(_save(img, "PNG")), palette[indices])


def test_16_bit_png_is_clipped_to_255() -> None:
    values = np.array([[0, 7, 254, 255, 256, 40000, 65535]], dtype=np.uint16).repeat(3, axis=0)
    got = decode_image(_save(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(got, np.repeat(np.minimum(values, 255).astype(np.uint8)[..., None], 3, axis=-1))


def test_mpo_is_resaved_as_a_jpeg_of_its_first_frame() -> None:
    rng = np.random.default_rng(3)
    first, second = (Image.fromarray(random_image(rng, 32, 48)) for _ in range(2))
    source = _save(first, "MPO", save_all=True, append_images=[second], quality=95)
    assert Image.open(io.BytesIO(source)).format == "MPO"
    first_frame = Image.open(io.BytesIO(source))  # frame 0 of the MPO
    expected = np.asarray(Image.open(io.BytesIO(_save(first_frame, "JPEG", quality=75))).convert("RGB"))
    got = decode_image(source)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, np.asarray(Image.open(io.BytesIO(source)).convert("RGB")))


def test_decoder_versions_match_the_pins() -> None:
    pins = dict(line.split("==") for line in CONSTRAINTS.read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    versions = decoder_versions()
    for name in ("av", "pillow", "opencv-python-headless", "numpy", "decord"):
        assert versions[name] == pins[name], f"{name} {versions[name]} is installed but constraints.txt pins {pins[name]}"


# Y, U, V code values whose BT.601 and BT.709 readings differ by ≥ 10 levels.
SAMPLE_YUV = (120, 90, 200)


@pytest.mark.parametrize(("colorspace", "matrix", "other"), [(1, "bt709", "bt601"), (5, "bt601", "bt709"),
                                                             (2, "bt601", "bt709")])
@pytest.mark.parametrize("full_range", [False, True])
@pytest.mark.parametrize(("pix_fmt", "depth", "tolerance"), [("yuv420p", 8, 1), ("yuv420p10le", 10, 3)])
def test_current_video_applies_the_streams_matrix_and_range(tmp_path: Path, colorspace: int, matrix: str, other: str,
                                                           full_range: bool, pix_fmt: str, depth: int,
                                                           tolerance: int) -> None:
    yuv = tuple(v * 2 ** (depth - 8) for v in SAMPLE_YUV)
    clip = write_flat_yuv_clip(tmp_path / "tagged.mp4", yuv, pix_fmt=pix_fmt, colorspace=colorspace,
                               color_range=2 if full_range else 1)
    frames = decode_video(clip, 2, decoder="pyav")
    got = frames[0][16, 32].astype(int)
    expected = bt_formula_rgb(yuv, matrix, full_range, depth)
    assert np.abs(got - expected).max() <= tolerance, (got, expected)
    assert np.abs(got - bt_formula_rgb(yuv, other, full_range, depth)).max() >= 10
    assert np.abs(got - bt_formula_rgb(yuv, matrix, not full_range, depth)).max() >= 10


@pytest.mark.parametrize(("colorspace", "color_range"), [(1, 1), (5, 2), (2, 1)])
def test_onnx_era_8_bit_video_is_decords_and_agrees_with_opencv(tmp_path: Path, colorspace: int,
                                                                 color_range: int) -> None:
    clip = write_flat_yuv_clip(tmp_path / "tagged.mp4", SAMPLE_YUV, colorspace=colorspace, color_range=color_range,
                               height=48, width=96)
    frames = decode_video(clip, 2, decoder="decord")
    capture = cv2.VideoCapture(str(clip))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    np.testing.assert_array_equal(frames[0], bgr[..., ::-1])


@pytest.mark.parametrize(("colorspace", "matrix", "full_range"), [(1, "bt709", False), (1, "bt709", True),
                                                                   (5, "bt601", True), (2, "bt601", False)])
def test_onnx_era_10_bit_video_follows_its_tags_where_pyavs_default_rgb24_does_not(
        tmp_path: Path, colorspace: int, matrix: str, full_range: bool) -> None:
    yuv = tuple(v * 4 for v in SAMPLE_YUV)
    clip = write_flat_yuv_clip(tmp_path / "ten.mp4", yuv, pix_fmt="yuv420p10le", colorspace=colorspace,
                               color_range=2 if full_range else 1, height=48, width=96)
    got = decode_video(clip, 1, decoder="decord")[0][16, 32].astype(int)
    expected = bt_formula_rgb(yuv, matrix, full_range, 10)
    assert np.abs(got - expected).max() <= 3, (got, expected)
    with av.open(str(clip)) as container:
        default = next(container.decode(video=0)).to_ndarray(format="rgb24")[16, 32].astype(int)
    if (matrix, full_range) != ("bt601", False):  # PyAV's plain rgb24 reads every 10-bit clip as limited BT.601
        assert np.abs(default - expected).max() >= 10


@pytest.mark.parametrize(("matrix", "quarter_turns"), [((0, 1, -1, 0), -1), ((-1, 0, 0, -1), 2), ((0, -1, 1, 0), 1)])
def test_display_matrix_rotation_is_applied_by_both_decoders(tmp_path: Path, matrix: tuple[int, int, int, int],
                                                             quarter_turns: int) -> None:
    upright = write_video(tmp_path / "upright.mp4", random_clip(np.random.default_rng(4), 3, 64, 96), codec="libx264")
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(upright.read_bytes())
    set_display_matrix(rotated, *matrix)
    with av.open(str(rotated)) as container:
        assert next(container.decode(video=0)).rotation % 360 == quarter_turns * 90 % 360
    plain = decode_video(upright, 3, decoder="pyav")
    for decoder in ("pyav", "decord"):
        turned = decode_video(rotated, 3, decoder=decoder)
        for got, want in zip(turned, plain):
            np.testing.assert_array_equal(got, np.rot90(want, k=quarter_turns))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("decoder", ["pyav", "decord"])
def test_short_clips_are_padded_with_their_last_frame(tmp_path: Path, count: int, decoder: str) -> None:
    frames = random_clip(np.random.default_rng(count), count, 24, 40)
    clip = write_video(tmp_path / "short.mov", frames)
    tchw = clip_to_tchw(decode_video(clip, 4, decoder=decoder), 4, 24, 40, "center_crop_resize")
    expected = [frames[min(i, count - 1)].transpose(2, 0, 1) for i in range(4)]
    np.testing.assert_array_equal(tchw, np.stack(expected))


@pytest.mark.parametrize(("fps", "step"), [(25, 3), (30, 4)])
def test_frame_rate_stride_follows_the_clips_own_rate(tmp_path: Path, fps: int, step: int) -> None:
    frames = random_clip(np.random.default_rng(fps), 14, 16, 16)
    clip = write_video(tmp_path / "clip.mov", frames, fps=fps)
    decoded = decode_video(clip, 4, frame_rate=8.0, decoder="pyav")
    assert len(decoded) == 4
    for got, index in zip(decoded, range(0, 4 * step, step)):
        np.testing.assert_array_equal(got, frames[index])


def test_a_decode_error_before_the_last_wanted_frame_drops_the_whole_clip(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mov", random_clip(np.random.default_rng(9), 6, 32, 32))
    with av.open(str(clip)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    damaged = bytearray(clip.read_bytes())
    target = packets[3]
    damaged[target.pos + 8: target.pos + target.size] = bytes(target.size - 8)  # keep the PNG signature, zero the rest
    path = tmp_path / "damaged.mov"
    path.write_bytes(bytes(damaged))
    assert len(decode_video(path, 2, decoder="pyav")) == 2  # the damage lies after the frames wanted
    with pytest.raises(DecodeError) as caught:
        decode_video(path, 6, decoder="pyav")
    assert caught.value.reason == "decode error mid-clip"


def test_a_decord_n_channel_clip_loses_the_rest_of_its_dataset_only_in_the_onnx_era(tmp_path: Path) -> None:
    from tests.sim_helpers import video_model
    from validator_sim.datasets import discover_datasets
    from validator_sim.run import run_bench

    folder = tmp_path / "data" / "real" / "cams"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(10)
    for i in range(10):
        width = 48 if i == 5 else 64  # decord 0.6.0 returns 4 channels at width 48
        write_video(folder / f"c{i}.mp4", random_clip(rng, 3, 32, width), codec="libx264")
    model = video_model(tmp_path / "v.onnx", 4, 32, 32, num_logits=2)
    datasets = discover_datasets(tmp_path / "data")
    onnx_era = run_bench(model, datasets, "onnx-2026-02", mode="full", write=False, threads=1)
    assert sorted(r["sample"] for r in onnx_era.records) == ["c0.mp4", "c1.mp4", "c2.mp4", "c3.mp4"]
    reasons = onnx_era.results["kit"]["skipped"]["cams"]["reasons"]
    assert reasons["decord returned 4-channel frames"] == 1 and sum(reasons.values()) == 6
    assert any("stacks each batch outside its error handling" in n for n in onnx_era.results["kit"]["validator_treatment"])
    # Through the pixel cache, filled then read, the clip stays one that loses the rest of its dataset.
    from validator_sim.pixel_cache import PixelCache

    for expected_hits in (0, 10):
        cached = run_bench(model, datasets, "onnx-2026-02", mode="full", write=False, threads=1,
                           pixel_cache=PixelCache(tmp_path / "cache"))
        assert cached.results["kit"]["pixel_cache"]["hits"] == expected_hits
        assert [r["sample"] for r in cached.records] == [r["sample"] for r in onnx_era.records]
        assert [r["probs"] for r in cached.records] == [r["probs"] for r in onnx_era.records]
        assert cached.results["kit"]["skipped"] == onnx_era.results["kit"]["skipped"]
        assert cached.results["kit"]["validator_treatment"] == onnx_era.results["kit"]["validator_treatment"]
    today = run_bench(model, datasets, "current", mode="full", write=False, threads=1)
    assert len(today.records) == 10


def _pillow_chain(rgb: np.ndarray) -> np.ndarray:
    for fmt, params in (("JPEG", {"quality": 55, "subsampling": 2}), ("WEBP", {"quality": 75, "method": 4}),
                        ("JPEG", {"quality": 80})):
        rgb = np.asarray(Image.open(io.BytesIO(_save(Image.fromarray(rgb), fmt, **params))).convert("RGB"))
    return rgb


@pytest.mark.parametrize(("height", "width", "halved"), [(540, 600, True), (500, 600, False)])
def test_robustness_image_chain_halves_only_when_both_sides_stay_above_256(height: int, width: int,
                                                                            halved: bool) -> None:
    from validator_sim.robustness import augment_image

    rgb = random_image(np.random.default_rng(height), height, width)
    start = rgb
    if halved:
        small = cv2.resize(rgb, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        start = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(augment_image(rgb), _pillow_chain(start))


@pytest.mark.parametrize(("size", "scaled"), [((600, 720), (300, 360)), ((300, 400), (256, 340)), ((200, 250), (200, 250))])
def test_robustness_video_chain_scales_trims_and_reencodes_reproducibly(size: tuple[int, int],
                                                                         scaled: tuple[int, int]) -> None:
    from validator_sim.robustness import augment_clip, video_scaled_size

    assert video_scaled_size(*size) == scaled
    frames = [np.full((*size, 3), value, dtype=np.uint8) for value in (60, 120, 180)]
    first, again = augment_clip(frames), augment_clip(frames)
    assert len(first) == 3 and first[0].shape == (*scaled, 3)
    for a, b, source in zip(first, again, (60, 120, 180)):
        np.testing.assert_array_equal(a, b)
        assert abs(float(a.mean()) - source) < 3  # flat frames survive CRF 23 nearly unchanged


def _png_cases() -> dict[str, bytes]:
    """A still PNG of every mode Pillow's PNG reader yields, and the odd encodings (interlaced, 16-bit, tRNS, ICC)."""
    rng = np.random.default_rng(11)
    rgb = random_image(rng, 23, 37)
    cases = {mode: _save(Image.fromarray(rgb).convert(mode), "PNG") for mode in ("1", "L", "LA", "RGB", "RGBA")}
    palette = Image.fromarray(rgb).quantize(colors=13)
    cases["P"] = _save(palette, "PNG")
    cases["P with transparency"] = _save(palette, "PNG", transparency=3)
    cases["L with transparency"] = _save(Image.fromarray(rgb).convert("L"), "PNG", transparency=17)
    cases["P 2-bit"] = _save(Image.fromarray(rgb).quantize(colors=4), "PNG", bits=2)
    cases["I;16"] = _save(Image.fromarray(rng.integers(0, 65536, (19, 29), dtype=np.uint16)), "PNG")
    cases["interlaced RGB"] = _interlaced_png(rgb)
    cases["16-bit RGB"] = cv2.imencode(".png", rng.integers(0, 65536, (17, 21, 3), dtype=np.uint16))[1].tobytes()
    cases["RGB with ICC"] = _save(Image.fromarray(rgb), "PNG", icc_profile=b"\0" * 128)
    cases["compress level 9"] = _save(Image.fromarray(rgb), "PNG", compress_level=9)
    return cases


def _interlaced_png(rgb: np.ndarray) -> bytes:
    """An Adam7-interlaced 8-bit RGB PNG, built by hand (Pillow and OpenCV write none): the seven passes' scanlines."""
    import struct
    import zlib

    height, width = rgb.shape[:2]
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        sub = rgb[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\0" + row.tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("case", sorted(_png_cases()))
def test_a_still_png_skips_the_resave_with_the_same_pixels_bit_for_bit(case: str) -> None:
    """The evaluator's cache re-saves a PNG as PNG; the kit skips that encode, and must see exactly what it would."""
    source = _png_cases()[case]
    with Image.open(io.BytesIO(source)) as original:
        assert original.format == "PNG"
        resaved = _save(original, "PNG")  # what the evaluator's cache writes (`image.save(path)`, Pillow defaults)
    expected = np.asarray(Image.open(io.BytesIO(resaved)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(source), expected)


def test_a_damaged_png_is_dropped_for_the_same_reason_as_through_the_resave() -> None:
    source = _save(Image.fromarray(random_image(np.random.default_rng(12), 64, 64)), "PNG")
    truncated = source[: len(source) // 2]
    with pytest.raises(DecodeError) as caught:
        decode_image(truncated)
    with pytest.raises((OSError, SyntaxError, ValueError, EOFError)) as through_resave:
        with Image.open(io.BytesIO(truncated)) as img:
            _save(img, "PNG")
    expected = "truncated image" if "truncated" in str(through_resave.value) else "not a decodable image"
    assert caught.value.reason == expected
