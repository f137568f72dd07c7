"""`kit bench --shards N` against one process: whole-command wall time, samples/s, and whether the reports agree.

Each run is the real command in a fresh interpreter (`kit bench … --mode full --no-cache`),
so the figures include start-up, the extra processes' imports and the gather. By default
the model is a generated channel-sum ONNX detector on generated PNGs, a decode-bound
image workload; pass `--model` and `--data` for your own. The last column says whether the
sharded report's records (clock fields aside) and sn34 equal the single process's.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_shards.py                          # 400 PNGs, 1 and 2 processes
    PYTHONPATH=. .venv/bin/python benchmarks/bench_shards.py --shards 1 2 4 --images 2000
    PYTHONPATH=. .venv/bin/python benchmarks/bench_shards.py --model video.zip --data data/ --shards 1 4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from tests.sim_helpers import image_bytes, image_model, random_image

CLOCKED = ("inference_ms", "batch_inference_ms")


def write_images(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for media_type in ("real", "synthetic"):
        folder = root / media_type / f"{media_type}-images"
        folder.mkdir(parents=True)
        for i in range(count // 2):
            (folder / f"{i}.png").write_bytes(image_bytes(random_image(rng, 256, 320)))


def bench(model: Path, data: Path, out: Path, shards: int) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    command = [sys.executable, "-m", "discriminator.cli.app", "bench", str(model), "--data", str(data), "--mode", "full",
               "--no-cache", "--out", str(out), "--force", *(["--shards", str(shards)] if shards > 1 else [])]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 4):
        sys.exit(f"kit bench --shards {shards} failed: {done.stderr.strip().splitlines()[-1:]}")
    results = json.loads((out / "results.json").read_text())
    records = [{k: v for k, v in row.items() if k not in CLOCKED} for row in pq.read_table(out / "records.parquet").to_pylist()]
    return wall, results, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a model to bench (default: a generated ONNX detector)")
    parser.add_argument("--data", type=Path, help="a --data folder (default: generated PNGs)")
    parser.add_argument("--images", type=int, default=400, help="generated PNGs (without --data)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2], help="process counts to time; the first is the reference")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as scratch:
        root = Path(scratch)
        model = args.model or image_model(root / "model.onnx", 224, 224, num_logits=3)
        data = args.data
        if data is None:
            data = root / "data"
            write_images(data, args.images)
        reference: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        print(f"{'processes':>9}  {'wall s':>7}  {'samples/s':>9}  {'sn34':>8}  same as {args.shards[0]} process(es)")
        for count in args.shards:
            wall, results, records = bench(model, data, root / f"out{count}", count)
            handled = results["kit"]["samples_handled"]
            if reference is None:
                reference = (results, records)
            same = records == reference[1] and results["results"]["sn34_score"] == reference[0]["results"]["sn34_score"]
            print(f"{count:>9}  {wall:>7.2f}  {handled / wall:>9.1f}  {results['results']['sn34_score']:>8.4f}  "
                  f"{'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
