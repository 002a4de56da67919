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
"""Bump when the shape of a stored entry or of a key's material changes: older entries are then stale. (A verdict's
`answers` and `driver` only add fields with defaults: entries without them still read, with no item path.)"""


Turns = Sequence[Sequence[str]] | None
"""A conversation's turns as [role, content] pairs, or None for a single output."""


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
    conversation: Turns = None,
    item: str | None = None,
) -> str:
    """One judge's verdict: everything that changes it, and nothing that does not. A conversation's `output` is
    its transcript, and its turns are in the key too (a transcript can be ambiguous). A per-item answer (`ask:
    per_item`) is keyed by its item and the ask mode as well, so it is never read as a whole verdict."""
    material = {
        "format": CACHE_FORMAT,
        "prompt": PROMPT_VERSION,
        "judge": judge,
        "rubric": rubric_fingerprint,
        "criteria": list(criteria),
        "output": output,
        "input": input,
        "context": dict(context),
    }
    if item is not None:
        material |= {"ask": "per_item", "item": item}
    return _digest(_with_turns(material, conversation))


def _with_turns(material: dict[str, Any], conversation: Turns) -> dict[str, Any]:
    """The material with the turns; a single output's material, and so its key, is as it always was."""
    return material if conversation is None else {**material, "conversation": [list(t) for t in conversation]}


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


def assessment_identity(
    rubric_fingerprint: str, input: str | None, context: Mapping[str, str], output: str, conversation: Turns = None
) -> str:
    """What an assessment is about, by content and not by test name: human decisions and baselines match by it."""
    material = {"rubric": rubric_fingerprint, "input": input, "context": dict(context), "output": output}
    return _digest(_with_turns(material, conversation))


def label_key(
    rubric_id: str,
    judged_fingerprint: str,
    input: str | None,
    context: Mapping[str, str],
    output: str,
    conversation: Turns = None,
) -> str:
    """A human's label: the same output, input and context rated against the same questions. Not the test's name
    (a renamed test keeps its labels), not the rubric's weights or thresholds (they do not change a rating)."""
    material = {"rubric": rubric_id, "asked": judged_fingerprint, "input": input, "context": dict(context)}
    return _digest(_with_turns({**material, "output": output}, conversation))
