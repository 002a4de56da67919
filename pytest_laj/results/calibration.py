"""Calibration: how far the judges agree with people, and what `min_agreement` the data supports.

Pure functions over rated items (one item is one output's criterion, with the humans' levels, each judge's level
and the panel's consensus). Every figure says how many items stand behind it. Krippendorff's alpha comes from the
`krippendorff` package; its bootstrap interval resamples items with the coincidence matrix, vectorised with numpy
(a thousand replicates of a few thousand items take milliseconds). Alpha is given at two levels of measurement:
nominal (every level, "not relevant" included, a category) and ordinal (the rubric's level order, "not relevant"
missing).

The threshold recommendation follows *Trust or Escalate* (Jung et al., ICLR 2025): at a threshold, the items
the panel decides alone are those whose agreement reaches it; the panel is trusted there when a one-sided
Clopper-Pearson upper bound on its disagreement rate with the humans, at confidence 1 - delta, is at most
1 - target. Thresholds are tested from the strictest down and the search stops at the first that fails (fixed
sequence testing), so the guarantee holds for the one recommended without a multiple-testing correction.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from pytest_laj.core.aggregate import severity_rank
from pytest_laj.core.labels import Label
from pytest_laj.core.rubric import Level, Rubric
from pytest_laj.results.record import AssessmentRecord

__all__ = [
    "FLAG_BELOW",
    "AlphaResult",
    "Calibration",
    "ConfusionMatrix",
    "HumanAgreement",
    "Interval",
    "JudgeAdvice",
    "JudgeAgreement",
    "PanelAgreement",
    "RatedItem",
    "Recommendation",
    "Scale",
    "ThresholdStep",
    "calibrate",
    "clopper_pearson_upper",
    "items_from_report",
    "krippendorff_alpha",
    "majority",
]

FLAG_BELOW = 0.67
"""Krippendorff's own floor for tentative conclusions: a judge agreeing less with people is flagged."""

CONFIDENCE = 0.95
"""The coverage of every bootstrap interval."""

Measure = Literal["nominal", "ordinal"]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scale:
    """A criterion's levels in the rubric's order: what nominal and ordinal alpha compare."""

    levels: tuple[Level, ...]

    @classmethod
    def of(cls, rubric: Rubric, criterion_id: str) -> Scale:
        return cls(rubric.levels_for(rubric.criterion(criterion_id)))

    def find(self, text: str) -> Level | None:
        """The level whose id or label is `text`, ignoring case and surrounding space."""
        wanted = text.strip().casefold()
        return next((lv for lv in self.levels if wanted in (lv.id.casefold(), lv.label.casefold())), None)

    def rank(self, level_id: str) -> float:
        """The level's place among the applicable levels; NaN for "not relevant" (missing in ordinal alpha)."""
        applicable = [lv.id for lv in self.levels if lv.applicable]
        return float(applicable.index(level_id)) if level_id in applicable else math.nan


def majority(levels: Iterable[str], scale: Scale) -> str | None:
    """The most frequent level; a tie goes to the more severe level, as among judges and among reviewers."""
    counts = Counter(levels)
    if not counts:
        return None
    best = max(counts.values())
    tied = [(i, lv) for i, lv in enumerate(scale.levels) if counts.get(lv.id) == best]
    return max(tied, key=lambda pair: severity_rank(pair[1], pair[0]))[1].id if tied else None


@dataclass
class RatedItem:
    """One output's criterion as people and judges rated it."""

    item: str  # the label key, or the item column of external ratings
    criterion: str  # 'rubric/criterion'
    humans: dict[str, str] = field(default_factory=dict)
    judges: dict[str, str] = field(default_factory=dict)
    panel: str | None = None
    agreement: float | None = None

    @property
    def rubric(self) -> str:
        return self.criterion.split("/", 1)[0]


# -- the report --------------------------------------------------------------------------------------------------


def items_from_report(
    records: Sequence[AssessmentRecord], labels: Mapping[str, Label], rubric_for: Callable[[str], Rubric]
) -> tuple[list[RatedItem], dict[str, Scale]]:
    """The labelled assessments that have judge votes, one item per criterion people rated and judges voted on.
    An output judged twice in a run (two tests, the same content) counts once."""
    items: list[RatedItem] = []
    scales: dict[str, Scale] = {}
    seen: set[str] = set()
    for record in records:
        a = record.assessment
        label = labels.get(a.label_key)
        if label is None or not label.decisions or a.label_key in seen:
            continue
        seen.add(a.label_key)
        rubric = rubric_for(a.rubric)
        for cid, result in a.criteria.items():
            humans = {d.reviewer: d.levels[cid] for d in label.decisions if cid in d.levels}
            if not humans or not result.votes:
                continue
            key = f"{a.rubric}/{cid}"
            scales.setdefault(key, Scale.of(rubric, cid))
            items.append(
                RatedItem(
                    item=a.label_key,
                    criterion=key,
                    humans=humans,
                    judges={v.judge: v.level for v in result.votes},
                    panel=result.panel_consensus if result.human is not None else result.consensus,
                    agreement=result.agreement,
                )
            )
    return items, scales


# -- Krippendorff's alpha with a bootstrap interval -------------------------------------------------------------


class Interval(BaseModel):
    low: float
    high: float


class AlphaResult(BaseModel):
    """Krippendorff's alpha at one level of measurement, or why it is undefined."""

    level_of_measurement: Measure
    value: float | None
    n_items: int = Field(description="items with two or more ratings behind the figure")
    ci: Interval | None = Field(default=None, description="95% percentile bootstrap interval, items resampled")
    why_undefined: str = ""

    def __str__(self) -> str:
        if self.value is None:
            return f"undefined ({self.why_undefined})"
        ci = f" [{self.ci.low:.2f}, {self.ci.high:.2f}]" if self.ci else ""
        return f"{self.value:.2f}{ci}"


def _coincidences(matrix: Floats, values: int) -> Floats:
    """Per unit (column), its contribution to the coincidence matrix: pairs of values over m_u - 1."""
    units = matrix.shape[1]
    counts = np.zeros((units, values))
    for row in matrix:
        present = ~np.isnan(row)
        np.add.at(counts, (np.nonzero(present)[0], row[present].astype(int)), 1.0)
    m = counts.sum(axis=1)
    pairs = counts[:, :, None] * counts[:, None, :] - np.einsum("uv,vw->uvw", counts, np.eye(values))
    result: Floats = pairs / (m - 1)[:, None, None]
    return result


def _alpha_of(coincidence: Floats, measure: Measure) -> Floats:
    """Alpha of each coincidence matrix in a stack (b, v, v); NaN where there is no variance."""
    n_v = coincidence.sum(axis=2)
    n = n_v.sum(axis=1)
    values = n_v.shape[1]
    if measure == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(values), coincidence.shape)
    else:  # ordinal: (sum of n_g from c to k, less half of n_c and n_k) squared
        cum = np.cumsum(n_v, axis=1)
        low = np.minimum.outer(np.arange(values), np.arange(values))
        high = np.maximum.outer(np.arange(values), np.arange(values))
        between = cum[:, high] - cum[:, low] + n_v[:, low]
        delta = (between - (n_v[:, :, None] + n_v[:, None, :]) / 2) ** 2
    observed = (coincidence * delta).sum(axis=(1, 2))
    expected = (n_v[:, :, None] * n_v[:, None, :] * delta).sum(axis=(1, 2)) / np.maximum(n - 1, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha: Floats = np.where(expected > 0, 1.0 - observed / expected, np.nan)
    return alpha


def _bootstrap(per_unit: Floats, measure: Measure, replicates: int, rng: np.random.Generator) -> Interval | None:
    units = per_unit.shape[0]
    flat = per_unit.reshape(units, -1)
    found: list[Floats] = []
    for start in range(0, replicates, 256):  # bounded memory: 256 x units counts at a time
        draws = rng.multinomial(units, np.full(units, 1.0 / units), size=min(256, replicates - start))
        stack = (draws @ flat).reshape(-1, *per_unit.shape[1:])
        found.append(_alpha_of(stack, measure))
    alphas = np.concatenate(found) if found else np.empty(0)
    alphas = alphas[~np.isnan(alphas)]
    if alphas.size == 0:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(alphas, [tail, 100 - tail])
    return Interval(low=round(float(low), 4), high=round(float(high), 4))


def krippendorff_alpha(
    matrix: Floats, measure: Measure, replicates: int = 0, rng: np.random.Generator | None = None
) -> AlphaResult:
    """Alpha of a raters x items matrix of value codes (NaN: not rated), with its bootstrap interval.

    Nominal codes are level positions; ordinal codes are ranks among the applicable levels."""
    import krippendorff

    pairable = matrix[:, (~np.isnan(matrix)).sum(axis=0) >= 2]
    n = pairable.shape[1]
    if n < 2:
        return AlphaResult(
            level_of_measurement=measure, value=None, n_items=n, why_undefined=f"{n} item(s) rated twice; 2 needed"
        )
    seen = np.unique(pairable[~np.isnan(pairable)])
    if seen.size < 2:
        return AlphaResult(
            level_of_measurement=measure,
            value=None,
            n_items=n,
            why_undefined="every rating is the same level: no variance to compare",
        )
    value = float(krippendorff.alpha(reliability_data=pairable, level_of_measurement=measure))
    ci = None
    if replicates > 0:
        values = int(np.nanmax(pairable)) + 1
        ci = _bootstrap(_coincidences(pairable, values), measure, replicates, rng or np.random.default_rng())
    return AlphaResult(level_of_measurement=measure, value=round(value, 4), n_items=n, ci=ci)


# -- the figures -------------------------------------------------------------------------------------------------


class _Figures(BaseModel):
    scope: str = Field(description="'all' (pooled over criteria) or 'rubric/criterion'")
    nominal: AlphaResult
    ordinal: AlphaResult


class JudgeAgreement(_Figures):
    """One judge against the humans' consensus."""

    judge: str


class PanelAgreement(_Figures):
    """The panel's consensus against the humans' consensus."""

    exact: float | None = Field(description="the share of items where the two are the same level")
    exact_ci: Interval | None = None


class HumanAgreement(_Figures):
    """The humans among themselves, over items two or more of them rated."""

    raters: int


class ConfusionMatrix(BaseModel):
    criterion: str
    levels: list[str] = Field(description="level ids in the rubric's order: rows the panel, columns the humans")
    counts: list[list[int]]
    n_items: int


class ThresholdStep(BaseModel):
    """What the panel decides alone at one `min_agreement`, and how far it can be trusted there."""

    threshold: float
    decided: int = Field(description="items whose panel agreement reaches the threshold")
    disagreements: int = Field(description="of those, items where the panel's consensus is not the humans'")
    upper_bound: float = Field(description="Clopper-Pearson upper bound on the disagreement rate, at 1 - delta")
    holds: bool


class Recommendation(BaseModel):
    """The lowest `min_agreement` for a rubric at which the panel's own decisions meet the target."""

    rubric: str
    target: float
    delta: float
    min_agreement: float | None = Field(description="None: no threshold reaches the target on these items")
    n_items: int
    decided: int = 0
    disagreements: int = 0
    upper_bound: float | None = None
    to_review: float | None = Field(
        default=None, description="the share of items (rated criteria) that would still go to review"
    )
    why: str = ""
    steps: list[ThresholdStep] = Field(default_factory=list, description="each threshold tested, strictest first")


class JudgeAdvice(BaseModel):
    judge: str
    alpha: float | None = Field(description="ordinal alpha with the humans over all criteria (nominal if undefined)")
    flagged: bool = Field(description=f"alpha below {FLAG_BELOW}")
    weight: float | None = Field(description="suggested panel weight")


class Calibration(BaseModel):
    """`laj calibrate --json`: the panel against people, every figure with the number of items behind it."""

    source: str
    items: int = Field(description="rated items (an output's criterion) behind the whole calibration")
    outputs: int = Field(description="distinct outputs (labels or external items)")
    bootstrap: int
    seed: int | None
    confidence: float = CONFIDENCE
    judges: list[JudgeAgreement] = Field(default_factory=list)
    panel: list[PanelAgreement] = Field(default_factory=list)
    humans: list[HumanAgreement] = Field(default_factory=list)
    confusion: list[ConfusionMatrix] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    advice: list[JudgeAdvice] = Field(default_factory=list)
    weights_rule: str = "weights proportional to each judge's alpha with the humans, floored at 0, scaled to average 1"


@dataclass(frozen=True)
class _Unit:
    """A rated item with the humans' consensus on it."""

    item: RatedItem
    human: str | None


Row = Callable[[_Unit], "str | None"]


@dataclass
class _Codes:
    """Value codes: nominal by level id across every criterion, ordinal by rank among applicable levels."""

    scales: Mapping[str, Scale]
    nominal: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = sorted({lv.id for scale in self.scales.values() for lv in scale.levels})
        self.nominal = {level_id: i for i, level_id in enumerate(ids)}

    def code(self, unit: _Unit, level_id: str | None, measure: Measure) -> float:
        if level_id is None:
            return math.nan
        if measure == "nominal":
            return float(self.nominal[level_id])
        return self.scales[unit.item.criterion].rank(level_id)


def _rater(name: str, human: bool) -> Row:
    return lambda unit: (unit.item.humans if human else unit.item.judges).get(name)


def _panel(unit: _Unit) -> str | None:
    return unit.item.panel


def _consensus(unit: _Unit) -> str | None:
    return unit.human


def _figures(
    rows: Sequence[Row], units: Sequence[_Unit], codes: _Codes, replicates: int, rng: np.random.Generator
) -> tuple[AlphaResult, AlphaResult]:
    """Nominal and ordinal alpha of `rows` (raters: each gives a unit's level or None) over `units`."""
    nominal, ordinal = (
        krippendorff_alpha(
            np.array([[codes.code(unit, row(unit), measure) for unit in units] for row in rows]),
            measure,
            replicates,
            rng,
        )
        for measure in ("nominal", "ordinal")
    )
    return nominal, ordinal


def _scopes(units: Sequence[_Unit]) -> list[tuple[str, list[_Unit]]]:
    criteria = sorted({unit.item.criterion for unit in units})
    return [("all", list(units)), *((c, [u for u in units if u.item.criterion == c]) for c in criteria)]


def clopper_pearson_upper(disagreements: int, n: int, delta: float) -> float:
    """The one-sided upper confidence bound (confidence 1 - delta) on a binomial rate from `disagreements` in
    `n`: the p at which P(X <= disagreements | n, p) = delta, found by bisection on the binomial CDF (the
    regularised incomplete beta at integer parameters)."""
    if n == 0 or disagreements >= n:
        return 1.0

    def cdf(p: float) -> float:
        if p <= 0.0:
            return 1.0
        if p >= 1.0:
            return 0.0
        log_p, log_q = math.log(p), math.log1p(-p)
        return sum(
            math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
            for i in range(disagreements + 1)
        )

    low, high = disagreements / n, 1.0
    for _ in range(60):  # the CDF falls as p rises; 60 halvings reach double precision
        middle = (low + high) / 2
        if cdf(middle) > delta:
            low = middle
        else:
            high = middle
    return high


def _recommend(rubric: str, units: Sequence[_Unit], target: float, delta: float) -> Recommendation:
    rated = [
        (round(u.item.agreement, 6), u.item.panel != u.human)
        for u in units
        if u.item.agreement is not None and u.item.panel is not None and u.human is not None
    ]
    recommendation = Recommendation(rubric=rubric, target=target, delta=delta, min_agreement=None, n_items=len(rated))
    if not rated:
        recommendation.why = "no item has both the panel's consensus and the humans'"
        return recommendation
    chosen: ThresholdStep | None = None
    for threshold in sorted({a for a, _ in rated}, reverse=True):
        decided = [wrong for a, wrong in rated if a >= threshold]
        wrong = sum(decided)
        bound = clopper_pearson_upper(wrong, len(decided), delta)
        step = ThresholdStep(
            threshold=threshold,
            decided=len(decided),
            disagreements=wrong,
            upper_bound=round(bound, 4),
            holds=bound <= 1 - target + 1e-12,
        )
        recommendation.steps.append(step)
        if not step.holds:
            break
        chosen = step
    if chosen is None:
        first = recommendation.steps[0]
        recommendation.why = (
            f"no threshold reaches agreement {target:g} with confidence {1 - delta:g}: even at the strictest "
            f"({first.threshold:g}) the panel decides {first.decided} item(s) with {first.disagreements} "
            f"disagreement(s), a disagreement rate of up to {first.upper_bound:.2f}"
        )
        return recommendation
    recommendation.min_agreement = chosen.threshold
    recommendation.decided, recommendation.disagreements = chosen.decided, chosen.disagreements
    recommendation.upper_bound = chosen.upper_bound
    recommendation.to_review = round(1 - chosen.decided / len(rated), 4)
    return recommendation


def _advice(judges: Sequence[JudgeAgreement]) -> list[JudgeAdvice]:
    pooled = {j.judge: j.ordinal if j.ordinal.value is not None else j.nominal for j in judges if j.scope == "all"}
    alphas = {name: figure.value for name, figure in pooled.items()}
    floored = {name: max(value, 0.0) for name, value in alphas.items() if value is not None}
    total = sum(floored.values())
    return [
        JudgeAdvice(
            judge=name,
            alpha=value,
            flagged=value is not None and value < FLAG_BELOW,
            weight=round(floored[name] * len(floored) / total, 2) if total > 0 and name in floored else None,
        )
        for name, value in alphas.items()
    ]


def calibrate(
    items: Sequence[RatedItem],
    scales: Mapping[str, Scale],
    *,
    source: str = "",
    bootstrap: int = 1000,
    seed: int | None = None,
    target: float = 0.9,
    delta: float = 0.1,
) -> Calibration:
    """Every figure of the calibration from `items`, the scales of their criteria and the bootstrap settings."""
    rng = np.random.default_rng(seed)
    codes = _Codes(scales)
    rated = [_Unit(item, majority(item.humans.values(), scales[item.criterion])) for item in items]
    calibration = Calibration(
        source=source, items=len(rated), outputs=len({u.item.item for u in rated}), bootstrap=bootstrap, seed=seed
    )

    for scope, group in _scopes(rated):
        humans = sorted({h for u in group for h in u.item.humans})
        several = [u for u in group if len(u.item.humans) >= 2]
        if several:
            nominal, ordinal = _figures([_rater(h, human=True) for h in humans], several, codes, bootstrap, rng)
            calibration.humans.append(HumanAgreement(scope=scope, nominal=nominal, ordinal=ordinal, raters=len(humans)))
        judged = [u for u in group if u.item.panel is not None]
        if not judged:
            continue
        for judge in sorted({j for u in group for j in u.item.judges}):
            nominal, ordinal = _figures([_rater(judge, human=False), _consensus], group, codes, bootstrap, rng)
            calibration.judges.append(JudgeAgreement(scope=scope, judge=judge, nominal=nominal, ordinal=ordinal))
        nominal, ordinal = _figures([_panel, _consensus], judged, codes, bootstrap, rng)
        same = np.array([u.item.panel == u.human for u in judged], dtype=float)
        calibration.panel.append(
            PanelAgreement(
                scope=scope,
                nominal=nominal,
                ordinal=ordinal,
                exact=round(float(same.mean()), 4),
                exact_ci=_share_interval(same, bootstrap, rng),
            )
        )
        if scope != "all":
            calibration.confusion.append(_confusion(scope, judged, scales[scope]))
    for rubric in sorted({u.item.rubric for u in rated if u.item.panel is not None}):
        group = [u for u in rated if u.item.rubric == rubric]
        calibration.recommendations.append(_recommend(rubric, group, target, delta))
    calibration.advice = _advice(calibration.judges)
    return calibration


def _share_interval(values: Floats, replicates: int, rng: np.random.Generator) -> Interval | None:
    if replicates <= 0 or values.size == 0:
        return None
    draws = rng.multinomial(values.size, np.full(values.size, 1.0 / values.size), size=replicates)
    shares = draws @ values / values.size
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail])
    return Interval(low=round(float(low), 4), high=round(float(high), 4))


def _confusion(criterion: str, units: Sequence[_Unit], scale: Scale) -> ConfusionMatrix:
    ids = [lv.id for lv in scale.levels]
    counts = [[0] * len(ids) for _ in ids]
    n = 0
    for unit in units:
        if unit.item.panel in ids and unit.human in ids:
            counts[ids.index(unit.item.panel)][ids.index(unit.human)] += 1
            n += 1
    return ConfusionMatrix(criterion=criterion, levels=ids, counts=counts, n_items=n)
