"""What a `kit bench` report says beyond the scores: stage timings, the entrance-exam verdict, and the plots option.

The exam cases use the channel-sum ONNX model (logit k = the sum of colour channel k, see
`sim_helpers`), so a red image is predicted real, a green one synthetic and a blue one
semisynthetic: each dataset's accuracy is set by how many of its images have the wrong colour,
and the whole scoring path runs on real files and a real onnxruntime session.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from discriminator.cli.app import app
from tests.sim_helpers import image_bytes, image_model
from validator_sim.datasets import discover_datasets
from validator_sim.run import run_bench
from validator_sim.timing import MAIN_THREAD_STAGES, STAGES

runner = CliRunner()
H, W = 40, 48
#: The colour each class's correct images have, by class index (real, synthetic, semisynthetic).
COLOURS = ([200, 10, 10], [10, 200, 10], [10, 10, 200])
FOLDERS = (("real", "photos"), ("synthetic", "gen"), ("semisynthetic", "inpaint"))
PLOTS = ("reliability.png", "confusion.png", "accuracy_per_dataset.png", "class_recall.png", "latency.png")


def coloured_tree(root: Path, per_class: int, wrong_per_class: int) -> Path:
    """`per_class` PNGs per class, of which `wrong_per_class` carry the next class's colour (so the model errs)."""
    for cls, (media_type, name) in enumerate(FOLDERS):
        folder = root / media_type / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            colour = COLOURS[(cls + 1) % 3] if index < wrong_per_class else COLOURS[cls]
            pixels = np.empty((H + 8, W + 8, 3), dtype=np.uint8)
            pixels[:] = np.array(colour, dtype=np.uint8) + np.uint8(index % 7)
            (folder / f"{index:03d}.png").write_bytes(image_bytes(pixels, "PNG"))
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_model(tmp_path_factory.mktemp("model") / "colours.onnx", H, W, num_logits=3)


@pytest.mark.parametrize(("wrong", "verdict"), [(0, "pass"), (4, "at risk"), (10, "fail")])
def test_exam_verdict_follows_the_interval_around_80_percent(tmp_path: Path, model: Path, wrong: int,
                                                             verdict: str) -> None:
    root = coloured_tree(tmp_path / "data", per_class=20, wrong_per_class=wrong)
    result = run_bench(model, discover_datasets(root), "current", mode="small", write=False, threads=1)
    exam = result.results["kit"]["exam"]
    assert exam["accuracy"] == pytest.approx((20 - wrong) / 20)
    assert exam["samples"] == 60 and exam["verdict"] == verdict
    low, high = exam["interval_95"]
    assert low <= exam["accuracy"] <= high
    if verdict == "at risk":
        assert low < 0.80 <= high
    assert exam["exam_sample_size"] is True and exam["mode"] == "small"
    assert exam["network_scoring"] == "multiclass"
    assert exam["network_sn34_score"] == result.results["results"]["multiclass_sn34_score"]


def test_cli_prints_the_exam_verdict_and_the_stage_line(tmp_path: Path, model: Path) -> None:
    root = coloured_tree(tmp_path / "data", per_class=20, wrong_per_class=4)
    out = tmp_path / "report"
    done = runner.invoke(app, ["bench", str(model), "--data", str(root), "--profile", "current", "--mode", "full",
                               "--scoring", "binary", "--threads", "1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    text = " ".join(done.output.split())
    assert "entrance exam: AT RISK — 3-class accuracy 0.8000" in text
    assert "the exam's sample size is --mode small" in text
    assert "the network selects multiclass sn34" in text  # even though --scoring binary picked the headline
    assert "stages (s): wall" in text and "input wait" in text and "batch assembly" in text
    document = json.loads((out / "results.json").read_text())
    assert document["kit"]["exam"]["verdict"] == "at risk"
    assert "entrance exam: AT RISK" in (out / "summary.txt").read_text()
    assert "small (100 per dataset: the entrance exam's sample size)" in " ".join(
        runner.invoke(app, ["bench", "--help"], terminal_width=200).output.split())


def test_results_carry_the_evaluator_stage_timings(tmp_path: Path, model: Path) -> None:
    root = coloured_tree(tmp_path / "data", per_class=24, wrong_per_class=0)
    out = tmp_path / "report"
    started = time.perf_counter()
    run_bench(model, discover_datasets(root), "current", mode="full", batch_size=8, decode_workers=2, threads=1,
              out_dir=out, plots=False)
    elapsed = time.perf_counter() - started
    performance = json.loads((out / "results.json").read_text())["metrics"]["performance"]
    stages = performance["stages"]
    assert set(stages) == set(STAGES)
    for name, entry in stages.items():
        assert entry["seconds"] >= 0 and entry["max_seconds"] >= 0 and entry["calls"] >= 0, name
        assert entry["max_seconds"] <= entry["seconds"] + 1e-12, name
    assert stages["inference"]["seconds"] > 0 and stages["inference"]["calls"] == 9  # 72 images in batches of 8
    assert stages["prepare"]["calls"] == 72 and stages["prepare"]["seconds"] > 0
    assert stages["batch_assembly"]["calls"] == 9
    wall = stages["wall"]["seconds"]
    assert 0 < wall <= elapsed
    # The main thread's stages run one after another inside the wall time; prepare is summed over 2 workers.
    assert sum(stages[name]["seconds"] for name in MAIN_THREAD_STAGES) <= wall + 0.05
    assert stages["prepare"]["seconds"] <= 2 * wall + 0.05


def test_plots_are_off_by_default_and_drawn_whole_with_plots(tmp_path: Path, model: Path) -> None:
    root = coloured_tree(tmp_path / "data", per_class=6, wrong_per_class=1)
    plain = runner.invoke(app, ["bench", str(model), "--data", str(root), "--threads", "1", "--out", str(tmp_path / "a")])
    assert plain.exit_code == 0, plain.output
    assert not list((tmp_path / "a").glob("*.png")) and "pass --plots" in plain.output
    assert (tmp_path / "a" / "results.json").is_file()
    drawn = runner.invoke(app, ["bench", str(model), "--data", str(root), "--threads", "1", "--plots",
                                "--out", str(tmp_path / "b")])
    assert drawn.exit_code == 0, drawn.output
    for name in PLOTS:
        assert (tmp_path / "b" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list((tmp_path / "b").glob("*.part"))
    assert drawn.output.index("sn34") < drawn.output.index("reports in")


# An interrupt can land in a garbage-collector callback, where Python reports and drops it: part of what is simulated.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_plots_interrupted_by_ctrl_c_leave_only_whole_files(tmp_path: Path, model: Path) -> None:
    """SIGINT at several moments while the plots are drawn: every PNG left behind is complete, no .part remains."""
    from validator_sim.plots import write_plots

    root = coloured_tree(tmp_path / "data", per_class=6, wrong_per_class=1)
    result = run_bench(model, discover_datasets(root), "current", mode="full", threads=1, write=False)
    interrupted = 0
    for attempt, fraction in enumerate((0.05, 0.2, 0.4, 0.6, 0.8)):
        folder = tmp_path / f"try{attempt}"
        folder.mkdir()
        start = time.perf_counter()  # a complete drawing first: how long one takes now, matplotlib warm
        write_plots(folder, result.results, result.records)
        full = time.perf_counter() - start
        for png in folder.iterdir():
            png.unlink()
        signal.setitimer(signal.ITIMER_REAL, max(0.001, full * fraction))
        previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
        try:
            write_plots(folder, result.results, result.records)
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert not list(folder.glob("*.part")), attempt
        for png in folder.glob("*.png"):
            data = png.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and data.endswith(b"IEND\xaeB`\x82"), png.name
    assert interrupted >= 1


def test_a_bench_request_is_frozen_and_runs_as_the_keyword_form(tmp_path: Path, model: Path) -> None:
    import dataclasses

    from validator_sim.run import BenchRequest, run_request

    datasets = discover_datasets(coloured_tree(tmp_path / "data", per_class=5, wrong_per_class=1))
    request = BenchRequest.of(model, datasets, "current", mode="full", seed=3, threads=1, write=False,
                              shares={"holdout": 0.2, "public": 0.8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.seed = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        BenchRequest.of(model, datasets, "current", sead=3)
    by_request = run_request(request)
    by_keywords = run_bench(model, datasets, "current", mode="full", seed=3, threads=1, write=False,
                            shares={"holdout": 0.2, "public": 0.8})
    assert [r["class_probs"] for r in by_request.records] == [r["class_probs"] for r in by_keywords.records]
    for key in ("accuracy", "sn34_score", "binary_sn34_score", "multiclass_sn34_score", "binary_brier"):
        assert by_request.results["results"][key] == by_keywords.results["results"][key], key
    assert by_request.results["kit"]["provenance_shares"] == {"holdout": 0.2, "public": 0.8}


def test_the_image_resave_runs_in_the_decode_workers_not_the_scoring_loop(tmp_path: Path, model: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every JPEG goes through the cache's re-save once, on a decode-worker thread, while the main thread infers."""
    import threading

    from validator_sim import decode

    real_resave, threads = decode.cache_resave, []

    def recording_resave(img):  # the real re-save, noting which thread ran it
        threads.append(threading.current_thread().name)
        return real_resave(img)

    monkeypatch.setattr(decode, "cache_resave", recording_resave)
    rng = np.random.default_rng(5)
    for media_type, name in FOLDERS:
        folder = tmp_path / "data" / media_type / name
        folder.mkdir(parents=True)
        for index in range(6):
            (folder / f"{index}.jpg").write_bytes(image_bytes(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), "JPEG"))
    result = run_bench(model, discover_datasets(tmp_path / "data"), "current", mode="full", batch_size=4,
                       decode_workers=2, threads=1, write=False)
    assert result.results["results"]["total_samples"] == 18
    assert len(threads) == 18
    assert all(name.startswith("sim-decode") for name in threads), set(threads)


def test_a_bundle_the_network_refuses_is_benched_but_fails_the_exam_before_it(tmp_path: Path, evaluator_runtime) -> None:
    """model.py imports `time`, which the network's static check refuses: the scores are still computed (they are
    what the model gets once fixed), but the exam says fail, with the reason, and the summary warns."""
    from tests.bundle_helpers import make_bundle, model_source

    import torch

    root = coloured_tree(tmp_path / "data", per_class=4, wrong_per_class=0)
    colours = 10 * torch.eye(3)  # logit k follows channel k: every coloured image is classed right
    clean = make_bundle(tmp_path / "clean", head=colours)
    refused = make_bundle(tmp_path / "refused", head=colours, source=model_source(imports="import time"))
    good = run_bench(clean, discover_datasets(root), mode="small", write=False).results
    out = tmp_path / "report"
    cli = runner.invoke(app, ["bench", str(refused), "--data", str(root), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    document = json.loads((out / "results.json").read_text())
    exam = document["kit"]["exam"]
    assert good["kit"]["exam"]["verdict"] == "pass" and "refused" not in good["kit"]["exam"]
    assert exam["verdict"] == "fail" and exam["network_sn34_score"] == 0.0
    assert len(exam["refused"]) == 1 and exam["refused"][0].startswith("model.py:") and "time" in exam["refused"][0]
    assert document["results"]["accuracy"] == good["results"]["accuracy"]  # benched all the same
    text = " ".join(cli.output.split())
    assert "the network refuses this bundle before its entrance exam: model.py:" in text
    assert f"`kit check {refused}` lists every one" in text and "entrance exam: FAIL" in text


def test_the_exam_sample_size_is_the_exams_cap_not_just_the_mode(tmp_path: Path, model: Path) -> None:
    root = coloured_tree(tmp_path / "data", per_class=6, wrong_per_class=0)
    small = run_bench(model, discover_datasets(root), mode="small", write=False).results["kit"]["exam"]
    capped = run_bench(model, discover_datasets(root), mode="small", max_per_dataset=4, write=False).results["kit"]["exam"]
    assert small["exam_sample_size"] is True and capped["exam_sample_size"] is False
