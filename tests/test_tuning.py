"""The shared pick-the-fastest loop of the kernel tuners (with a fake timer, no GPU) and the
on-disk memory of tuned choices."""

import json

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


def test_a_choice_is_remembered_on_disk_per_key(tmp_path, monkeypatch):
    monkeypatch.setenv("NVFP4BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("NVFP4BENCH_RETUNE", raising=False)
    calls = []

    def choose(value):
        def run():
            calls.append(value)
            return {"config": value, "ms": 0.5}

        return run

    key = {"gpu": "test", "M": 16, "N": 256, "K": 512}
    assert tuning.remembered(key, choose("first")) == {"config": "first", "ms": 0.5}
    # A new process would find it: nothing is tuned again for the same key...
    assert tuning.remembered(dict(key), choose("second"))["config"] == "first"
    # ...but another problem size, or NVFP4BENCH_RETUNE, tunes (and the latter overwrites).
    assert tuning.remembered(dict(key, M=32), choose("third"))["config"] == "third"
    monkeypatch.setenv("NVFP4BENCH_RETUNE", "1")
    assert tuning.remembered(key, choose("fourth"))["config"] == "fourth"
    monkeypatch.delenv("NVFP4BENCH_RETUNE")
    assert tuning.remembered(key, choose("fifth"))["config"] == "fourth"
    assert calls == ["first", "third", "fourth"]
    assert len(list((tmp_path / "tuning").glob("*.json"))) == 2


def test_an_unreadable_memory_is_tuned_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NVFP4BENCH_CACHE", str(tmp_path))
    key = {"gpu": "test"}
    tuning.remembered(key, lambda: 1)
    (path,) = (tmp_path / "tuning").glob("*.json")
    path.write_text("{not json")
    assert tuning.remembered(key, lambda: 2) == 2


def test_the_cuda_choice_survives_the_round_trip():
    from nvfp4bench.kernels import cuda_nvfp4 as cn

    config = cn.GemmConfig(cn.GemmVariant(2, 4, 8, 3), 15, 16)
    encoded = cn._encode_choice((config, 0.0123))
    assert cn._decode_choice(json.loads(json.dumps(encoded))) == (config, 0.0123)
