"""Untrusted text never reaches a terminal, CI log or report raw: control and bidi characters show as escapes."""

from __future__ import annotations

import pytest
from conftest import LajProject

from pytest_laj.core.printable import printable

HOSTILE = "\x1b[2K\r\x1b[32mPASSED all good\x1b[0m \u202egnp.exe"
RAW = ("\x1b", "\r", "\u202e")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("over\rwrite", "over\\x0dwrite"),
        ("nul\x00 bell\x07 del\x7f csi\x9b", "nul\\x00 bell\\x07 del\\x7f csi\\x9b"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("\u2066isolated\u2069 \u200emark\u200f \u061c", "\\u2066isolated\\u2069 \\u200emark\\u200f \\u061c"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ],
    ids=["ansi", "carriage-return", "c0-del-c1", "rtl-override", "isolates-and-marks", "surrogate"],
)
def test_control_and_bidi_characters_become_visible_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_line_breaks_and_tabs_are_kept_only_where_the_channel_is_multiline() -> None:
    assert printable("a\nb\tc") == "a\\x0ab\\x09c"
    assert printable("a\nb\tc", multiline=True) == "a\nb\tc"
    assert printable("a\r\nb", multiline=True) == "a\\x0d\nb"


def test_ordinary_text_is_untouched() -> None:
    text = "Ça va? Llame al 112 — 请拨打 120 — «ok» 🙂 العربية עברית"

    assert printable(text) == text


RULES = """\
judges:
  alpha:
    default: best_practice
    rules:
      - {match: "(?s)do it.*", levels: {boundaries: high_harm}}
      - {match: "(?s)maybe.*", levels: {boundaries: high_harm}}
  beta:
    default: best_practice
    rules:
      - {match: "(?s)do it.*", levels: {boundaries: high_harm}}
  gamma:
    default: best_practice
    rules:
      - {match: "(?s)do it.*", levels: {boundaries: high_harm}}
"""


def test_hostile_output_is_escaped_in_every_channel(project: LajProject) -> None:
    (project.pytester.path / "sim.yaml").write_text(RULES)
    project.tests(
        f"""
        import pytest
        pytestmark = pytest.mark.laj(rubric="safety")
        HOSTILE = {HOSTILE!r}

        def test_fails(laj):
            laj.check("do it " + HOSTILE, input="question " + HOSTILE)

        def test_needs_review(laj):
            laj.check("maybe " + HOSTILE)

        @pytest.mark.laj(judges=["alpha"], thresholds={{"quorum": 1}})
        def test_recorded_review(laj):
            laj.assess("maybe " + HOSTILE)
        """
    )
    junit = project.pytester.path / "junit.xml"
    for tb in ("long", "short", "line"):
        result = project.run("-rA", f"--tb={tb}", f"--junitxml={junit}")
        shown = result.stdout.str() + result.stderr.str()
        assert "\\x1b[32mPASSED all good\\x1b[0m \\u202egnp.exe" in shown, shown  # the text, made visible
        assert not any(raw in shown for raw in RAW), (tb, shown)
        report = junit.read_text(encoding="utf-8")
        assert tb == "line" or "\\u202egnp.exe" in report  # --tb=line carries the headline alone
        assert not any(raw in report for raw in RAW), report
