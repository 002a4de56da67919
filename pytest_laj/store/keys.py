"""Every key pytest-laj stores or finds things by, in one place: what goes into each, and what never does
(credentials, endpoints, nonces)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_laj.judges.protocol import PROMPT_VERSION

__all__ = [
    "CACHE_FORMAT",
    "alpha_key",
    "assessment_identity",
    "claim_key",
    "injection_key",
    "label_key",
    "output_key",
    "verdict_key",
]

CACHE_FORMAT = 1
"""Bump when the shape of a stored entry or of a key's material changes: older entries are then stale."""


def _digest(material: Any) -> str:
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def verdict_key(
    judge: Mapping[str, Any],
    rubric_fingerprint: str,
    criteria: Sequence[str],
    output: str,
    input: str | None,
    context: Mapping[str, str],
) -> str:
    """One judge's verdict: everything that changes it, and nothing that does not."""
    return _digest(
        {
            "format": CACHE_FORMAT,
            "prompt": PROMPT_VERSION,
            "judge": judge,
            "rubric": rubric_fingerprint,
            "criteria": list(criteria),
            "output": output,
            "input": input,
            "context": dict(context),
        }
    )


def output_key(producer: str, version: str, case_id: str, input: str | None, context: Mapping[str, Any]) -> str:
    """What a producer made of a case."""
    material = {
        "format": CACHE_FORMAT,
        "producer": producer,
        "version": version,
        "case": case_id,
        "input": input,
        "context": dict(context),
    }
    return "output:" + hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def injection_key(detector_version: str, level_ids: Sequence[str], criterion_ids: Sequence[str], text: str) -> str:
    """An output's injection scan: it depends only on the text, the rubric's ids and the detector."""
    material = json.dumps([detector_version, list(level_ids), list(criterion_ids), text])
    return "injection:" + hashlib.sha256(material.encode()).hexdigest()


def alpha_key(units: Iterable[Mapping[str, int]]) -> str:
    """Krippendorff's alpha over a set of rated units, in any order (xdist reports arrive in any order)."""
    votes = json.dumps(sorted(sorted(u.items()) for u in units), separators=(",", ":"))
    return "alpha:" + hashlib.sha256(votes.encode()).hexdigest()


def claim_key(verdict: str) -> str:
    """The claim one process holds while it computes a missing verdict."""
    return f"claim:{verdict}"


def assessment_identity(rubric_fingerprint: str, input: str | None, context: Mapping[str, str], output: str) -> str:
    """What an assessment is about, by content and not by test name: human decisions and baselines match by it."""
    return _digest({"rubric": rubric_fingerprint, "input": input, "context": dict(context), "output": output})


def label_key(
    rubric_id: str, judged_fingerprint: str, input: str | None, context: Mapping[str, str], output: str
) -> str:
    """A human's label: the same output, input and context rated against the same questions. Not the test's name
    (a renamed test keeps its labels), not the rubric's weights or thresholds (they do not change a rating)."""
    material = {"rubric": rubric_id, "asked": judged_fingerprint, "input": input, "context": dict(context)}
    return _digest({**material, "output": output})
