"""A simulated clock for time-limit tests: time passes only when the test says that work was done, so a
time limit is checked against the work done, the same on every machine (no wall-clock assertions).

``simulated_clock(monkeypatch, *modules)`` replaces the ``time`` module that :class:`rcprune.result.Stopwatch`
(and each of ``modules``, e.g. a solver that sizes its chunks with ``time.perf_counter``) reads with one
whose ``perf_counter`` returns the clock's ``now``; the test then wraps the solver's unit of work so that
it calls ``clock.advance(seconds)``. Reading the clock never moves it.
"""
from __future__ import annotations

from types import SimpleNamespace

import rcprune.result


class SimulatedClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def perf_counter(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def simulated_clock(monkeypatch, *modules) -> SimulatedClock:
    clock = SimulatedClock()
    fake_time = SimpleNamespace(perf_counter=clock.perf_counter)
    for module in (rcprune.result, *modules):
        monkeypatch.setattr(module, "time", fake_time)
    return clock
