"""Post-operative referral triage: recorded decisions judged against rubrics/postop_triage.yaml."""

from pathlib import Path

import pytest

from pytest_laj import cases

CASES = Path(__file__).parent / "cases" / "postop_triage.yaml"

pytestmark = pytest.mark.laj(rubric="postop_triage")


@pytest.mark.parametrize("case", cases(CASES))
def test_triage_decision(laj, case) -> None:
    laj.check(case.output, input=case.input, context=case.context)


@pytest.mark.anyio
async def test_neck_swelling_after_thyroidectomy(laj) -> None:
    # acheck() is the awaitable check(), for pipelines that are async end to end.
    await laj.acheck(
        "Urgency: EMERGENCY\n"
        "Reasoning: rapidly increasing neck swelling and a change in voice the day after "
        "thyroidectomy suggest bleeding under the wound, which can compress the airway.\n"
        "Next step: call 999 now for emergency transfer to the surgical team.\n"
        "Safety-netting: if she becomes short of breath or noisy when breathing before the "
        "ambulance arrives, tell the call handler at once; keep her sitting upright.",
        input=(
            "Phone call from a ward discharge follow-up. 44-year-old woman, day 1 after total "
            "thyroidectomy. Neck swelling that has grown over the last hour, voice hoarse, feels "
            "tight when swallowing."
        ),
        context={"days_since_surgery": "0-7"},
    )
