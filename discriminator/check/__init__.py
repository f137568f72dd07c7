"""`kit check`: every way a model can fall foul of the SN34 network, as one table of rules per format.

Library entry points: `run_check(path, modality=None, ort_min="1.22", format=None)`
returns the `CheckReport` of one format; `run_checks(path)` one per format the path
holds (a `kit build` folder may hold ONNX and a bundle). ONNX is checked with onnx and
onnxruntime only; a bundle's model.py runs only in a separate worker process, so torch
is never imported into the caller on either path.
"""

from discriminator.check.rules import RULES, RULES_BY_ID, Rule
from discriminator.check.rules_bundle import BUNDLE_RULES, BUNDLE_RULES_BY_ID
from discriminator.check.runner import CheckReport, RuleResult, rules_for, run_check, run_checks

__all__ = ["RULES", "RULES_BY_ID", "BUNDLE_RULES", "BUNDLE_RULES_BY_ID", "Rule", "CheckReport", "RuleResult",
           "rules_for", "run_check", "run_checks"]
