"""The injection scan of an output, kept in the store: it depends only on the text, the rubric's ids and the
detector, so a rerun on the same outputs reads it instead of scanning again."""

from __future__ import annotations

from pytest_laj.core.injection import DETECTOR_VERSION, find_injection
from pytest_laj.judges.protocol import JudgeRequest
from pytest_laj.store.cache import Store
from pytest_laj.store.keys import injection_key

__all__ = ["scan"]


def scan(request: JudgeRequest, store: Store) -> list[str]:
    """Where the output addresses its judges, as 'kind: excerpt'."""
    rubric = request.rubric
    level_ids = sorted({level.id for c in rubric.criteria for level in rubric.levels_for(c)})
    criterion_ids = sorted(c.id for c in rubric.criteria)
    key = injection_key(DETECTOR_VERSION, level_ids, criterion_ids, request.output)
    known = store.get(key)
    if isinstance(known, list) and all(isinstance(finding, str) for finding in known):
        return known
    findings = find_injection(request.output, level_ids=level_ids, criterion_ids=criterion_ids)
    found = [f"{f.kind}: {f.excerpt!r}" for f in findings]
    store.set(key, found)
    return found
