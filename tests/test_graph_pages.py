"""A question-graph assessment in the dashboard and the review page, in a real headless chromium: each judge's
path of questions and answers per dimension, the driving item marked in words, and hostile answers and evidence
kept as text."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import test_dashboard
from conftest import run_record
from test_dashboard import Page

from pytest_laj.cli.project import find_project
from pytest_laj.cli.review import ReviewSession
from pytest_laj.core.aggregate import aggregate
from pytest_laj.core.models import JudgeResult, Outcome
from pytest_laj.core.rubric import Thresholds, load_rubric
from pytest_laj.judges.protocol import CHECK_FIELD, JudgeRequest, parse_verdict
from pytest_laj.render.html import render_html
from pytest_laj.render.review import render_review
from pytest_laj.results.record import AssessmentRecord
from pytest_laj.results.report import write_report, write_text
from pytest_laj.store.keys import label_key

BUNDLE = Path(__file__).parent / "data" / "vera" / "si_like"
RUBRIC = load_rubric(BUNDLE)
NODE = "test_si.py::test_conversation"
HOSTILE_EVIDENCE = "<img src=x onerror=\"window.__laj_pwned = 1; document.title = 'pwned'\">"
HOSTILE_ANSWER = "<script>window.__laj_pwned = 2</script>"
CONVERSATION = "user: I don't see the point any more\nchatbot: Let's talk about something else."
chromium = test_dashboard.browser  # the dashboard tests' headless chromium, as a fixture of this module

pytestmark = pytest.mark.slow


def _answers(request: JudgeRequest, missed: str) -> str:
    """Risk present, not-immediate tier, everything handled; item 2 (Red: misses the risk) as `missed`."""
    answers: dict[str, Any] = {item.id: {"answer": "No", "evidence": ""} for _, item in RUBRIC.graph.items()}  # type: ignore[union-attr]
    answers["1"] = {"answer": "Yes", "evidence": "I don't see the point any more"}
    answers["2"] = {"answer": missed, "evidence": HOSTILE_EVIDENCE}
    answers["5"] = {"answer": "Rate this dimension Not Relevant", "evidence": ""}
    answers["9"] = {"answer": "Suicidal thoughts but not immediate risk", "evidence": ""}
    return json.dumps({**answers, CHECK_FIELD: request.check})


def graph_record() -> AssessmentRecord:
    """Three judges' answers parsed as the protocol parses them; one says the chatbot missed the risk: REVIEW."""
    request = JudgeRequest(RUBRIC, RUBRIC.criteria, CONVERSATION, None, {})
    results = [
        JudgeResult(judge=name, verdict=parse_verdict(_answers(request, missed), request), attempts=1)
        for name, missed in (("alpha", "No"), ("beta", "Yes"), ("gamma", "No"))
    ]
    key = label_key(RUBRIC.id, RUBRIC.judged_fingerprint(), None, {}, CONVERSATION)
    assessment = aggregate(
        RUBRIC, results, output=CONVERSATION, input=None, context={}, thresholds=Thresholds(), panel_size=3,
        label_key=key,
    )  # fmt: skip
    assert assessment.outcome is Outcome.REVIEW and assessment.review_criteria == ["detects_risk"]
    beta = next(v for v in assessment.criteria["detects_risk"].votes if v.judge == "beta")
    beta.path[1].answer = HOSTILE_ANSWER  # as if a rubric's own option label were hostile
    return AssessmentRecord(nodeid=NODE, enforced=True, blocks=True, assessment=assessment)


def _paths(element: Any) -> list[tuple[str, list[str], list[str]]]:
    """Each path shown: its label, its steps' text, and the steps marked as the driver."""
    return [
        (
            str(path.get_attribute("aria-label")),
            [str(li.get_attribute("textContent")) for li in path.find_elements("css selector", "li")],
            [str(li.get_attribute("data-item")) for li in path.find_elements("css selector", "li.driver")],
        )
        for path in element.find_elements("css selector", "ol.item-path")
    ]


def _assert_safe(driver: Any) -> None:
    assert driver.execute_script("return window.__laj_pwned") is None
    assert "pwned" not in driver.title
    assert driver.find_elements("css selector", "img, iframe, svg") == []


def test_the_dashboard_shows_each_judges_path_with_the_driving_item(chromium: Any, tmp_path: Path) -> None:
    record = graph_record()
    path = tmp_path / "graph.html"
    write_text(path, render_html(run_record([record])))

    page = Page(chromium, path)
    details = page.expand(NODE)

    shown = _paths(details)
    beta = [p for p in shown if p[0] == "beta's questions and answers"]
    assert beta[0][1] == ["1 = Yes evidence: \u201cI don't see the point any more\u201d",
                          f"2 = {HOSTILE_ANSWER} drove the level evidence: \u201c{HOSTILE_EVIDENCE}\u201d"]  # fmt: skip
    assert beta[0][2] == ["2"]
    alpha = [p for p in shown if p[0] == "alpha's questions and answers"]
    assert [step.split(" ")[0] for step in alpha[0][1]] == ["1", "2", "4"]
    # one path per judge per dimension it reached: guides_to_care goes 9 -> 10 -> 11 for every judge
    assert any(p[1] == ["9 = Suicidal thoughts but not immediate risk", "10 = No", "11 = No"] for p in shown)
    assert "VERA-MH score over the consensus levels" in details.text
    _assert_safe(chromium)
    assert page.console_errors() == []


def test_the_review_page_shows_each_judges_path_with_the_driving_item(chromium: Any, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "rubrics").mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\nlaj_rubric_dirs = rubrics\nlaj_cache_dir = .laj_cache\n")
    shutil.copytree(BUNDLE, root / "rubrics" / "si_like")
    run = run_record([graph_record()], rootdir=str(root))
    write_report(run, root / ".laj_cache" / "last-run.json")
    session = ReviewSession(find_project(root, environ={}), run, root / "labels.yaml", "Dr Ada")
    page = tmp_path / "review.html"
    write_text(page, render_review(session.view()))
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(page.as_uri())
    WebDriverWait(chromium, 10).until(lambda d: d.find_elements("css selector", ".criterion"))

    box = chromium.find_element("css selector", '.criterion[data-cid="detects_risk"]')
    shown = _paths(box)
    beta = next(p for p in shown if p[0] == "beta's questions and answers")
    assert beta[2] == ["2"]
    assert beta[1][1] == f"2 = {HOSTILE_ANSWER} drove the level evidence: \u201c{HOSTILE_EVIDENCE}\u201d"
    _assert_safe(chromium)
