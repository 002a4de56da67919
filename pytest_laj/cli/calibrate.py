"""`laj calibrate`: the panel against people's labels, or ratings made elsewhere, in figures.

By default it reads the last run's report (`<cache dir>/last-run.json`) and the labels file, and calibrates every
labelled assessment that has judge votes. With `--ratings FILE` it reads ratings in the long format instead:

    item,rater,criterion,level,kind
    conv-17,dr_lee,guides_to_care,High potential for harm,human
    conv-17,gpt-4o,guides_to_care,high_harm,judge

CSV with a header, or JSONL with those keys; `level` is a level's id or label, in any case; `kind` is `human`
(the default) or `judge`. `--rubric` names the rubric the levels belong to (an id found through the project's
`laj_rubric_dirs`, or a path). The panel's consensus on external ratings is the judges' majority, a tie going to
the more severe level, and its agreement the majority's share of all the file's judges.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_laj.core.printable import printable
from pytest_laj.errors import UsageError

if TYPE_CHECKING:  # numpy, pydantic and the rubric models load when the command runs, not with every `laj`
    from pytest_laj.cli.project import Project
    from pytest_laj.core.rubric import Rubric
    from pytest_laj.results.calibration import AlphaResult, Calibration, RatedItem, Scale

__all__ = ["add_parser", "read_ratings"]

_COLUMNS = ("item", "rater", "criterion", "level")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="compare the judges with people's labels (or ratings made elsewhere): alpha, confusion, thresholds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--report", type=Path, metavar="PATH", help="a JSON run report (default: the last run's)")
    parser.add_argument("--labels", type=Path, metavar="PATH", help="the labels file (default: as pytest finds it)")
    parser.add_argument(
        "--ratings", type=Path, metavar="FILE", help="ratings in the long format (CSV or .jsonl) instead of labels"
    )
    parser.add_argument("--rubric", metavar="ID|PATH", help="with --ratings: the rubric the levels belong to")
    parser.add_argument("--target", default="0.9", help="agreement with people to reach (default 0.9)")
    parser.add_argument("--delta", default="0.1", help="risk: the bound holds with confidence 1-delta (default 0.1)")
    parser.add_argument("--bootstrap", default="1000", metavar="N", help="bootstrap resamples (default 1000; 0: none)")
    parser.add_argument("--seed", metavar="N", help="seed of the bootstrap, for figures that repeat exactly")
    parser.add_argument("--json", action="store_true", help="print the calibration as JSON")
    parser.add_argument("--html", type=Path, metavar="PATH", help="also write the report's dashboard with it")
    parser.set_defaults(run=run)


def _number(text: str, name: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low < value < high:
        raise UsageError(f"{name}: expected a number between {low:g} and {high:g} (exclusive), got {text!r}")
    return value


def _count(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    if not text.strip().isdigit():
        raise UsageError(f"{name}: expected a whole number of 0 or more, got {text!r}")
    return int(text)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's rows with their line numbers, CSV by default and JSONL by the suffix."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read the ratings ({error})") from None
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise UsageError(f"{path}, line {number}: not JSON ({error})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}, line {number}: expected an object with keys {', '.join(_COLUMNS)}")
            yield number, row
        return
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UsageError(
            f"{path}, line 1: the header lacks {', '.join(missing)}; expected {', '.join(_COLUMNS)}[,kind]"
        )
    for row in reader:
        yield reader.line_num, row


def read_ratings(path: Path, rubric: Rubric) -> tuple[list[RatedItem], dict[str, Scale]]:
    """Ratings in the long format as rated items; a row that names no criterion or level of `rubric` is an error
    naming the row."""
    from pytest_laj.results.calibration import RatedItem, Scale, majority

    criteria = {c.id: Scale.of(rubric, c.id) for c in rubric.criteria}
    items: dict[tuple[str, str], RatedItem] = {}
    judges: set[str] = set()
    for number, row in _rows(path):
        where = f"{path}, line {number}"
        values = {c: str(row.get(c) or "").strip() for c in (*_COLUMNS, "kind")}
        empty = [c for c in _COLUMNS if not values[c]]
        if empty:
            raise UsageError(f"{where}: no {', '.join(empty)}")
        scale = criteria.get(values["criterion"])
        if scale is None:
            raise UsageError(
                f"{where}: rubric {rubric.id!r} has no criterion {values['criterion']!r}; "
                f"criteria: {', '.join(criteria)}"
            )
        level = scale.find(values["level"])
        if level is None:
            known = ", ".join(f"{lv.id} ({lv.label})" for lv in scale.levels)
            raise UsageError(
                f"{where}: criterion {values['criterion']!r} has no level {values['level']!r}; levels: {known}"
            )
        kind = values["kind"].lower() or "human"
        if kind not in ("human", "judge"):
            raise UsageError(f"{where}: kind is 'human' or 'judge', got {values['kind']!r}")
        key = f"{rubric.id}/{values['criterion']}"
        item = items.setdefault((values["item"], key), RatedItem(item=values["item"], criterion=key))
        raters = item.judges if kind == "judge" else item.humans
        if values["rater"] in raters:
            raise UsageError(f"{where}: {values['rater']!r} rated item {values['item']!r} on {key} twice")
        raters[values["rater"]] = level.id
        if kind == "judge":
            judges.add(values["rater"])
    for item in items.values():
        if item.judges:
            scale = criteria[item.criterion.split("/", 1)[1]]
            item.panel = majority(item.judges.values(), scale)
            item.agreement = round(sum(lv == item.panel for lv in item.judges.values()) / len(judges), 6)
    rated = [item for item in items.values() if item.humans]
    return rated, {item.criterion: criteria[item.criterion.split("/", 1)[1]] for item in rated}


def _from_labels(args: argparse.Namespace, project: Project) -> tuple[list[RatedItem], dict[str, Scale], str]:
    from pytest_laj.core.rubric import RubricError
    from pytest_laj.results.calibration import items_from_report
    from pytest_laj.results.report import LAST_RUN, read_report
    from pytest_laj.store.labels import LabelStore

    report = args.report or project.cache_dir / LAST_RUN
    if args.report is None and not report.is_file():
        raise UsageError(f"no report at {report}: run the suite first, or name one with --report")
    labels_path = args.labels or project.labels
    if labels_path is None:
        raise UsageError("the labels file is off (laj_labels / LAJ_LABELS); name one with --labels")
    run = read_report(report)
    store = LabelStore.load(labels_path)
    registry = project.rubrics

    def known(rubric_id: str) -> Rubric | None:
        try:
            return registry.get(rubric_id)
        except RubricError:
            return None

    store.check(known)
    items, scales = items_from_report(run.records, {lb.key: lb for lb in store.labels()}, registry.get)
    return items, scales, f"{report} with labels {labels_path}"


def _from_ratings(args: argparse.Namespace, project: Project) -> tuple[list[RatedItem], dict[str, Scale], str]:
    if not args.rubric:
        raise UsageError("--ratings needs --rubric: the id of a rubric in laj_rubric_dirs, or a rubric file")
    rubric = project.rubrics.get(args.rubric)
    items, scales = read_ratings(args.ratings, rubric)
    return items, scales, f"{args.ratings} (rubric {rubric.id})"


def run(args: argparse.Namespace) -> int:
    from pytest_laj.cli.project import find_project
    from pytest_laj.results.calibration import calibrate

    target = _number(args.target, "--target", 0.0, 1.0)  # 1 is never reached: a bound on a rate is above 0
    delta = _number(args.delta, "--delta", 0.0, 1.0)
    bootstrap = _count(args.bootstrap, "--bootstrap") or 0
    seed = _count(args.seed, "--seed")
    if args.html is not None and args.ratings is not None:
        raise UsageError("--html draws the calibration into a run's dashboard; ratings from --ratings have no run")
    project = find_project()
    items, scales, source = (_from_ratings if args.ratings else _from_labels)(args, project)
    calibration = calibrate(items, scales, source=source, bootstrap=bootstrap, seed=seed, target=target, delta=delta)
    if args.json:
        print(calibration.model_dump_json(indent=1))
    else:
        print("\n".join(terminal_lines(calibration)))
    if args.html is not None:
        _write_html(args, project, calibration)
    return 0


def _write_html(args: argparse.Namespace, project: Project, calibration: Calibration) -> None:
    from pytest_laj.render.html import render_html
    from pytest_laj.results.report import LAST_RUN, read_report, write_text

    page = render_html(read_report(args.report or project.cache_dir / LAST_RUN), calibration)
    try:
        write_text(args.html, page)
    except OSError as error:
        raise UsageError(f"{args.html}: cannot write the dashboard ({error.strerror or error})") from None
    print(f"wrote {args.html}")


# -- the terminal ------------------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _cell(figure: AlphaResult, notes: list[str], what: str) -> str:
    if figure.value is None:
        notes.append(f"  {what}, {figure.level_of_measurement}: undefined, {figure.why_undefined}")
        return "undefined"
    return str(figure)


def terminal_lines(c: Calibration) -> list[str]:
    """The calibration as a reader takes it in: what it rests on, the judges, the panel, people, thresholds."""
    from pytest_laj.results.calibration import FLAG_BELOW

    if not c.items:
        return [
            printable(f"no rated item to calibrate in {c.source}: label assessments with `laj review` or `laj label`")
        ]
    intervals = f"95% bootstrap intervals over {c.bootstrap} resamples of the items" if c.bootstrap else "no intervals"
    seed = f" (seed {c.seed})" if c.seed is not None else ""
    lines = [
        printable(f"calibration of {c.items} rated criteria of {c.outputs} outputs, from {c.source}"),
        f"Krippendorff's alpha: nominal over every level; ordinal over the level order, 'not relevant' missing; "
        f"{intervals}{seed}",
    ]
    notes: list[str] = []
    if c.judges:
        lines += ["", "each judge against the humans' consensus"]
        rows = [
            [
                j.judge,
                j.scope,
                str(j.nominal.n_items),
                _cell(j.nominal, notes, f"{j.judge} {j.scope}"),
                _cell(j.ordinal, notes, f"{j.judge} {j.scope}"),
            ]
            for j in c.judges
        ]
        lines += _table(["judge", "criterion", "n", "nominal", "ordinal"], rows)
    if c.panel:
        lines += ["", "the panel's consensus against the humans' consensus"]
        rows = [
            [
                p.scope,
                str(p.nominal.n_items),
                _share(p.exact, p.exact_ci),
                _cell(p.nominal, notes, f"panel {p.scope}"),
                _cell(p.ordinal, notes, f"panel {p.scope}"),
            ]
            for p in c.panel
        ]
        lines += _table(["criterion", "n", "same level", "nominal", "ordinal"], rows)
    if c.humans:
        lines += ["", "the humans among themselves, over items two or more of them rated"]
        rows = [
            [
                h.scope,
                str(h.nominal.n_items),
                str(h.raters),
                _cell(h.nominal, notes, f"humans {h.scope}"),
                _cell(h.ordinal, notes, f"humans {h.scope}"),
            ]
            for h in c.humans
        ]
        lines += _table(["criterion", "n", "raters", "nominal", "ordinal"], rows)
    elif c.items:
        lines += ["", "the humans among themselves: no item was rated by two or more of them"]
    for matrix in c.confusion:
        lines += ["", f"{matrix.criterion}: the panel (rows) against the humans (columns), n={matrix.n_items}"]
        lines += _table(
            ["", *matrix.levels], [[lv, *map(str, row)] for lv, row in zip(matrix.levels, matrix.counts, strict=True)]
        )
    for r in c.recommendations:
        lines += [
            "",
            f"recommended min_agreement for {r.rubric} (target {r.target:g}, delta {r.delta:g}, {r.n_items} items)",
        ]
        if r.min_agreement is None:
            lines.append(f"  none: {r.why}")
        else:
            lines.append(
                f"  {r.min_agreement:g}: the panel decides {r.decided} item(s) alone with {r.disagreements} "
                f"disagreement(s) (disagreement rate at most {r.upper_bound:.2f} with confidence {1 - r.delta:g}); "
                f"{r.to_review:.0%} still go to review"
            )
    if c.advice:
        lines += ["", f"judges ({c.weights_rule})"]
        for a in c.advice:
            alpha = "no figure" if a.alpha is None else f"alpha {a.alpha:.2f}"
            flag = f", FLAGGED: below {FLAG_BELOW}" if a.flagged else ""
            weight = f", suggested weight {a.weight:g}" if a.weight is not None else ""
            lines.append(f"  {a.judge}: {alpha}{flag}{weight}")
    if notes:
        lines += ["", "undefined figures", *notes]
    return [printable(line) for line in lines]


def _share(value: float | None, ci: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" + (f" [{ci.low:.0%}, {ci.high:.0%}]" if ci is not None else "")
