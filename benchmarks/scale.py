"""Issue 18's figures in one run: `kit check` on a ViT-L-sized bundle, then `kit bench` against the evaluator.

Runs the two benchmarks one after the other, in this order, each as its own process (so one's
memory does not weigh on the other's timings), and prints their output as they go:

1. `check_time.py --default-only [--tta]` — the whole `kit check` process on a ViT-L/16 bundle
   written from a transformers config (random weights; with `--tta` also a ViT-L/14 averaging 3 views);
2. `bench_vs_evaluator.py` — whole-process and loop throughput of `kit bench` on demo video, demo
   images and 720p clips, with the evaluator's side where gasbench is importable (or carried over
   through `--baseline`).

Arguments after `--` go to bench_vs_evaluator.py:

    .venv/bin/python benchmarks/scale.py [--tta] [-- --demo demo_data --baseline /tmp/kit-base --repeats 3]

Run it on an idle machine: other jobs slow every figure (docs/performance.md says at which load
each published figure was taken).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tta", action="store_true", help="also check the ViT-L/14 bundle with 3-view test-time augmentation")
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]
    steps = [[sys.executable, str(HERE / "check_time.py"), "--default-only", *(["--tta"] if args.tta else [])],
             [sys.executable, str(HERE / "bench_vs_evaluator.py"), *rest]]
    for command in steps:
        print(f"\n$ {' '.join(Path(part).name if part.endswith('.py') else part for part in command[1:])}", flush=True)
        code = subprocess.run(command).returncode
        if code != 0:
            print(f"{Path(command[1]).name} exited {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
