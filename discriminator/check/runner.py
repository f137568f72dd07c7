"""Run the rule table against one model and collect a `CheckReport`.

`run_check(path)` accepts an `.onnx` file, a `kit build` folder or a submission
zip. A path that cannot be read at all raises `InputError` (exit 2); everything
else about the model, however broken, becomes a rule result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from discriminator import __version__
from discriminator.artifact import load_artifact
from discriminator.check.context import CheckContext, default_threads
from discriminator.check.rules import ORT_LIMITS, RULES, Finding, Rule
from discriminator.errors import UsageError
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
    kind: str
    onnx_name: str
    modality: str | None
    ort_min: str
    threads: int
    spec: dict[str, Any] | None
    results: list[RuleResult] = field(default_factory=list)

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
            "kind": self.kind,
            "onnx_name": self.onnx_name,
            "modality": self.modality,
            "ort_min": self.ort_min,
            "threads": self.threads,
            "spec": self.spec,
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


def run_check(
    path: Path | str,
    modality: str | None = None,
    ort_min: str = "1.22",
    threads: int | None = None,
    measure_latency: bool = True,
    on_rule: Callable[[Rule], None] | None = None,
) -> CheckReport:
    """Check one model against the validator contract. `on_rule` is called before each rule (for progress bars)."""
    if modality is not None and modality not in MODALITIES:
        raise UsageError(f"--modality {modality!r} is not one of {', '.join(MODALITIES)}", "pass --modality image or --modality video")
    version = parse_ort_version(ort_min)
    artifact = load_artifact(path)
    ctx = CheckContext(artifact=artifact, ort_min=version, threads=threads or default_threads(),
                       requested_modality=modality, measure_latency=measure_latency)
    ctx.model  # noqa: B018 — parse now: an unreadable file is an InputError, not a rule result
    report = CheckReport(source=str(artifact.source), kind=artifact.kind, onnx_name=artifact.onnx_name,
                         modality=ctx.modality, ort_min=f"{version[0]}.{version[1]}", threads=ctx.threads,
                         spec=artifact.spec.to_dict() if artifact.spec is not None else None)
    statuses: dict[str, str] = {}
    for rule in RULES:
        if on_rule is not None:
            on_rule(rule)
        finding = _evaluate(rule, ctx, statuses)
        status = PROBLEM_STATUS[rule.severity] if finding.status == "problem" else finding.status
        statuses[rule.id] = status
        report.results.append(RuleResult(rule.id, rule.severity, status, finding.message, finding.figure,
                                         rule.fix, rule.checks, rule.why))
    return report


def _evaluate(rule: Rule, ctx: CheckContext, statuses: dict[str, str]) -> Finding:
    if rule.modality is not None and ctx.modality != rule.modality:
        return Finding("skip", f"applies to {rule.modality} models only")
    blocked = [need for need in rule.needs if statuses.get(need) in ("fail", "skip")]
    if blocked:
        return Finding("skip", f"not checked: {', '.join(blocked)} did not pass")
    return rule.evaluate(ctx)
