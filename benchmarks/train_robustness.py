"""Does `kit train --robustness-augment` pay on the demo data? With and without it, per modality and seed.

For each (modality, seed) this trains the demo preset (`discriminator.train.presets`,
what `make demo SEED=N` trains) twice — as it is, and with `--robustness-augment P`
(default 0.5) — and scores each kept, calibrated checkpoint on the held-out test split
under `current` (3-class accuracy, multiclass sn34), reusing benchmarks/train_demo.py's
training and scoring:

* plain — the test split's pixels as the bench's base pass feeds them;
* augmented — every test sample through the evaluator's robustness chain
  (`validator_sim.robustness`: images ×0.5 down/up, JPEG q55 → WebP q75 → JPEG q80;
  clips H.264 CRF 23), the pixels of the bench's robustness pass;
* blended — 0.8 · plain + 0.2 · augmented multiclass sn34, what the network computes
  (the network draws a few samples per dataset for the robustness pass; every test
  sample is used here, for steadier figures);

plus the training seconds (decoding excluded) and the seconds spent computing the
robustness copies. "Pays" (issue 17): the blended multiclass sn34 rises while the
plain 3-class accuracy and multiclass sn34 stay at the demo targets (≥ 0.90, ≥ 0.70).

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/train_robustness.py --demo demo_data \
        [--runs video:0 video:3 image:0] [--fraction 0.5] [--threads 1]

Prints one line per training as it finishes, then the table in Markdown.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from discriminator.demo import TARGETS
from discriminator.train.data import robustness_copies
from train_demo import load_for, load_kept, score_split, train_preset

PROFILE = "current"
#: The network's blend: sn34 = (1 − w)·base + w·aug (current-contract §6).
AUG_WEIGHT = 0.2
ACCURACY_TARGET, SN34_TARGET = (target for _label, suffix, key, target in TARGETS if suffix == "-current")


def run_one(demo: Path, modality: str, seed: int, fraction: float, threads: int, work: Path) -> dict:
    """Train the preset with `robustness_augment=fraction` (0: as it is); score plain, augmented and blended."""
    out = work / f"{modality}-{seed}-{fraction}"
    result, _wall = train_preset(demo, modality, seed, threads, out, robustness_augment=fraction)
    detector, spec = load_kept(out)
    test = load_for(spec, demo / "test", PROFILE)
    augmented_test = robustness_copies(test, 1.0, 0, spec.modality, spec.height, spec.width, spec.frames,
                                       spec.class_names, PROFILE)
    plain, augmented = (score_split(detector, spec, split, PROFILE) for split in (test, augmented_test))
    return {"modality": modality, "seed": seed, "fraction": fraction, "copies": result.robustness_copies,
            "best_epoch": result.best_epoch, "epochs": result.epochs,
            "plain_accuracy": plain.multiclass_accuracy, "plain_sn34": plain.multiclass_sn34,
            "aug_accuracy": augmented.multiclass_accuracy, "aug_sn34": augmented.multiclass_sn34,
            "blended_sn34": (1 - AUG_WEIGHT) * plain.multiclass_sn34 + AUG_WEIGHT * augmented.multiclass_sn34,
            "load_s": result.load_seconds, "train_s": result.train_seconds, "test_samples": len(test),
            "augmented_test_samples": len(augmented_test), "load_average": os.getloadavg()[0]}


def meets_targets(row: dict) -> bool:
    return row["plain_accuracy"] >= ACCURACY_TARGET and row["plain_sn34"] >= SN34_TARGET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="output of `kit data demo` (train/ val/ test/)")
    parser.add_argument("--runs", nargs="+", default=["video:0", "video:3", "image:0"], help="MODALITY:SEED pairs")
    parser.add_argument("--fraction", type=float, default=0.5, help="--robustness-augment of the augmented runs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    runs = [(modality, int(seed)) for modality, seed in (run.split(":") for run in args.runs)]
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start, {args.threads} torch thread(s)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for modality, seed in runs:
            for fraction in (0.0, args.fraction):
                row = run_one(args.demo, modality, seed, fraction, args.threads, Path(work))
                rows.append(row)
                print(f"{modality} seed {seed} robustness-augment {fraction:g} ({row['copies']} copies): "
                      f"plain 3-class acc {row['plain_accuracy']:.3f} sn34 {row['plain_sn34']:.3f}; "
                      f"augmented acc {row['aug_accuracy']:.3f} sn34 {row['aug_sn34']:.3f}; blended sn34 "
                      f"{row['blended_sn34']:.3f} (best epoch {row['best_epoch']}/{row['epochs']}); load {row['load_s']:.0f} s, "
                      f"train {row['train_s']:.0f} s, load average {row['load_average']:.1f}", flush=True)
    print(f"\n| modality | seed | robustness-augment | plain: 3-class accuracy | plain: multiclass sn34 | augmented: 3-class "
          f"accuracy | augmented: multiclass sn34 | blended multiclass sn34 | best epoch | decode + copies s | train s | "
          f"plain targets |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['modality']} | {row['seed']} | {row['fraction']:g} | {row['plain_accuracy']:.3f} | {row['plain_sn34']:.3f} | "
              f"{row['aug_accuracy']:.3f} | {row['aug_sn34']:.3f} | {row['blended_sn34']:.3f} | "
              f"{row['best_epoch']}/{row['epochs']} | {row['load_s']:.0f} | {row['train_s']:.0f} | "
              f"{'met' if meets_targets(row) else '**missed**'} |")
    for modality, seed in runs:
        off, on = ([r for r in rows if (r["modality"], r["seed"], r["fraction"]) == (modality, seed, f)][0]
                   for f in (0.0, args.fraction))
        pays = on["blended_sn34"] > off["blended_sn34"] and meets_targets(on)
        print(f"{modality} seed {seed}: blended multiclass sn34 {off['blended_sn34']:.3f} → {on['blended_sn34']:.3f}, "
              f"plain 3-class accuracy {off['plain_accuracy']:.3f} → {on['plain_accuracy']:.3f}, train "
              f"{off['train_s']:.0f} → {on['train_s']:.0f} s: {'pays' if pays else 'does not pay'}")


if __name__ == "__main__":
    main()
