"""How long `kit` takes to start: wall time of light commands, and the import time of the CLI.

Runs each command RUNS times as a fresh process through the console script (what a
miner types), after one warm-up run, and prints min / median / max. Then imports the
CLI under `python -X importtime` and prints its cumulative import time and the
slowest modules under it, so a heavy import creeping back is easy to find.

    .venv/bin/python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--version"], ["--help"], ["models"], ["build", "--help"], ["bench", "--help"])


def time_command(kit: Path, args: list[str], runs: int) -> list[float]:
    subprocess.run([str(kit), *args], capture_output=True, check=True)  # warm the file cache
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([str(kit), *args], capture_output=True, check=True)
        seconds.append(time.perf_counter() - started)
    return seconds


def import_profile(top: int) -> tuple[float, list[tuple[float, str]]]:
    """Cumulative import time of discriminator.cli.app (s) and the `top` slowest modules by their own time."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import discriminator.cli.app"],
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        own, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        rows.append((int(own) / 1e6, int(cumulative) / 1e6, name))
    total = next(cumulative for _, cumulative, name in rows if name == "discriminator.cli.app")
    return total, sorted(((own, name) for own, _, name in rows), reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    kit = Path(sys.executable).parent / "kit"
    print(f"{'command':<22} {'min s':>7} {'median s':>9} {'max s':>7}   ({args.runs} runs each)")
    for command in COMMANDS:
        seconds = time_command(kit, command, args.runs)
        print(f"{'kit ' + ' '.join(command):<22} {min(seconds):7.3f} {statistics.median(seconds):9.3f} {max(seconds):7.3f}")
    total, slowest = import_profile(top=8)
    print(f"\nimport discriminator.cli.app: {total:.3f} s cumulative; slowest modules by own time:")
    for own, name in slowest:
        print(f"  {own * 1e3:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
