"""Run a format's rule table against one model and collect a `CheckReport`.

`run_check(path)` accepts an `.onnx` file, a bundle folder, a `kit build` folder or
a submission zip, and checks one format (`format` picks one of a build folder's two);
`run_checks(path)` checks every format the path holds. Each format's row (formats.py)
names its table (`RULES` for ONNX, `BUNDLE_RULES` for bundles) and its `check`, which
builds the format's context and walks the table (`check_onnx`, `check_bundle` here).
A path that cannot be read at all raises `InputError` (exit 2); everything else about
the model, however broken, becomes a rule result. A rule that goes wrong on a run that
ran out of time (a bundle's `--time-limit`) is reported as that time-out with its own
fix; a later rule that needs the same run is skipped, pointing at the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from discriminator import __version__
from discriminator.artifact import Artifact, formats_in, load_artifact
from discriminator.check.bundle_context import BundleContext, BundleRunOptions
from discriminator.check.context import CheckContext, default_threads
from discriminator.check.rules import LATENCY_MODES, ORT_LIMITS, Finding, Rule
from discriminator.errors import UsageError
from discriminator.formats import FORMATS, format_row
from discriminator.spec import MODALITIES

STATUSES = ("pass", "warn", "fail", "skip")
#: What a rule's `problem` becomes, by the rule's severity.
PROBLEM_STATUS = {"fail": "fail", "warn": "warn", "info": "pass"}


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome: status is pass | warn | fail | skip; figure is the measured value."""

    id: str
    severity: str
    status: str
    message: str
    figure: str | int | float | None
    fix: str
    checks: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """Every rule's result for one model, in table order."""

    source: str
    format: str
    container: str
    members: list[str]
    modality: str | None
    ort_min: str
    threads: int
    spec: dict[str, Any] | None
    results: list[RuleResult] = field(default_factory=list)
    #: A bundle's runtime: which interpreter ran it and the library versions it held (None for ONNX).
    runtime: dict[str, Any] | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> bool:
        return self.count("fail") > 0

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def warnings(self) -> list[RuleResult]:
        return [r for r in self.results if r.status == "warn"]

    def result(self, rule_id: str) -> RuleResult:
        for result in self.results:
            if result.id == rule_id:
                return result
        raise KeyError(rule_id)

    def summary(self) -> dict[str, int]:
        return {status: self.count(status) for status in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kit_version": __version__,
            "source": self.source,
            "format": self.format,
            "container": self.container,
            "members": self.members,
            "modality": self.modality,
            "ort_min": self.ort_min,
            "threads": self.threads,
            "spec": self.spec,
            "runtime": self.runtime,
            "ok": not self.failed,
            "summary": self.summary(),
            "results": [r.to_dict() for r in self.results],
        }


def parse_ort_version(text: str) -> tuple[int, int]:
    """'1.22' or '1.22.1' → (1, 22); refuses versions older than the rule table knows."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", text or "")
    oldest = min(ORT_LIMITS)
    if not match:
        raise UsageError(f"--ort-min {text!r} is not a version like 1.22", "pass the validator's onnxruntime version, e.g. --ort-min 1.22")
    version = (int(match.group(1)), int(match.group(2)))
    if version < oldest:
        raise UsageError(f"--ort-min {text} is older than the checker knows ({oldest[0]}.{oldest[1]})",
                         "validators use onnxruntime ≥ 1.22; pass --ort-min 1.22")
    return version


def rules_for(fmt: str) -> tuple[Rule, ...]:
    """The rule table of a format (its row's `check_rules`)."""
    return format_row(fmt).check_rules.resolve()


def run_check(
    path: Path | str,
    modality: str | None = None,
    ort_min: str = "1.22",
    threads: int | None = None,
    latency: str = "quick",
    on_rule: Callable[[Rule], None] | None = None,
    format: str | None = None,
    bundle_options: BundleRunOptions | None = None,
) -> CheckReport:
    """Check one model against the contract of its format. `on_rule` is called before each rule (for progress bars).

    `latency`: "quick" reads the latency figure off the validator-batch run the batch proof made; "full" times a
    warm-up and the median of 3 more runs; "off" skips it.
    """
    _validate_modality(modality)
    parse_ort_version(ort_min)
    return check_artifact(load_artifact(path, format), modality=modality, ort_min=ort_min, threads=threads,
                          latency=latency, on_rule=on_rule, bundle_options=bundle_options)


def run_checks(path: Path | str, format: str | None = None, **options: Any) -> list[CheckReport]:
    """Check every format `path` holds (both for a build folder with ONNX and a bundle), or only `format`."""
    _validate_modality(options.get("modality"))
    parse_ort_version(options.get("ort_min", "1.22"))
    formats = (format,) if format is not None else (formats_in(path) or (None,))
    return [run_check(path, format=fmt, **options) for fmt in formats]


def expected_modality(artifact: Artifact, requested: str | None = None) -> str | None:
    """The modality a check of `artifact` will use, found without running anything (None when the model says nothing)."""
    return FORMATS[artifact.format].modality_of(artifact, requested)


def onnx_modality(artifact: Artifact, requested: str | None = None) -> str | None:
    """--modality, else the spec's, else the input rank's (the onnx row's `modality_of`)."""
    return CheckContext(artifact=artifact, ort_min=min(ORT_LIMITS), threads=1, requested_modality=requested).modality


def check_artifact(
    artifact: Artifact,
    modality: str | None = None,
    ort_min: str = "1.22",
    threads: int | None = None,
    latency: str = "quick",
    on_rule: Callable[[Rule], None] | None = None,
    bundle_options: BundleRunOptions | None = None,
    source_label: str | None = None,
) -> CheckReport:
    """Check an artifact already read (kit package checks the zip it wrote, labelled with the model's path)."""
    _validate_modality(modality)
    if latency not in LATENCY_MODES:
        raise UsageError(f"latency {latency!r} is not one of {', '.join(LATENCY_MODES)}", "pass quick, full or off")
    version = parse_ort_version(ort_min)
    threads = threads or default_threads()
    report = FORMATS[artifact.format].check(artifact, modality, version, threads, latency, on_rule, bundle_options)
    if source_label is not None:
        report.source = source_label
    return report


def check_onnx(artifact: Artifact, modality: str | None, version: tuple[int, int], threads: int, latency: str,
               on_rule: Callable[[Rule], None] | None, bundle_options: BundleRunOptions | None = None) -> CheckReport:
    """Walk the ONNX rules over a model read with onnx and run with onnxruntime (the onnx row's `check`; it takes
    `bundle_options` only because every row's `check` is called the same way)."""
    ctx = CheckContext(artifact=artifact, ort_min=version, threads=threads, requested_modality=modality, latency=latency)
    ctx.model  # noqa: B018 — parse now: an unreadable file is an InputError, not a rule result
    return _walk(rules_for(artifact.format), ctx, _new_report(artifact, ctx.modality, version, threads), on_rule)


def check_bundle(artifact: Artifact, modality: str | None, version: tuple[int, int], threads: int, latency: str,
                 on_rule: Callable[[Rule], None] | None, bundle_options: BundleRunOptions | None = None) -> CheckReport:
    """Walk the bundle rules over a bundle run in a worker as the evaluator runs it (the bundle row's `check`)."""
    with artifact.bundle_dir() as folder:
        ctx = BundleContext(artifact=artifact, folder=folder, threads=threads, requested_modality=modality,
                            latency=latency, options=bundle_options or BundleRunOptions())
        if ctx.raw_config[1] is None:  # a readable YAML that says neither: ask (an unreadable one is config-yaml's)
            ctx.require_modality()
        try:
            report = _walk(rules_for(artifact.format), ctx, _new_report(artifact, ctx.modality, version, threads), on_rule)
            report.runtime = ctx.runtime_record()
            return report
        finally:
            ctx.close()


def _new_report(artifact: Artifact, modality: str | None, version: tuple[int, int], threads: int) -> CheckReport:
    return CheckReport(source=str(artifact.source), format=artifact.format, container=artifact.container,
                       members=sorted(artifact.members), modality=modality, ort_min=f"{version[0]}.{version[1]}",
                       threads=threads, spec=artifact.spec.to_dict() if artifact.spec is not None else None)


def _walk(rules: tuple[Rule, ...], ctx: Any, report: CheckReport, on_rule: Callable[[Rule], None] | None) -> CheckReport:
    """Evaluate each rule in order; a rule whose prerequisites failed or were skipped is skipped too."""
    statuses: dict[str, str] = {}
    timed_out_in: dict[str, str] = {}  # a run that ran out of time → the rule that reported it
    for rule in rules:
        if on_rule is not None:
            on_rule(rule)
        if rule.modality is not None and ctx.modality is None:
            finding = Finding("skip", "not checked: the model's modality is unknown")
            statuses[rule.id] = "skip"
        elif rule.modality is not None and ctx.modality != rule.modality:
            finding = Finding("skip", f"applies to {rule.modality} models only")
            statuses[rule.id] = "pass"  # not applicable: blocks nothing that needs it
        else:
            finding = _evaluate(rule, ctx, statuses, timed_out_in)
            statuses[rule.id] = PROBLEM_STATUS[rule.severity] if finding.status == "problem" else finding.status
        status = PROBLEM_STATUS[rule.severity] if finding.status == "problem" else finding.status
        report.results.append(RuleResult(rule.id, rule.severity, status, finding.message, finding.figure,
                                         finding.fix or rule.fix, rule.checks, rule.why))
    return report


def _validate_modality(modality: str | None) -> None:
    if modality is not None and modality not in MODALITIES:
        raise UsageError(f"--modality {modality!r} is not one of {', '.join(MODALITIES)}", "pass --modality image or --modality video")


def _evaluate(rule: Rule, ctx: Any, statuses: dict[str, str], timed_out_in: dict[str, str]) -> Finding:
    blocked = [need for need in rule.needs if statuses.get(need) in ("fail", "skip")]
    if blocked:
        return Finding("skip", f"not checked: {', '.join(blocked)} did not pass")
    seen = len(ctx.timeouts)
    finding = rule.evaluate(ctx)
    return _as_timeout(rule, finding, ctx, ctx.timeouts[seen:], timed_out_in)


def _as_timeout(rule: Rule, finding: Finding, ctx: Any, reads: list, timed_out_in: dict[str, str]) -> Finding:
    """A rule that went wrong on a run that ran out of time says that, with the time-out's fix, never its own fix
    for a bug the model may not have. The first rule to meet that run reports it; later rules that need the same
    run are skipped, pointing at it."""
    if not reads or finding.status not in ("problem", "warn"):
        return finding
    fresh = list(dict.fromkeys(o.error for o in reads if o.error not in timed_out_in))
    if not fresh:
        first = reads[0].error
        return Finding("skip", f"not checked: {first} (see {timed_out_in[first]})")
    for error in fresh:
        timed_out_in[error] = rule.id
    return Finding("problem", "; ".join(fresh), "timeout", fix=ctx.timeout_fix)
