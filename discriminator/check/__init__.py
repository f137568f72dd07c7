"""`kit check`: every way a model can fall foul of the SN34 validator, as a table of rules.

Library entry point: `run_check(path, modality=None, ort_min="1.22")` returns a
`CheckReport`. Works on any ONNX file (built by the kit or not) with onnx and
onnxruntime only; torch is never imported on this path.
"""

from discriminator.check.rules import RULES, RULES_BY_ID, Rule
from discriminator.check.runner import CheckReport, RuleResult, run_check

__all__ = ["RULES", "RULES_BY_ID", "Rule", "CheckReport", "RuleResult", "run_check"]
