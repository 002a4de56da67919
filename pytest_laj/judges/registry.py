"""The judges of a session: built once per panel (the configured one, or a marker's), from the
`pytest_laj_make_judge` hook, the simulator, or litellm."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_laj.core.redact import remember_secrets
from pytest_laj.errors import UsageError
from pytest_laj.judges.base import Judge, JudgeSpec, parse_judge_specs
from pytest_laj.judges.llm import LiteLLMJudge, completion_params
from pytest_laj.judges.simulated import SimulatedJudge, simulated_spec

__all__ = ["NO_JUDGES", "JudgeRegistry", "MakeJudge"]

MakeJudge = Callable[[JudgeSpec], "Judge | None"]

NO_JUDGES = (
    "no judges are configured. Set judges with the ini option laj_judges, --laj-judge MODEL, or "
    "LAJ_JUDGES=model1,model2 (any litellm model string), or run offline against the judge simulator with "
    "--laj-simulate=RULES.yaml."
)


def _panel_key(spec: JudgeSpec) -> str:
    """A judge's whole configuration; the dump masks the key, so its digest stands in for it."""
    secret = spec.api_key.get_secret_value() if spec.api_key else ""
    return spec.model_dump_json() + hashlib.sha256(secret.encode()).hexdigest()


def _check_names(names: Sequence[str], source: str) -> None:
    """Each member's verdicts are kept and reported under its name, so two members may not share one."""
    counts = Counter(names)
    shared = sorted(name for name, count in counts.items() if count > 1)
    if shared:
        raise UsageError(
            f"{source}: two panel members are named {shared[0]!r}; give each its own name (e.g. "
            f"'{shared[0]} name=sample1', '{shared[0]} name=sample2') so each keeps its own verdicts"
        )


class JudgeRegistry:
    """Panels of judges by the marker's `judges=` (none: the configured panel), each built once."""

    def __init__(
        self, configured: Sequence[JudgeSpec], make_judge: MakeJudge, timeout: float, simulate: Path | None
    ) -> None:
        self._configured = list(configured)
        _check_names([spec.label for spec in configured], "the configured judges")  # before any test runs
        self._make_judge = make_judge
        self._timeout = timeout
        self._simulate = simulate
        self._panels: dict[tuple[str, ...], list[Judge]] = {}
        self._lock = threading.Lock()  # tests and producers' prefetches (on the judge loop) build panels at once
        self._simulator: Any = None
        self._rules: Any = None
        if simulate is not None:
            from pytest_laj.simulator import load_rules

            self._rules = load_rules(simulate)

    @property
    def rules(self) -> Any:
        """The simulator rules every judge answers from, if the run simulates."""
        return self._rules

    def panel_specs(self) -> list[JudgeSpec]:
        """The configured panel as specs, without building a judge (for the run record); empty when none is."""
        try:
            return self._chosen([])
        except UsageError:
            return []

    def judges_for(self, override: Sequence[Any] | None) -> list[Judge]:
        specs = parse_judge_specs(list(override), "laj marker judges", completion_params) if override else []
        key = tuple(_panel_key(spec) for spec in specs)
        with self._lock:
            if key not in self._panels:
                panel = [self._build(spec) for spec in self._chosen(specs)]
                remember_secrets(secret for judge in panel for secret in judge.secrets())
                _check_names([judge.name for judge in panel], "laj marker judges" if specs else "the judges")
                self._panels[key] = panel
            return self._panels[key]

    def _chosen(self, specs: list[JudgeSpec]) -> list[JudgeSpec]:
        chosen = specs or self._configured
        if not chosen and self._rules is not None:
            chosen = [JudgeSpec(model=f"openai/{n}", name=n) for n in self._rules.judge_names]
        if not chosen:
            raise UsageError(NO_JUDGES)
        return chosen

    def _build(self, spec: JudgeSpec) -> Judge:
        """A judge from the `pytest_laj_make_judge` hook wins; otherwise an LLM judge (simulated if asked)."""
        custom = self._make_judge(spec)
        if custom is not None:
            return custom
        if self._rules is not None:
            return SimulatedJudge(simulated_spec(spec, self._rules, self._simulate), self._timeout, self._url)
        return LiteLLMJudge(spec, self._timeout)

    def _url(self) -> str:
        with self._lock:
            if self._simulator is None:
                from pytest_laj.simulator import Simulator

                self._simulator = Simulator(self._rules)
                self._simulator.start()
            return str(self._simulator.base_url)

    def close(self) -> None:
        if self._simulator is not None:
            self._simulator.stop()
            self._simulator = None
