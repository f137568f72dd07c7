"""`kit bench` throughput on the demo data: defaults, each decode-worker count, the parts alone, and a cached rerun.

For the example video and image detectors, built by `kit build` at 224×224 into a
temporary folder (in a subprocess), on the demo data from `kit data demo` (every split,
as a miner benching many variants would), and for each format the way its era's evaluator
ran it — the ONNX file under `onnx-2026-02` (decord, onnxruntime) and the bundle under
`current` (PyAV, torch) — prints:

* kit throughput with its defaults (decode workers chosen by measurement, no cache);
* kit throughput with each `--decode-workers` setting from 1 to the core count;
* decode + preprocess alone (every core decoding, nothing inferring) and inference
  alone (the same session over as many of those pixels as the bench scores, at the
  validator's batch size, all cores);
* the overlap ratio: default wall / (decode alone + inference alone). Both halves are
  timed with every core, so 1.0 means the pipeline did as well as running them one
  after the other; it goes below 1 only where one half leaves cores idle that the
  other can use (one-threaded decoding, a model that does not scale across cores);
* a run that fills an empty pixel cache, then a second (cached) run, their ratio, and
  the cached run against inference alone (1.0: the rerun is bound by inference alone);
* the ceiling any cache has on this work, (decode + inference) / inference: a cached
  rerun skips decoding and nothing else, so it cannot beat that ratio.

Every figure is the best of `--repeats` runs, and the runs being compared take turns
(defaults, then each worker count, then again), so a machine whose load drifts — other
jobs starting or ending — favours none of them. The scoring loop's own wall time is used
(the process start and the model load are left out; `kit bench` adds about a second).

    .venv/bin/python benchmarks/bench_speed.py                     # generates the demo data (~1.5 min) first
    .venv/bin/python benchmarks/bench_speed.py --demo demo_data --repeats 2
    .venv/bin/python benchmarks/bench_speed.py --demo demo_data --splits test --only video --formats onnx
    .venv/bin/python benchmarks/bench_speed.py --source 1920x1080 --formats onnx   # network-sized clips instead

`--source WxH` generates H.264 clips of that size (16 per media type, 20 frames) and benches the
video detector on them instead of the demo data: the demo's clips are 64×64, so decoding them is
cheap beside the model, while camera and generator output is commonly 720p to 1080p, where decoding
is the larger cost (the contracts do not say what sizes the validator's datasets hold).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from discriminator.artifact import load_artifact
from validator_sim.datasets import Dataset, discover_datasets, iter_payloads, list_samples
from validator_sim.pixel_cache import PixelCache
from validator_sim.profiles import get_profile
from validator_sim.run import _frame_rate_for, open_model, prepare_sample, run_bench
from discriminator.check.context import default_threads

KIT = Path(sys.executable).parent / "kit"
DETECTORS = {"video": "example-video", "image": "example-image"}
#: Each format benched under the era whose evaluator ran it.
PROFILE_FOR = {"onnx": "onnx-2026-02", "bundle": "current"}
CACHED_TARGET = 3.0


def source_clips(root: Path, width: int, height: int, per_class: int, frames: int = 20) -> Path:
    """`per_class` H.264 clips of `width`×`height` per media type (x264 crf 23, yuv420p), with smooth content that
    pans and grain that changes every frame, so they decode like camera footage rather than flat colour."""
    import av
    import cv2

    rng = np.random.default_rng(0)
    grain = [rng.normal(0, 6, (height, width, 3)).astype(np.float32) for _ in range(4)]
    ys, xs = np.mgrid[0:height // 8, 0:width // 8].astype(np.float32)
    for media_type in ("real", "synthetic", "semisynthetic"):
        folder = root / media_type / f"{media_type}-{width}x{height}"
        folder.mkdir(parents=True)
        for index in range(per_class):
            phase, tint = rng.uniform(0, 2 * np.pi, 3), rng.uniform(60, 195, 3)
            small = np.stack([tint[c] + 40 * np.sin(xs / (8 + 4 * c) + ys / (11 + 3 * c) + phase[c]) for c in range(3)], -1)
            base = cv2.resize(small, (width + 4 * frames, height), interpolation=cv2.INTER_CUBIC)
            with av.open(str(folder / f"clip{index:03d}.mp4"), mode="w") as container:
                stream = container.add_stream("libx264", rate=30, options={"crf": "23", "preset": "veryfast"})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                for t in range(frames):
                    rgb = np.clip(base[:, 4 * t:4 * t + width] + grain[t % len(grain)], 0, 255).astype(np.uint8)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                        container.mux(packet)
                for packet in stream.encode():
                    container.mux(packet)
    return root


def build(modality: str, out: Path, size: int) -> Path:
    subprocess.run([str(KIT), "build", modality, "--model", DETECTORS[modality], "--out", str(out),
                    "--height", str(size), "--width", str(size), "--force"], check=True, capture_output=True, text=True)
    return out


def demo_datasets(demo: Path, splits: list[str], modality: str) -> list[Dataset]:
    """The demo datasets of every split, renamed `<split>/<name>` so the splits stay apart in one run."""
    return [dataclasses.replace(d, name=f"{split}/{d.name}" if split != "." else d.name)
            for split in splits for d in discover_datasets(demo / split) if d.modality == modality]


def bench(model: Path, datasets: list[Dataset], model_format: str, **options: Any) -> dict[str, Any]:
    """results["kit"] of one run over every sample, nothing written, plus `scored`: how many were scored."""
    results = run_bench(model, datasets, PROFILE_FOR[model_format], model_format=model_format, mode="full",
                        write=False, **options).results
    return {**results["kit"], "scored": results["results"]["total_samples"]}


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda kit: kit["wall_seconds"])


def decode_alone(model: Path, datasets: list[Dataset], model_format: str, workers: int,
                 scored: int) -> tuple[float, list[np.ndarray]]:
    """Seconds for `workers` threads to prepare every sample (nothing inferring), and batches of the first `scored`
    of them: the bench decodes every sample, but infers only those it scores (under onnx-2026-02 a dataset that
    decord lost is decoded and then dropped, as the ONNX-era evaluator dropped it)."""
    profile = get_profile(PROFILE_FOR[model_format])
    with ExitStack() as stack:
        session, _ = open_model(load_artifact(model, model_format), profile, 1, None, datasets, stack)
        io, frame_rate = session.io, _frame_rate_for(profile, None, session.frame_rate, [])
    batch_size = profile.batch_size_for(io.modality)
    payloads = [payload for d in datasets for listing in [list_samples(d)]
                for _, payload in iter_payloads(listing, list(range(len(listing.keys))))]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(lambda p: prepare_sample(p, io, profile, frame_rate, decode_threads=1), payloads))
    seconds = time.perf_counter() - started
    arrays = [p for p in prepared if isinstance(p, np.ndarray)]
    if len(arrays) < scored:
        raise SystemExit(f"decode alone prepared {len(arrays)} samples, fewer than the {scored} the bench scored")
    arrays = arrays[:scored]
    return seconds, [np.stack(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)]


def inference_alone(model: Path, datasets: list[Dataset], model_format: str, batches: list[np.ndarray]) -> float:
    """Seconds of the session's run over `batches` with every core (after one untimed warm-up batch)."""
    with ExitStack() as stack:
        session, _ = open_model(load_artifact(model, model_format), get_profile(PROFILE_FOR[model_format]),
                                default_threads(), None, datasets, stack)
        session.run(batches[0])
        started = time.perf_counter()
        for batch in batches:
            session.run(batch)
        return time.perf_counter() - started


def measure(modality: str, model_format: str, model: Path, datasets: list[Dataset], repeats: int,
            cache_dir: Path) -> dict[str, Any]:
    cores = default_threads()
    settings: dict[str, dict[str, Any]] = {"defaults": {}, **{str(w): {"decode_workers": w} for w in range(1, cores + 1)}}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    filling, cached, decode_runs, infer_runs = [], [], [], []
    for _ in range(repeats):  # one round of every setting per repeat, so drifting load hits them alike
        for name, options in settings.items():
            runs[name].append(bench(model, datasets, model_format, **options))
        cache_root = Path(tempfile.mkdtemp(dir=cache_dir))  # each round fills an empty cache, then reads it
        filling.append(bench(model, datasets, model_format, pixel_cache=PixelCache(cache_root)))
        cached.append(bench(model, datasets, model_format, pixel_cache=PixelCache(cache_root)))
        seconds, batches = decode_alone(model, datasets, model_format, cores, runs["defaults"][-1]["scored"])
        decode_runs.append(seconds)
        infer_runs.append(inference_alone(model, datasets, model_format, batches))
    defaults = fastest(runs["defaults"])
    samples = defaults["samples_handled"]
    by_workers = {w: fastest(runs[str(w)])["throughput_samples_per_s"] for w in range(1, cores + 1)}
    decode_s, infer_s = min(decode_runs), min(infer_runs)
    fill, hit = fastest(filling), fastest(cached)
    assert hit["pixel_cache"]["misses"] == 0, hit["pixel_cache"]
    return {
        "modality": modality, "format": model_format, "profile": PROFILE_FOR[model_format],
        "runtime": defaults["session"]["runtime"], "samples": samples, "cores": cores, "threads": defaults["threads"],
        "default": defaults["throughput_samples_per_s"], "default_wall_s": defaults["wall_seconds"],
        "default_split": defaults["core_split"], "by_decode_workers": by_workers,
        "decode_alone_s": decode_s, "inference_alone_s": infer_s,
        "overlap_ratio": defaults["wall_seconds"] / (decode_s + infer_s),
        "cache_fill": fill["throughput_samples_per_s"], "cached": hit["throughput_samples_per_s"],
        "cached_wall_s": hit["wall_seconds"], "cached_split": hit["core_split"],
        "cached_over_first": fill["wall_seconds"] / hit["wall_seconds"],
        "cached_over_inference_alone": infer_s / hit["wall_seconds"],
        "cache_ceiling": (decode_s + infer_s) / infer_s,
    }


def report(m: dict[str, Any]) -> None:
    unit = "clips" if m["modality"] == "video" else "images"
    best_w = max(m["by_decode_workers"], key=m["by_decode_workers"].get)
    split = m["default_split"]
    print(f"\n{DETECTORS[m['modality']]} {m['format']} at 224×224 under {m['profile']} ({m['runtime']}): "
          f"{m['samples']} {m['data']} {unit}, {m['cores']} cores, {m['threads']} inference thread(s)")
    print(f"  kit defaults (no cache):      {m['default']:7.1f} {unit}/s  (decode workers {split['decode_workers']} chosen by "
          f"{split['chosen_by']}: decode {split['decode_ms_per_sample']:.1f} vs inference "
          f"{split['inference_ms_per_sample']:.1f} ms/sample)")
    for workers, rate in m["by_decode_workers"].items():
        print(f"  --decode-workers {workers}:           {rate:7.1f} {unit}/s")
    print(f"  defaults / best setting ({best_w}):  {m['default'] / m['by_decode_workers'][best_w]:.3f}")
    print(f"  decode + preprocess alone:    {m['decode_alone_s']:7.2f} s  ({m['samples'] / m['decode_alone_s']:.1f} {unit}/s, "
          f"{m['cores']} workers)")
    print(f"  inference alone:              {m['inference_alone_s']:7.2f} s  ({m['samples'] / m['inference_alone_s']:.1f} {unit}/s)")
    print(f"  overlap: wall / (decode + inference) = {m['overlap_ratio']:.3f}")
    print(f"  first run, filling the cache: {m['cache_fill']:7.1f} {unit}/s")
    print(f"  second run, cached:           {m['cached']:7.1f} {unit}/s  (decode workers "
          f"{m['cached_split']['decode_workers']}) → {m['cached_over_first']:.2f}× the first"
          + (f" (target ≥ {CACHED_TARGET:g}× for the video detector: "
             f"{'PASS' if m['cached_over_first'] >= CACHED_TARGET else 'FAIL'})" if m["modality"] == "video" else ""))
    print(f"  cached run vs inference alone: {m['cached_over_inference_alone']:.2f} (1.00 = bound by inference alone); "
          f"ceiling for any cache here, (decode + inference) / inference = {m['cache_ceiling']:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="demo data from `kit data demo` (default: generate it, size small)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="demo splits to bench on")
    parser.add_argument("--only", choices=sorted(DETECTORS), help="one detector only")
    parser.add_argument("--formats", nargs="+", choices=sorted(PROFILE_FOR), default=["onnx", "bundle"],
                        help="which of the build's formats to bench (each under its own era)")
    parser.add_argument("--source", metavar="WxH", help="video only: bench on generated H.264 clips of this size "
                        "(e.g. 1920x1080) instead of the demo data, to see the cache where decoding "
                        "costs more than the model")
    parser.add_argument("--clips", type=int, default=16, help="with --source: clips per media type")
    parser.add_argument("--size", type=int, default=224, help="model input H = W")
    parser.add_argument("--repeats", type=int, default=2, help="each figure is the best of this many runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        tmp_path = Path(tmp)
        demo = args.demo
        if args.source:
            if args.only == "image":
                parser.error("--source generates clips: use it with --only video")
            args.only, args.splits = "video", ["."]
            try:
                width, height = (int(v) for v in args.source.lower().split("x"))
            except ValueError:
                parser.error(f"--source {args.source!r} is not WxH: write it like 1920x1080")
            if width < 16 or height < 16 or width % 2 or height % 2:
                parser.error(f"--source {args.source}: give an even width and height of at least 16 (H.264 4:2:0)")
            started = time.perf_counter()
            demo = source_clips(tmp_path / "source", width, height, args.clips)
            print(f"generated {3 * args.clips} clips of {width}×{height} in {time.perf_counter() - started:.0f} s")
        elif demo is None:
            demo = tmp_path / "demo"
            subprocess.run([str(KIT), "data", "demo", "--out", str(demo)], check=True, capture_output=True, text=True)
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        figures = []
        data_name = args.source if args.source else "demo"
        for modality in [args.only] if args.only else ["video", "image"]:
            model = build(modality, tmp_path / modality, args.size)
            for model_format in args.formats:
                datasets = demo_datasets(demo, args.splits, modality)
                figures.append({**measure(modality, model_format, model, datasets, args.repeats, tmp_path),
                                "data": data_name})
                report(figures[-1])
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
