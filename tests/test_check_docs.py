"""The troubleshooting page documents every rule the checker can report, and nothing it cannot."""

from __future__ import annotations

import re
from pathlib import Path

from discriminator.check import RULES

PAGE = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"


def test_every_rule_has_a_troubleshooting_section_and_no_stale_ones():
    headings = re.findall(r"^### (\S+)$", PAGE.read_text(), flags=re.MULTILINE)
    assert sorted(headings) == sorted(rule.id for rule in RULES)


def test_every_rule_row_says_why_and_how_to_fix():
    for rule in RULES:
        assert rule.severity in ("fail", "warn", "info")
        assert rule.checks and rule.why and rule.fix, rule.id
