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


@pytest.fixture
def fresh_memory(tmp_path, monkeypatch):
    """An empty on-disk memory and no tuned choice in this process."""
    monkeypatch.setenv("NVFP4BENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("NVFP4BENCH_RETUNE", raising=False)
    tuning.forget()
    yield tmp_path
    tuning.forget()


def test_a_choice_is_remembered_per_key_in_the_process_and_on_disk(fresh_memory, monkeypatch):
    calls = []

    def choose(value):
        def run():
            calls.append(value)
            return {"config": value, "ms": 0.5}

        return run

    key = {"gpu": "test", "M": 16, "N": 256, "K": 512}
    assert tuning.remembered(key, choose("first")) == {"config": "first", "ms": 0.5}
    # The same process asks again: nothing is tuned or read.
    (path,) = (fresh_memory / "tuning").glob("*.json")
    path.unlink()
    assert tuning.remembered(dict(key), choose("second"))["config"] == "first"
    assert not path.exists()
    tuning.forget()
    assert tuning.remembered(dict(key), choose("third"))["config"] == "third"
    # A new process finds it on disk: nothing is tuned again for the same key...
    tuning.forget()
    assert tuning.remembered(dict(key), choose("fourth"))["config"] == "third"
    # ...but another problem size, another time per candidate or NVFP4BENCH_RETUNE tunes (and
    # the last overwrites).
    assert tuning.remembered(dict(key, M=32), choose("fifth"))["config"] == "fifth"
    with tuning.tuning_rep_ms_set_to(tuning.REP_MS * 4):
        assert tuning.tuning_rep_ms() == tuning.REP_MS * 4
        assert tuning.remembered(key, choose("sixth"))["config"] == "sixth"
    assert tuning.tuning_rep_ms() == tuning.REP_MS
    monkeypatch.setenv("NVFP4BENCH_RETUNE", "1")
    tuning.forget()
    assert tuning.remembered(key, choose("seventh"))["config"] == "seventh"
    monkeypatch.delenv("NVFP4BENCH_RETUNE")
    tuning.forget()
    assert tuning.remembered(key, choose("eighth"))["config"] == "seventh"
    assert calls == ["first", "third", "fifth", "sixth", "seventh"]
    assert len(list((fresh_memory / "tuning").glob("*.json"))) == 3


def test_an_unreadable_memory_is_tuned_again(fresh_memory):
    key = {"gpu": "test"}
    tuning.remembered(key, lambda: 1)
    (path,) = (fresh_memory / "tuning").glob("*.json")
    path.write_text("{not json")
    tuning.forget()
    assert tuning.remembered(key, lambda: 2) == 2


def test_forget_empties_every_process_cache():
    first, second = tuning.process_cache("test a"), tuning.process_cache("test b")
    first["x"], second["y"] = 1, 2
    assert tuning.process_cache("test a") is first
    tuning.forget()
    assert first == {} and second == {}


def test_fastest_times_each_candidate_for_the_tuning_rep_ms(monkeypatch):
    timed_for = []
    monkeypatch.setattr(tuning, "time_graph", lambda call, rep_ms: timed_for.append(rep_ms) or 1.0)
    tuning.fastest(["a"], lambda name: lambda: None)
    with tuning.tuning_rep_ms_set_to(12.5):
        tuning.fastest(["a"], lambda name: lambda: None)
    with tuning.tuning_rep_ms_set_to(None):
        tuning.fastest(["a"], lambda name: lambda: None, rep_ms=3.0)
    assert timed_for == [tuning.REP_MS, 12.5, 3.0]


def test_the_cuda_choice_survives_the_round_trip():
    from nvfp4bench.kernels import cuda_nvfp4 as cn

    config = cn.GemmConfig(cn.GemmVariant(2, 4, 8, 3), 15, 16)
    encoded = cn._encode_choice((config, 0.0123))
    assert cn._decode_choice(json.loads(json.dumps(encoded))) == (config, 0.0123)


def test_a_large_space_is_screened_and_only_candidates_that_could_win_are_timed_in_full(
    monkeypatch,
):
    """A fake timer whose quick pass is 10 % off: the winner survives the screen, the clearly
    slower candidates are not timed in full, and the first candidate is (it warms the GPU)."""
    full_ms = {f"c{i}": 1.0 + 0.1 * i for i in range(12)}  # c0 1.0 ... c11 2.1
    full_ms["c5"] = 0.9  # the winner, which the quick pass sees 10 % slow
    full_timed = []

    def fake_time_graph(call, rep_ms):
        name = call()
        if rep_ms == tuning.REP_MS:
            full_timed.append(name)
            return full_ms[name]
        assert rep_ms == tuning.REP_MS * tuning.SCREEN_FRACTION
        return full_ms[name] * (1.1 if name == "c5" else 1.0)

    monkeypatch.setattr(tuning, "time_graph", fake_time_graph)
    best, _, ms = tuning.fastest(list(full_ms), lambda name: lambda: name)
    assert (best, ms) == ("c5", 0.9)
    # the quickest screen is c5's 0.99 ms, so the finalists are those up to 1.24 ms
    assert full_timed == ["c0", "c1", "c2", "c5"]


def test_a_small_space_is_timed_in_full(monkeypatch):
    timed_for = []
    monkeypatch.setattr(tuning, "time_graph", lambda call, rep_ms: timed_for.append(rep_ms) or 1.0)
    tuning.fastest([f"c{i}" for i in range(tuning.SCREEN_ABOVE)], lambda name: lambda: None)
    assert timed_for == [tuning.REP_MS] * tuning.SCREEN_ABOVE
