"""Does the demo recipe land on every seed and thread count? The seed × threads table of `make demo`'s training.

For each modality, training seed (0…4 by default) and torch thread count (1 and 2),
this trains the demo preset (`discriminator.train.presets`, what `make demo SEED=N`
trains) on `kit data demo` output and scores the kept, calibrated checkpoint on the
held-out test split with the simulator's pixels and metrics, both ways `make demo`
gates on (`discriminator.demo.TARGETS`):

* today — `current` pixels (PyAV, crop-then-resize), 3-class accuracy (the entrance
  exam's reading) and multiclass sn34, what the bundle is benched with;
* ONNX era — `onnx-2026-02` pixels (decord, resize-then-crop), accuracy and binary
  sn34, what the ONNX twin is benched with;

plus the wall time of decoding and training. The built bundle and ONNX compute these
logits to ~1e-6 (`kit build` verifies it), so these are the figures `kit bench` prints
for the built model; `make demo` itself runs the real build → check → bench → package.

    .venv/bin/python benchmarks/train_demo.py --demo demo_data [--modality video image] [--seeds 0 1 2 3 4] [--threads 1 2]

Prints one line per run as it finishes, then the table in Markdown.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from discriminator.demo import TARGETS
from discriminator.sources.checkpoint import read_checkpoint
from discriminator.spec import DetectorSpec
from discriminator.train.calibration import ScoreCard, score_logits
from discriminator.train.data import LoadedSplit, load_split
from discriminator.train.presets import DEMO_PRESETS, demo_train_request
from discriminator.train.trainer import TrainResult, _prepare_model, predict_logits, train_detector
from discriminator.wrapper import Detector


def train_preset(demo: Path, modality: str, seed: int, threads: int, out: Path, **overrides: Any) -> tuple[TrainResult, float]:
    """Train the demo preset (plus `overrides`) with `seed` on `threads` torch threads into `out`; (result, wall s)."""
    torch.set_num_threads(threads)
    options = {**DEMO_PRESETS[modality].get("source_options", {}), "seed": seed}
    started = time.perf_counter()
    result = train_detector(demo_train_request(modality, demo, out, force=True, show_progress=False, seed=seed,
                                               source_options=options, **overrides))
    assert result is not None
    return result, time.perf_counter() - started


def load_kept(checkpoint: Path) -> tuple[Detector, DetectorSpec]:
    """The checkpoint's detector (its logits at T = 1) and its spec (the calibrated temperature)."""
    prepared = _prepare_model(read_checkpoint(checkpoint)["modality"], str(checkpoint), None, None, None, {})
    return prepared.detector, prepared.spec


def load_for(spec: DetectorSpec, split: Path, profile: str) -> LoadedSplit:
    """Every decodable sample of `split` with `profile`'s pixels at the detector's size and frame count."""
    return load_split(split, spec.modality, spec.height, spec.width, spec.frames, spec.class_names, profile)


def score_split(detector: Detector, spec: DetectorSpec, split: LoadedSplit, profile: str) -> ScoreCard:
    """The detector scored on `split` as `kit bench` scores the built model under `profile` (at its temperature)."""
    logits = predict_logits(detector, split.inputs)
    return score_logits(logits.numpy(), split.media_labels, spec.temperature, profile)


def run_one(demo: Path, modality: str, seed: int, threads: int, work: Path) -> dict:
    """Train the preset with `seed` on `threads` torch threads; score the checkpoint on the test split both ways."""
    out = work / f"{modality}-{seed}-{threads}"
    result, wall = train_preset(demo, modality, seed, threads, out)
    detector, spec = load_kept(out)
    cards = {}
    for profile in ("current", "onnx-2026-02"):
        test = load_for(spec, demo / "test", profile)
        cards[profile] = score_split(detector, spec, test, profile)
    today, onnx = cards["current"], cards["onnx-2026-02"]
    return {"modality": modality, "seed": seed, "threads": threads, "best_epoch": result.best_epoch, "epochs": result.epochs,
            "multiclass_accuracy": today.multiclass_accuracy, "multiclass_sn34": today.multiclass_sn34,
            "accuracy": onnx.accuracy, "sn34": onnx.sn34, "temperature": spec.temperature,
            "decode_s": result.load_seconds, "train_s": result.train_seconds, "wall_s": wall, "test_samples": len(test)}


#: Row key per `discriminator.demo.TARGETS` entry, in its order.
ROW_KEYS = ("multiclass_accuracy", "multiclass_sn34", "accuracy", "sn34")


def verdict(row: dict) -> str:
    ok = all(row[key] >= target for key, (_label, _suffix, _key, target) in zip(ROW_KEYS, TARGETS))
    return "pass" if ok else "**MISS**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="output of `kit data demo` (train/ val/ test/)")
    parser.add_argument("--modality", nargs="+", choices=("image", "video"), default=["video", "image"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for modality in args.modality:
            for seed in args.seeds:
                for threads in args.threads:
                    row = run_one(args.demo, modality, seed, threads, Path(work))
                    rows.append(row)
                    print(f"{modality} seed {seed} threads {threads}: today 3-class acc {row['multiclass_accuracy']:.3f} "
                          f"multiclass sn34 {row['multiclass_sn34']:.3f}; ONNX era acc {row['accuracy']:.3f} "
                          f"binary sn34 {row['sn34']:.3f} (best epoch {row['best_epoch']}/{row['epochs']}, T {row['temperature']:.2f}) "
                          f"train {row['train_s']:.0f} s, wall {row['wall_s']:.0f} s, load {os.getloadavg()[0]:.1f} "
                          f"— {verdict(row)}", flush=True)
    print("\n| modality | seed | threads | today: 3-class accuracy | today: multiclass sn34 | ONNX era: accuracy | "
          "ONNX era: binary sn34 | best epoch | train s | wall s | targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['modality']} | {row['seed']} | {row['threads']} | {row['multiclass_accuracy']:.3f} | "
              f"{row['multiclass_sn34']:.3f} | {row['accuracy']:.3f} | {row['sn34']:.3f} | {row['best_epoch']}/{row['epochs']} | "
              f"{row['train_s']:.0f} | {row['wall_s']:.0f} | {verdict(row)} |")
    for modality in args.modality:
        mine = [r for r in rows if r["modality"] == modality]
        if mine:
            print(f"{modality}: min " + ", ".join(f"{label} {min(r[key] for r in mine):.3f} (≥ {target})"
                                                 for key, (label, _s, _k, target) in zip(ROW_KEYS, TARGETS))
                  + f"; {sum(verdict(r) == 'pass' for r in mine)}/{len(mine)} pass")

if __name__ == "__main__":
    main()
