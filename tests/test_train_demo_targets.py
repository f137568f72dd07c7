"""`make demo`'s gate: today's 3-class readings of the bundle and the ONNX era's of its twin, each read from its own bench."""

from __future__ import annotations

import json
from pathlib import Path

from discriminator.demo import TARGETS, missed_targets, read_figures, train_args


def write_results(folder: Path, **results: float) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"results": results}))


def test_each_target_is_read_from_its_own_bench_and_a_miss_is_named(tmp_path):
    onnx_run = tmp_path / "demo-video"
    write_results(onnx_run, accuracy=0.97, binary_sn34_score=0.91, sn34_score=0.91)
    write_results(Path(str(onnx_run) + "-current"), accuracy=0.87, multiclass_sn34_score=0.74, binary_sn34_score=0.2)
    figures = read_figures(onnx_run)
    assert figures[("-current", "accuracy")] == 0.87 and figures[("", "accuracy")] == 0.97
    assert figures[("", "binary_sn34_score")] == 0.91  # the ONNX twin's, not the bundle's 0.2
    missed = missed_targets(figures)
    assert missed == ["3-class accuracy (today, bundle) 0.870 is 0.030 short of 0.9"]


def test_a_reading_the_bench_did_not_report_misses_and_all_met_passes(tmp_path):
    onnx_run = tmp_path / "demo-image"
    write_results(onnx_run, accuracy=0.95, sn34_score=0.8)  # an older results.json without binary_sn34_score
    write_results(Path(str(onnx_run) + "-current"), accuracy=0.93)
    missed = missed_targets(read_figures(onnx_run))
    assert missed == ["multiclass sn34 (today, bundle) was not reported"]
    assert missed_targets({(suffix, key): target for _label, suffix, key, target in TARGETS}) == []


def test_todays_targets_are_the_issues_and_the_demo_trains_for_today():
    assert {(label.split(" (")[0], target) for label, _s, _k, target in TARGETS} == {
        ("3-class accuracy", 0.90), ("multiclass sn34", 0.70), ("accuracy", 0.90), ("binary sn34", 0.70)}
    args = train_args("video", Path("d"), Path("runs/x"), seed=3)
    assert "--profile" not in args  # kit train's default is today's profile
    assert args[args.index("--seed") + 1] == "3"
    assert args[args.index("--threads") + 1] == "1"  # the thread count the demo's table row was measured at


def test_each_bench_line_says_how_many_samples_it_scored_and_which_datasets_it_lost(tmp_path):
    from discriminator.demo import scored_samples

    lost = tmp_path / "lost"
    lost.mkdir()
    (lost / "results.json").write_text(json.dumps({"results": {"total_samples": 57}, "kit": {
        "samples_handled": 90, "lost_datasets": {"i2v-clips": "4 channels", "dashcam-clips": "4 channels"}}}))
    assert scored_samples(lost) == "57 of 90 samples scored; datasets the evaluator would lose: dashcam-clips, i2v-clips"
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "results.json").write_text(json.dumps({"results": {"total_samples": 90},
                                                    "kit": {"samples_handled": 90, "lost_datasets": {}}}))
    assert scored_samples(whole) == "90 of 90 samples scored"
