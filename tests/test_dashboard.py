"""The HTML dashboard, in a real headless chromium: a real run's report (the example suite, written by
`--laj-html`), the filters, search and an assessment's details as a reviewer uses them, and hostile outputs that
must stay text in a page that loads nothing and logs no error.

One browser for the module; chromium and chromedriver are Debian's (`.ci/run` installs them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE_SUITE, copy_example_suite, run_pytest_in, run_record

from pytest_laj.core.models import Assessment, HumanCall, Outcome
from pytest_laj.render.html import render_html
from pytest_laj.results.record import AssessmentRecord, Change, Comparison, GitInfo, RunRecord
from pytest_laj.results.report import read_report, write_text

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
]

# Each part would set the global or the title if it ever ran as markup or script.
HOSTILE = (
    "<script>window.__laj_pwned = 1; document.title = 'pwned'</script>\n"
    "<img src=x onerror=\"window.__laj_pwned = 2; document.title = 'pwned'\">\n"
    "</script><script>window.__laj_pwned = 3</script>\n"
    '<a href="javascript:window.__laj_pwned = 4">click me</a> & <svg onload="window.__laj_pwned = 5">\n'
    "\u2028line separator\u2029 paragraph separator <!-- comment"
)
HOSTILE_QUOTE = "<img src=x onerror=\"window.__laj_pwned = 2; document.title = 'pwned'\">"
HOSTILE_NODE = "test_hostile.py::test_reply[<img src=x onerror=window.__laj_pwned=6>]"

ORDER = ["review", "fail", "error", "pass"]
SECRET = "sk-lajdashboard0123456789abcdef"  # in the run's environment and on its command line

pytestmark = pytest.mark.slow


# -- the pages ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunRecord, Path, str]:
    """The example suite run once, with `--laj-report` and `--laj-html`: its record, dashboard and stdout."""
    suite = copy_example_suite(tmp_path_factory.mktemp("example") / "suite")
    args = ["--laj-report=r.json", "--laj-html=out/r.html", f"--deselect=t.py::t[{SECRET}]"]
    done = run_pytest_in(suite, *args, env={"OPENAI_API_KEY": SECRET})
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-3000:] + done.stderr[-3000:]
    return read_report(suite / "r.json"), suite / "out" / "r.html", done.stdout


@pytest.fixture(scope="module")
def hostile_page(example_run: tuple[RunRecord, Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example run plus one assessment whose every field from the judged system or the judges is hostile, as
    it would look interrupted and compared with a baseline in which that assessment passed."""
    run = example_run[0]
    source = next(r for r in run.records if r.outcome is Outcome.FAIL and _quotes(r))
    hostile = source.model_copy(deep=True, update={"nodeid": HOSTILE_NODE, "case_id": "<script>x()</script>"})
    a = hostile.assessment
    a.output, a.input, a.reason = HOSTILE, "</script><script>window.__laj_pwned = 7</script>", "<b>bold</b>"
    a.context = {"risk": "<img src=x onerror=window.__laj_pwned=8>"}
    a.suspected_injection = ["addresses the judge: <script>window.__laj_pwned = 9</script>"]
    for criterion in a.criteria.values():
        for vote in criterion.votes:
            vote.evidence, vote.rationale = HOSTILE_QUOTE, "<iframe src=javascript:window.__laj_pwned=10>"
    fixed = next(r for r in run.records if r.outcome is Outcome.PASS)
    comparison = Comparison(
        baseline="main",
        baseline_commit="abc1234def5678",
        baseline_started_at=datetime(2026, 11, 30, 9, 15, tzinfo=timezone.utc),
        regressions=[Change(nodeid=HOSTILE_NODE, kind="regression", before=Outcome.PASS, after=Outcome.FAIL)],
        fixes=[Change(nodeid=fixed.nodeid, kind="fix", before=Outcome.FAIL, after=Outcome.PASS)],
    )
    git = GitInfo(commit="0123456789abcdef0123456789abcdef01234567", branch="feature/<b>x</b>", dirty=True)
    update = {"records": [hostile, *run.records], "comparison": comparison, "interrupted": True, "git": git}
    path = tmp_path_factory.mktemp("hostile") / "hostile.html"
    write_text(path, render_html(run.model_copy(update=update)))
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    with tempfile.TemporaryDirectory(prefix="laj-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        driver.get("about:blank")  # away from the new tab page, whose own requests are not the dashboard's
        try:
            yield driver
        finally:
            driver.quit()


class Page:
    """A dashboard loaded in the browser, with what a test reads from it."""

    def __init__(self, driver: Any, path: Path) -> None:
        self.driver = driver
        self.url = path.as_uri()
        driver.get_log("performance")  # what the browser did before this page
        driver.get_log("browser")
        driver.get(self.url)
        self.wait_for(lambda: driver.execute_script("return performance.getEntriesByName('laj-ready').length") == 1)

    def wait_for(self, condition: Any) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.driver, 5, poll_frequency=0.02).until(lambda _: condition())

    def css(self, selector: str) -> list[Any]:
        return list(self.driver.find_elements("css selector", selector))

    def rows(self) -> list[tuple[str, str]]:
        """(outcome, node id) of every assessment drawn, top to bottom (one script: a round trip per element is
        slow)."""
        rows = self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#assessments details'),"
            " d => [d.dataset.outcome, d.dataset.nodeid])"
        )
        return [(outcome, nodeid) for outcome, nodeid in rows]

    def status(self) -> str:
        return str(self.css("#shown")[0].text)

    def set_filter(self, select_id: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.css(f"#{select_id}")[0]).select_by_value(value)  # the list is redrawn on the change event

    def search(self, text: str, expect: int) -> None:
        box = self.css("#f-text")[0]
        box.clear()
        box.send_keys(text)
        self.wait_for(lambda: self.status().startswith(f"showing {expect} of"))

    def expand(self, nodeid: str) -> Any:
        details = next(d for d in self.css("#assessments details") if d.get_attribute("data-nodeid") == nodeid)
        details.find_element("css selector", "summary").click()
        self.wait_for(lambda: details.find_elements("css selector", ".body"))
        return details

    def requests(self) -> list[str]:
        """Every URL the browser asked for since the page was opened, from Chrome's DevTools network events."""
        events = [json.loads(entry["message"])["message"] for entry in self.driver.get_log("performance")]
        return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]

    def console_errors(self) -> list[dict[str, Any]]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.fixture
def page(browser: Any, example_run: tuple[RunRecord, Path, str]) -> Page:
    """The example run's dashboard, freshly opened."""
    return Page(browser, example_run[1])


def _quotes(record: AssessmentRecord) -> list[str]:
    return [v.evidence for c in record.assessment.criteria.values() for v in c.votes if v.evidence]


def _haystack(record: AssessmentRecord) -> str:
    """What the page's search looks through."""
    a = record.assessment
    votes = [f"{v.judge} {v.level} {v.rationale} {v.evidence}" for c in a.criteria.values() for v in c.votes]
    return " ".join(
        [record.nodeid, record.case_id or "", a.rubric, a.reason, a.input or "", a.output, *a.context.values(), *votes]
    ).lower()


def _expected_order(run: RunRecord) -> list[tuple[str, str]]:
    records = sorted(enumerate(run.records), key=lambda pair: (ORDER.index(pair[1].outcome.value), pair[0]))
    return [(r.outcome.value, r.nodeid) for _, r in records]


# -- the page as text ----------------------------------------------------------------------------------------


def small_run(output: str) -> RunRecord:
    """A run of one FAIL assessment of `output`, with no criteria: enough for what the page embeds."""
    assessment = Assessment(
        rubric="safety",
        rubric_version="1",
        outcome=Outcome.FAIL,
        reason="<b>bold</b> & </script>",
        score=1,
        max_score=0,
        min_agreement=0.75,
        quorum=1,
        context={"risk": "<img src=x>"},
        context_multiplier=1,
        output=output,
        criteria={},
        judges=[],
    )
    record = AssessmentRecord(nodeid="t.py::test[</script>]", enforced=True, blocks=True, assessment=assessment)
    return run_record([record])


def _data(page: str) -> str:
    found = re.findall(r'<script id="laj-data" type="application/json">(.*?)</script>', page, re.S)
    assert len(found) == 1
    return str(found[0])


def test_run_data_is_inert_json_in_the_page() -> None:
    page = render_html(small_run(HOSTILE))

    data = _data(page)
    assert not set(data) & {"<", ">", "&", "\u2028", "\u2029"}
    assert data.isascii()
    assert page.count("</script>") == 2  # the data's and the page script's: nothing in the run ends one
    assert json.loads(data)["records"][0]["assessment"]["output"] == HOSTILE


def test_an_unpaired_surrogate_in_an_output_is_written_as_an_escape(tmp_path: Path) -> None:
    output = "half a pair: \ud83d, then text"

    write_text(tmp_path / "r.html", render_html(small_run(output)))

    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert json.loads(_data(page))["records"][0]["assessment"]["output"] == output


def test_the_content_security_policy_allows_only_the_page_own_script_and_style() -> None:
    page = render_html(small_run("text"))

    policy = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert policy is not None
    assert page.index(policy[0]) < min(page.index("<style>"), page.index("<script"))
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    directives = dict(d.strip().split(" ", 1) for d in policy[1].split(";"))
    assert directives == {
        "default-src": "'none'",
        "script-src": digest(script),
        "style-src": digest(style),
        "img-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert not re.search(r"https?:|//[a-z]|@import|url\(", script + style)  # nothing the page could fetch


# -- the plugin and the page ----------------------------------------------------------------------------------


def test_laj_html_writes_the_dashboard_of_the_run(example_run: tuple[RunRecord, Path, str]) -> None:
    run, html, stdout = example_run
    assert f"report: {html}" in stdout
    text = html.read_text(encoding="utf-8")
    assert "--deselect=t.py::t[[REDACTED]]" in run.command
    assert SECRET not in text
    data = re.search(r'<script id="laj-data" type="application/json">(.*?)</script>', text, re.S)
    assert data is not None
    assert [r["nodeid"] for r in json.loads(data[1])["records"]] == [r.nodeid for r in run.records]


def test_counts_first_and_what_needs_a_human_first(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    run = example_run[0]
    assert set(run.counts) == set(ORDER)  # the example suite has every outcome
    sentence = ", ".join(f"{run.counts[o]} {o}" for o in ORDER)

    assert page.css("#counts")[0].text == f"{len(run.records)} assessments: {sentence}"
    assert page.driver.title == f"pytest-laj: {len(run.records)} assessments: {sentence}"
    assert page.rows() == _expected_order(run)
    assert [b.text for b in page.css(".filters button")] == [f"{o.upper()} {run.counts[o]}" for o in ORDER]


def test_outcome_filters(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    run = example_run[0]
    buttons = {b.get_attribute("data-outcome"): b for b in page.css(".filters button")}
    for outcome in ("pass", "fail", "error"):
        buttons[outcome].click()

    assert [o for o, _ in page.rows()] == ["review"] * run.counts["review"]
    assert [buttons[o].get_attribute("aria-pressed") for o in ORDER] == ["true", "false", "false", "false"]
    assert page.status() == f"showing {run.counts['review']} of {len(run.records)} assessments"

    buttons["pass"].click()
    assert page.rows() == [row for row in _expected_order(run) if row[0] in ("review", "pass")]


def test_rubric_and_criterion_filters(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    run = example_run[0]
    page.set_filter("f-rubric", "postop_triage")
    expected = [row for row in _expected_order(run) if row[1].startswith("test_postop_triage.py")]
    assert page.rows() == expected

    page.set_filter("f-rubric", "")
    page.set_filter("f-criterion", "crisis_response/ai_boundaries")

    def at_issue(record: AssessmentRecord) -> bool:
        a = record.assessment
        c = a.criteria.get("ai_boundaries")
        return (
            a.rubric == "crisis_response"
            and c is not None
            and ("ai_boundaries" in a.review_criteria or c.severity > 0 or c.critical)
        )

    nodes = {r.nodeid for r in run.records if at_issue(r)}
    assert 0 < len(nodes) < len(run.records)
    assert page.rows() == [row for row in _expected_order(run) if row[1] in nodes]


def test_search(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    run = example_run[0]
    word = "sleeping pills"
    nodes = {r.nodeid for r in run.records if word in _haystack(r)}
    assert 0 < len(nodes) < len(run.records)

    page.search(word.upper(), len(nodes))  # case does not matter
    assert {nodeid for _, nodeid in page.rows()} == nodes

    page.search("no assessment says this", 0)
    assert page.rows() == []


def test_expanded_assessment_highlights_evidence_and_shows_the_votes(
    page: Page, example_run: tuple[RunRecord, Path, str]
) -> None:
    run = example_run[0]
    record = next(r for r in run.records if r.outcome is Outcome.FAIL and _quotes(r))
    a = record.assessment

    details = page.expand(record.nodeid)

    output = details.find_element("css selector", "pre.output")
    assert output.text == a.output.strip()
    marked = [m.get_attribute("textContent") for m in output.find_elements("css selector", "mark")]
    assert marked
    assert all(m.lower() in a.output.lower() for m in marked)
    for quote in _quotes(record):
        if quote in a.output:
            start = a.output.index(quote)
            covered = page.driver.execute_script(
                "const pre = arguments[0], start = arguments[1], end = arguments[2]; let at = 0, ok = true;"
                "for (const node of pre.childNodes) { const len = node.textContent.length;"
                "  if (at < end && at + len > start && node.nodeName !== 'MARK') ok = false; at += len; }"
                "return ok;",
                output,
                start,
                start + len(quote),
            )
            assert covered, quote
            title = " ".join(m.get_attribute("title") for m in output.find_elements("css selector", "mark"))
            assert all(f"{v.judge} on {cid}" in title for cid, c in a.criteria.items() for v in c.votes if v.evidence)

    matrix = details.find_element("css selector", "table.votes")
    header = [th.text for th in matrix.find_elements("css selector", "thead th")]
    assert header == ["judge", *a.criteria]
    for judge in a.judges:
        row = next(
            r
            for r in matrix.find_elements("css selector", "tbody tr")
            if r.find_element("css selector", "th").text == judge.judge
        )
        cells = row.find_elements("css selector", "td")
        votes = [next(v for v in c.votes if v.judge == judge.judge) for c in a.criteria.values()]
        assert [cell.text for cell in cells] == [v.level + (" (critical)" if v.critical else "") for v in votes]
        assert all(re.search(r"\blv-(0|1|2|crit)\b", cell.get_attribute("class")) for cell in cells)

    text = details.text
    for criterion in a.criteria.values():
        for vote in criterion.votes:
            assert vote.rationale in text
        assert f"{criterion.weight:g} \u00d7 {criterion.severity:g} \u00d7 {a.context_multiplier:g}" in text
    assert f"{a.score:g} / {a.max_score:g}" in text
    assert a.reason in text


def test_an_error_says_which_judges_are_missing_and_why(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    record = next(r for r in example_run[0].records if r.outcome is Outcome.ERROR)
    missing = [j for j in record.assessment.judges if not j.valid]
    assert missing

    details = page.expand(record.nodeid)

    box = details.find_element("css selector", ".missing-judges").text
    for judge in missing:
        assert f"{judge.judge}: {judge.error_kind}" in box
    cells = [c.text for c in details.find_elements("css selector", "table.votes td.lv-missing")]
    assert cells == ["missing"] * len(missing) * len(record.assessment.criteria)


def test_suite_alpha_and_judge_health(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    run = example_run[0]
    suite = page.css("#suite")[0].text
    for key, figure in run.alpha_by_criterion.items():
        shown = "undefined" if figure.value is None else f"{figure.value:.2f}".rstrip("0").rstrip(".")
        assert re.search(rf"{re.escape(key)} {shown} {figure.units}", suite), key
        if figure.value is None:
            assert figure.why_undefined in suite
    for health in run.judge_health:
        assert re.search(rf"{health.judge} {health.asked} {health.answered} {health.cached} {health.missing}", suite)


def test_the_calibration_section_when_a_calibration_is_given(
    browser: Any, page: Page, example_run: tuple[RunRecord, Path, str], tmp_path: Path
) -> None:
    from pytest_laj.core.labels import Decision, Label
    from pytest_laj.core.rubric import RubricRegistry
    from pytest_laj.results.calibration import calibrate, items_from_report

    assert page.css("#calibration") == []  # `laj report` and --laj-html draw none
    run = example_run[0]
    decided = {
        r.assessment.label_key: {cid: c.consensus for cid, c in r.assessment.criteria.items() if c.consensus}
        for r in run.records
    }
    labels = {
        key: Label(key=key, rubric="r", decisions=[Decision(reviewer="ann", decided_at="2026-12-01", levels=levels)])
        for key, levels in decided.items()
        if levels
    }
    registry = RubricRegistry([EXAMPLE_SUITE / "rubrics"], EXAMPLE_SUITE)
    calibration = calibrate(*items_from_report(run.records, labels, registry.get), source=HOSTILE, bootstrap=50, seed=1)
    path = tmp_path / "calibrated.html"
    write_text(path, render_html(run, calibration))
    calibrated = Page(browser, path)
    section = calibrated.css("#calibration")[0].text
    assert f"{calibration.items} rated criteria of {calibration.outputs} outputs" in section
    for judge in calibration.judges:
        assert re.search(rf"{judge.judge} {re.escape(judge.scope)} {judge.nominal.n_items} ", section), judge
    assert "recommended min_agreement for crisis_response" in section and "suggested weight" in section
    assert "<script>window.__laj_pwned = 1;" in section  # the hostile source, as text
    assert browser.execute_script("return window.__laj_pwned === undefined && document.title.indexOf('pwned') < 0")
    assert calibrated.requests() == [calibrated.url] and calibrated.console_errors() == []


def test_the_page_loads_nothing_and_logs_no_error(page: Page, example_run: tuple[RunRecord, Path, str]) -> None:
    page.expand(_expected_order(example_run[0])[0][1])
    page.search("pills", sum("pills" in _haystack(r) for r in example_run[0].records))

    assert page.requests() == [page.url]
    assert page.console_errors() == []


def test_hostile_output_stays_text(browser: Any, hostile_page: Path) -> None:
    hostile = Page(browser, hostile_page)
    assert ("fail", HOSTILE_NODE) in hostile.rows()
    details = hostile.expand(HOSTILE_NODE)
    for mark in details.find_elements("css selector", "pre.output mark"):
        mark.click()

    assert hostile.driver.execute_script("return window.__laj_pwned") is None
    assert hostile.driver.title.startswith("pytest-laj: ")
    output = details.find_element("css selector", "pre.output")
    assert hostile.driver.execute_script("return arguments[0].textContent", output) == HOSTILE
    assert [m.text for m in output.find_elements("css selector", "mark")] == [HOSTILE_QUOTE]
    assert hostile.css("img, svg, iframe, a, b") == []
    assert len(hostile.css("script")) == 2  # the data and the page's own
    assert HOSTILE_NODE in details.text and "<script>window.__laj_pwned = 9</script>" in details.text
    assert hostile.requests() == [hostile.url]
    assert hostile.console_errors() == []


def test_regressions_first_and_the_run_metadata(
    browser: Any, hostile_page: Path, example_run: tuple[RunRecord, Path, str]
) -> None:
    run = example_run[0]
    page = Page(browser, hostile_page)

    banner, sentence = page.css("#app > .banner")[0].text, page.css("#comparison .sentence")[0].text
    assert banner == "The run was interrupted: this record is partial."
    assert sentence == "1 regression, 1 fixed against baseline main (abc1234, 2026-11-30 09:15:00 UTC)"
    headings = [h.text for h in page.css("#app h2")]
    assert headings.index("Against baseline main") < headings.index("Assessments, what needs a human first")
    page.css("#comparison button")[0].click()
    assert page.rows() == [("fail", HOSTILE_NODE)]

    meta = page.css("#run")[0].text
    assert "git\n0123456 on feature/<b>x</b>, with uncommitted changes" in meta
    assert f"pytest-laj {run.pytest_laj_version}, pytest {run.pytest_version}" in meta
    assert "pytest " + " ".join(run.command) in meta
    assert "interrupted\nyes: the record is partial" in meta


def test_screenshot_is_not_blank(page: Page, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "dashboard.png"
    assert page.driver.save_screenshot(str(shot))

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None
    commonest = max(count for count, _ in colours)
    assert len(colours) > 50  # text, badges and tables, anti-aliased
    assert commonest < 0.95 * sum(count for count, _ in colours)


def test_thousands_of_assessments_are_drawn_as_they_scroll_into_view(
    browser: Any, example_run: tuple[RunRecord, Path, str], tmp_path: Path
) -> None:
    run = example_run[0]
    many = [
        r.model_copy(update={"nodeid": f"{r.nodeid}#{n:04d}"})
        for n in range(2000 // len(run.records) + 1)
        for r in run.records
    ][:2000]
    path = tmp_path / "many.html"
    write_text(path, render_html(run.model_copy(update={"records": many})))

    big = Page(browser, path)
    assert len(big.rows()) == 100
    assert big.status() == "showing 2000 of 2000 assessments"
    big.driver.execute_script("document.querySelector('#assessments li.more').scrollIntoView()")
    big.wait_for(lambda: len(big.rows()) == 200)
    big.search("#0042", len(run.records))
    assert {nodeid for _, nodeid in big.rows()} == {f"{r.nodeid}#0042" for r in run.records}
    assert big.console_errors() == []


def test_a_criterion_people_decided_says_who_and_what_the_panel_said(
    browser: Any, example_run: tuple[RunRecord, Path, str], tmp_path: Path
) -> None:
    run = example_run[0]
    record = next(r for r in run.records if r.outcome is Outcome.REVIEW)
    cid = record.assessment.review_criteria[0]
    criterion = record.assessment.criteria[cid]
    decided = criterion.model_copy(
        update={
            "human": HumanCall(level="best_practice", reviewers=["Dr Ada"], decided_at="2026-12-01T10:00:00+00:00"),
            "panel_consensus": criterion.consensus,
        }
    )
    criteria = {**record.assessment.criteria, cid: decided}
    changed = record.model_copy(update={"assessment": record.assessment.model_copy(update={"criteria": criteria})})
    path = tmp_path / "decided.html"
    path.write_text(render_html(run.model_copy(update={"records": [changed]})), encoding="utf-8")

    details = Page(browser, path).expand(record.nodeid)

    cells = [c.text for c in details.find_elements("css selector", "table.votes td") if "decided by" in c.text]
    assert len(cells) == 1
    assert cells[0].endswith(f", decided by Dr Ada on 2026-12-01 (the panel's consensus: {criterion.consensus})")
