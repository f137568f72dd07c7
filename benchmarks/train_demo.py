"""Wall time and quality of `kit train` on the demo data: train → calibrate → build → bench on the test split.

Uses the demo preset (`discriminator.train.presets`) and prints the decode and
training time, the validation metrics before/after calibration, and accuracy / sn34
of the built ONNX detector on the held-out test split under onnx-2026-02.

    .venv/bin/python benchmarks/train_demo.py --demo demo_data --modality video [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from discriminator.build import BuildRequest, build_detector
from discriminator.train import train_detector
from discriminator.train.presets import demo_train_request
from validator_sim.datasets import discover_datasets
from validator_sim.run import run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="output of `kit data demo` (train/ val/ test/)")
    parser.add_argument("--modality", choices=("image", "video"), default="video")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    overrides = {"epochs": args.epochs} if args.epochs else {}
    print(f"{os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as work:
        work_path = Path(work)
        result = train_detector(demo_train_request(args.modality, args.demo, work_path / "ckpt", show_progress=False, **overrides),
                                on_epoch=lambda r: print(f"  epoch {r.epoch:>2}: val loss {r.val_loss:.4f} acc {r.val_accuracy:.4f} "
                                                         f"sn34 {r.val_sn34:.4f} ({r.seconds:.1f} s)", flush=True))
        cal = result.calibration
        print(f"decode {result.load_seconds:.1f} s, train {result.train_seconds:.1f} s, best epoch {result.best_epoch}")
        if cal:
            print(f"validation: T = {cal.temperature:.3f}; Brier {cal.before.brier:.4f} → {cal.after.brier:.4f}; "
                  f"ECE {cal.before.ece:.4f} → {cal.after.ece:.4f}; sn34 {cal.before.sn34:.4f} → {cal.after.sn34:.4f}")
        started = time.perf_counter()
        built = build_detector(BuildRequest(modality=args.modality, model=str(result.checkpoint), out_dir=work_path / "build"))
        print(f"build {time.perf_counter() - started:.1f} s")
        test = [d for d in discover_datasets(args.demo / "test") if d.modality == args.modality]
        bench = run_bench(built.onnx_path, test, mode="full", write=False)
        res = bench.results["results"]
        print(f"test ({res['total_samples']} samples, onnx-2026-02): accuracy {res['accuracy']:.4f}, MCC {res['binary_mcc']:.4f}, "
              f"Brier {res['binary_brier']:.4f}, sn34 {res['sn34_score']:.4f}")


if __name__ == "__main__":
    main()
