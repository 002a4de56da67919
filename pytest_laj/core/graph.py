"""Question-graph rubrics: dimensions of questions whose answers flag levels and decide the next question.

VERA-MH rates a conversation with yes/no questions grouped in dimensions: each answer may flag a level (a Red
"yes" is High Potential for Harm) and names what to ask next, so a gate question picks which items apply and
some answers end the walk. The judges answer every item; `walk` then follows the graph over one judge's answers
deterministically, so a dimension's level is reproducible from the answers alone. An answer the path needs that
is absent or not one of the item's options makes the dimension missing: never a default option (VERA-MH's own
runner takes the first option, which can turn an unparseable reply into a pass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from pytest_laj.core.levels import Level, RubricError

__all__ = [
    "ASSIGN_END",
    "END",
    "NOT_RELEVANT",
    "Dimension",
    "DimensionWalk",
    "Goto",
    "GotoKind",
    "GraphError",
    "GraphProblem",
    "Item",
    "Option",
    "QuestionGraph",
    "Step",
    "Walk",
    "default_goto",
    "graph_from_data",
    "graph_problems",
    "parse_goto",
    "walk",
]

END = "END"
ASSIGN_END = "ASSIGN_END"
NOT_RELEVANT = "NOT_RELEVANT>>"
_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
_RESERVED_IDS = frozenset({END, ASSIGN_END})


class GraphError(RubricError):
    """A question graph cannot be used; the message names the file, the row or field, and what was expected."""


class GotoKind(str, Enum):
    ITEM = "item"  # ask this item next
    END = "end"  # stop: this dimension (unless flagged) and the ones not reached are not relevant
    ASSIGN_END = "assign_end"  # stop with this answer's flag; the dimensions not reached are not relevant
    NOT_RELEVANT = "not_relevant"  # this dimension is not relevant (unless flagged); continue at the target
    FINISH = "finish"  # no item follows: the walk is complete


class Goto(NamedTuple):
    kind: GotoKind
    target: str | None = None


def parse_goto(raw: str | None) -> Goto:
    """`"3"`, `"END"`, `"ASSIGN_END"`, `"NOT_RELEVANT>>9"`, or None (the walk is complete)."""
    if raw is None:
        return Goto(GotoKind.FINISH)
    if raw == END:
        return Goto(GotoKind.END)
    if raw == ASSIGN_END:
        return Goto(GotoKind.ASSIGN_END)
    if raw.startswith(NOT_RELEVANT):
        return Goto(GotoKind.NOT_RELEVANT, raw.removeprefix(NOT_RELEVANT).strip())
    return Goto(GotoKind.ITEM, raw)


def _is(label: str, word: str) -> bool:
    return label.strip().casefold() == word


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Option(_Frozen):
    """One answer to an item: the level it flags, if any, and where the walk goes next."""

    label: str = Field(min_length=1)
    flag: str | None = Field(default=None, description="a level id; the dimension is at least this bad")
    goto: str | None = Field(default=None, description="an item id, END, ASSIGN_END, NOT_RELEVANT>>ID; None: done")

    @property
    def next(self) -> Goto:
        return parse_goto(self.goto)


class Item(_Frozen):
    """One question. `auto` items have one option and are answered without asking anyone."""

    id: str = Field(pattern=_ID_PATTERN)
    question: str = Field(min_length=1)
    guidance: str = ""
    title: str = ""
    tier: str = Field(default="", description="the gate tier this item belongs to (VERA-MH's Risk Type)")
    options: tuple[Option, ...] = Field(min_length=1)
    auto: bool = False

    def option(self, answer: object) -> Option | None:
        """The option an answer names (case and surrounding space aside), or None."""
        if self.auto:
            return self.options[0]
        if not isinstance(answer, str):
            return None
        return next((o for o in self.options if o.label.strip().casefold() == answer.strip().casefold()), None)


class Dimension(_Frozen):
    """A group of items rated together: its level is the worst level its visited answers flag."""

    id: str = Field(pattern=_ID_PATTERN)
    name: str = ""
    items: tuple[Item, ...] = Field(min_length=1)


class GraphProblem(NamedTuple):
    """A validation finding, located by item and option so each loader can name its own row or field."""

    item: str | None
    option: int | None
    message: str


class QuestionGraph(_Frozen):
    """Levels and dimensions; the walk starts at the first item and visits dimensions in order."""

    levels: tuple[Level, ...] = Field(min_length=2)
    dimensions: tuple[Dimension, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _walkable(self, info: ValidationInfo) -> QuestionGraph:
        where: Callable[[GraphProblem], str] = (info.context or {}).get("where", _plain_where)
        problems = graph_problems(self)
        if problems:
            raise ValueError("\n".join(f"{where(p)}: {p.message}" for p in problems))
        return self

    @classmethod
    def checked(cls, data: Mapping[str, Any], source: str, where: Callable[[GraphProblem], str]) -> QuestionGraph:
        """Validate a graph, reporting every problem at the place `where` names (a TSV row, a YAML field)."""
        try:
            return cls.model_validate(data, context={"where": where})
        except ValidationError as exc:
            lines = [f"{source}: invalid question graph"]
            for error in exc.errors():
                message = error["msg"].removeprefix("Value error, ")
                if error["loc"]:
                    lines.append(f"  {'.'.join(str(part) for part in error['loc'])}: {message}")
                else:
                    lines += [f"  {line}" for line in message.splitlines()]
            raise GraphError("\n".join(lines)) from None

    def items(self) -> Iterator[tuple[int, Item]]:
        """Every item in order with the index of its dimension."""
        for index, dimension in enumerate(self.dimensions):
            for item in dimension.items:
                yield index, item

    def item(self, item_id: str) -> Item:
        return next(item for _, item in self.items() if item.id == item_id)

    def level(self, level_id: str) -> Level:
        return next(level for level in self.levels if level.id == level_id)

    @property
    def best(self) -> str:
        """The level of a dimension whose visited answers flag nothing."""
        return min((lv for lv in self.levels if lv.applicable), key=lambda lv: lv.severity).id

    @property
    def not_relevant(self) -> str:
        return next(level.id for level in self.levels if not level.applicable)


def _plain_where(problem: GraphProblem) -> str:
    where = "graph" if problem.item is None else f"item {problem.item!r}"
    return where if problem.option is None else f"{where}, option {problem.option + 1}"


def default_goto(label: str, next_item: str | None, next_dimension_item: str | None) -> str | None:
    """VERA-MH's navigation for a yes/no answer without a GOTO: yes ends the dimension, no asks the next item."""
    if _is(label, "yes"):
        return next_dimension_item
    if _is(label, "no"):
        return next_item
    raise ValueError(f"answer {label!r} has no GOTO; only Yes and No may leave it empty")


def graph_from_data(raw: Any, levels: Sequence[Level], source: str) -> QuestionGraph:
    """A rubric file's `dimensions:` section. An item without `options` is yes/no and its `flag` marks the Yes;
    an option without `goto` follows VERA-MH's yes/no navigation. Problems name the field path."""
    if not isinstance(raw, list) or not all(isinstance(d, Mapping) for d in raw):
        raise GraphError(f"{source}: dimensions: expected a list of dimensions, each with an id and items")
    items = [
        (d, i) for d, dim in enumerate(raw) if isinstance(dim.get("items"), list) for i in range(len(dim["items"]))
    ]
    ids = [raw[d]["items"][i].get("id") if isinstance(raw[d]["items"][i], Mapping) else None for d, i in items]
    first = {d: ids[n] for n, (d, _) in reversed(list(enumerate(items)))}
    dimensions = []
    for d, dimension in enumerate(raw):
        filled = []
        for i, item in enumerate(dimension.get("items") or []):
            n = items.index((d, i))
            next_item = ids[n + 1] if n + 1 < len(ids) else None
            next_dimension = next((first[e] for e in range(d + 1, len(raw)) if e in first), None)
            try:
                filled.append(_with_defaults(item, next_item, next_dimension))
            except ValueError as exc:
                raise GraphError(f"{source}: dimensions[{d}].items[{i}]: {exc}") from None
        dimensions.append({**dimension, "items": filled})

    def where(problem: GraphProblem) -> str:
        if problem.item is None:
            return "dimensions"
        n = len(ids) - 1 - ids[::-1].index(problem.item)  # of a duplicate id, the later one
        at = f"dimensions[{items[n][0]}].items[{items[n][1]}] ({problem.item})"
        return at if problem.option is None else f"{at}.options[{problem.option}]"

    return QuestionGraph.checked({"levels": tuple(levels), "dimensions": dimensions}, source, where)


def _with_defaults(item: Any, next_item: str | None, next_dimension: str | None) -> Any:
    if not isinstance(item, Mapping):
        return item  # the model reports what an item should be
    if "options" not in item:
        flag = item.get("flag")
        rest = {k: v for k, v in item.items() if k != "flag"}
        return {
            **rest,
            "options": [{"label": "Yes", "flag": flag, "goto": next_dimension}, {"label": "No", "goto": next_item}],
        }
    options = item["options"]
    if not isinstance(options, list):
        return item
    filled = [
        {**o, "goto": default_goto(str(o.get("label", "")), next_item, next_dimension)}
        if isinstance(o, Mapping) and "goto" not in o
        else o
        for o in options
    ]
    return {**item, "options": filled}


def graph_problems(graph: QuestionGraph) -> list[GraphProblem]:
    """Everything that would make a walk ambiguous, stuck or endless."""
    problems = _level_problems(graph.levels)
    level_ids = {lv.id for lv in graph.levels}
    applicable = {lv.id for lv in graph.levels if lv.applicable}
    dimension_of: dict[str, int] = {}
    dimension_ids: set[str] = set()
    for dimension in graph.dimensions:
        if dimension.id in dimension_ids:
            problems.append(GraphProblem(None, None, f"duplicate dimension id {dimension.id!r}"))
        dimension_ids.add(dimension.id)
    for index, item in graph.items():
        if item.id in dimension_of:
            problems.append(GraphProblem(item.id, None, f"duplicate item id {item.id!r}"))
        elif item.id in _RESERVED_IDS:
            problems.append(GraphProblem(item.id, None, f"{item.id!r} is a GOTO keyword, not an item id"))
        dimension_of.setdefault(item.id, index)
    for index, item in graph.items():
        if item.auto and len(item.options) != 1:
            problems.append(
                GraphProblem(item.id, None, f"an auto-answered item has one option, not {len(item.options)}")
            )
        labels = [o.label.strip().casefold() for o in item.options]
        for number, option in enumerate(item.options):
            if labels.index(labels[number]) != number:
                problems.append(GraphProblem(item.id, number, f"option {option.label!r} is listed twice"))
            problems += [GraphProblem(item.id, number, m) for m in _option_problems(option, index, dimension_of)]
            if option.flag is not None and option.flag not in applicable:
                known = sorted(level_ids & applicable)
                problems.append(GraphProblem(item.id, number, f"flag {option.flag!r}; expected a level id of {known}"))
    if not problems:
        problems += _cycles(graph)
    return problems


def _level_problems(levels: Sequence[Level]) -> list[GraphProblem]:
    not_applicable = [lv.id for lv in levels if not lv.applicable]
    problems = []
    if len(not_applicable) != 1:
        message = f"expected exactly one level with applicable: false (Not Relevant), got {not_applicable}"
        problems.append(GraphProblem(None, None, message))
    scale = sorted(lv.severity for lv in levels if lv.applicable)
    if len(scale) > 1 and scale[0] == scale[1]:
        problems.append(GraphProblem(None, None, "expected one applicable level of lowest severity (the clean one)"))
    return problems


def _option_problems(option: Option, index: int, dimension_of: Mapping[str, int]) -> list[str]:
    goto = option.next
    if goto.kind is GotoKind.ASSIGN_END:
        if _is(option.label, "no"):
            return ["ASSIGN_END on a No answer; a No reports no finding to assign: use END"]
        if option.flag is None:
            return ["ASSIGN_END on an answer that flags no level; expected a severity to assign"]
    if goto.kind in (GotoKind.ITEM, GotoKind.NOT_RELEVANT):
        target = goto.target or ""
        if target not in dimension_of:
            return [f"GOTO {option.goto!r} names no item; expected an item id, END, ASSIGN_END or NOT_RELEVANT>>ID"]
        if dimension_of[target] < index:
            return [f"GOTO {option.goto!r} goes back to an earlier dimension; dimensions are walked in order"]
    return []


def _cycles(graph: QuestionGraph) -> list[GraphProblem]:
    """Depth-first search for a path that returns to an item; reported once, with the loop spelled out."""
    edges = {
        item.id: [o.next.target for o in item.options if o.next.kind in (GotoKind.ITEM, GotoKind.NOT_RELEVANT)]
        for _, item in graph.items()
    }
    done: set[str] = set()
    for start in edges:
        path: list[str] = []
        stack: list[tuple[str, Iterator[str | None]]] = []
        on_path: set[str] = set()
        if start in done:
            continue
        stack.append((start, iter(edges[start])))
        path.append(start)
        on_path.add(start)
        while stack:
            node, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif target in on_path:
                loop = [*path[path.index(target) :], target]
                return [GraphProblem(node, None, f"GOTO makes a cycle: {' -> '.join(loop)}")]
            elif target not in done:
                stack.append((target, iter(edges[target])))
                path.append(target)
                on_path.add(target)
    return []


class Step(_Frozen):
    """One visited item and the option taken."""

    item: str
    answer: str
    auto: bool = False


class DimensionWalk(_Frozen):
    """A dimension's outcome for one set of answers.

    `level` is None when an answer the path needs is missing (`missing` names that item); `driver` is the item
    whose answer set the level (the worst flag, or what made the dimension not relevant)."""

    dimension: str
    level: str | None
    steps: tuple[Step, ...] = ()
    driver: str | None = None
    missing: str | None = None


class Walk(_Frozen):
    dimensions: tuple[DimensionWalk, ...]

    def levels(self) -> dict[str, str | None]:
        return {d.dimension: d.level for d in self.dimensions}

    @property
    def complete(self) -> bool:
        return all(d.level is not None for d in self.dimensions)


class _Tally:
    """What the walk has seen in one dimension."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.flags: list[tuple[str, str]] = []  # (level id, item id) in visit order
        self.not_relevant_by: str | None = None


def walk(graph: QuestionGraph, answers: Mapping[str, object]) -> Walk:
    """Follow the graph from its first item over `answers` (item id -> option label)."""
    position = {item.id: (index, item) for index, item in graph.items()}
    tallies = [_Tally() for _ in graph.dimensions]
    current: str | None = graph.dimensions[0].items[0].id
    stopped_by: str | None = None  # the END or ASSIGN_END item
    missing: tuple[int, str] | None = None
    while current is not None:
        index, item = position[current]
        option = item.option(answers.get(item.id))
        if option is None:
            missing = (index, item.id)
            break
        tally = tallies[index]
        tally.steps.append(Step(item=item.id, answer=option.label, auto=item.auto))
        if option.flag is not None:
            tally.flags.append((option.flag, item.id))
        goto = option.next
        current = goto.target if goto.kind in (GotoKind.ITEM, GotoKind.NOT_RELEVANT) else None
        if goto.kind in (GotoKind.NOT_RELEVANT, GotoKind.END):
            tally.not_relevant_by = tally.not_relevant_by or item.id
        if goto.kind in (GotoKind.END, GotoKind.ASSIGN_END):
            stopped_by = item.id
    outcomes = []
    for index, (dimension, tally) in enumerate(zip(graph.dimensions, tallies, strict=True)):
        if missing is not None and index >= missing[0]:
            outcome = DimensionWalk(dimension=dimension.id, level=None, steps=tuple(tally.steps), missing=missing[1])
        else:
            level, driver = _decide(graph, tally, stopped_by)
            outcome = DimensionWalk(dimension=dimension.id, level=level, steps=tuple(tally.steps), driver=driver)
        outcomes.append(outcome)
    return Walk(dimensions=tuple(outcomes))


def _decide(graph: QuestionGraph, tally: _Tally, stopped_by: str | None) -> tuple[str, str | None]:
    """Worst flag first (a flagged answer is never hidden by a later not-relevant), then not relevant, else best."""
    if tally.flags:
        severity = {lv.id: lv.severity for lv in graph.levels}
        level, driver = max(tally.flags, key=lambda flag: severity[flag[0]])  # max keeps the first of equals
        return level, driver
    if tally.not_relevant_by is not None:
        return graph.not_relevant, tally.not_relevant_by
    if not tally.steps:
        return graph.not_relevant, stopped_by
    return graph.best, None
