"""The server's memory guards: runs take turns (dashboard.shared_cache.RunGate), freed memory goes back to the OS.

``bench/memory.py`` measures the server they keep within budget; these check
the mechanisms themselves, with real numpy work in real threads.
"""

import contextlib
import gc
import threading
import time

import numpy as np
import psutil
import pytest

from dashboard import settings
from dashboard.shared_cache import RUNS, RunGate, SharedCache, freeze_long_lived, release_memory, streamlit_notice


class Overlap:
    """Counts the runs inside ``work`` at once, the most ever, and what each run computed."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = 0

    def work(self, seed: int) -> float:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return power(seed)
        finally:
            with self.lock:
                self.now -= 1


def power(seed: int) -> float:
    """Real work, long enough for every thread to have arrived while the first runs (a fraction of a second)."""
    matrix = np.random.default_rng(seed).standard_normal((150, 150))
    for _ in range(60):
        matrix = np.tanh(matrix @ matrix.T / 150)
    return float(matrix.sum())


def test_the_server_gate_uses_the_setting():
    assert RUNS.limit == settings.MAX_CONCURRENT_RUNS >= 1
    with pytest.raises(ValueError, match="limit must be at least 1; got 0"):
        RunGate(0)


@pytest.mark.parametrize("limit", [1, 2])
def test_four_sessions_take_turns_and_each_gets_its_own_result(limit):
    gate, overlap = RunGate(limit), Overlap()
    cache = SharedCache(2**20, 60, nbytes=lambda value: 8, gate=gate)
    results = {}

    def session(seed: int) -> None:
        results[seed] = cache.get(("work", seed), lambda: overlap.work(seed))

    threads = [threading.Thread(target=session, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlap.most == limit  # four at once would have been 4
    assert results == {seed: power(seed) for seed in range(4)}
    assert gate.running == 0


@contextlib.contextmanager
def another_session_holding(gate: RunGate):
    """Another thread holds a turn of ``gate`` until the event yielded is set (10 s at most)."""
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with gate.turn():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    try:
        yield release
    finally:
        release.set()
        thread.join()


def test_a_run_alone_has_the_server_to_itself_and_is_not_kept_waiting_by_smaller_ones():
    """Attribution patching of a long prompt peaks too high to run beside another large run (#31 item 18)."""
    gate, lock = RunGate(2), threading.Lock()
    cache = SharedCache(2**20, 60, nbytes=lambda value: 8, gate=gate)
    now, most, beside, order = [0, False], [0], [], []

    def run(seed: int, alone: bool) -> int:
        with lock:
            beside.append(now[1] or (alone and now[0] > 0))
            now[0] += 1
            now[1] = alone
            most[0] = max(most[0], now[0])
            order.append(seed)
        time.sleep(0.3)
        with lock:
            now[0] -= 1
            now[1] = False
        return seed

    def session(seed: int) -> None:
        if seed == 1:
            time.sleep(0.1)  # the first run is under way: this one waits for it
        cache.get(seed, lambda: run(seed, alone=seed == 1), alone=seed == 1)

    threads = [threading.Thread(target=session, args=(seed,)) for seed in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.02 if thread is threads[0] else 0.15)
    for thread in threads:
        thread.join()
    assert len(beside) == 5 and not any(beside)  # none started beside the one alone, nor it beside another
    assert most[0] == 2  # the others still ran two at once
    assert order.index(1) <= 2  # it waited for the run it arrived beside, not for the later ones
    assert gate.running == 0


def test_a_waiting_run_hears_how_long_and_behind_how_many():
    gate, heard = RunGate(1), []
    with another_session_holding(gate) as release:
        threading.Timer(1.2, release.set).start()
        with gate.turn(lambda waited, running: heard.append((waited, running))):
            assert gate.running == 1
    assert len(heard) >= 2 and all(running == 1 for _, running in heard)
    assert heard[0][0] < heard[-1][0] < 5


def test_a_stopped_wait_takes_no_turn():
    def stop(waited, running):  # Streamlit's Stop raises from the page's next message
        raise KeyboardInterrupt

    gate = RunGate(1)
    with another_session_holding(gate), pytest.raises(KeyboardInterrupt):
        with gate.turn(stop):
            pass
    with gate.turn():  # the one turn is free again: the stopped wait did not keep it
        assert gate.running == 1


def test_a_run_that_needs_a_capture_does_not_wait_for_itself():
    gate = RunGate(1)
    outer = SharedCache(2**20, 60, nbytes=lambda value: 8, gate=gate)
    inner = SharedCache(2**20, 60, nbytes=lambda value: 8, gate=gate)
    done = []

    def run():
        done.append(outer.get("similarity", lambda: inner.get("capture", lambda: np.arange(5).sum()) + 1))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    assert done == [11]


def test_a_failed_run_gives_its_turn_back():
    gate = RunGate(1)
    cache = SharedCache(2**20, 60, nbytes=lambda value: 8, gate=gate)
    with pytest.raises(ValueError, match="bad input"):
        cache.get("x", lambda: (_ for _ in ()).throw(ValueError("bad input")))
    assert gate.running == 0
    assert cache.get("y", lambda: 3) == 3


def test_there_is_no_notice_outside_a_streamlit_run():
    assert streamlit_notice() is None


def test_memory_freed_by_session_threads_goes_back_to_the_os():
    process = psutil.Process()

    pins = []

    def session() -> None:  # 64 KiB arrays: below glibc's mmap threshold, so kept in the thread's arena when freed
        arrays = [np.ones(8192) for _ in range(4000)]
        pins.extend(arrays[::64])  # a few kept: the arena's top cannot simply shrink past them
        del arrays

    before = process.memory_info().rss
    threads = [threading.Thread(target=session) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = process.memory_info().rss
    release_memory()
    after = process.memory_info().rss
    if held - before < 256 * 2**20:
        pytest.skip(f"this allocator returned the memory by itself ({(held - before) / 2**20:.0f} MiB held)")
    assert held - after > 0.5 * (held - before), (before, held, after)


def test_the_server_keeps_what_it_holds_for_good_out_of_each_runs_collection(monkeypatch):
    """After its preload the server freezes its heap, so release_memory's collection after a run walks only what
    was made since (it walked ~0.5M objects, 0.3 s of CPU, every run); garbage made after still goes."""
    import app

    monkeypatch.setattr(settings, "PRELOAD_MODEL", "")  # the imports, no model: what matters is what follows
    held = [[] for _ in range(1000)]  # alive at start-up
    before = gc.get_freeze_count()
    app._preload()
    assert gc.get_freeze_count() >= before + len(held)

    cycle = []
    cycle.append(cycle)
    collected = []
    cycle.append(type("Witness", (), {"__del__": lambda self: collected.append(True)})())
    del cycle
    freeze_long_lived()  # as after the preload: a cycle made before it, dropped, is collected first
    assert collected
