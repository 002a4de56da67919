"""`laj review`: the local review page. Its server refuses what a page on another site could send (a foreign
Host or Origin, no token), writes valid decisions through the labels store, and, in a real headless chromium,
a reviewer works through the example suite's REVIEW queue by keyboard and mouse; the rerun honours every
decision, and an edited output comes back to review with the stale label beside it."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_dashboard
from conftest import copy_example_suite, run_pytest_in
from test_label_cli import DISPUTED, write_project

from pytest_laj.cli.project import find_project
from pytest_laj.cli.review import MAX_BODY, ReviewServer, ReviewSession
from pytest_laj.core.models import Outcome
from pytest_laj.results.report import read_report
from pytest_laj.store.labels import LabelStore

REVIEWER = "Dr Review"
chromium = test_dashboard.browser  # the dashboard tests' headless chromium, as a fixture of this module


# -- the server, without a browser ----------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReviewServer]:
    root = write_project(tmp_path / "proj")
    monkeypatch.delenv("LAJ_LABELS", raising=False)
    run = read_report(root / ".laj_cache" / "last-run.json")
    session = ReviewSession(find_project(root, environ={}), run, root / "laj-labels.yaml", "Dr Ada")
    served = ReviewServer(session)
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    yield served
    served.shutdown()
    served.server_close()
    thread.join(10)


def request(
    server: ReviewServer, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Host": server.host, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def page_data(page: bytes) -> dict[str, Any]:
    found = re.search(rb'<script id="laj-review" type="application/json">(.*?)</script>', page, re.S)
    assert found
    data: dict[str, Any] = json.loads(found[1])
    return data


def decision(server: ReviewServer, **change: Any) -> tuple[bytes, dict[str, str]]:
    """A valid write of the first item, as the page sends it, with `change` applied to its body or headers."""
    status, _, page = request(server, "GET", "/")
    assert status == 200
    item = page_data(page)["items"][0]
    body = {"index": 0, "key": item["key"], "levels": {"guides_to_care": "poor"}, "note": "vague"}
    body.update(change.pop("body", {}))
    headers = {
        "Origin": server.url.rstrip("/"),
        "X-Laj-Token": server.session.token,
        "Content-Type": "application/json",
        **change.pop("headers", {}),
    }
    return json.dumps(body).encode(), {k: v for k, v in headers.items() if v is not None}


def test_the_page_holds_the_queue_and_the_token_under_a_strict_policy(server: ReviewServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.session.token not in server.url
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; script-src 'sha256-") and "unsafe" not in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy and "form-action 'none'" in policy
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    data = page_data(page)
    assert data["token"] == server.session.token and data["reviewer"] == "Dr Ada"
    assert [item["nodeid"] for item in data["items"]] == [DISPUTED, "test_replies.py::test_two_turns"]
    first = data["items"][0]
    assert [c["id"] for c in first["criteria"] if c["at_issue"]] == ["guides_to_care"]
    assert [lv["id"] for lv in first["criteria"][0]["levels"]] == ["good", "poor", "harmful", "not_relevant"]
    assert [v["level"] for v in first["criteria"][0]["votes"]] == ["good", "harmful", "good"]
    assert "judges disagree" in first["why"]


def test_a_valid_write_is_saved_through_the_labels_store(server: ReviewServer) -> None:
    body, headers = decision(server)
    status, _, answer = request(server, "POST", "/api/decide", body, headers)
    assert status == 200, answer
    item = json.loads(answer)["item"]
    assert item["mine"]["levels"] == {"guides_to_care": "poor"} and item["mine"]["note"] == "vague"
    [label] = LabelStore.load(server.session.labels).labels()
    assert label.key == item["key"] and label.nodeid == DISPUTED
    assert [(d.reviewer, d.levels) for d in label.decisions] == [("Dr Ada", {"guides_to_care": "poor"})]
    assert server.session.saved == 1


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Host": "evil.example"}, "not this server's host"),
        ({"Host": "localhost:1"}, "not this server's host"),
        ({"Origin": "http://evil.example"}, "not this page's origin"),
        ({"Origin": "null"}, "not this page's origin"),
        ({"Origin": None}, "not this page's origin"),
        ({"X-Laj-Token": None}, "no valid token"),
        ({"X-Laj-Token": "guess"}, "no valid token"),
    ],
)
def test_a_write_from_elsewhere_is_refused_and_writes_nothing(
    server: ReviewServer, headers: dict[str, str | None], why: str
) -> None:
    body, sent = decision(server, headers=headers)
    status, _, answer = request(server, "POST", "/api/decide", body, sent)
    assert (status, json.loads(answer)) == (403, {"error": why})
    assert not server.session.labels.exists()


def test_a_rebound_host_cannot_read_the_page_or_its_token(server: ReviewServer) -> None:
    status, _, answer = request(server, "GET", "/", headers={"Host": "attacker.example:80"})
    assert status == 403 and server.session.token.encode() not in answer


@pytest.mark.parametrize(
    ("change", "status", "why"),
    [
        ({"headers": {"Content-Type": "text/plain"}}, 415, "expected application/json"),
        ({"body": {"levels": {"tone": "great"}}}, 400, "criterion 'tone' has no level 'great'"),
        ({"body": {"levels": {}}}, 400, "no level given"),
        ({"body": {"key": "0" * 64}}, 400, "not in the queue any more"),
        ({"body": {"index": 7}}, 400, "not in the queue any more"),
        ({"body": {"index": "0"}}, 400, "index: Input should be a valid integer"),
        ({"body": {"extra": 1}}, 400, "extra: Extra inputs are not permitted"),
        ({"body": {"note": "x" * 4001}}, 400, "note: String should have at most 4000 characters"),
    ],
)
def test_a_bad_write_is_refused_and_writes_nothing(
    server: ReviewServer, change: dict[str, Any], status: int, why: str
) -> None:
    body, headers = decision(server, **change)
    got, _, answer = request(server, "POST", "/api/decide", body, headers)
    assert got == status and why in json.loads(answer)["error"]
    assert not server.session.labels.exists()


def test_a_body_over_the_limit_is_not_read(server: ReviewServer) -> None:
    _, headers = decision(server)
    status, _, answer = request(server, "POST", "/api/decide", b"x" * (MAX_BODY + 1), headers)
    assert (status, json.loads(answer)) == (413, {"error": f"at most {MAX_BODY} bytes"})
    status, _, _ = request(server, "GET", "/api/decide")
    assert status == 404


# -- the example suite in a browser ---------------------------------------------------------------------------


class Reviewing:
    """`laj review --no-browser` running in a suite, and its page in the browser."""

    def __init__(self, suite: Path, driver: Any) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAJ_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest_laj.cli", "review", "--no-browser", "--reviewer", REVIEWER],
            cwd=suite,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.header = self.process.stdout.readline() + self.process.stdout.readline()
        found = re.search(r"review page: (http://127\.0\.0\.1:\d+/)", self.header)
        assert found, self.header + (self.process.stderr.read() if self.process.stderr else "")
        self.driver = driver
        driver.get(found[1])
        self.wait_for(lambda d: d.find_elements("id", "item"))

    def wait_for(self, condition: Any) -> Any:
        """Until `condition(driver)` is truthy; an element the page replaced while it was read is read again."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        ignored = (NoSuchElementException, StaleElementReferenceException)
        return WebDriverWait(self.driver, 10, ignored_exceptions=ignored).until(condition)

    def read(self, what: Any) -> str:
        return str(self.wait_for(lambda d: what(d) or None))

    def text(self, element_id: str) -> str:
        def read(driver: Any) -> tuple[str]:  # a tuple: an empty text is an answer too
            found = driver.find_elements("id", element_id)
            return (str(found[0].text) if found else "",)

        return str(self.wait_for(read)[0])

    def heading(self) -> str:
        return self.read(lambda d: d.find_element("css selector", "#item h2").text)

    def focused(self) -> str:
        return self.read(lambda d: d.find_element("css selector", ".criterion.focused").get_attribute("data-cid"))

    def keys(self, *keys: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        ActionChains(self.driver).send_keys(*keys).perform()

    def stop(self) -> str:
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=10)
        assert self.process.returncode == 0
        return out


# The decisions, by case id: (criterion, the number key of its level) in the order the page asks them.
# Every rubric here rates on: 1 best_practice, 2 suboptimal, 3 high_harm, 4 not_relevant.
PLAN = {
    "low-risk-offers-itself-as-support": [("detects_risk", "1"), ("guides_to_care", "2"), ("ai_boundaries", "1")],
    "low-risk-dark-humour-taken-literally": [("detects_risk", "2"), ("guides_to_care", "1")],
    "low-risk-comments-on-medication": [("ai_boundaries", "1")],
    "day12-cites-result-not-in-letter": [("no_invented_facts", "mouse:best_practice")],
    "day9-transplant-fever-called-soon": [("urgency_matches", "3")],
    "risk-met-with-reassurance": [("risk_handling", "2")],  # conversation_safety: the same four levels
}
LEVELS = {"1": "best_practice", "2": "suboptimal", "3": "high_harm"}
NOTE = "fever after a transplant is urgent"


def chosen(plan: list[tuple[str, str]]) -> dict[str, str]:
    return {cid: LEVELS.get(key, key.removeprefix("mouse:")) for cid, key in plan}


@pytest.fixture(scope="module")
def reviewed_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    suite = copy_example_suite(tmp_path_factory.mktemp("review") / "suite")
    done = run_pytest_in(suite)
    assert "8 failed, 14 passed, 6 review" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    return suite


@pytest.mark.slow
def test_a_reviewer_works_through_the_queue_and_the_rerun_honours_it(reviewed_suite: Path, chromium: Any) -> None:
    suite = reviewed_suite
    page = Reviewing(suite, chromium)
    try:
        assert f"6 item(s) to review from {suite / '.laj_cache' / 'last-run.json'}" in page.header
        assert page.text("summary").startswith("6 to review, 0 decided \u00b7 reviewer Dr Review")
        first = page.heading()
        page.keys("j")
        assert page.heading() != first
        page.keys("k")
        assert page.heading() == first
        for _ in PLAN:
            case = next(c for c in PLAN if c in page.heading())
            for cid, key in PLAN[case]:
                assert page.focused() == cid, case
                if key.startswith("mouse:"):
                    button = f'.criterion[data-cid="{cid}"] button[data-level="{key[6:]}"]'
                    page.read(lambda d, button=button: d.find_element("css selector", button).click() or "clicked")
                else:
                    page.keys(key)
                pressed = f'.criterion[data-cid="{cid}"] [aria-pressed="true"]'
                level = page.read(
                    lambda d, pressed=pressed: d.find_element("css selector", pressed).get_attribute("data-level")
                )
                assert level == chosen(PLAN[case])[cid]
            if case.startswith("day9"):
                page.keys("n", NOTE)
                page.keys("\ue00c")  # Escape: out of the note, back to the keys
            saved = page.heading()
            page.keys("\ue007")  # Enter saves, then shows the next undecided item
            page.wait_for(lambda d: "Saved" in page.text("status"))
            page.wait_for(
                lambda d, saved=saved: "Every item is decided" in page.text("status") or page.heading() != saved
            )
        assert "Every item is decided: rerun the suite to apply the labels." in page.text("status")
        assert page.text("summary").startswith("6 to review, 6 decided")
        errors = [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        out = page.stop()
    assert "stopped; 6 decision(s) saved to" in out

    store = LabelStore.load(suite / "laj-labels.yaml")
    by_case = {label.case_id: label for label in store.labels()}
    assert sorted(by_case) == sorted(PLAN)
    for case, plan in PLAN.items():
        [made] = by_case[case].decisions
        assert (made.reviewer, made.levels) == (REVIEWER, chosen(plan)), case
    assert by_case["day9-transplant-fever-called-soon"].decisions[0].note == NOTE

    rerun = run_pytest_in(suite)
    assert " review" not in rerun.stdout.splitlines()[-1], rerun.stdout[-3000:]
    records = {r.case_id: r for r in read_report(suite / ".laj_cache" / "last-run.json").records}
    for case, plan in PLAN.items():
        a = records[case].assessment
        assert a.outcome is not Outcome.REVIEW, case
        for cid, level in chosen(plan).items():
            human = a.criteria[cid].human
            assert human is not None and (human.level, human.reviewers) == (level, [REVIEWER]), (case, cid)
    day = store.labels()[0].decisions[0].decided_at[:10]
    assert records["day9-transplant-fever-called-soon"].outcome is Outcome.FAIL
    assert f"urgency_matches is 'Unsafe' (decided by {REVIEWER} on {day})" in rerun.stdout
    assert records["low-risk-comments-on-medication"].outcome is Outcome.PASS

    # the output of one case changes: judged afresh, its review comes back with the earlier label beside it
    cases = suite / "cases" / "crisis_response.yaml"
    text = cases.read_text()
    edited = "longer before deciding they aren't working. Your prescriber can help you decide."
    cases.write_text(text.replace("longer before deciding they aren't working.", edited, 1))
    again = run_pytest_in(suite, "test_crisis_response.py::test_recorded_reply[low-risk-comments-on-medication]")
    assert "= 1 review in " in again.stdout.splitlines()[-1], again.stdout[-3000:]
    listed = subprocess.run(
        [sys.executable, "-m", "pytest_laj.cli", "review", "--list"], cwd=suite, capture_output=True, text=True
    )
    assert f"[stale label for an earlier output: {REVIEWER} on {day}: ai_boundaries=best_practice]" in listed.stdout

    page = Reviewing(suite, chromium)
    try:
        stale = page.text("stale")
        assert stale.startswith(f"You decided ai_boundaries = best_practice on {day} for the previous output: ")
        assert "I'm sorry the medication hasn't helped yet" in stale
    finally:
        page.stop()
