"""Circuits on the default IOI case: DLA against one capture, batched exact ablation against a loop.

Causal default (SmolLM2-135M-Instruct, 30 blocks x 9 heads), "When Mary and John
went to the store, John gave a drink to" (14 tokens), answer " Mary", foil " John",
logit difference. One thread.

- capture: ``ec.capture(lm, prompt)``, one recorded forward pass (the yardstick).
- DLA: ``ec.circuits(lm, prompt, "Mary", "John")``: one hooked pass of the eager
  twin and the decomposition (every head split by source token).
- DLA and routes: the same with ``routes=True``: the same eager pass, keeping every
  query's attention weights, and the information-flow importances of every block and token.
- exact ablation, batched: ``ec.circuits.verify(lm, result)``: every head and FFN
  mean-ablated alone (300 rows) plus the unablated, all-ablated, top-10-ablated and
  top-10-kept rows, in batched passes.
- exact ablation, loop: the same rows one plain forward pass each through every
  block at every position (the same hooks, a batch of one), after one recorded pass
  for the mean replacements: what a loop over hooked runs costs. In the batched
  passes a row also skips the blocks before its first ablated one (it joins its
  pass there, as a copy of the unablated run's input to that block), and the last
  block runs its output projection and FFN at the read position only. Every loop
  pass has the same cost, so the loop is timed on every ``--every``-th row (default
  4) and its time is the recorded pass plus that mean pass times the number of rows.

The contenders take turns, round-robin, so the load of a shared machine hits them
alike; times are medians (the loop's: its mean pass over all rounds). The load
average (``/proc/loadavg``) is printed before and after: on a shared machine it
moves every time, so only the ratios of one run compare. Peak memory is the
resident set's peak above the loaded model during DLA and during batched
verification.

Usage: ``python bench/circuits.py [--rounds 3] [--every 4]``. The last line holds
the three targets: the speedup of batched exact ablation over the loop (>= 5x), and
DLA and DLA with routes over one capture (each <= 3x).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from ecco_core import circuits  # noqa: E402
from rss import peak_bytes, reset_peak  # noqa: E402

PROMPT = "When Mary and John went to the store, John gave a drink to"
ANSWER, FOIL = "Mary", "John"


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def loop(lm: ec.LM, result, masks: torch.Tensor, replacements) -> np.ndarray:
    """The metric with the components of each row of ``masks`` (n_rows, n_components) mean-ablated, a pass each."""
    heads = masks[:, : lm.n_layers * lm.n_heads].view(-1, lm.n_layers, lm.n_heads)
    return circuits._ablated_metrics(
        lm, [int(i) for i in result.token_ids], replacements, heads, masks[:, lm.n_layers * lm.n_heads :],
        circuits._metric_of(lm, result), 1, None, None,
    )


def mean_replacements(lm: ec.LM, result):
    """The loop's one recorded pass: every head's and FFN's mean output."""
    run = circuits._recorded_run(lm, [int(i) for i in result.token_ids])
    return circuits._replacements_of(lm, run, None)


def load() -> str:
    """The 1, 5 and 15 minute load averages of the machine."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def peak_above(function, *args, **kwargs) -> int:
    before = reset_peak()
    function(*args, **kwargs)
    return peak_bytes() - before


def main(rounds: int, every: int) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    result = ec.circuits(lm, PROMPT, ANSWER, FOIL)  # warm-up
    checked = ec.circuits.verify(lm, result)
    n_components = len(result.components)
    n_rows = n_components + 4
    timed_rows = np.arange(0, n_components, every)
    print(f"load average before: {load()}")
    print(f"{lm.name}: {lm.n_layers} blocks x {lm.n_heads} heads; {result.n_tokens} tokens; logit difference "
          f"{result.value:.3f}; {n_rows} ablated rows; one thread; {rounds} rounds")
    seconds = {"capture": [], "dla": [], "routes": [], "batched": [], "recording": [], "loop": []}
    singles = torch.eye(n_components, dtype=torch.bool)
    loop_values = np.full(n_components, np.nan)
    for part in np.array_split(timed_rows, rounds):
        seconds["capture"].append(timed(ec.capture, lm, PROMPT)[0])
        seconds["dla"].append(timed(ec.circuits, lm, PROMPT, ANSWER, FOIL)[0])
        seconds["routes"].append(timed(ec.circuits, lm, PROMPT, ANSWER, FOIL, routes=True)[0])
        seconds["batched"].append(timed(ec.circuits.verify, lm, result)[0])
        elapsed, replacements = timed(mean_replacements, lm, result)
        seconds["recording"].append(elapsed)
        elapsed, loop_values[part] = timed(loop, lm, result, singles[part], replacements)
        seconds["loop"].append(elapsed)
    capture_s, dla_s, routes_s, batched_s = (
        statistics.median(seconds[name]) for name in ("capture", "dla", "routes", "batched")
    )
    per_pass = sum(seconds["loop"]) / len(timed_rows)
    loop_s = statistics.median(seconds["recording"]) + per_pass * n_rows
    exact = checked.exact_values
    unablated = loop(lm, result, torch.zeros((1, n_components), dtype=torch.bool), replacements)[0]
    loop_effects = unablated - loop_values[timed_rows]
    print(f"capture:                        {capture_s:8.3f} s")
    print(f"DLA (ec.circuits):              {dla_s:8.3f} s  ({dla_s / capture_s:.2f}x the capture)")
    print(f"DLA and routes:                 {routes_s:8.3f} s  ({routes_s / capture_s:.2f}x the capture)")
    print(f"exact ablation, batched:        {batched_s:8.2f} s")
    print(f"exact ablation, loop:           {loop_s:8.2f} s  (a recorded pass and {n_rows} passes x "
          f"{per_pass * 1e3:.1f} ms, timed on {len(timed_rows)} of them)")
    print(f"max |loop - batched| effect:    {np.abs(loop_effects - exact[timed_rows]).max():.2e} "
          f"(effects span {exact.min():.3f} to {exact.max():.3f})")
    print(f"peak above the model: DLA {peak_above(ec.circuits, lm, PROMPT, ANSWER, FOIL) / 2**20:.0f} MiB, "
          f"batched verification {peak_above(ec.circuits.verify, lm, result) / 2**20:.0f} MiB")
    print(f"top 10 by DLA: {', '.join(checked.top(10))}")
    print(f"top 10 by exact ablation: {', '.join(checked.exact_top)}")
    print(f"recall {checked.recall:.1f}; top 10 kept {checked.kept_share:.3f}, ablated {checked.ablated_share:.3f} of "
          f"the effect {checked.effect:.3f}")
    print(f"load average after: {load()}")
    print(f"speedup of batched exact ablation over one forward per row: {loop_s / batched_s:.1f}x; "
          f"DLA / capture: {dla_s / capture_s:.2f}; DLA and routes / capture: {routes_s / capture_s:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=4)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.every)
