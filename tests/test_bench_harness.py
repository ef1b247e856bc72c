"""benchmarks/_harness.py's timing order: every contender runs once per round, after varying neighbours."""

from __future__ import annotations

import importlib.util
import sys
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
