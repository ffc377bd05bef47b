"""Logit-lens memory: chunked ``ec.rankings`` vs the naive all-layers-at-once computation.

The case of issue 10: the causal default (30 layers, 49,152-token vocabulary),
256 ranked positions (a 257-token text, each next token ranked at every layer).
The naive way unembeds (30, 256, d_model) in one go, holding (30, 256, 49152)
float32 logits and their softmax (1.5 GB each). Both run round-robin in one
process with one thread; peak resident memory is measured per call from the
kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs) minus the
resident memory just before the call, i.e. above the loaded model and capture.
Target: chunked peak < 500 MB. Last line: the naive / chunked ratios.
"""

import codecs
import contextlib
import importlib
import io
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ecco_core as ec  # noqa: E402
from capture import PASSAGE  # noqa: E402  (bench/capture.py: a real English passage)

N_POSITIONS = 256
K = 5


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+)", status.read()).group(1))


def measured(run):
    """(seconds, peak MB above the resident memory at the start, result) of one call."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    return seconds, (_status_kb("VmHWM") - before) / 1024, result


def round_robin(contenders: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Run each named call ``repeats`` times in turn: its seconds and peak MB per run, and its last result."""
    seconds = {name: [] for name in contenders}
    peaks = {name: [] for name in contenders}
    results = {}
    for _ in range(repeats):
        for name, run in contenders.items():
            elapsed, peak, results[name] = measured(run)
            seconds[name].append(elapsed)
            peaks[name].append(peak)
    return seconds, peaks, results


def naive_rankings(lm, cap):
    """What a first attempt looks like: every layer's full logits and softmax at once.

    It makes the same parity check as ``ec.rankings`` (a real forward pass,
    last layer vs the model's logits); it does not decode the top tokens to text.
    """
    with torch.inference_mode():
        model_logits = lm.model(input_ids=torch.from_numpy(cap.token_ids[None])).logits[0, :-1]
        hidden = torch.from_numpy(cap.hidden_states[1:, :-1])  # (n_layers, n_positions, d_model)
        logits = lm.unembed(hidden)  # (n_layers, n_positions, vocab_size)
        probabilities = logits.softmax(-1)
        targets = torch.from_numpy(cap.token_ids[1:])[None, :, None].expand(logits.shape[0], -1, 1)
        target_logits = logits.gather(-1, targets)
        ranks = (logits > target_logits).sum(-1) + 1
        probs = probabilities.gather(-1, targets)[..., 0]
        top = probabilities.topk(K, dim=-1)
        max_abs_diff = float((logits[-1] - model_logits).abs().max())
        return ranks.numpy(), probs.numpy(), top.indices.numpy(), max_abs_diff


def main(repeats: int = 3) -> None:
    torch.set_num_threads(1)
    lm = ec.load()
    with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen of Python
        zen = codecs.decode(importlib.import_module("this").s, "rot13")
    ids = lm.tokenizer(PASSAGE + "\n\n" + zen, add_special_tokens=False)["input_ids"][: N_POSITIONS + 1]
    cap = ec.capture(lm, lm.tokenizer.decode(ids))
    assert cap.n_tokens == N_POSITIONS + 1, cap.n_tokens

    contenders = {
        "chunked ec.rankings": lambda: ec.rankings(lm, cap, k=K),
        "naive, all at once": lambda: naive_rankings(lm, cap),
    }
    seconds, peaks, results = round_robin(contenders, repeats)

    chunked, (naive_ranks, naive_probs, naive_top, naive_diff) = results["chunked ec.rankings"], results[
        "naive, all at once"
    ]
    print(
        f"causal default {lm.name}: {lm.n_layers} layers x {chunked.n_columns} positions x "
        f"{lm.config.vocab_size} vocab, k={K}, 1 thread, medians of {repeats}"
    )
    for name in contenders:
        print(
            f"{name}: {statistics.median(seconds[name]):.2f} s, "
            f"peak {statistics.median(peaks[name]):.0f} MB above the loaded model"
        )
    top1_equal = np.mean(chunked.top_ids[..., 0] == naive_top[..., 0])
    print(
        f"agreement: ranks equal in {np.mean(chunked.ranks == naive_ranks):.4%} of cells "
        f"(max |diff| {np.abs(chunked.ranks - naive_ranks).max()}), max |prob diff| "
        f"{np.abs(chunked.probs - naive_probs).max():.1e}, top-1 equal {top1_equal:.4%}; "
        f"last layer vs model logits max |diff| {chunked.max_abs_diff_vs_model:.1e} (naive {naive_diff:.1e})"
    )
    memory_ratio = statistics.median(peaks["naive, all at once"]) / statistics.median(peaks["chunked ec.rankings"])
    time_ratio = statistics.median(seconds["naive, all at once"]) / statistics.median(seconds["chunked ec.rankings"])
    print(f"naive / chunked: peak memory {memory_ratio:.1f}x, time {time_ratio:.2f}x")


if __name__ == "__main__":
    main()
