"""The estimates of ecco_core.estimates against real runs on this machine (what the dashboard announces).

Each case runs a real analysis on the causal default (SmolLM2-135M) as its
page runs it and prints its measured time, the estimate from its sizes (the
page's own call), and their ratio; at least 5 cases per long path, small but
of the shapes the pages use, so the whole script runs in minutes. The rates
in ecco_core/estimates.py were set from this script's output on the
development machine (2 CPU cores shared with other jobs); on another machine
the ratios show how far off they are (divide a rate by its cases' ratio to
recalibrate). The machine is noisy: run it with ``OMP_WAIT_POLICY=PASSIVE``
and ``--repeat 3`` for the median of three runs of each case.
Usage: ``python bench/estimates.py [--repeat N] [group ...]``, groups
``probing``, ``similarity``, ``factors``, ``saliency``, ``patching`` (default:
all, in that order). Each case prints the load average it ran under. The
line before last: the geometric mean of measured / estimated over the cases
run, with its range; the last line: the worst case's ratio (farthest from 1
either way), which should lie within 0.5 to 2.
"""

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecco_core as ec  # noqa: E402
from ecco_core import estimates, patching, probing  # noqa: E402
from ecco_core.layers import EMBEDDINGS  # noqa: E402
from ecco_core import similarity as sim  # noqa: E402

PASSAGE = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based ink and a wooden press adapted from those used to make wine. Within a few "
    "decades printing shops had spread from Mainz to more than two hundred cities across Europe."
)
SALIENCY_PROMPT = "William Shakespeare was born in the year"  # 7 tokens, as the sidebar's default prompt
QUIET = lambda fraction, message: None  # noqa: E731


REPEATS = 1  # set by --repeat: each case's time is the median of this many runs


def timed(work):
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


class Cases(list):
    """(case, measured s, estimated s) rows, each printed as it is added with the load average it ran under."""

    def append(self, row) -> None:
        case, measured, estimated = row
        print(f"{case}: measured {measured:.2f} s, estimated {estimated:.2f} s, ratio {measured / estimated:.2f} "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
        super().append(row)


def probing_cases(lm, rows: Cases) -> None:
    """Collection and training as the Probing page runs them (``store="disk"``), 1,000 and 2,000 words."""
    quick = [EMBEDDINGS, 0, 4, 8, 12, 17, 21, 25, 29]  # the quick preset's layers
    for n_tokens, layers in ((1000, [EMBEDDINGS, 5, 11, 17, 23, 29]), (1000, None), (2000, quick)):
        data, seconds = timed(lambda: probing.collect(lm, probing.UD_ENGLISH_EWT_DEV, n_tokens=n_tokens,
                                                      layers=layers, store="disk", progress=QUIET))
        rows.append((f"probe collection, {n_tokens} words, layers {'all' if layers is None else len(layers)}",
                     seconds, estimates.probe_collection_seconds(lm, n_tokens, layers)))
        for trials, epochs in ((1, 4), (3, 2)):
            _, seconds = timed(lambda: probing.train_probes(
                [data.hidden_states, data.ffn], data.tags, data.words, trials=trials, epochs=epochs, progress=QUIET))
            rows.append((f"probe training, {n_tokens} words, layers {'all' if layers is None else len(layers)}, "
                         f"{trials} trial(s), {epochs} epochs", seconds,
                         estimates.probe_training_seconds(n_tokens, estimates.probe_width(lm, layers), trials, epochs)))


def _widths(lm, representation: str) -> list[int]:
    return [lm.d_model] * (lm.n_layers + 1) if representation == "hidden" else [lm.d_ff] * lm.n_layers


def similarity_cases(lm, rows: Cases) -> None:
    """The Similarity page's two paths: UD sentences pooled by corpus_similarity (the model's batched pass, then
    the matrix), and one captured passage (layer_similarity); the estimate is the page's."""
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    cases = [(10, "cka", "hidden", "ffn"), (10, "svcca", "hidden", "ffn"), (10, "pwcca", "hidden", "ffn"),
             (20, "cca", "hidden", "hidden"), (None, "pwcca", "hidden", "ffn"), (None, "cca", "ffn", "ffn")]
    for n_sentences, method, rows_, columns in cases:
        if n_sentences is None:
            result, seconds = timed(lambda: sim.layer_similarity(passage, method, rows=rows_, columns=columns))
            name, forward = "one passage", 0.0
        else:
            texts = sim.ud_sentences(n_sentences)
            result, seconds = timed(lambda: sim.corpus_similarity(lm, texts, method, rows=rows_, columns=columns))
            kept = sum(_widths(lm, rows_)) + (sum(_widths(lm, columns)) if columns != rows_ else 0)
            name, forward = f"{n_sentences} UD sentences", estimates.corpus_seconds(lm, result.n_samples, kept)
        rows.append((f"similarity {method}, {rows_} x {columns}, {name} ({result.n_samples} positions)", seconds,
                     forward + estimates.similarity_seconds(result.n_samples, _widths(lm, rows_),
                                                            _widths(lm, columns), method)))


def factors_cases(lm, rows: Cases) -> None:
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    positions = range(1, passage.n_tokens)
    for method, layers in (("nmf", None), ("pca", None), ("ica", None), ("nmf", range(10)), ("pca", range(10))):
        _, seconds = timed(lambda: ec.factors(passage, method, n_components=10, positions=positions, layers=layers))
        n_layers = lm.n_layers if layers is None else len(layers)
        rows.append((f"factors {method}, {n_layers} layers, {len(positions)} tokens", seconds,
                     estimates.factors_seconds(len(positions), n_layers * lm.d_ff, 10, method)))


def saliency_cases(lm, rows: Cases) -> None:
    """The Saliency page's default text (the sidebar's prompt, 20 new tokens) and a longer passage, few tokens."""
    short = ec.capture(lm, SALIENCY_PROMPT, max_new_tokens=20)
    long = ec.capture(lm, PASSAGE, max_new_tokens=4)
    for cap, method, steps in ((short, "grad_x_input", 1), (short, "integrated_gradients", 20),
                               (long, "integrated_gradients", 8), (short, "erasure", 1), (long, "erasure", 1)):
        _, seconds = timed(lambda: ec.saliency(lm, cap, method, steps=steps, progress=QUIET))
        name = f"saliency {method}" + (f", {steps} steps" if method == "integrated_gradients" else "")
        rows.append((f"{name}, {cap.n_tokens} tokens, {cap.n_generated} explained", seconds,
                     estimates.saliency_seconds(lm, cap.n_tokens, cap.n_generated, method, steps)))


def patching_cases(lm, rows: Cases) -> None:
    """Exact patching as the Causal tracing page runs it (its two examples, one site and all three)."""
    names = ("When Mary and John went to the store, John gave a drink to",
             "When Mary and John went to the store, Mary gave a drink to", "Mary", "John")
    fact = ("The Eiffel Tower is located in the city of", ec.Noise([0, 1, 2, 3]), "Paris", None)
    for (clean, corrupted, answer, foil), sites in ((names, ("ffn",)), (names, ("attention",)),
                                                     (names, ("residual", "attention", "ffn")), (fact, ("ffn",)),
                                                     (fact, ("residual", "attention", "ffn"))):
        result, seconds = timed(lambda: ec.patch(lm, clean, corrupted, answer, foil, sites=sites))
        runs, positions = patching.work(lm, clean, corrupted, answer, foil, sites=sites)
        rows.append((f"exact patching, {len(result.tokens)} tokens, sites {', '.join(sites)} ({runs} runs)", seconds,
                     estimates.patching_seconds(lm, runs, positions)))


GROUPS = {"probing": probing_cases, "similarity": similarity_cases, "factors": factors_cases,
          "saliency": saliency_cases, "patching": patching_cases}


def main() -> None:
    global REPEATS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case; its time is their median")
    parser.add_argument("groups", nargs="*", help=f"any of {', '.join(GROUPS)} (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; groups: {list(GROUPS)}")
    REPEATS = args.repeat
    groups = args.groups or list(GROUPS)
    lm = ec.load()
    rows = Cases()
    for group in groups:
        GROUPS[group](lm, rows)
    ratios = [measured / estimated for _, measured, estimated in rows]
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    worst = max(range(len(rows)), key=lambda i: abs(math.log(ratios[i])))
    print(f"geometric mean {mean:.2f}, range {min(ratios):.2f} to {max(ratios):.2f} ({', '.join(groups)})")
    print(f"worst measured / estimated time over {len(rows)} cases: {ratios[worst]:.2f} ({rows[worst][0]}; "
          f"target 0.5 to 2)")


if __name__ == "__main__":
    main()
