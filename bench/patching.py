"""Activation patching on the default IOI case: batched vs one forward pass per patch, in the same run.

Causal default (SmolLM2-135M-Instruct, 30 blocks), clean "When Mary and John went
to the store, John gave a drink to", corrupted "... Mary gave a drink to" (14
tokens each), answer " Mary", foil " John", logit difference, every (site, block,
position) of the three sites: 3 x 30 x 14 = 1260 patches. One thread.

- loop: one forward pass per patch (batch of one, the whole sequence), with the
  same restoring hook as the library: what a loop over TransformerLens-style
  hooked runs costs. Every such pass has the same shape and cost, so the loop is
  timed on every ``--every``-th patch (default 4: 315 passes, spread over the
  rounds) and its time is that mean times 1260; ``--every 1`` times all of them
  (about 35 minutes on this loaded 2-core machine).
- batched, every patch run: all 1260 patches as rows of batched passes over the
  whole sequence, none skipped (the batching alone).
- ``ec.patch``: batched, each batch starting after the corrupted run's cached
  prefix, and the patches that cannot change anything (positions before the first
  changed token: their clean and corrupted activations are equal) not run.
- ``ec.patch(approximate=True)``: attribution patching, one forward on the clean
  run and one forward and backward on the corrupted run.

Accuracy: the largest difference between the loop's and ``ec.patch``'s values,
and the Pearson correlation of the approximate effects with the exact ones.

The contenders take turns, round-robin (one slice of the loop, then each of the
others once, per round), so the load of a shared machine hits them alike; the
others' times are means over the rounds.

Usage: ``python bench/patching.py [--rounds 3] [--every 4]``. The last line is
the speedup of ``ec.patch`` over the loop.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from ecco_core import patching  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER, FOIL = "Mary", "John"


def every_patch(lm: ec.LM, n_tokens: int) -> list[list[tuple[str, int, int]]]:
    return [[(site, layer, position)] for site in patching.SITES for layer in range(lm.n_layers)
            for position in range(n_tokens)]


@torch.inference_mode()
def unbatched_inputs(lm: ec.LM):
    runs = patching._prepare(lm, CLEAN, CORRUPTED, ANSWER, FOIL)
    _, clean, _ = patching._recorded_run(lm, runs.clean_embeds, runs.read_position, tuple(patching.SITES))
    return runs, clean, patching._metric_function("logit_diff", runs.answer_id, runs.foil_id)


@torch.inference_mode()
def loop(lm: ec.LM, patches: list) -> np.ndarray:
    """One forward pass per patch over the whole sequence."""
    runs, clean, metric_of = unbatched_inputs(lm)
    return np.array([float(metric_of(patching._patched_logits(lm, runs, clean, [p], 0, None))[0]) for p in patches])


@torch.inference_mode()
def batched_every_patch(lm: ec.LM) -> np.ndarray:
    """Every patch as a row of batched passes over the whole sequence, none skipped."""
    runs, clean, metric_of = unbatched_inputs(lm)
    n_tokens = runs.clean_embeds.shape[1]
    patches = every_patch(lm, n_tokens)
    rows = max(1, patching.DEFAULT_BATCH_BYTES // patching.row_bytes(lm, n_tokens, n_tokens))
    return np.concatenate([
        metric_of(patching._patched_logits(lm, runs, clean, patches[start : start + rows], 0, None)).numpy()
        for start in range(0, len(patches), rows)
    ])


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def main(rounds: int, every: int) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    exact = ec.patch(lm, CLEAN, CORRUPTED, ANSWER, FOIL)  # warm-up, and the reference result
    n_patches = exact.effects.size
    timed_patches = np.arange(0, n_patches, every)
    slices = np.array_split(timed_patches, rounds)
    print(f"{lm.name}: {lm.n_layers} blocks; {exact.n_tokens} tokens; {n_patches} patches "
          f"({len(exact.sites)} sites); clean {exact.clean_value:.3f}, corrupted {exact.corrupted_value:.3f} "
          f"(logit difference ' Mary' - ' John'); one thread; {rounds} rounds")
    every_one = every_patch(lm, exact.n_tokens)
    seconds = {"loop": [], "batched": [], "patch": [], "approximate": []}
    loop_values = np.full(n_patches, np.nan)
    for part in slices:
        elapsed, loop_values[part] = timed(loop, lm, [every_one[i] for i in part])
        seconds["loop"].append(elapsed)
        elapsed, batched_values = timed(batched_every_patch, lm)
        seconds["batched"].append(elapsed)
        elapsed, _ = timed(ec.patch, lm, CLEAN, CORRUPTED, ANSWER, FOIL)
        seconds["patch"].append(elapsed)
        elapsed, approximate = timed(ec.patch, lm, CLEAN, CORRUPTED, ANSWER, FOIL, approximate=True)
        seconds["approximate"].append(elapsed)
    per_pass = sum(seconds["loop"]) / len(timed_patches)
    loop_seconds = per_pass * n_patches
    batched_seconds, patch_seconds, approximate_seconds = (
        statistics.mean(seconds[name]) for name in ("batched", "patch", "approximate")
    )
    print(f"loop, one forward per patch:         {loop_seconds:8.2f} s  ({n_patches} passes x {per_pass * 1e3:.1f} ms, "
          f"timed on {len(timed_patches)} of them)")
    print(f"batched, every patch run:            {batched_seconds:8.2f} s")
    print(f"ec.patch (cached prefix, skipping):  {patch_seconds:8.2f} s  ({exact.patches_run} patches run)")
    print(f"ec.patch(approximate=True):          {approximate_seconds:8.2f} s")

    values = exact.values.ravel()
    print(f"max |loop - ec.patch| value:         {np.nanmax(np.abs(loop_values - values)):.2e} "
          f"(batched every patch: {np.abs(batched_values - values).max():.2e}); logit differences span "
          f"{values.min():.2f} to {values.max():.2f}")
    table = patching.correlation(exact, approximate).to_frame()
    print("exact vs approximate, Pearson r of the effects: "
          + ", ".join(f"{site} {r:.3f}" for site, r in zip(table["site"], table["pearson_r"])))
    print(f"batching alone: {loop_seconds / batched_seconds:.1f}x; approximate: {loop_seconds / approximate_seconds:.0f}x")
    print(f"speedup of ec.patch over one forward per patch: {loop_seconds / patch_seconds:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--every", type=int, default=4, help="time the loop on every n-th patch (1: all)")
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.every)
