"""The adaptive stopping rule on synthetic sample streams, its noise estimate against a Monte Carlo
reference, and the CPU timer's stopping on a simulated clock (no real time is measured)."""

import math
import os

import numpy as np
import pytest
import torch

from nvfp4bench import timing


def fresh_rng() -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(os.urandom(4), "little"))


def run_rule(stream, max_noise: float, cap_ms: float) -> list[float]:
    """Feed samples (ms each) to should_stop as a timer would; the samples taken when it stops."""
    samples, elapsed = [], 0.0
    for value in stream:
        samples.append(value)
        elapsed += value
        if timing.should_stop(samples, elapsed, max_noise, cap_ms):
            return samples
    raise AssertionError("the stream ran out before the rule stopped")


def test_median_noise_matches_the_spread_of_medians_over_repeated_runs():
    """Monte Carlo reference: the standard deviation of the median over many independent runs."""
    rng = fresh_rng()
    for n in (20, 200):
        runs = rng.normal(1.0, 0.01, size=(4000, n))
        spread = float(np.median(runs, axis=1).std())
        estimates = [timing.median_noise(run) for run in runs[:200]]
        assert float(np.median(estimates)) == pytest.approx(spread, rel=0.12)
    assert timing.median_noise([1.0]) == math.inf


def test_a_stable_stream_stops_after_the_minimum():
    rng = fresh_rng()
    stream = rng.normal(2.0, 2.0 * 1e-4, size=100_000)  # 0.01 % noise, 2 ms samples
    taken = run_rule(stream, max_noise=0.005, cap_ms=2000)
    # The first sample at which both minimums (samples, time) are met.
    assert len(taken) >= timing.MIN_SAMPLES and sum(taken) >= timing.MIN_MS
    assert len(taken) == timing.MIN_SAMPLES or sum(taken[:-1]) < timing.MIN_MS


def test_a_noisy_stream_runs_until_its_median_is_stable_or_the_cap():
    rng = fresh_rng()
    noisy = rng.normal(2.0, 2.0 * 0.2, size=100_000).clip(0.1)  # 20 % noise
    taken = run_rule(noisy, max_noise=0.005, cap_ms=200)
    assert sum(taken) >= 200 and sum(taken[:-1]) < 200  # the cap, reached and not overshot
    # With a looser cap it stops at the threshold: the noise of what it took is under it.
    taken = run_rule(noisy, max_noise=0.02, cap_ms=1e9)
    assert timing.median_noise(taken) <= 0.02 < timing.median_noise(taken[:-1])
    assert len(taken) > timing.MIN_SAMPLES


def test_fast_calls_still_take_the_minimum_time():
    stream = [0.01] * 100_000  # identical 10 us samples: zero noise from the first pair
    taken = run_rule(stream, max_noise=0.005, cap_ms=2000)
    assert sum(taken) >= timing.MIN_MS and sum(taken[:-1]) < timing.MIN_MS


class FakeClock:
    """perf_counter for timing._time_cpu: each call of `work` takes the next sample's time."""

    def __init__(self, samples_ms):
        self.now, self.samples = 0.0, iter(samples_ms)

    def perf_counter(self) -> float:
        return self.now

    def work(self) -> None:
        self.now += next(self.samples) / 1000


@pytest.mark.parametrize("stopping", ["adaptive", "fixed"])
def test_cpu_timer_stops_by_its_rule(monkeypatch, stopping):
    step = 2.0**-9 * 1000  # 1.953125 ms per call: exact in binary, so the sums are exact
    clock = FakeClock([step] * 10_000)
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    timed = timing.time_call(
        clock.work, torch.device("cpu"), "cudagraph", 100.0, 0.0, stopping, max_noise=0.005
    )
    if stopping == "adaptive":  # stable from the start: the minimum samples and time
        expected = max(timing.MIN_SAMPLES, math.ceil(timing.MIN_MS / step))
    else:  # rep_ms of calls
        expected = math.ceil(100.0 / step)
    assert timed.calls == expected
    assert timed.median == timed.p20 == timed.p80 == step and timed.noise == 0.0


def test_unknown_stopping_rule_is_refused():
    with pytest.raises(ValueError, match="'sometimes'"):
        timing.time_call(
            lambda: None, torch.device("cpu"), "cudagraph", 1.0, 0.0, "sometimes", max_noise=0.005
        )
