"""The troubleshooting page documents every rule the checker can report (ONNX and bundle tables), and nothing it cannot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from discriminator.check import BUNDLE_RULES, RULES

PAGE = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
TABLES = {"onnx": RULES, "bundle": BUNDLE_RULES}


def test_every_rule_has_a_troubleshooting_section_and_no_stale_ones():
    headings = re.findall(r"^### (\S+)$", PAGE.read_text(), flags=re.MULTILINE)
    assert len(headings) == len(set(headings)), "a rule has two sections"
    assert sorted(headings) == sorted({rule.id for table in TABLES.values() for rule in table})


@pytest.mark.parametrize("fmt", list(TABLES))
def test_every_rule_row_says_why_and_how_to_fix(fmt):
    table = TABLES[fmt]
    assert len({rule.id for rule in table}) == len(table)
    ids = {rule.id for rule in table}
    for rule in table:
        assert rule.severity in ("fail", "warn", "info")
        assert rule.checks and rule.why and rule.fix, rule.id
        assert set(rule.needs) <= ids, (rule.id, set(rule.needs) - ids)  # prerequisites live in the same table


def test_a_rule_id_shared_by_both_tables_is_the_same_rule():
    onnx = {rule.id: rule for rule in RULES}
    for rule in BUNDLE_RULES:
        if rule.id in onnx:
            assert (rule.evaluate, rule.checks, rule.fix) == (onnx[rule.id].evaluate, onnx[rule.id].checks, onnx[rule.id].fix)
