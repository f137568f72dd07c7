"""Sharded `kit bench`: real processes (`--shards 2`, and torchrun on gloo) against one process on the same data.

Every comparison is of what a single process wrote: the same records in the same
order with the same probabilities bit for bit, and the same metrics, skipped samples and
errors; only wall-clock figures may differ. The failing shards are real too: a bundle
whose `load_model` refuses to load, or dies, in the second process only (RANK=1).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app
from tests.bundle_helpers import make_bundle, model_source
from tests.sim_helpers import image_bytes, image_model, random_image

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
#: Small batches, so each dataset spans several and both shards get batches of every source format.
COMMON = ["--mode", "full", "--batch-size", "4", "--no-cache"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images as a folder (with an undecodable file), a zip, a tar.gz and a parquet file: 49 samples."""
    root = tmp_path_factory.mktemp("shard-data")
    rng = np.random.default_rng(5)

    def picture() -> bytes:
        return image_bytes(random_image(rng, int(rng.integers(20, 70)), int(rng.integers(20, 70))))

    photos = root / "real" / "photos"
    photos.mkdir(parents=True)
    for i in range(17):
        (photos / f"p{i:02d}.png").write_bytes(picture())
    (photos / "p07x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "synthetic").mkdir()
    with zipfile.ZipFile(root / "synthetic" / "gen.zip", "w") as zf:
        for i in range(13):
            zf.writestr(f"g{i:02d}.png", picture())
    jpegs = root / "synthetic" / "jpegs"
    jpegs.mkdir()
    with tarfile.open(jpegs / "all.tar.gz", "w:gz") as tf:
        for i in range(7):
            payload = image_bytes(random_image(rng, 33, 41), "JPEG")
            info = tarfile.TarInfo(f"j{i}.jpg")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    (root / "semisynthetic").mkdir()
    cells = [{"bytes": picture(), "path": f"s{i}.png"} for i in range(11)]
    pq.write_table(pa.table({"image": pa.array(cells)}), root / "semisynthetic" / "inpaint.parquet", row_group_size=3)
    return root


def kit(*args: str, extra: list[str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`kit …` in a fresh interpreter (optionally behind `extra`, e.g. torchrun), as a user runs it."""
    command = [*(extra or [sys.executable]), "-m", "discriminator.cli.app", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def report(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return json.loads((out / "results.json").read_text()), pq.read_table(out / "records.parquet").to_pylist()


#: Figures measured with a clock: they differ from run to run, sharded or not.
CLOCKED_RECORD = ("inference_ms", "batch_inference_ms")


def assert_same_run(one: Path, two: Path) -> dict[str, Any]:
    """The sharded report says what the single-process one says, but for wall-clock figures; returns the sharded."""
    single, single_records = report(one)
    sharded, sharded_records = report(two)
    assert len(sharded_records) == len(single_records) > 0
    for a, b in zip(single_records, sharded_records, strict=True):
        assert {k: v for k, v in a.items() if k not in CLOCKED_RECORD} == \
               {k: v for k, v in b.items() if k not in CLOCKED_RECORD}
    clocked = {k for k in single["results"] if "time" in k}
    assert {k: v for k, v in single["results"].items() if k not in clocked} == \
           {k: v for k, v in sharded["results"].items() if k not in clocked}
    for key in ("per_dataset", "accuracy_by_media_type", "errors", "scorable", "overall_score"):
        assert sharded[key] == single[key], key
    for key in ("skipped", "per_dataset", "intervals_95", "exam", "confusion", "multiclass_confusion", "invalidated",
                "lost_datasets", "error_samples", "validator_treatment", "samples_handled"):
        assert sharded["kit"][key] == single["kit"][key], key
    assert sharded["metadata"]["completed"] == single["metadata"]["completed"]
    return sharded


def test_two_shards_write_the_report_of_one_process(tmp_path: Path, data: Path) -> None:
    model = image_model(tmp_path / "m.onnx", 40, 48, num_logits=3)
    one = runner.invoke(app, ["bench", str(model), "--data", str(data), *COMMON, "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    two = kit("bench", str(model), "--data", str(data), *COMMON, "--shards", "2", "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-3000:]
    sharded = assert_same_run(tmp_path / "one", tmp_path / "two")
    assert sharded["kit"]["skipped"]["photos"]["count"] == 1
    shards = sharded["kit"]["shards"]
    assert [s["shard"] for s in shards] == [0, 1] and all(s["finished"] and s["samples"] > 0 for s in shards)
    assert sum(s["samples"] for s in shards) == sharded["kit"]["samples_handled"] == 49
    # cores are shared out: each of the two processes takes half (at least one thread)
    assert sharded["kit"]["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["records.parquet", "results.json", "summary.txt"]
    # the stage line adds up the two processes, and says so (their inference can exceed the slowest one's wall)
    assert "stages (s), summed over 2 processes: wall" in " ".join(two.stdout.split())
    assert "stages (s): wall" in " ".join(one.output.split())


def test_a_batch_that_voids_the_run_in_the_second_shard_voids_it_as_in_one_process(tmp_path: Path, data: Path) -> None:
    """Under `current` the first failing forward makes the run unscorable: the sharded run stops at the same sample,
    with the same records before it, though the other shard went on past it."""
    forward = ("        if x.shape[0] == 1:\n            raise RuntimeError('a batch of one is not supported')\n"
               "        return self.head(features)")
    bundle = make_bundle(tmp_path / "bundle", source=model_source(forward=forward))
    args = ["bench", str(bundle), "--data", str(data), *COMMON]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert one.exit_code == 4, one.output
    two = kit(*args, "--shards", "2", "--out", str(tmp_path / "two"))
    assert two.returncode == 4, two.stderr[-3000:]
    sharded = assert_same_run(tmp_path / "one", tmp_path / "two")
    # datasets by name, batches of 4: gen's 13 samples are batches 0–2 and a batch of one, number 3, which the
    # second shard runs; the first shard goes on through inpaint, jpegs and photos
    invalidated = sharded["kit"]["invalidated"]
    assert invalidated.startswith("inference failed on gen/g12.png: ") and invalidated.endswith("a batch of one is not supported")
    records = report(tmp_path / "two")[1]
    assert [r["status"] for r in records] == ["ok"] * 12 + ["error"]


def failing_bundle(folder: Path, load: str) -> Path:
    return make_bundle(folder, source=model_source(imports="import os", load=load))


@pytest.mark.parametrize(("load", "needle"), [
    ("    if os.environ.get('RANK') == '1':\n        raise RuntimeError('no memory left for this shard')",
     "no memory left for this shard"),
    ("    if os.environ.get('RANK') == '1':\n        os._exit(3)", ""),
])
def test_a_failing_shard_fails_the_run_with_its_line_and_writes_no_report(tmp_path: Path, data: Path, load: str,
                                                                         needle: str) -> None:
    bundle = failing_bundle(tmp_path / "bundle", load)
    out = tmp_path / "out"
    done = kit("bench", str(bundle), "--data", str(data), *COMMON, "--shards", "2", "--out", str(out))
    assert done.returncode not in (0, 4), done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "shard 2/2 failed" in line]
    assert lines and needle in lines[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())  # not even a partial file


def test_ctrl_c_stops_every_shard_and_the_report_covers_the_batches_before_the_first_unfinished_one(
        tmp_path: Path, data: Path) -> None:
    """Ctrl-C reaches every process of the group; the report is written whole, marked incomplete, and its records
    are exactly the first records of an uninterrupted run (what one process would have scored before the press)."""
    forward = ("        open(os.environ['KIT_TEST_CALLS'], 'a').write(os.environ.get('RANK', '0'))\n        time.sleep(0.4)\n"
               "        return self.head(features)")
    bundle = make_bundle(tmp_path / "bundle", source=model_source(imports="import os, time", forward=forward))
    calls = tmp_path / "calls"
    args = ["bench", str(bundle), "--data", str(data), *COMMON, "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "KIT_TEST_CALLS": str(calls)}
    # A shell starts background jobs with SIGINT ignored, an exec keeps it ignored, and Python then never turns it
    # into KeyboardInterrupt: with a handler here, the kit starts with SIGINT at its default however the suite started.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        running = subprocess.Popen([sys.executable, "-m", "discriminator.cli.app", *args, "--shards", "2",
                                    "--out", str(tmp_path / "two")], cwd=REPO, env=env, start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 120
    while not (calls.exists() and {"0", "1"} <= set(calls.read_text()) and len(calls.read_text()) >= 4) \
            and time.monotonic() < deadline:  # both shards are scoring
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: every process of the group
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 130, stderr[-3000:]
    partial, partial_records = report(tmp_path / "two")
    assert partial["metadata"]["completed"] is False and any("interrupted after" in e for e in partial["errors"])
    whole = runner.invoke(app, [*args, "--out", str(tmp_path / "one")], env={"KIT_TEST_CALLS": str(tmp_path / "c1")})
    assert whole.exit_code == 0, whole.output
    whole_records = report(tmp_path / "one")[1]
    assert 0 < len(partial_records) < len(whole_records)
    for a, b in zip(partial_records, whole_records[:len(partial_records)], strict=True):
        assert {k: v for k, v in a.items() if k not in CLOCKED_RECORD} == \
               {k: v for k, v in b.items() if k not in CLOCKED_RECORD}


def test_torchrun_ranks_write_the_report_of_one_process(tmp_path: Path, data: Path) -> None:
    model = image_model(tmp_path / "m.onnx", 40, 48, num_logits=3)
    one = runner.invoke(app, ["bench", str(model), "--data", str(data), *COMMON, "--profile", "current",
                              "--out", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    two = kit("bench", str(model), "--data", str(data), *COMMON, "--profile", "current", "--out", str(tmp_path / "two"),
              extra=torchrun)
    assert two.returncode == 0, two.stderr[-3000:]
    sharded = assert_same_run(tmp_path / "one", tmp_path / "two")
    assert len(sharded["kit"]["shards"]) == 2
    assert two.stdout.count("sn34") >= 1 and two.stdout.count("reports in") == 1  # rank 0 alone reports


def test_shards_under_torchrun_is_refused(tmp_path: Path, data: Path) -> None:
    model = image_model(tmp_path / "m.onnx", 40, 48)
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "0"}
    done = subprocess.run([sys.executable, "-m", "discriminator.cli.app", "bench", str(model), "--data", str(data),
                           "--shards", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "drop --shards under torchrun" in done.stderr


def test_shards_below_one_is_a_usage_error(tmp_path: Path, data: Path) -> None:
    model = image_model(tmp_path / "m.onnx", 40, 48)
    result = runner.invoke(app, ["bench", str(model), "--data", str(data), "--shards", "0", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--shards must be at least 1" in result.output
    assert not (tmp_path / "o").exists()
