"""How well `kit bench` overlaps decoding with inference, and whether its memory stays flat.

Builds the example video detector with `kit build` (in a subprocess: this process
never imports torch), writes generated H.264 clips, then prints:

* decode + preprocess alone, inference alone, and the pipeline's wall time over the
  same clips at the validator's batch size, with the thread counts used. The
  pipeline overlaps the two, so wall should be ≤ 0.85 × their sum;
* the peak RSS of a fresh process benching 100 and 1,000 clips (should be ≤ 1.2×).

Each timing is the best of `--repeats` runs, so other work on a shared machine
inflates the figures less. The defaults (64×64 sources, a 64×64 model) keep the
two halves of the work comparable and the whole script at a few minutes on 2 cores.

    .venv/bin/python benchmarks/bench_pipeline.py            # defaults: 300 clips, 64×64 model
    .venv/bin/python benchmarks/bench_pipeline.py --clips 200 --size 224 --threads 1 --decode-workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from validator_sim.datasets import Dataset, discover_datasets, iter_payloads, list_samples
from validator_sim.profiles import get_profile
from validator_sim.run import prepare_sample, run_bench
from validator_sim.session import create_session, read_model_io

#: Distinct clips encoded; the rest of the dataset are copies of them (decoding still runs on every file).
DISTINCT_CLIPS = 40
OVERLAP_TARGET = 0.85
MEMORY_TARGET = 1.2


def build_example(out: Path, size: int) -> Path:
    """The example video detector via the kit's own command line."""
    kit = Path(sys.executable).parent / "kit"
    subprocess.run([str(kit), "build", "video", "--model", "example-video", "--out", str(out), "--height", str(size),
                    "--width", str(size), "--force"], check=True, capture_output=True, text=True)
    return out


def write_clips(root: Path, count: int, frames: int, side: int) -> None:
    """`count` H.264 clips of `frames` frames at side×side, split between real/ and synthetic/."""
    rng = np.random.default_rng(0)
    staging = root / "_distinct"
    staging.mkdir(parents=True)
    distinct = []
    for i in range(DISTINCT_CLIPS):
        path = staging / f"clip{i:02d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width = stream.height = side
            stream.pix_fmt = "yuv420p"
            base = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
            for t in range(frames):
                pixels = np.roll(base, t, axis=1)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        distinct.append(path)
    for media_type in ("real", "synthetic"):
        (root / media_type / f"{media_type}-clips").mkdir(parents=True)
    for i in range(count):
        media_type = "real" if i % 2 == 0 else "synthetic"
        shutil.copyfile(distinct[i % DISTINCT_CLIPS], root / media_type / f"{media_type}-clips" / f"c{i:05d}.mp4")
    shutil.rmtree(staging)


def decode_alone(model_dir: Path, datasets: list[Dataset]) -> tuple[float, int]:
    """Seconds to decode and preprocess every clip on one thread, as one pipeline worker does."""
    onnx_bytes = (model_dir / "video_detector.onnx").read_bytes()
    session, _ = create_session(onnx_bytes, 1)
    profile = get_profile("onnx-2026-02")
    model_io = read_model_io(session, profile)
    count = 0
    started = time.perf_counter()
    for dataset in datasets:
        listing = list_samples(dataset)
        for _, payload in iter_payloads(listing, list(range(len(listing.keys)))):
            prepared = prepare_sample(payload, model_io, profile, None, decode_threads=1)
            assert isinstance(prepared, np.ndarray), prepared
            count += 1
    return time.perf_counter() - started, count


def inference_alone(model_dir: Path, samples: int, batch: int, threads: int) -> float:
    """Seconds of session.run over `samples` clips in batches of `batch` (one random batch, reused)."""
    onnx_bytes = (model_dir / "video_detector.onnx").read_bytes()
    session, _ = create_session(onnx_bytes, threads)
    model_io = read_model_io(session, get_profile("onnx-2026-02"))
    x = np.random.default_rng(1).integers(0, 256, size=(batch, model_io.frames, 3, model_io.height, model_io.width),
                                          dtype=np.uint8)
    session.run(None, {model_io.input_name: x})  # first run allocates; the pipeline pays it once too
    started = time.perf_counter()
    done = 0
    while done < samples:
        size = min(batch, samples - done)
        session.run(None, {model_io.input_name: x[:size]})
        done += size
    return time.perf_counter() - started


def peak_rss_mib(model_dir: Path, data: Path, samples_per_dataset: int, threads: int, workers: int) -> float:
    """Peak RSS of a fresh process that benches `2 × samples_per_dataset` clips."""
    code = (
        "import resource, sys\n"
        "from validator_sim.datasets import discover_datasets\n"
        "from validator_sim.run import run_bench\n"
        f"r = run_bench({str(model_dir)!r}, discover_datasets({str(data)!r}), mode='full', "
        f"max_per_dataset={samples_per_dataset}, threads={threads}, decode_workers={workers}, write=False)\n"
        "assert r.results['results']['total_samples'] == 2 * " + str(samples_per_dataset) + "\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=300, help="clips for the overlap measurement")
    parser.add_argument("--size", type=int, default=64, help="model input H = W")
    parser.add_argument("--frames", type=int, default=16, help="frames per generated clip")
    parser.add_argument("--source-side", type=int, default=64, help="generated clips are this many pixels square")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--decode-workers", type=int, default=1, help="pipeline decode threads")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=(100, 1000), help="clips in the two memory runs")
    parser.add_argument("--repeats", type=int, default=3, help="each timing is the best of this many runs")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        model_dir = build_example(tmp_path / "model", args.size)
        print(f"example-video built at {args.size}×{args.size} in {time.perf_counter() - started:.1f} s")
        data = tmp_path / "data"
        write_clips(data, max(args.clips, max(args.memory_sizes)), args.frames, args.source_side)
        overlap_data = tmp_path / "overlap"
        for media_type in ("real", "synthetic"):
            src = data / media_type / f"{media_type}-clips"
            dst = overlap_data / media_type / f"{media_type}-clips"
            dst.mkdir(parents=True)
            for path in sorted(src.iterdir())[: args.clips // 2]:
                (dst / path.name).symlink_to(path)
        datasets = discover_datasets(overlap_data)
        batch = get_profile("onnx-2026-02").batch_size_for("video")

        decode_s, count = min(decode_alone(model_dir, datasets) for _ in range(args.repeats))
        infer_s = min(inference_alone(model_dir, count, batch, args.threads) for _ in range(args.repeats))
        runs = [run_bench(model_dir, datasets, mode="full", threads=args.threads, decode_workers=args.decode_workers,
                          write=False).results["kit"] for _ in range(args.repeats)]
        kit = min(runs, key=lambda k: k["wall_seconds"])
        wall_s = kit["wall_seconds"]
        ratio = wall_s / (decode_s + infer_s)
        print(f"best of {args.repeats} runs each")
        print(f"clips: {count} ({args.source_side}×{args.source_side}, {args.frames} frames, H.264) → model "
              f"{args.size}×{args.size}, T={kit['target']['frames']}, batch {batch}")
        print(f"threads: onnxruntime intra-op {kit['threads']}, decode workers {kit['decode_workers']} "
              f"(1 FFmpeg thread each), cores {len(os.sched_getaffinity(0))}")
        print(f"decode + preprocess alone: {decode_s:.2f} s")
        print(f"inference alone:           {infer_s:.2f} s")
        print(f"pipeline wall:             {wall_s:.2f} s  ({count / wall_s:.1f} clips/s; inference inside "
              f"{kit['inference_seconds']:.2f} s)")
        print(f"wall / (decode + inference) = {ratio:.3f}  (target ≤ {OVERLAP_TARGET}: "
              f"{'PASS' if ratio <= OVERLAP_TARGET else 'FAIL'})")

        if not args.skip_memory:
            small, large = args.memory_sizes
            rss_small = peak_rss_mib(model_dir, data, small // 2, args.threads, args.decode_workers)
            rss_large = peak_rss_mib(model_dir, data, large // 2, args.threads, args.decode_workers)
            growth = rss_large / rss_small
            print(f"peak RSS: {small} clips {rss_small:.0f} MiB, {large} clips {rss_large:.0f} MiB, ratio {growth:.3f} "
                  f"(target ≤ {MEMORY_TARGET}: {'PASS' if growth <= MEMORY_TARGET else 'FAIL'})")
        print(json.dumps({"clips": count, "size": args.size, "decode_s": decode_s, "inference_s": infer_s,
                          "wall_s": wall_s, "ratio": ratio}))


if __name__ == "__main__":
    main()
