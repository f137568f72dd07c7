"""Contract §2 and §7 pixels: the 107×214 example, the size rule over many shapes, crop offsets, frame padding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from validator_sim import preprocess


def test_contract_example_107_by_214() -> None:
    assert preprocess.shortest_edge_size(107, 214, 224, 224) == (224, 447)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(107, 214, 3), dtype=np.uint8)
    out = preprocess.resize_shortest_edge_center_crop(img, 224, 224)
    full = cv2.resize(img, (447, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, full[:, 111:111 + 224])


def _independent_size(h: int, w: int, th: int, tw: int) -> tuple[int, int]:
    """The contract's rule written another way: numpy float64 and floor, clamps with np.maximum."""
    ratio_h, ratio_w = np.float64(th) / np.float64(h), np.float64(tw) / np.float64(w)
    if h < w:
        size = (th, int(np.floor(np.float64(w) * ratio_h)))
    else:
        size = (int(np.floor(np.float64(h) * ratio_w)), tw)
    return int(np.maximum(size[0], th)), int(np.maximum(size[1], tw))


def test_size_rule_matches_an_independent_derivation_over_many_sizes() -> None:
    truncations = 0
    for h in range(1, 400, 3):
        for w in range(1, 400, 7):
            for th, tw in ((224, 224), (40, 48), (256, 192)):
                got = preprocess.shortest_edge_size(h, w, th, tw)
                assert got == _independent_size(h, w, th, tw), (h, w, th, tw)
                if h < w and w * th % h == 0 and got[1] != w * th // h:
                    truncations += 1
    assert truncations > 0  # the grid includes sizes where float truncation loses a pixel, like 107×214


@pytest.mark.parametrize(("h", "w", "th", "tw"), [(107, 214, 224, 224), (300, 301, 224, 224), (50, 30, 40, 48),
                                                  (224, 224, 224, 224), (9, 500, 32, 32), (481, 64, 40, 48)])
def test_resize_pixels_equal_opencv_then_floor_offset_crop(h: int, w: int, th: int, tw: int) -> None:
    img = np.random.default_rng(h * w).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    new_h, new_w = _independent_size(h, w, th, tw)
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = (new_h - th) // 2, (new_w - tw) // 2
    out = preprocess.resize_shortest_edge_center_crop(img, th, tw)
    assert out.shape == (th, tw, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, resized[top:top + th, left:left + tw])


def test_odd_spare_pixel_goes_to_bottom_right() -> None:
    img = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    np.testing.assert_array_equal(preprocess.center_crop(img, 2, 1), img[1:3, 1:2])


def test_current_profile_crops_then_resizes() -> None:
    assert preprocess.aspect_crop_size(107, 214, 224, 224) == (107, 107)
    assert preprocess.aspect_crop_size(100, 300, 40, 48) == (100, 120)
    img = np.random.default_rng(3).integers(0, 256, size=(100, 301, 3), dtype=np.uint8)
    out = preprocess.center_crop_resize(img, 40, 48)
    expected = cv2.resize(np.ascontiguousarray(img[:, 90:210]), (48, 40), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out, expected)
    assert not np.array_equal(out, preprocess.resize_shortest_edge_center_crop(img, 40, 48))


def test_select_frames_takes_the_first_and_pads_with_the_last() -> None:
    frames = [np.full((2, 2, 3), i, dtype=np.uint8) for i in range(5)]
    assert [int(f[0, 0, 0]) for f in preprocess.select_frames(frames, 3)] == [0, 1, 2]
    assert [int(f[0, 0, 0]) for f in preprocess.select_frames(frames, 8)] == [0, 1, 2, 3, 4, 4, 4, 4]
    assert [int(f[0, 0, 0]) for f in preprocess.select_frames(frames, 4, step=2)] == [0, 2, 4, 4]
    with pytest.raises(ValueError):
        preprocess.select_frames([], 4)


def test_frame_step_rounds_fps_over_rate_and_falls_back_to_30() -> None:
    assert preprocess.frame_step(30.0, None) == 1
    assert preprocess.frame_step(30.0, 8.0) == 4
    assert preprocess.frame_step(None, 10.0) == 3
    assert preprocess.frame_step(24.0, 60.0) == 1


def test_clip_layout_is_t_c_h_w() -> None:
    frames = [np.full((10, 20, 3), (i, 2 * i, 3 * i), dtype=np.uint8) for i in range(3)]
    clip = preprocess.clip_to_tchw(frames, 5, 8, 8, "shortest_edge_center_crop")
    assert clip.shape == (5, 3, 8, 8) and clip.dtype == np.uint8
    assert [int(clip[t, 1, 0, 0]) for t in range(5)] == [0, 2, 4, 4, 4]
