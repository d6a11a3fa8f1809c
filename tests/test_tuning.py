"""The shared pick-the-fastest loop of the kernel tuners, with a fake timer (no GPU)."""

import pytest

from nvfp4bench.kernels import tuning


@pytest.fixture
def fake_timer(monkeypatch):
    """time_graph returns the time the built call reports; a call that raises fails the timing."""
    monkeypatch.setattr(tuning, "time_graph", lambda call, rep_ms: call())


def test_fastest_picks_the_minimum_and_skips_what_fails(fake_timer):
    times = {"a": 3.0, "b": 1.5, "c": 2.0}

    def build(name):
        if name == "broken-build":
            raise ValueError("does not fit")
        if name == "broken-run":
            return lambda: 1 / 0
        return lambda: times[name]

    lines = []
    best, call, ms = tuning.fastest(
        ["a", "broken-build", "b", "broken-run", "c"], build, label="M=1", log=lines.append
    )
    assert (best, ms, call()) == ("b", 1.5, 1.5)
    skipped = [line for line in lines if "tune skip" in line]
    assert len(skipped) == 2 and "does not fit" in skipped[0] and "ZeroDivisionError" in skipped[1]
    assert sum("tune M=1" in line for line in lines) == 3


def test_fastest_names_the_last_error_when_nothing_ran(fake_timer):
    def build(name):
        raise RuntimeError(f"{name} needs more shared memory")

    with pytest.raises(RuntimeError, match="no configuration ran for M=7 .*y needs more shared"):
        tuning.fastest(["x", "y"], build, label="M=7")
