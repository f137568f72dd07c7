"""How long `kit data demo` takes: wall and CPU seconds, samples and megabytes per size preset.

    .venv/bin/python benchmarks/demo_data_generation.py                 # small, one process per core
    .venv/bin/python benchmarks/demo_data_generation.py --size medium --workers 1

Prints one line per run; the machine's load average is printed too, because on a
shared machine other jobs' load shows up directly in the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from discriminator.demo_data import generate_demo_data


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--modality", default="both")
    parser.add_argument("--workers", type=int, default=0, help="0 = one process per CPU core")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        load_before = os.getloadavg()[0]
        cpu_start, wall_start = cpu_seconds(), time.perf_counter()
        summary = generate_demo_data(Path(scratch) / "demo", size=args.size, modality=args.modality,
                                     workers=args.workers, show_progress=False)
        wall, cpu = time.perf_counter() - wall_start, cpu_seconds() - cpu_start
    print(f"size={args.size} modality={args.modality} workers={args.workers or os.cpu_count()} "
          f"samples={summary.count()} (images {summary.count(modality='image')}, videos {summary.count(modality='video')}) "
          f"size_on_disk={summary.total_bytes / 1e6:.1f}MB wall={wall:.1f}s cpu={cpu:.1f}s "
          f"load_avg_before={load_before:.1f} after={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
