"""Spending limits for judge calls: a count and a cost, shared by every xdist worker of a run.

Past a limit no new judge call is made; the judges that could not be asked count as missing, so the affected
assessments are ERROR with a message naming the limit, never a PASS on partial evidence.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Budget", "BudgetExhausted", "Counter"]

_MICRO = 1_000_000


def run_state(kind: str, run_id: str) -> Path:
    """Where the xdist workers of one run share `kind` of state (budget counters, rate buckets): a diskcache
    under the temp directory, named by the run's id."""
    return Path(tempfile.gettempdir()) / f"pytest-laj-{kind}-{run_id}"


def forget_run(run_id: str) -> None:
    """Remove what the run's workers shared, once they are all done: each run would otherwise leave its own."""
    for kind in ("budget", "rates"):
        shutil.rmtree(run_state(kind, run_id), ignore_errors=True)


class BudgetExhausted(RuntimeError):
    """No judge call was made because a budget is spent."""


class Counter(Protocol):
    """Named whole-number counters; `add` is atomic and returns the new value. A counter that cannot count
    raises `BudgetExhausted`: a budget that cannot be kept is spent."""

    def add(self, name: str, amount: int) -> int: ...

    def value(self, name: str) -> int: ...


class _LocalCounter:
    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, amount: int) -> int:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount
            return self._values[name]

    def value(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)


class _SharedCounter:
    """Atomic counters in a diskcache keyed by the xdist run id, so workers draw on one budget."""

    def __init__(self, run_id: str) -> None:
        import diskcache

        self._cache: Any = diskcache.Cache(str(run_state("budget", run_id)))

    def add(self, name: str, amount: int) -> int:
        return int(self._cache.incr(name, amount, default=0))

    def value(self, name: str) -> int:
        return int(self._cache.get(name, 0))


class Budget:
    def __init__(
        self,
        max_calls: int | None,
        max_cost: float | None,
        run_id: str | None = None,
        shared: Counter | None = None,
    ) -> None:
        """`shared`: the run's counters in its verdict store (Redis), instead of a temporary diskcache."""
        self.max_calls = max_calls
        self.max_cost = max_cost
        limited = max_calls is not None or max_cost is not None
        self._counter: Counter = (shared or _SharedCounter(run_id)) if run_id and limited else _LocalCounter()

    def reserve_call(self) -> None:
        """Take one call from the budget, or raise without making it."""
        if self.max_cost is not None and self.cost >= self.max_cost:
            raise BudgetExhausted(f"budget exhausted: --laj-max-cost {self.max_cost:g} USD spent; judge not called")
        calls = self._counter.add("calls", 1)
        if self.max_calls is not None and calls > self.max_calls:
            raise BudgetExhausted(f"budget exhausted: --laj-max-calls {self.max_calls} reached; judge not called")

    def spend(self, cost_usd: float | None) -> None:
        if cost_usd:
            self._counter.add("cost", round(cost_usd * _MICRO))

    @property
    def cost(self) -> float:
        return self._counter.value("cost") / _MICRO
