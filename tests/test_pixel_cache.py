"""The preprocessed-pixel cache: same probabilities cached or not, no stale pixels, atomic writes, the size bound,
`kit cache info|clear`, the measured decode split, and a `kit bench` that starts without torch."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app
from discriminator.errors import UsageError
from tests.sim_helpers import image_bytes, image_model, random_clip, random_image, video_model, write_video
from validator_sim.datasets import discover_datasets
from validator_sim.decode import DecodeError
from validator_sim.pixel_cache import PixelCache, PixelRecipe, media_digest, parse_size, pixel_recipe
from validator_sim.profiles import get_profile
from validator_sim.run import prepare_sample, run_bench
from validator_sim.sample_feed import SampleFeed

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def media_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PNG/JPEG/WebP images, lossless clips of several lengths, and one undecodable file of each kind."""
    root = tmp_path_factory.mktemp("cache-media")
    rng = np.random.default_rng(5)
    for media_type, fmt in (("real", "PNG"), ("synthetic", "JPEG"), ("semisynthetic", "WEBP")):
        folder = root / media_type / f"{media_type}-photos"
        folder.mkdir(parents=True)
        for i in range(6):
            pixels = random_image(rng, int(rng.integers(30, 80)), int(rng.integers(30, 80)))
            (folder / f"p{i}.{fmt.lower()}").write_bytes(image_bytes(pixels, fmt))
    (root / "real" / "real-photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for media_type in ("real", "synthetic"):
        folder = root / media_type / f"{media_type}-clips"
        folder.mkdir(parents=True)
        for i in range(4):
            write_video(folder / f"c{i}.mkv", random_clip(rng, int(rng.integers(3, 12)), 36, 44))
    (root / "real" / "real-clips" / "junk.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 200)
    return root


def _by_sample(records: list[dict]) -> dict[tuple[str, str], tuple]:
    return {(r["dataset"], r["sample"]): (r["status"], r["probs"], r["p_ai"], r["predicted"]) for r in records}


def _skipped(result) -> dict:
    return {name: info["reasons"] for name, info in result.results["kit"]["skipped"].items()}


@pytest.mark.parametrize("modality", ["image", "video"])
def test_cached_runs_score_bit_identically_and_count_decode_errors(tmp_path: Path, media_tree: Path, modality: str) -> None:
    model = (image_model(tmp_path / "m.onnx", 40, 48) if modality == "image"
             else video_model(tmp_path / "m.onnx", frames=8, height=32, width=32))
    datasets = discover_datasets(media_tree)
    plain = run_bench(model, datasets, mode="full", write=False)
    first = run_bench(model, datasets, mode="full", write=False, pixel_cache=PixelCache(tmp_path / "c"))
    second = run_bench(model, datasets, mode="full", write=False, pixel_cache=PixelCache(tmp_path / "c"))

    samples = len(first.records) + sum(v["count"] for v in first.results["kit"]["skipped"].values())
    assert first.results["kit"]["pixel_cache"]["misses"] == samples
    assert first.results["kit"]["pixel_cache"]["stored"] == samples
    assert second.results["kit"]["pixel_cache"]["hits"] == samples
    assert second.results["kit"]["pixel_cache"]["misses"] == 0
    assert second.results["kit"]["pixel_cache"]["error_hits"] == 1  # the undecodable file, skipped from the cache
    assert _by_sample(plain.records) == _by_sample(first.records) == _by_sample(second.records)
    assert _skipped(plain) == _skipped(first) == _skipped(second) != {}
    assert plain.results["kit"]["pixel_cache"] is None


@pytest.mark.parametrize("modality", ["image", "video"])
def test_a_bundle_bench_reads_the_cache_and_scores_bit_identically(tmp_path: Path, media_tree: Path, modality: str) -> None:
    """The bundle path (torch, in-process, under `current`) goes through the same feed and cache as ONNX."""
    from tests.bundle_helpers import make_bundle

    bundle = make_bundle(tmp_path / "bundle", modality)
    datasets = [d for d in discover_datasets(media_tree) if d.modality == modality]
    runs = [run_bench(bundle, datasets, "current", mode="full", write=False, pixel_cache=cache)
            for cache in (None, PixelCache(tmp_path / "c"), PixelCache(tmp_path / "c"))]
    plain, first, second = runs
    assert plain.results["kit"]["model_format"] == "bundle"
    samples = len(first.records) + sum(v["count"] for v in first.results["kit"]["skipped"].values())
    assert first.results["kit"]["pixel_cache"]["stored"] == samples
    assert second.results["kit"]["pixel_cache"]["hits"] == samples and second.results["kit"]["pixel_cache"]["misses"] == 0
    assert _by_sample(plain.records) == _by_sample(first.records) == _by_sample(second.records)
    assert len({tuple(r["probs"]) for r in second.records}) > 1  # the probabilities move with the pixels
    # The ONNX-era recipe (decord, other rules) is another cache entry: nothing of `current`'s is reused.
    if modality == "video":
        other = run_bench(video_model(tmp_path / "m.onnx", frames=8, height=32, width=32), datasets, "onnx-2026-02",
                          mode="full", write=False, pixel_cache=PixelCache(tmp_path / "c"))
        assert other.results["kit"]["pixel_cache"]["hits"] == 0


def test_a_changed_key_part_never_reuses_pixels(tmp_path: Path, media_tree: Path) -> None:
    profile = get_profile("onnx-2026-02")
    base = pixel_recipe(prepare_sample, profile, "video", 32, 32, 8, None)
    variants = [
        pixel_recipe(prepare_sample, get_profile("current"), "video", 32, 32, 8, None),
        pixel_recipe(prepare_sample, profile, "video", 32, 40, 8, None),
        pixel_recipe(prepare_sample, profile, "video", 48, 32, 8, None),
        pixel_recipe(prepare_sample, profile, "video", 32, 32, 16, None),
        pixel_recipe(prepare_sample, get_profile("current"), "video", 32, 32, 8, 10.0),
        pixel_recipe(run_bench, profile, "video", 32, 32, 8, None),  # another preparing function
        dataclasses.replace(base, decoders={**base.decoders, "av": "0.0.1"}),
        dataclasses.replace(base, code="0" * 64),
    ]
    assert len({base.digest, *(v.digest for v in variants)}) == len(variants) + 1
    assert pixel_recipe(prepare_sample, profile, "video", 32, 32, 8, None).digest == base.digest  # and stable

    cache = PixelCache(tmp_path / "c")
    clip = sorted((media_tree / "real" / "real-clips").glob("c*.mkv"))[0]
    digest = media_digest(clip)
    cache.store(base, digest, np.full(base.sample_shape, 7, dtype=np.uint8))
    for variant in variants:
        assert cache.lookup(variant, digest) is None
    assert cache.lookup(base, digest) is not None

    # End to end: a bench under `current` after one under onnx-2026-02 decodes afresh and matches an uncached run.
    model = image_model(tmp_path / "m.onnx", 40, 48)
    datasets = discover_datasets(media_tree)
    run_bench(model, datasets, "onnx-2026-02", mode="full", write=False, pixel_cache=PixelCache(tmp_path / "c"))
    current = run_bench(model, datasets, "current", mode="full", write=False, pixel_cache=PixelCache(tmp_path / "c"))
    assert current.results["kit"]["pixel_cache"]["hits"] == 0
    bigger = run_bench(image_model(tmp_path / "big.onnx", 44, 48), datasets, mode="full", write=False,
                       pixel_cache=PixelCache(tmp_path / "c"))
    assert bigger.results["kit"]["pixel_cache"]["hits"] == 0
    assert _by_sample(current.records) == _by_sample(run_bench(model, datasets, "current", mode="full", write=False).records)


def _recipe() -> PixelRecipe:
    return pixel_recipe(prepare_sample, get_profile("onnx-2026-02"), "image", 64, 64, None, None)


def test_an_interrupted_write_leaves_no_readable_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, recipe = PixelCache(tmp_path / "c"), _recipe()
    pixels = np.arange(np.prod(recipe.sample_shape), dtype=np.uint64).astype(np.uint8).reshape(recipe.sample_shape)
    real_write = np.lib.format.write_array

    def write_half_then_ctrl_c(handle, array, **kwargs) -> None:
        real_write(handle, array[:1], **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(np.lib.format, "write_array", write_half_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        cache.store(recipe, "ab" * 32, pixels)
    monkeypatch.undo()
    assert cache.lookup(recipe, "ab" * 32) is None
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file() and p.name not in ("recipe.json", "CACHEDIR.TAG")]

    # A damaged entry under its real name (a disk fault) is a miss, and is removed.
    cache.store(recipe, "cd" * 32, pixels)
    entry = next((tmp_path / "c").rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    assert cache.lookup(recipe, "cd" * 32) is None
    assert not entry.exists() and cache.stats.damaged == 1
    (entry.parent.parent / "ef").mkdir()
    (entry.parent.parent / "ef" / f"{'ef' * 32}.err").write_text("{not json")
    assert cache.lookup(recipe, "ef" * 32) is None and cache.stats.damaged == 2


def test_a_killed_writer_leaves_only_complete_entries(tmp_path: Path) -> None:
    """SIGKILL a process mid-way through writing large entries: every entry under a real name loads whole."""
    code = (
        "import sys, numpy as np\n"
        "from validator_sim.pixel_cache import PixelCache, pixel_recipe\n"
        "from validator_sim.profiles import get_profile\n"
        "from validator_sim.run import prepare_sample\n"
        "recipe = pixel_recipe(prepare_sample, get_profile('onnx-2026-02'), 'video', 512, 512, 64, None)\n"
        "cache = PixelCache(sys.argv[1])\n"
        "for i in range(1000):\n"
        "    cache.store(recipe, f'{i:064x}', np.full(recipe.sample_shape, i % 251, dtype=np.uint8))\n"
    )
    root = tmp_path / "c"
    writer = subprocess.Popen([sys.executable, "-c", code, str(root)], cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and writer.poll() is None and not list(root.rglob("*.tmp")):
        time.sleep(0.002)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait() == -signal.SIGKILL, "the writer ended before it could be killed"
    recipe = pixel_recipe(prepare_sample, get_profile("onnx-2026-02"), "video", 512, 512, 64, None)
    cache = PixelCache(root)
    for entry in root.rglob("*.npy"):
        value = cache.lookup(recipe, entry.stem)
        assert value is not None, entry
        assert (value == int(entry.stem, 16) % 251).all()
    assert cache.stats.damaged == 0
    leftovers = list(root.rglob("*.tmp"))
    for temp in leftovers:  # a killed writer's temporary file is never read, and a trim removes it once stale
        os.utime(temp, (time.time() - 7200, time.time() - 7200))
    cache.trim()
    assert not list(root.rglob("*.tmp"))


def test_eviction_keeps_the_cache_within_its_bound_and_drops_the_least_recently_used(tmp_path: Path) -> None:
    recipe = _recipe()
    entry_size = int(np.prod(recipe.sample_shape)) + 128
    cache = PixelCache(tmp_path / "c", limit_bytes=5 * entry_size)
    now = time.time()
    for i in range(12):
        cache.store(recipe, f"{i:064x}", np.full(recipe.sample_shape, i, dtype=np.uint8))
        for path in (tmp_path / "c").rglob("*.npy"):  # entry i was last used i seconds after the others began
            os.utime(path, (now - 10_000 + int(path.stem, 16), now - 10_000 + int(path.stem, 16)))
        if i == 3:
            assert cache.lookup(recipe, f"{0:064x}") is not None  # used now: it must outlive its neighbours
        on_disk = sum(p.stat().st_size for p in (tmp_path / "c").rglob("*.npy"))
        assert on_disk <= cache.limit_bytes
    kept = {int(p.stem, 16) for p in (tmp_path / "c").rglob("*.npy")}
    assert 11 in kept and 1 not in kept and 2 not in kept
    assert cache.stats.evicted == 12 - len(kept)
    assert cache.info().entries == len(kept)


def test_parse_size_and_bad_sizes() -> None:
    assert parse_size("10G") == parse_size("10GiB") == 10 * 1024**3
    assert parse_size("512M") == 512 * 1024**2 and parse_size("2.5k") == 2560 and parse_size("100") == 100
    for bad in ("ten", "5 parsecs", "0", "-1G", ""):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_kit_cache_info_clear_and_bench_flags(tmp_path: Path, media_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "kit-cache"))
    monkeypatch.delenv("KIT_NO_CACHE", raising=False)
    location = tmp_path / "kit-cache" / "pixels"
    model = image_model(tmp_path / "m.onnx", 40, 48)
    data = ["--data", str(media_tree), "--mode", "full"]

    skipped = runner.invoke(app, ["bench", str(model), *data, "--no-cache", "--out", str(tmp_path / "r0")])
    assert skipped.exit_code == 0, skipped.output
    assert "pixel cache: off" in skipped.output and not location.exists()
    filled = runner.invoke(app, ["bench", str(model), *data, "--out", str(tmp_path / "r1")])
    assert filled.exit_code == 0, filled.output
    assert "0 sample(s) read" in filled.output and "19 decoded and stored" in filled.output
    reread = runner.invoke(app, ["bench", str(model), *data, "--plots", "--out", str(tmp_path / "r2")])
    assert "19 sample(s) read" in reread.output and "1 of them cached decode errors" in reread.output
    assert (tmp_path / "r2" / "reliability.png").is_file()  # plots still drawn, after the summary

    info = runner.invoke(app, ["cache", "info", "--cache-size", "1G"])
    assert info.exit_code == 0, info.output
    assert str(location) in info.output and "entries:  19 (1 cached decode errors)" in info.output
    assert "of 1.0 GiB" in info.output and "onnx-2026-02 image 40×48" in info.output

    bad = runner.invoke(app, ["bench", str(model), *data, "--cache-size", "lots", "--out", str(tmp_path / "r3")])
    assert bad.exit_code == 2 and "not a size" in bad.output

    cleared = runner.invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and "removed 19 cached sample(s)" in cleared.output
    assert "entries:  0" in runner.invoke(app, ["cache", "info"]).output
    assert (location / "CACHEDIR.TAG").is_file()  # only what the cache made is removed


def test_the_decode_split_follows_the_measured_costs() -> None:
    def slow_decode(payload: bytes) -> np.ndarray:
        time.sleep(0.02)
        return np.zeros(1, dtype=np.uint8)

    decode_bound = SampleFeed(slow_decode, cores=3)
    decode_bound.prepare(b"x")
    decode_bound.observe_inference(0.004, 4)  # the first batch is a warm-up and does not count
    decode_bound.observe_inference(0.004, 4)
    assert decode_bound.active == 3  # ≥ 20 ms to decode vs 1 ms to infer: every core decodes

    inference_bound = SampleFeed(lambda payload: np.zeros(1, dtype=np.uint8), cores=3)
    inference_bound.prepare(b"x")
    inference_bound.observe_inference(0.4, 4)
    inference_bound.observe_inference(0.4, 4)
    assert inference_bound.active == 1
    assert inference_bound.report()["core_split"]["chosen_by"] == "measurement"

    fixed = SampleFeed(slow_decode, cores=3, decode_workers=2)
    fixed.prepare(b"x")
    fixed.observe_inference(0.004, 4)
    fixed.observe_inference(0.004, 4)
    assert fixed.active == 2 and fixed.report()["core_split"]["chosen_by"] == "--decode-workers"


def test_kit_bench_on_onnx_starts_without_torch_or_transformers(tmp_path: Path, media_tree: Path) -> None:
    model = image_model(tmp_path / "m.onnx", 40, 48)
    code = (
        "import sys\n"
        "from discriminator.cli.app import app\n"
        "try:\n"
        f"    app(['bench', {str(model)!r}, '--data', {str(media_tree)!r}, '--no-cache', '--out', {str(tmp_path / 'r')!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(__import__('json').dumps(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no training stack, and no plots unless asked
    assert done.stdout.index("sn34") < done.stdout.rindex("reports in")


def test_prepare_errors_are_cached_as_errors(tmp_path: Path) -> None:
    cache, recipe = PixelCache(tmp_path / "c"), _recipe()
    calls = []

    def prepare(payload: bytes) -> DecodeError:
        calls.append(payload)
        return DecodeError("not a decodable image", "garbage")

    cached = cache.cached(prepare, recipe)
    first, second = cached(b"garbage"), cached(b"garbage")
    assert isinstance(second, DecodeError) and (second.reason, second.detail) == (first.reason, first.detail)
    assert len(calls) == 1 and cache.stats.error_hits == 1
    for _ in range(2):  # an unreadable path goes to `prepare` every time: it may be readable later
        cached(tmp_path / "missing.png")
    assert len(calls) == 3 and cache.stats.stored == 1


def test_a_rewritten_file_is_hashed_afresh_even_with_its_mtime_restored(tmp_path: Path) -> None:
    cache, recipe = PixelCache(tmp_path / "c"), _recipe()
    rng = np.random.default_rng(9)
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes(random_image(rng, 64, 64)))
    first = cache.digest(path)
    assert first == media_digest(path) and cache.digest(path) == first
    assert cache.info().remembered_files == 1

    before = path.stat()
    replacement = image_bytes(random_image(rng, 64, 64))
    path.write_bytes(replacement[: before.st_size].ljust(before.st_size, b"\0"))  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime: only ctime tells
    assert cache.digest(path) == media_digest(path) != first

    prepared = cache.cached(lambda p: np.full(recipe.sample_shape, 3, dtype=np.uint8), recipe)
    prepared(path)
    assert cache.stats.stored == 1 and cache.stats.hits == 0
    samples, _ = cache.clear()
    assert samples == 1 and not (tmp_path / "c" / "files").exists() and cache.info().remembered_files == 0


def test_kit_train_reads_the_cache_and_gets_the_same_tensors_with_or_without_it(
        tmp_path: Path, media_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from discriminator.train.data import load_split

    classes = ("real", "synthetic", "semisynthetic")
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "kit-cache"))
    monkeypatch.delenv("KIT_NO_CACHE", raising=False)
    decoded = load_split(media_tree, "image", 40, 48, None, classes)
    cached = load_split(media_tree, "image", 40, 48, None, classes)
    monkeypatch.setenv("KIT_NO_CACHE", "1")
    uncached = load_split(media_tree, "image", 40, 48, None, classes)
    assert PixelCache(tmp_path / "kit-cache" / "pixels").info().entries == 19
    for split in (cached, uncached):
        assert torch.equal(split.inputs, decoded.inputs) and split.inputs.stride() == decoded.inputs.stride()
        assert split.dropped == decoded.dropped == {"not a decodable image": 1}
        assert torch.equal(split.labels, decoded.labels)


def test_a_cache_that_cannot_be_written_never_fails_the_run(tmp_path: Path, media_tree: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    model = image_model(tmp_path / "m.onnx", 40, 48)
    datasets = discover_datasets(media_tree)
    result = run_bench(model, datasets, mode="full", write=False, pixel_cache=PixelCache(blocked))
    stats = result.results["kit"]["pixel_cache"]
    assert stats["write_failure"] and stats["stored"] == 0 and stats["damaged"] == 0
    assert _by_sample(result.records) == _by_sample(run_bench(model, datasets, mode="full", write=False).records)


def test_cache_info_marks_recipes_no_run_reads_again_and_names_the_env_size(tmp_path: Path, media_tree: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_CACHE_DIR", str(tmp_path / "kc"))
    model = image_model(tmp_path / "m.onnx", 40, 48)
    assert runner.invoke(app, ["bench", str(model), "--data", str(media_tree), "--out", str(tmp_path / "o")]).exit_code == 0
    cache = PixelCache(tmp_path / "kc" / "pixels")
    (live,) = cache.info().recipes
    assert live.stale == "" and live.digest
    # The same recipe as an older kit would have written it: another cache format, never read again.
    old_folder = tmp_path / "kc" / "pixels" / ("0" * 32)
    shutil.copytree(next(p for p in (tmp_path / "kc" / "pixels").iterdir() if p.name.startswith(live.digest)), old_folder)
    record = json.loads((old_folder / "recipe.json").read_text())
    (old_folder / "recipe.json").write_text(json.dumps({**record, "format": 1}))
    stale = [r for r in cache.info().recipes if r.stale]
    assert len(stale) == 1 and "cache format 1" in stale[0].stale
    shown = runner.invoke(app, ["cache", "info"], terminal_width=200)
    assert shown.exit_code == 0 and "1 stale recipe(s)" in shown.output
    monkeypatch.setenv("KIT_CACHE_SIZE", "banana")
    refused = runner.invoke(app, ["cache", "info"])
    assert refused.exit_code == 2 and "$KIT_CACHE_SIZE" in refused.output
