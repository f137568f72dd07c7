"""`kit bench` throughput on the demo data: defaults, each decode-worker count, the parts alone, and a cached rerun.

For the example video and image detectors, built by `kit build` at 224×224 into a
temporary folder (in a subprocess: this process never imports torch), on the demo
data from `kit data demo` (every split, as a miner benching many variants would), prints:

* kit throughput with its defaults (decode workers chosen by measurement, no cache);
* kit throughput with each `--decode-workers` setting from 1 to the core count;
* decode + preprocess alone (every core decoding, nothing inferring) and inference
  alone (session.run over the same pixels at the validator's batch size, all cores);
* the overlap ratio: default wall / (decode alone + inference alone). Both halves are
  timed with every core, so 1.0 means the pipeline did as well as running them one
  after the other; it goes below 1 only where one half leaves cores idle that the
  other can use (one-threaded decoding, a model that does not scale across cores);
* a run that fills an empty pixel cache, then a second (cached) run, and their ratio.

Every figure is the best of `--repeats` runs, and the runs being compared take turns
(defaults, then each worker count, then again), so a machine whose load drifts — other
jobs starting or ending — favours none of them. The scoring loop's own wall time is used
(the process start and the model load are left out; `kit bench` adds about a second).

    .venv/bin/python benchmarks/bench_speed.py                     # generates the demo data (~1.5 min) first
    .venv/bin/python benchmarks/bench_speed.py --demo demo_data --repeats 2
    .venv/bin/python benchmarks/bench_speed.py --demo demo_data --splits test --only video
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
from pathlib import Path
from typing import Any

import numpy as np

from discriminator.artifact import load_artifact
from validator_sim.datasets import Dataset, discover_datasets, iter_payloads, list_samples
from validator_sim.pixel_cache import PixelCache
from validator_sim.profiles import DEFAULT_PROFILE, get_profile
from validator_sim.run import prepare_sample, run_bench
from validator_sim.session import OnnxSession, default_threads

KIT = Path(sys.executable).parent / "kit"
DETECTORS = {"video": "example-video", "image": "example-image"}
CACHED_TARGET = 3.0


def build(modality: str, out: Path, size: int) -> Path:
    subprocess.run([str(KIT), "build", modality, "--model", DETECTORS[modality], "--out", str(out),
                    "--height", str(size), "--width", str(size), "--force"], check=True, capture_output=True, text=True)
    return out


def demo_datasets(demo: Path, splits: list[str], modality: str) -> list[Dataset]:
    """The demo datasets of every split, renamed `<split>/<name>` so the splits stay apart in one run."""
    return [dataclasses.replace(d, name=f"{split}/{d.name}")
            for split in splits for d in discover_datasets(demo / split) if d.modality == modality]


def bench(model: Path, datasets: list[Dataset], **options: Any) -> dict[str, Any]:
    """results["kit"] of one run over every sample, nothing written."""
    return run_bench(model, datasets, mode="full", write=False, **options).results["kit"]


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return min(runs, key=lambda kit: kit["wall_seconds"])


def decode_alone(model: Path, datasets: list[Dataset], workers: int) -> tuple[float, list[np.ndarray]]:
    """Seconds for `workers` threads to prepare every sample (nothing inferring), and the batches they make."""
    profile = get_profile(DEFAULT_PROFILE)
    io = OnnxSession(load_artifact(model).onnx_bytes, profile, 1).io
    batch_size = profile.batch_size_for(io.modality)
    payloads = [payload for d in datasets for listing in [list_samples(d)]
                for _, payload in iter_payloads(listing, list(range(len(listing.keys))))]
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        prepared = list(pool.map(lambda p: prepare_sample(p, io, profile, None, decode_threads=1), payloads))
    seconds = time.perf_counter() - started
    arrays = [p for p in prepared if isinstance(p, np.ndarray)]
    return seconds, [np.stack(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)]


def inference_alone(model: Path, batches: list[np.ndarray]) -> float:
    """Seconds of session.run over `batches` with every core (after one untimed warm-up batch)."""
    session = OnnxSession(load_artifact(model).onnx_bytes, get_profile(DEFAULT_PROFILE), default_threads())
    session.run(batches[0])
    started = time.perf_counter()
    for batch in batches:
        session.run(batch)
    return time.perf_counter() - started


def measure(modality: str, model: Path, datasets: list[Dataset], repeats: int, cache_dir: Path) -> dict[str, Any]:
    cores = default_threads()
    settings: dict[str, dict[str, Any]] = {"defaults": {}, **{str(w): {"decode_workers": w} for w in range(1, cores + 1)}}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    filling, cached, decode_runs, infer_runs = [], [], [], []
    for _ in range(repeats):  # one round of every setting per repeat, so drifting load hits them alike
        for name, options in settings.items():
            runs[name].append(bench(model, datasets, **options))
        cache_root = Path(tempfile.mkdtemp(dir=cache_dir))  # each round fills an empty cache, then reads it
        filling.append(bench(model, datasets, pixel_cache=PixelCache(cache_root)))
        cached.append(bench(model, datasets, pixel_cache=PixelCache(cache_root)))
        seconds, batches = decode_alone(model, datasets, cores)
        decode_runs.append(seconds)
        infer_runs.append(inference_alone(model, batches))
    defaults = fastest(runs["defaults"])
    samples = defaults["samples_handled"]
    by_workers = {w: fastest(runs[str(w)])["throughput_samples_per_s"] for w in range(1, cores + 1)}
    decode_s, infer_s = min(decode_runs), min(infer_runs)
    fill, hit = fastest(filling), fastest(cached)
    assert hit["pixel_cache"]["misses"] == 0, hit["pixel_cache"]
    return {
        "modality": modality, "samples": samples, "cores": cores, "threads": defaults["threads"],
        "default": defaults["throughput_samples_per_s"], "default_wall_s": defaults["wall_seconds"],
        "default_split": defaults["core_split"], "by_decode_workers": by_workers,
        "decode_alone_s": decode_s, "inference_alone_s": infer_s,
        "overlap_ratio": defaults["wall_seconds"] / (decode_s + infer_s),
        "cache_fill": fill["throughput_samples_per_s"], "cached": hit["throughput_samples_per_s"],
        "cached_split": hit["core_split"], "cached_over_first": fill["wall_seconds"] / hit["wall_seconds"],
    }


def report(m: dict[str, Any]) -> None:
    unit = "clips" if m["modality"] == "video" else "images"
    best_w = max(m["by_decode_workers"], key=m["by_decode_workers"].get)
    split = m["default_split"]
    print(f"\n{DETECTORS[m['modality']]} at 224×224: {m['samples']} demo {unit}, {m['cores']} cores, "
          f"{m['threads']} onnxruntime thread(s)")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, help="demo data from `kit data demo` (default: generate it, size small)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="demo splits to bench on")
    parser.add_argument("--only", choices=sorted(DETECTORS), help="one detector only")
    parser.add_argument("--size", type=int, default=224, help="model input H = W")
    parser.add_argument("--repeats", type=int, default=2, help="each figure is the best of this many runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        tmp_path = Path(tmp)
        demo = args.demo
        if demo is None:
            demo = tmp_path / "demo"
            subprocess.run([str(KIT), "data", "demo", "--out", str(demo)], check=True, capture_output=True, text=True)
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        figures = []
        for modality in [args.only] if args.only else ["video", "image"]:
            model = build(modality, tmp_path / modality, args.size)
            figures.append(measure(modality, model, demo_datasets(demo, args.splits, modality), args.repeats, tmp_path))
            report(figures[-1])
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
