"""`ask: per_item`: each judge answers one question per call, along its own path through the graph (VERA-MH's
protocol), for teams that must reproduce it.

The next question is the one the walk over the answers so far stops at, so the path is the whole mode's walk
and equal answers give equal verdicts. Each answer is kept under its own key (judge, rubric, item, what is
judged, the ask mode): a rerun asks nothing, and a judge whose path changes is asked only what it has not
answered. Any question a judge does not answer usably makes that judge missing for the assessment.
"""

from __future__ import annotations

import asyncio

from pytest_laj.core.graph import QuestionGraph, walk
from pytest_laj.core.models import CriterionVerdict, JudgeResult, JudgeVerdict
from pytest_laj.engine.rating import Rater
from pytest_laj.judges.panel import Panel
from pytest_laj.judges.protocol import JudgeRequest, walked_verdict

__all__ = ["PerItem"]

Answers = dict[str, CriterionVerdict]
"""A judge's answers so far: item id -> the answer (its label as `level`) with its evidence."""


def _next_question(graph: QuestionGraph, answers: Answers) -> str | None:
    """The first question the walk over these answers needs and lacks; None once the walk is complete."""
    done = walk(graph, {item: answer.level for item, answer in answers.items()})
    return next((d.missing for d in done.dimensions if d.missing is not None), None)


def _question(request: JudgeRequest, item: str) -> JudgeRequest:
    return JudgeRequest(
        request.rubric,
        request.criteria,
        request.output,
        request.input,
        request.context,
        conversation=request.conversation,
        item=item,
    )


def _graph(request: JudgeRequest) -> QuestionGraph:
    graph = request.rubric.graph
    if graph is None:  # the engine asks per item only for a question-graph rubric
        raise ValueError(f"rubric {request.rubric.id!r} has no questions to ask one at a time")
    return graph


class PerItem:
    """Rates a prepared request one question per call, with the same `cached` and `rate` as the Rater."""

    def __init__(self, rater: Rater) -> None:
        self.rater = rater

    def cached(self, panel: Panel, request: JudgeRequest, count: bool = True) -> list[JudgeResult] | None:
        """Every judge's walk over stored answers, or None at the first answer not stored. `count`: add the
        reads to the cache hits now."""
        if not self.rater.store.reads:
            return None
        graph = _graph(request)
        walks: list[Answers] = [{} for _ in panel.judges]
        for judge, sample, answers in zip(panel.judges, Rater.samples(panel), walks, strict=True):
            while (item := _next_question(graph, answers)) is not None:
                asked = _question(request, item)
                verdict = self.rater.stored(Rater.key(judge, asked, sample), asked)
                if verdict is None:
                    return None
                answers[item] = verdict.criteria[item]
        self.rater.counts.add(cache_hits=sum(len(answers) for answers in walks) if count else 0)
        return [
            JudgeResult(judge=judge.name, weight=judge.weight, verdict=_verdict(request, answers), cached=True)
            for judge, answers in zip(panel.judges, walks, strict=True)
        ]

    async def rate(self, panel: Panel, request: JudgeRequest) -> list[JudgeResult]:
        judges = range(len(panel.judges))
        return list(await asyncio.gather(*(self._walk(panel, index, request) for index in judges)))

    async def _walk(self, panel: Panel, index: int, request: JudgeRequest) -> JudgeResult:
        """One judge's path: ask (or read) each question the walk needs next, until the walk is complete; the
        calls, cost and time of every question add up to the judge's."""
        graph, judge, sample = _graph(request), panel.judges[index], Rater.samples(panel)[index]
        answers: Answers = {}
        total = JudgeResult(judge=judge.name, weight=judge.weight, cached=True)
        while (item := _next_question(graph, answers)) is not None:
            asked = _question(request, item)
            result = await self.rater.rate_one(panel, judge, Rater.key(judge, asked, sample), asked)
            total = total.model_copy(
                update={
                    "attempts": total.attempts + result.attempts,
                    "cost_usd": total.cost_usd + result.cost_usd,
                    "latency_s": (total.latency_s or 0.0) + result.latency_s if result.latency_s else total.latency_s,
                    "cached": total.cached and result.cached,
                }
            )
            if result.verdict is None:
                error = f"question {item!r} (asked per item): {result.error}"
                update = {"error": error, "error_kind": result.error_kind, "budget_exhausted": result.budget_exhausted}
                return total.model_copy(update=update)
            answers[item] = result.verdict.criteria[item]
        verdict = _verdict(request, answers).model_copy(update={"cost_usd": total.cost_usd})
        return total.model_copy(update={"verdict": verdict})


def _verdict(request: JudgeRequest, answers: Answers) -> JudgeVerdict:
    labels = {item: answer.level for item, answer in answers.items()}
    evidence = {item: answer.evidence for item, answer in answers.items()}
    return walked_verdict(_graph(request), request, labels, evidence)
