"""Extension points of pytest-laj, registered through `pytest_addhooks`.

Implement them in a conftest.py or a plugin, like any pytest hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_laj.core.models import Assessment
    from pytest_laj.engine.produce import Producer
    from pytest_laj.judges.base import Judge, JudgeSpec


@pytest.hookspec(firstresult=True)
def pytest_laj_make_judge(spec: JudgeSpec, config: pytest.Config) -> Judge | None:
    """Build the judge for a configured judge spec, or return None to leave it to the next implementation
    (by default an LLM judge through litellm).

    A non-LLM judge (a rule, a local classifier) joins the panel, the cache and the quorum like any other::

        # conftest.py
        from pytest_laj import Judge, JudgeVerdict, CriterionVerdict

        class NoMethodWords(Judge):
            name, weight = "rule/no-method-words", 1.0
            def identity(self): return {"kind": "rule", "name": self.name, "version": 1}
            async def rate(self, request):
                bad = "overdose" in request.output.lower()
                return JudgeVerdict(criteria={
                    c.id: CriterionVerdict(level="high_harm" if bad else "best_practice") for c in request.criteria
                })

        def pytest_laj_make_judge(spec, config):
            return NoMethodWords() if spec.model == "rule/no-method-words" else None

    and list it like any judge: ``laj_judges = openai/gpt-4o`` / ``rule/no-method-words``.
    """


def pytest_laj_assessment(assessment: Assessment, nodeid: str) -> None:
    """Called for every finished assessment, in the process that made it (an xdist worker under -n).

    Use it to log verdicts, export them, or collect your own statistics.
    """


def pytest_laj_review(assessment: Assessment, nodeid: str) -> None:
    """Called for each assessment whose outcome is REVIEW (judges disagree on a critical judgment), in the
    process that made it. Use it to send the case to a human: open a ticket, write it to a review queue.
    """


@pytest.hookspec(firstresult=True)
def pytest_laj_producer(config: pytest.Config) -> Producer | None:
    """The system under test, for cases without a recorded output: `laj.check_case(case)` judges what it
    produces. It runs concurrently for the selected cases before their tests, and its outputs are cached by case
    and `version` (bump it when the system changes)::

        # conftest.py
        from pytest_laj import Producer

        async def chatbot(case):
            return await my_bot.reply(case.input, **case.context)

        def pytest_laj_producer(config):
            return Producer(chatbot, version="2024-06-01")
    """
