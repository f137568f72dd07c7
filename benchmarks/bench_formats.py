"""Bundle bench next to ONNX bench: the same example detector, the same data, one run, under `--profile current`.

Builds the example image and video detectors with `kit build --format both` (a subprocess:
the build imports torch), writes generated images and H.264 clips, benches each model twice —
its ONNX file through onnxruntime and its bundle through torch in-process, as the evaluator
loads it — and prints samples/s for both, the inference share of the wall time, and the
largest probability difference between the twins (they should agree within the build's
tolerance).

    .venv/bin/python benchmarks/bench_formats.py                  # 96 images, 24 clips, 1 thread
    .venv/bin/python benchmarks/bench_formats.py --images 256 --clips 64 --threads 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tests.sim_helpers import image_bytes, random_clip, random_image, write_video
from validator_sim.datasets import discover_datasets
from validator_sim.run import run_bench


def build(modality: str, out: Path, size: int) -> Path:
    kit = Path(sys.executable).parent / "kit"
    subprocess.run([str(kit), "build", modality, "--model", f"example-{modality}", "--format", "both", "--out", str(out),
                    "--height", str(size), "--width", str(size), "--force"], check=True, capture_output=True, text=True)
    return out


def write_data(root: Path, images: int, clips: int) -> None:
    rng = np.random.default_rng(0)
    for media_type in ("real", "synthetic"):
        folder = root / "image" / media_type / f"{media_type}-images"
        folder.mkdir(parents=True)
        for i in range(images // 2):
            (folder / f"{i}.png").write_bytes(image_bytes(random_image(rng, 96, 128)))
        folder = root / "video" / media_type / f"{media_type}-clips"
        folder.mkdir(parents=True)
        for i in range(clips // 2):
            write_video(folder / f"{i}.mp4", random_clip(rng, 16, 96, 128), codec="libx264")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--size", type=int, default=64, help="model input H = W")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_data(root / "data", args.images, args.clips)
        print(f"{'modality':<8} {'format':<7} {'samples':>7} {'samples/s':>10} {'inference s':>12} {'wall s':>8}  max |Δp|")
        for modality in ("image", "video"):
            model = build(modality, root / f"model-{modality}", args.size)
            datasets = discover_datasets(root / "data" / modality)
            runs = {}
            for fmt in ("onnx", "bundle"):
                runs[fmt] = run_bench(model, datasets, "current", mode="full", model_format=fmt, threads=args.threads,
                                      write=False)
            onnx_probs = {(r["dataset"], r["sample"]): np.array(r["probs"]) for r in runs["onnx"].records}
            diff = max(float(np.abs(np.array(r["probs"]) - onnx_probs[(r["dataset"], r["sample"])]).max())
                       for r in runs["bundle"].records)
            for fmt, result in runs.items():
                kit = result.results["kit"]
                print(f"{modality:<8} {fmt:<7} {kit['samples_handled']:>7} {kit['throughput_samples_per_s']:>10.1f} "
                      f"{kit['inference_seconds']:>12.2f} {kit['wall_seconds']:>8.2f}  {f'{diff:.1e}' if fmt == 'bundle' else ''}")
        print(f"threads {args.threads}, model {args.size}×{args.size}, profile current, loaded machine figures are noisy")


if __name__ == "__main__":
    main()
