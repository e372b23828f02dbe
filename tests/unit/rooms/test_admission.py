"""Admission control, sans-IO: one slow moment refuses nobody; a sustained late loop or a busy loop
thread refuses newcomers, counted; two seconds of normal load take them again."""

from __future__ import annotations

from gateway.config import AdmissionConfig
from gateway.rooms.admission import Admission


class Machine:
    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0
        self.lag_s = 0.0

    def step(self, admission: Admission, lag_ms: float = 0.0, cpu_share: float = 0.1, samples: int = 1) -> None:
        for _ in range(samples):
            self.now += 0.5
            self.cpu += 0.5 * cpu_share
            self.lag_s = lag_ms / 1000
            admission.sample()


def admission_on(machine: Machine) -> Admission:
    config = AdmissionConfig(max_loop_lag_ms=150, max_cpu=0.9, retry_after_s=30)
    return Admission(config, lambda: machine.lag_s, cpu_time=lambda: machine.cpu, clock=lambda: machine.now)


def test_one_slow_moment_refuses_nobody() -> None:
    machine = Machine()
    admission = admission_on(machine)
    machine.step(admission, samples=4)
    machine.step(admission, lag_ms=400)  # a garbage collection, a burst of joins
    machine.step(admission, cpu_share=1.0)
    assert admission.admit() is None and admission.refused == 0


def test_a_sustained_late_loop_refuses_newcomers_until_it_recovers() -> None:
    machine = Machine()
    admission = admission_on(machine)
    machine.step(admission, samples=2)
    machine.step(admission, lag_ms=300, samples=4)
    why = admission.admit()
    assert why is not None and "late" in why and admission.refused == 1
    machine.step(admission, samples=4)  # the smoothed lag falls under the limit, then 2 s more
    assert admission.admit() is not None
    machine.step(admission, samples=6)
    assert admission.admit() is None and admission.refused == 2


def test_a_busy_loop_thread_refuses_newcomers() -> None:
    machine = Machine()
    admission = admission_on(machine)
    machine.step(admission, cpu_share=0.98, samples=10)
    why = admission.admit()
    assert why is not None and "CPU" in why
