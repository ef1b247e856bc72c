"""benchmarks/_harness.py's timing order: every contender runs once per round, after varying neighbours."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType


def _load_harness() -> ModuleType:
    """benchmarks/_harness.py as a module, without putting benchmarks/ on sys.path."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "_harness.py"
    spec = importlib.util.spec_from_file_location("probloss_bench_harness", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_rounds_shuffle_the_order_so_predecessors_vary() -> None:
    _harness = _load_harness()
    calls: list[str] = []
    names = ["probloss_off", "probloss", "torch", "optax", "keras"]
    contenders = [_harness.Contender(n, n, (lambda n=n: calls.append(n))) for n in names]
    rounds = _harness.time_rounds(contenders, repeats=40)
    assert rounds == 40
    warm = len(calls) - 40 * len(names)
    timed = calls[warm:]
    for r in range(rounds):
        assert sorted(timed[r * len(names):(r + 1) * len(names)]) == sorted(names)  # each once per round
    predecessors = {n: {timed[i - 1] for i in range(1, len(timed)) if timed[i] == n} for n in names}
    # A rotation keeps one predecessor (two across round boundaries): the shuffle gives each several.
    assert all(len(p) >= 3 for p in predecessors.values()), predecessors
    assert all(len(c.times) == rounds for c in contenders)


def test_a_capped_contender_runs_its_rounds_and_leaves_the_budget_to_the_others() -> None:
    """A slow reference with max_rounds is timed that many rounds; the others share the budget."""
    _harness = _load_harness()
    fast_calls: list[int] = []
    fast = _harness.Contender("probloss", "probloss", lambda: fast_calls.append(1))
    slow = _harness.Contender("generic", "generic kernel", lambda: time.sleep(0.05), max_rounds=2)
    rounds = _harness.time_rounds([fast, slow], repeats=25, budget_s=0.2, min_rounds=3)
    assert len(slow.times) == 2
    # The slow contender's rounds are outside the 0.2 s budget; the fast one's calls cost
    # microseconds, so it gets every repeat (without the cap: 0.2 / 0.05 = 4 rounds at most).
    assert rounds == 25
    assert len(fast.times) == 25
