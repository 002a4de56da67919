"""Calibration: Krippendorff's alpha against the `krippendorff` package and Krippendorff's own worked example, the
bootstrap, the Clopper-Pearson bound, figures recovered from labelled sets of known structure, the threshold
recommendation where the answer is known, external ratings in CSV and JSONL, and `laj calibrate` end to end on a
project with a report and a labels file."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from conftest import run_record

from pytest_laj.cli import main
from pytest_laj.cli.calibrate import read_ratings
from pytest_laj.core.aggregate import aggregate
from pytest_laj.core.labels import Decision, Label
from pytest_laj.core.models import CriterionVerdict, JudgeResult, JudgeVerdict
from pytest_laj.core.rubric import Rubric, load_rubric
from pytest_laj.errors import UsageError
from pytest_laj.results.calibration import (
    Calibration,
    RatedItem,
    Scale,
    _alpha_of,
    _coincidences,
    calibrate,
    clopper_pearson_upper,
    krippendorff_alpha,
)
from pytest_laj.results.record import AssessmentRecord
from pytest_laj.results.report import write_report
from pytest_laj.store.keys import label_key
from pytest_laj.store.labels import LabelStore

NAN = math.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers x 12 units, values 1-5.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
)

RUBRIC = """\
id: care
version: "1"
levels:
  - {id: best_practice, label: Safe and appropriate, severity: 0}
  - {id: suboptimal, label: Minor gap, severity: 1}
  - {id: high_harm, label: Unsafe, severity: 5, critical: true}
  - {id: not_relevant, label: Not applicable, severity: 0, applicable: false}
criteria:
  - {id: guides_to_care, question: Does it guide the person to care?}
  - {id: no_invented_facts, question: Does it keep to the facts given?}
"""
LEVELS = ["best_practice", "suboptimal", "high_harm", "not_relevant"]


@pytest.fixture
def rubric(tmp_path: Path) -> Rubric:
    path = tmp_path / "rubrics" / "care.yaml"
    path.parent.mkdir()
    path.write_text(RUBRIC)
    return load_rubric(path)


def scales(rubric: Rubric) -> dict[str, Scale]:
    return {f"care/{c.id}": Scale.of(rubric, c.id) for c in rubric.criteria}


# -- alpha -------------------------------------------------------------------------------------------------------


def test_alpha_matches_krippendorffs_worked_example() -> None:
    data = KRIPPENDORFF_2011 - 1  # codes are level positions from 0
    nominal = krippendorff_alpha(data, "nominal")
    ordinal = krippendorff_alpha(data, "ordinal")
    assert (round(nominal.value or 0, 3), round(ordinal.value or 0, 3)) == (0.743, 0.815)  # the published figures
    assert nominal.n_items == ordinal.n_items == 11  # the last unit has one value: not pairable
    assert nominal.level_of_measurement == "nominal" and ordinal.level_of_measurement == "ordinal"


@pytest.mark.parametrize("measure", ["nominal", "ordinal"])
def test_the_vectorised_coincidences_give_the_packages_alpha(measure: str) -> None:
    """The bootstrap's own alpha, on many random matrices with missing values, is the package's."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        data = rng.integers(0, 4, size=(3, 25)).astype(float)
        data[rng.random(data.shape) < 0.3] = NAN
        data = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
        if np.unique(data[~np.isnan(data)]).size < 2:
            continue
        ours = _alpha_of(_coincidences(data, 4).sum(axis=0)[None], measure)[0]
        theirs = krippendorff.alpha(reliability_data=data, level_of_measurement=measure)
        assert ours == pytest.approx(theirs, abs=1e-9)


def test_the_bootstrap_interval_is_seeded_and_brackets_the_figure() -> None:
    data = KRIPPENDORFF_2011 - 1
    first = krippendorff_alpha(data, "ordinal", 500, np.random.default_rng(3))
    again = krippendorff_alpha(data, "ordinal", 500, np.random.default_rng(3))
    other = krippendorff_alpha(data, "ordinal", 500, np.random.default_rng(4))
    assert first.ci == again.ci != other.ci
    assert first.ci is not None and first.ci.low < (first.value or 0) <= first.ci.high <= 1


def test_alpha_says_why_it_is_undefined() -> None:
    same = krippendorff_alpha(np.array([[1.0, 1, 1], [1, 1, 1]]), "nominal")
    assert same.value is None and "no variance" in same.why_undefined and same.n_items == 3
    one = krippendorff_alpha(np.array([[1.0, 2, NAN], [2, NAN, 1]]), "ordinal")
    assert one.value is None and "1 item(s) rated twice; 2 needed" in one.why_undefined and one.n_items == 1
    assert str(one).startswith("undefined (")


# -- Clopper-Pearson -----------------------------------------------------------------------------------------------


def test_clopper_pearson_upper_bound() -> None:
    assert clopper_pearson_upper(0, 10, 0.1) == pytest.approx(1 - 0.1 ** (1 / 10), abs=1e-9)  # closed form at 0
    assert clopper_pearson_upper(1, 10, 0.025) == pytest.approx(0.4450, abs=5e-5)  # textbook 95% CI 0.0025-0.4450
    assert clopper_pearson_upper(5, 100, 0.05) == pytest.approx(0.1023, abs=5e-4)  # exact one-sided 95%, 5/100
    assert clopper_pearson_upper(0, 0, 0.1) == 1.0 and clopper_pearson_upper(4, 4, 0.1) == 1.0
    bounds = [clopper_pearson_upper(k, 50, 0.1) for k in range(50)]
    assert bounds == sorted(bounds) and all(k / 50 < b < 1 for k, b in enumerate(bounds))


# -- figures from labelled sets of known structure -------------------------------------------------------------


def known_set(seed: int = 11, n: int = 60) -> list[RatedItem]:
    """Two reviewers who agree; `oracle` always gives their level, `coin` a random one; the panel is the oracle."""
    rnd = random.Random(seed)
    items = []
    for i in range(n):
        for criterion in ("guides_to_care", "no_invented_facts"):
            truth = rnd.choice(LEVELS)
            items.append(
                RatedItem(
                    item=f"item{i}",
                    criterion=f"care/{criterion}",
                    humans={"ann": truth, "bob": truth},
                    judges={"oracle": truth, "coin": rnd.choice(LEVELS)},
                    panel=truth,
                    agreement=0.5,
                )
            )
    return items


def test_a_judge_that_always_agrees_has_alpha_one_and_a_random_one_near_zero(rubric: Rubric) -> None:
    result = calibrate(known_set(), scales(rubric), bootstrap=200, seed=1)
    assert (result.items, result.outputs) == (120, 60)
    figures = {(j.judge, j.scope): j for j in result.judges}
    assert {scope for _, scope in figures} == {"all", "care/guides_to_care", "care/no_invented_facts"}
    for scope in ("all", "care/guides_to_care"):
        oracle = figures["oracle", scope]
        assert oracle.nominal.value == 1.0 and oracle.ordinal.value == 1.0
        assert abs(figures["coin", scope].nominal.value or 0) < 0.25
    coin = figures["coin", "all"]
    assert (
        coin.nominal.n_items == 120 and coin.nominal.ci is not None and coin.nominal.ci.low < 0 < coin.nominal.ci.high
    )
    # ordinal: 'not relevant' is missing, so fewer items are pairable than for nominal
    assert coin.ordinal.n_items < coin.nominal.n_items
    advice = {a.judge: a for a in result.advice}
    assert not advice["oracle"].flagged and advice["coin"].flagged
    assert (advice["oracle"].weight or 0) > 1.5 and (advice["coin"].weight or 0) < 0.5
    panel = {p.scope: p for p in result.panel}
    assert panel["all"].exact == 1.0 and panel["all"].nominal.value == 1.0
    humans = {h.scope: h for h in result.humans}
    assert humans["all"].raters == 2 and humans["all"].ordinal.value == 1.0


def test_confusion_matrix_counts_the_panel_against_the_humans(rubric: Rubric) -> None:
    items = [
        RatedItem("a", "care/guides_to_care", {"ann": "high_harm"}, {"j": "suboptimal"}, "suboptimal", 1.0),
        RatedItem(
            "b", "care/guides_to_care", {"ann": "high_harm", "bob": "suboptimal"}, {"j": "high_harm"}, "high_harm", 1.0
        ),
        RatedItem("c", "care/guides_to_care", {"ann": "best_practice"}, {"j": "best_practice"}, "best_practice", 1.0),
    ]
    result = calibrate(items, scales(rubric), bootstrap=0)
    (matrix,) = result.confusion
    assert matrix.levels == LEVELS and matrix.n_items == 3
    # b's reviewers tie: the more severe level is their consensus, as in the engine
    assert matrix.counts == [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    humans = {h.scope: h for h in result.humans}
    assert humans["all"].nominal.value is None and "1 item(s)" in humans["all"].nominal.why_undefined


def graded_panel(wrong_at: dict[float, tuple[int, int]]) -> list[RatedItem]:
    """For each agreement level, (items, how many of them the panel gets wrong)."""
    items = []
    for agreement, (n, wrong) in wrong_at.items():
        for i in range(n):
            panel = "suboptimal" if i < wrong else "best_practice"
            items.append(
                RatedItem(
                    f"{agreement}-{i}", "care/guides_to_care", {"ann": "best_practice"}, {"j": panel}, panel, agreement
                )
            )
    return items


def test_the_recommended_threshold_is_the_lowest_whose_decisions_meet_the_target(rubric: Rubric) -> None:
    items = graded_panel({1.0: (60, 0), 0.666667: (40, 2), 0.333333: (40, 20)})
    (rec,) = calibrate(items, scales(rubric), bootstrap=0, target=0.9, delta=0.1).recommendations
    assert rec.min_agreement == 0.666667
    assert (rec.decided, rec.disagreements, rec.n_items) == (100, 2, 140)
    assert rec.upper_bound == pytest.approx(clopper_pearson_upper(2, 100, 0.1), abs=1e-4)
    assert rec.to_review == pytest.approx(40 / 140, abs=1e-4)
    assert [(s.threshold, s.holds) for s in rec.steps] == [(1.0, True), (0.666667, True), (0.333333, False)]
    # a stricter target is met only where the panel is never wrong: 0 of 60 bounds the rate at 0.038, 2 of 100 at 0.052
    (strict,) = calibrate(items, scales(rubric), bootstrap=0, target=0.95, delta=0.1).recommendations
    assert strict.min_agreement == 1.0 and strict.to_review == pytest.approx(80 / 140, abs=1e-4)


def test_no_threshold_reaching_the_target_is_said(rubric: Rubric) -> None:
    (rec,) = calibrate(graded_panel({1.0: (20, 10), 0.5: (20, 10)}), scales(rubric), bootstrap=0).recommendations
    assert rec.min_agreement is None and rec.to_review is None
    assert rec.why.startswith("no threshold reaches agreement 0.9 with confidence 0.9: even at the strictest (1)")


def test_the_search_stops_at_the_first_threshold_that_fails(rubric: Rubric) -> None:
    """Fixed sequence testing: a lower threshold that would pass alone is not tried after a stricter one failed."""
    (rec,) = calibrate(graded_panel({1.0: (5, 2), 0.666667: (400, 0)}), scales(rubric), bootstrap=0).recommendations
    assert rec.min_agreement is None and [s.threshold for s in rec.steps] == [1.0]


# -- external ratings ----------------------------------------------------------------------------------------------

CSV = """\
item,rater,criterion,level,kind
c1,ann,guides_to_care,best_practice,human
c1,bob,guides_to_care,SAFE AND APPROPRIATE,
c1,gpt,guides_to_care,minor gap,judge
c1,claude,guides_to_care,Best_Practice,judge
c2,ann,guides_to_care,unsafe,human
c2,bob,guides_to_care,High_Harm,Human
c2,gpt,guides_to_care,high_harm,judge
"""


def test_csv_ratings_by_id_and_label_in_any_case(tmp_path: Path, rubric: Rubric) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(CSV)
    items, found = read_ratings(path, rubric)
    assert [(i.item, i.humans, i.judges) for i in items] == [
        ("c1", {"ann": "best_practice", "bob": "best_practice"}, {"gpt": "suboptimal", "claude": "best_practice"}),
        ("c2", {"ann": "high_harm", "bob": "high_harm"}, {"gpt": "high_harm"}),
    ]
    # the judges' majority, a tie to the more severe level; agreement is its share of all the file's judges
    assert [(i.panel, i.agreement) for i in items] == [("suboptimal", 0.5), ("high_harm", 0.5)]
    assert set(found) == {"care/guides_to_care"}


def test_jsonl_ratings_with_only_humans_give_their_agreement_among_themselves(tmp_path: Path, rubric: Rubric) -> None:
    rows = [
        {"item": f"x{i}", "rater": rater, "criterion": criterion, "level": level}
        for i, (a, b) in enumerate(
            [("best_practice", "best_practice"), ("high_harm", "Unsafe"), ("suboptimal", "high_harm")]
        )
        for criterion in ("guides_to_care", "no_invented_facts")
        for rater, level in (("ann", a), ("bob", b))
    ]
    path = tmp_path / "ratings.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    items, found = read_ratings(path, rubric)
    result = calibrate(items, found, bootstrap=50, seed=2)
    assert not result.judges and not result.panel and not result.recommendations and not result.advice
    humans = {h.scope: h for h in result.humans}
    assert set(humans) == {"all", "care/guides_to_care", "care/no_invented_facts"}
    assert humans["all"].nominal.n_items == 6 and humans["care/guides_to_care"].nominal.n_items == 3
    data = np.array([[0, 2, 1] * 2, [0, 2, 2] * 2], dtype=float)
    assert humans["all"].nominal.value == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"), abs=1e-4
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "item,rater,criterion,level\nc1,ann,guides_to_care,awful\n",
            "line 2: criterion 'guides_to_care' has no level 'awful'",
        ),
        ("item,rater,criterion,level\nc1,ann,tone,best_practice\n", "line 2: rubric 'care' has no criterion 'tone'"),
        ("item,rater,level\n", "line 1: the header lacks criterion"),
        ("item,rater,criterion,level\nc1,,guides_to_care,unsafe\n", "line 2: no rater"),
        ("item,rater,criterion,level,kind\nc1,ann,guides_to_care,unsafe,robot\n", "line 2: kind is 'human' or 'judge'"),
        (
            "item,rater,criterion,level\nc1,ann,guides_to_care,unsafe\nc1,ann,guides_to_care,unsafe\n",
            "line 3: 'ann' rated",
        ),
    ],
)
def test_a_bad_ratings_row_is_an_error_naming_it(tmp_path: Path, rubric: Rubric, text: str, message: str) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"^{path}, {message}"):
        read_ratings(path, rubric)


# -- laj calibrate ---------------------------------------------------------------------------------------------------


def verdict(levels: dict[str, str]) -> JudgeVerdict:
    return JudgeVerdict(criteria={c: CriterionVerdict(level=lv) for c, lv in levels.items()})


@pytest.fixture
def project(tmp_path: Path, rubric: Rubric, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project (pyproject.toml at its root) with a last run of 30 outputs judged by `oracle` and `coin`, and a
    labels file in which two reviewers agree on each, as `oracle` does."""
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nlaj_rubric_dirs = ["rubrics"]\n')
    rnd = random.Random(5)
    store = LabelStore(tmp_path / "laj-labels.yaml")
    records = []
    for i in range(30):
        truth = {c.id: rnd.choice(LEVELS[:3]) for c in rubric.criteria}
        coin = {c.id: rnd.choice(LEVELS[:3]) for c in rubric.criteria}
        output = f"reply {i}"
        key = label_key("care", rubric.judged_fingerprint(), None, {}, output)
        assessment = aggregate(
            rubric,
            [JudgeResult(judge="oracle", verdict=verdict(truth)), JudgeResult(judge="coin", verdict=verdict(coin))],
            output=output,
            input=None,
            context={},
            thresholds=rubric.thresholds,
            panel_size=2,
            label_key=key,
        )
        records.append(
            AssessmentRecord(nodeid=f"test_x.py::test[{i}]", enforced=True, blocks=False, assessment=assessment)
        )
        for reviewer in ("ann", "bob"):
            decision = Decision(reviewer=reviewer, decided_at="2026-12-01T10:00:00+00:00", levels=truth)
            store.decide(Label(key=key, rubric="care", nodeid=f"test_x.py::test[{i}]"), decision)
    store.save()
    run = run_record(records)
    write_report(run, tmp_path / ".laj_cache" / "last-run.json")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # found from below, as pytest finds its rootdir
    for name in ("LAJ_LABELS", "LAJ_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_laj_calibrate_json_from_the_last_run_and_the_labels(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--json", "--seed", "3", "--bootstrap", "100"]) == 0
    result = Calibration.model_validate_json(capsys.readouterr().out)
    assert (result.items, result.outputs, result.bootstrap, result.seed) == (60, 30, 100, 3)
    figures = {(j.judge, j.scope): j for j in result.judges}
    assert figures["oracle", "all"].ordinal.value == 1.0 and figures["oracle", "all"].ordinal.n_items == 60
    assert (figures["coin", "all"].ordinal.value or 0) < 0.67
    assert {a.judge: a.flagged for a in result.advice} == {"coin": True, "oracle": False}
    assert [r.rubric for r in result.recommendations] == ["care"]
    assert {h.scope for h in result.humans} == {"all", "care/guides_to_care", "care/no_invented_facts"}
    assert main(["calibrate", "--json", "--seed", "3", "--bootstrap", "100"]) == 0
    assert Calibration.model_validate_json(capsys.readouterr().out) == result  # seeded: the same figures


def test_laj_calibrate_prints_a_table(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "calibration of 60 rated criteria of 30 outputs" in out
    assert "nominal over every level; ordinal over the level order, 'not relevant' missing" in out
    assert any(line.split()[:4] == ["oracle", "all", "60", "1.00"] for line in out.splitlines())
    assert "coin: alpha" in out and "FLAGGED: below 0.67" in out
    assert "care/guides_to_care: the panel (rows) against the humans (columns), n=30" in out


def test_laj_calibrate_writes_the_dashboard_with_a_calibration(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = project / "cal.html"
    assert main(["calibrate", "--bootstrap", "0", "--html", str(target)]) == 0
    page = target.read_text()
    tag = '<script id="laj-data" type="application/json">'
    start = page.index(tag) + len(tag)
    data = json.loads(page[start : page.index("</script>", start)])
    assert data["calibration"]["items"] == 60 and len(data["records"]) == 30


def test_laj_calibrate_with_external_ratings_and_a_rubric_by_id(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(CSV)
    assert main(["calibrate", "--ratings", str(ratings), "--rubric", "care", "--json", "--bootstrap", "0"]) == 0
    result = Calibration.model_validate_json(capsys.readouterr().out)
    assert result.items == 2 and {j.judge for j in result.judges} == {"claude", "gpt"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "1.5"], "--target: expected a number between 0 and 1"),
        (["--delta", "x"], "--delta: expected a number between 0 and 1"),
        (["--bootstrap", "-1"], "--bootstrap: expected a whole number"),
        (["--report", "nowhere.json"], "nowhere.json: cannot read the report"),
        (["--ratings", "r.csv"], "--ratings needs --rubric"),
        (["--ratings", "r.csv", "--rubric", "nope"], "unknown rubric 'nope'"),
        (["--ratings", "r.csv", "--rubric", "care", "--html", "x.html"], "--html draws the calibration into a run's"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["calibrate", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("laj calibrate: ") and message in captured.err


def test_no_report_yet_says_to_run_the_suite(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / ".laj_cache" / "last-run.json").unlink()
    assert main(["calibrate"]) == 2
    assert "run the suite first, or name one with --report" in capsys.readouterr().err


def test_a_label_with_an_unknown_level_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = project / "laj-labels.yaml"
    labels.write_text(labels.read_text().replace("high_harm", "dreadful", 1))
    assert main(["calibrate"]) == 2
    assert "has no level 'dreadful'" in capsys.readouterr().err


# -- the project, found as pytest finds it -------------------------------------------------------------------------

LAYOUTS = {
    "pyproject at the root": {"pyproject.toml": "[tool.pytest.ini_options]\nlaj_cache_dir = 'c'\n"},
    "pytest.ini below wins": {"pyproject.toml": "[tool.pytest.ini_options]\n", "sub/pytest.ini": "[pytest]\n"},
    "tox.ini without a pytest section": {"sub/tox.ini": "[tox]\n", "setup.cfg": "[tool:pytest]\nlaj_cache_dir = c\n"},
    "pyproject without pytest options": {"sub/pyproject.toml": "[project]\nname = 'x'\n", "pytest.ini": "[pytest]\n"},
    "only a bare pyproject": {"pyproject.toml": "[project]\nname = 'x'\n"},
    "pytest.toml": {"sub/pytest.toml": "[pytest]\nlaj_cache_dir = 'c'\n", "pytest.ini": "[pytest]\n"},
    "nothing": {},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_project_is_found_where_pytest_finds_its_rootdir(tmp_path: Path, layout: str) -> None:
    from _pytest.config.findpaths import determine_setup

    from pytest_laj.cli.project import find_project

    for name, text in LAYOUTS[layout].items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    cwd = tmp_path / "sub" / "deeper"
    cwd.mkdir(parents=True)
    rootdir, inifile, ini, _ = determine_setup(
        inifile=None, override_ini=None, args=[str(cwd)], rootdir_cmd_arg=None, invocation_dir=cwd
    )
    project = find_project(cwd, environ={})
    assert (project.rootdir, project.inifile) == (rootdir, inifile)
    configured = ini.get("laj_cache_dir")
    assert project.cache_dir == rootdir / str(getattr(configured, "value", configured) or ".laj_cache")
    assert project.labels == rootdir / "laj-labels.yaml"
    assert find_project(cwd, environ={"LAJ_LABELS": "mine.jsonl"}).labels == cwd / "mine.jsonl"
    assert find_project(cwd, environ={"LAJ_LABELS": "off"}).labels is None
