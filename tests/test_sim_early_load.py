"""A bundle's worker loads while the bench reads its datasets and decodes its first batches.

`kit bench` starts the worker as it begins (`validator_sim.opening.start_early`) and the run adopts
it; a worker nobody adopts is stopped. Whatever the overlap, the run must score exactly what a run
that waited for the model scores, and a bundle that cannot load must still end the bench in one line
with no report folder.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app
from tests.bundle_helpers import bundle_config, make_bundle, model_source
from tests.sim_helpers import image_bytes, image_model, random_image
from validator_sim import opening
from validator_sim.datasets import discover_datasets
from validator_sim.run import PREFETCH_BATCHES, PREFETCH_BYTES, prefetch_depth, run_bench
from validator_sim.profiles import get_profile
from validator_sim.session import ModelIO

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three media types, 5 PNG images each: 15 samples, so a batch size of 4 makes several batches."""
    root = tmp_path_factory.mktemp("early")
    rng = np.random.default_rng(5)
    for media_type in ("real", "synthetic", "semisynthetic"):
        folder = root / media_type / f"{media_type}-set"
        folder.mkdir(parents=True)
        for index in range(5):
            (folder / f"{index}.png").write_bytes(image_bytes(random_image(rng, 30 + index, 41)))
    return root


@pytest.fixture(autouse=True)
def nothing_left_waiting():
    yield
    opening._close_waiting()


def probabilities(result) -> dict[tuple[str, str], list[float]]:
    return {(r["dataset"], r["sample"]): r["probs"] for r in result.records}


def test_the_run_adopts_the_worker_started_early_and_scores_exactly_what_a_waiting_run_scores(
        tmp_path: Path, images: Path, evaluator_runtime) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    datasets = discover_datasets(images)
    waited = run_bench(bundle, datasets, "current", mode="full", write=False, threads=1, batch_size=4)

    assert opening.start_early(bundle, "current", None, None, 1)
    assert len(opening._waiting) == 1
    waiting = next(iter(opening._waiting.values()))
    current = get_profile("current")
    assert opening.load_model_artifact(bundle, None, current) is waiting.artifact  # read once, not twice
    assert opening.load_model_artifact(bundle, "bundle", current) is not waiting.artifact  # asked differently
    early = run_bench(bundle, datasets, "current", mode="full", write=False, threads=1, batch_size=4)
    assert opening._waiting == {}  # adopted, not started a second time

    assert len(early.records) == 15
    assert probabilities(early) == probabilities(waited)
    assert early.results["kit"]["session"]["bundle_runtime"]["kind"] == "evaluator"
    stages = early.results["metrics"]["performance"]["stages"]
    assert stages["model_load_wait"]["calls"] == 1 and stages["inference"]["calls"] == 6


def test_a_worker_started_for_other_settings_is_not_adopted(tmp_path: Path, images: Path, evaluator_runtime) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    assert opening.start_early(bundle, "current", None, None, 2)
    waiting = next(iter(opening._waiting.values()))
    result = run_bench(bundle, discover_datasets(images), "current", mode="full", write=False, threads=1)
    assert len(result.records) == 15
    assert list(opening._waiting.values()) == [waiting]  # still waiting: that run asked for one thread
    opening._close_waiting()
    assert waiting.worker._proc.poll() is not None


def test_an_early_worker_nobody_adopts_is_stopped_and_its_unpacked_zip_removed(tmp_path: Path, evaluator_runtime) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    submission = tmp_path / "submission.zip"
    with zipfile.ZipFile(submission, "w") as archive:
        for name in ("model_config.yaml", "model.py", "model.safetensors"):
            archive.write(bundle / name, name)
    assert opening.start_early(submission, None, None, None, 1)
    early = next(iter(opening._waiting.values()))
    assert early.bundle_dir != bundle and (early.bundle_dir / "model.py").is_file()
    opening._close_waiting()
    assert early.worker._proc.poll() is not None
    assert not early.bundle_dir.exists()


def test_start_early_leaves_to_the_run_what_it_cannot_decide_cheaply(tmp_path: Path, evaluator_runtime) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    config = bundle_config("image")
    del config["modality"]
    unnamed = make_bundle(tmp_path / "unnamed", config=config)
    assert not opening.start_early(bundle, None, None, None, None, shards=2)  # each shard opens its own
    assert not opening.start_early(image_model(tmp_path / "m.onnx"), None, None, None, None)  # onnxruntime, here
    assert not opening.start_early(unnamed, None, None, None, None)  # the datasets will say which modality
    assert not opening.start_early(tmp_path / "missing", None, None, None, None)  # the run reports it
    assert not opening.start_early(bundle, None, None, None, 0)  # the run refuses --threads 0
    assert opening._waiting == {}


def test_in_the_kits_own_python_nothing_starts_early(tmp_path: Path, without_evaluator_runtime) -> None:
    assert not opening.start_early(make_bundle(tmp_path / "bundle"), None, None, None, None)


@pytest.mark.parametrize(("bundle_kwargs", "needle"), [
    (dict(source=model_source(load="    raise ValueError('no weights for you')")), "(load_model): load_model raised ValueError: no weights for you"),
    (dict(config=bundle_config("image", dtype="float13")), "(config): dtype 'float13'"),
])
def test_a_bundle_that_cannot_load_ends_the_bench_in_one_line_with_no_report_folder(
        tmp_path: Path, images: Path, evaluator_runtime, bundle_kwargs: dict, needle: str) -> None:
    bundle = make_bundle(tmp_path / "bundle", **bundle_kwargs)
    out = tmp_path / "never"
    cli = runner.invoke(app, ["bench", str(bundle), "--data", str(images), "--out", str(out)])
    assert cli.exit_code != 0
    assert "the bundle cannot be loaded as the evaluator loads it" in cli.output and needle in cli.output, cli.output
    assert f"run `kit check {bundle}`" in " ".join(cli.output.split())  # the model's own path, not a placeholder
    assert "Traceback" not in cli.output
    assert not out.exists()
    assert opening._waiting == {}


def test_a_bench_refused_before_it_opens_the_model_stops_the_worker_it_started(
        tmp_path: Path, images: Path, evaluator_runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    started = []
    real_start = opening.start_early

    def spy(*args, **kwargs):
        ok = real_start(*args, **kwargs)
        started.extend(opening._waiting.values())
        return ok

    monkeypatch.setattr(opening, "start_early", spy)
    cli = runner.invoke(app, ["bench", str(make_bundle(tmp_path / "bundle")), "--data", str(images), "--seed", "-1",
                              "--out", str(tmp_path / "never")])
    assert cli.exit_code == 2 and "--seed must be 0 or more" in cli.output, cli.output
    assert len(started) == 1 and opening._waiting == {}
    assert started[0].worker._proc.poll() is not None  # stopped when the command ended, not at interpreter exit


def test_the_bench_reports_how_long_it_waited_for_the_model(tmp_path: Path, images: Path, evaluator_runtime) -> None:
    out = tmp_path / "report"
    cli = runner.invoke(app, ["bench", str(make_bundle(tmp_path / "bundle")), "--data", str(images), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    stages = json.loads((out / "results.json").read_text())["metrics"]["performance"]["stages"]
    assert stages["model_load_wait"]["calls"] == 1 and stages["model_load_wait"]["seconds"] > 0
    assert "model load wait" in cli.output


def test_prefetch_depth_holds_a_bounded_number_of_bytes() -> None:
    def io(height: int, width: int, frames: int | None) -> ModelIO:
        return ModelIO("video" if frames else "image", height, width, frames, "x", [], "tensor(uint8)", [])

    least, most = PREFETCH_BATCHES
    assert prefetch_depth(io(224, 224, None), 32) == most  # 4.8 MB a batch
    assert prefetch_depth(io(224, 224, 16), 4) == most
    big = io(1024, 1024, 32)  # 400 MB a batch of 4
    assert prefetch_depth(big, 4) == least
    middle = io(512, 512, 16)  # 50 MB a batch of 4
    depth = prefetch_depth(middle, 4)
    assert least < depth < most and depth * 4 * 3 * 512 * 512 * 16 <= PREFETCH_BYTES
