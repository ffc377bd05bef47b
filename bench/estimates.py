"""The estimates of ecco_core.estimates against real runs on this machine (what the dashboard announces).

Each case runs a real analysis on the causal default (SmolLM2-135M) as its
page runs it (torch on its default threads, as in the app): the page's own estimate first (made with this process's pace,
:func:`ecco_core.estimates.pace`), then the run, timed, then the run fed back
to the pace (:func:`ecco_core.estimates.record`), as the dashboard does after
every run. It prints the measured time, the estimate and their ratio, the
pace the estimate used, the rates' own ratio (measured / estimate at pace 1:
divide a rate by its cases' rate ratio to recalibrate another machine), the
longest wait between two progress reports (from the start to the end) and
the load average. At least 5 cases per long path, small but of the shapes
the pages use, so the whole script runs in minutes. Run it with
``OMP_WAIT_POLICY=PASSIVE``; ``--repeat 3`` takes the median of three runs of
each case. Usage: ``python bench/estimates.py [--repeat N] [group ...]``,
groups ``probing``, ``similarity``, ``chance``, ``factors``, ``saliency``,
``faithfulness``, ``patching``, ``verify`` (default: all, in that order).
The line before last: the geometric mean of measured / estimated over the
cases run, with its range, and the longest progress wait; the last line:
the worst case's ratio (farthest from 1 either way), which should lie within
0.5 to 2.
"""

import argparse
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

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


REPEATS = 1  # set by --repeat: each case's time is the median of this many runs

class Cases(list):
    """(path, case, measured s, estimated s, longest progress wait s, reference ratio, slowdown) rows, each printed
    as it is run. The reference ratio is measured over the estimate at the reference's pace: the estimate at pace 1
    times the slowdown (the reference workload's time around the case,
    :func:`ecco_core.estimates.reference_seconds`, over :data:`~ecco_core.estimates.REFERENCE_QUIET_S`) over
    :data:`ecco_core.estimates.REFERENCE_LOAD_PER_CPU` (the slowdown the rates were fitted at): about 1 where a
    path's rates hold, whatever the load."""

    def __init__(self):
        super().__init__()
        self.reference = estimates.reference_seconds()

    def run(self, path: str, case: str, estimate, work) -> object:
        """The page's ``estimate()`` now, then ``work(progress)`` timed (median of REPEATS), then fed back."""
        estimated, pace, load_pace = estimate(), estimates.pace(), estimates.load_pace()
        times, waits = [], []
        for _ in range(REPEATS):
            reports = []
            started = time.perf_counter()
            with ec.heartbeats():  # as the dashboard runs it: batches beat while they run
                result = work(lambda fraction, message: reports.append(time.perf_counter()))
            ended = time.perf_counter()
            times.append(ended - started)
            marks = [started, *reports, ended]
            waits.append(max(b - a for a, b in zip(marks, marks[1:])))
        measured, wait = statistics.median(times), max(waits)
        before, self.reference = self.reference, estimates.reference_seconds()
        slowdown = math.sqrt(before * self.reference) / estimates.REFERENCE_QUIET_S
        reference_pace = slowdown / estimates.REFERENCE_LOAD_PER_CPU
        estimates.record(estimated, measured)
        reference_ratio = measured * pace / estimated / reference_pace
        print(f"{case}: measured {measured:.2f} s, estimated {estimated:.2f} s, ratio {measured / estimated:.2f} "
              f"(pace {pace:.2f}, from the load {load_pace:.2f}, from the reference {reference_pace:.2f}; "
              f"reference ratio {reference_ratio:.2f}; longest progress wait {wait:.1f} s; "
              f"load {os.getloadavg()[0]:.1f})", flush=True)
        self.append((path, case, measured, estimated, wait, reference_ratio, slowdown))
        return result


def probing_cases(lm, rows: Cases) -> None:
    """Collection and training as the Probing page runs them (``store="disk"``), 300 to 2,000 words; training on
    the three larger collections."""
    quick = [EMBEDDINGS, 0, 4, 8, 12, 17, 21, 25, 29]  # the quick preset's layers
    six = [EMBEDDINGS, 5, 11, 17, 23, 29]
    for n_tokens, layers, train in ((300, six, False), (500, quick, False), (1000, six, True), (1000, None, True),
                                    (2000, quick, True)):
        named = f"{n_tokens} words, layers {'all' if layers is None else len(layers)}"
        collection = dict(n_tokens=n_tokens, layers=layers, store="disk")
        data = rows.run("probe collection", f"probe collection, {named}",
                        lambda: estimates.probe_collection_seconds(lm, probing.UD_ENGLISH_EWT_DEV, **collection),
                        lambda progress: probing.collect(lm, probing.UD_ENGLISH_EWT_DEV, progress=progress,
                                                         **collection))
        for trials, epochs in ((1, 4), (3, 2)) if train else ():
            stacks = [data.hidden_states, data.ffn]
            rows.run("probe training", f"probe training, {named}, {trials} trial(s), {epochs} epochs",
                     lambda: estimates.probe_training_seconds(stacks, data.tags, data.words, trials=trials,
                                                              epochs=epochs),
                     lambda progress: probing.train_probes(stacks, data.tags, data.words, trials=trials,
                                                           epochs=epochs, progress=progress))


def similarity_cases(lm, rows: Cases) -> None:
    """The Similarity page's two paths: UD sentences pooled by corpus_similarity (the model's batched pass, then
    the matrix), and one captured passage (layer_similarity), both through compare_layers as the page calls it;
    the estimate is the page's. From 56 positions (the passage) to the page's 40 UD sentences (1,145 positions,
    more than the hidden state's 576 dimensions), where the CCA family's cost per pair changes most."""
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    cases = [(10, "cka", "hidden", "ffn"), (10, "svcca", "hidden", "ffn"), (10, "pwcca", "hidden", "ffn"),
             (20, "cca", "hidden", "hidden"), (None, "pwcca", "hidden", "ffn"), (None, "cca", "ffn", "ffn"),
             (40, "cka", "hidden", "ffn"), (40, "svcca", "hidden", "ffn"), (40, "pwcca", "hidden", "ffn")]
    for n_sentences, method, rows_, columns in cases:
        source = passage if n_sentences is None else sim.ud_sentences(n_sentences)
        options = dict(rows=rows_, columns=columns)
        name = "one passage" if n_sentences is None else f"{n_sentences} UD sentences"
        rows.run("similarity",
                 f"similarity {method}, {rows_} x {columns}, {name} ({sim.positions_compared(lm, source)} positions)",
                 lambda: estimates.compare_layers_seconds(lm, source, method, **options),
                 lambda progress: sim.compare_layers(lm, source, method, progress=progress, **options))


def chance_cases(lm, rows: Cases) -> None:
    """The Similarity page's chance level of one cell (layer_pair and permutation_baseline, as the page runs them),
    over the passage and over UD sentences."""
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    for n_sentences, method, n_permutations in ((None, "cka", 100), (None, "pwcca", 100), (10, "cka", 100),
                                                (10, "svcca", 50), (40, "cca", 20)):
        source = passage if n_sentences is None else sim.ud_sentences(n_sentences)
        name = "one passage" if n_sentences is None else f"{n_sentences} UD sentences"

        def shuffled(progress):  # the pass reports too, as on the page
            pair = sim.layer_pair(lm, source, 12, 12, rows="hidden", columns="ffn", progress=progress)
            return ec.trust.permutation_baseline(*pair, method, n_permutations=n_permutations, progress=progress)

        rows.run("chance level", f"chance level {method}, {name}, {n_permutations} shuffles",
                 lambda: estimates.cell_baseline_seconds(lm, source, 12, 12, method, rows="hidden", columns="ffn",
                                                         n_permutations=n_permutations), shuffled)


def factors_cases(lm, rows: Cases) -> None:
    """The Neuron factors page's view (its first token left out) and its trust check (each method at seeds 0 and 1
    but the view's own fit, as the page runs it, and fewer methods or more seeds)."""
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    tokens = range(1, passage.n_tokens)
    for method, layers in (("nmf", None), ("pca", None), ("ica", None), ("nmf", range(10)), ("pca", range(10)),
                           ("nmf", range(20, 30))):
        options = dict(n_components=10, positions=tokens, layers=layers)
        blocks = "all blocks" if layers is None else f"blocks {layers[0]}-{layers[-1]}"
        rows.run("factors", f"factors {method}, {blocks}, {passage.n_tokens - 1} tokens",
                 lambda: estimates.factors_seconds(passage, method, **options),
                 lambda progress: ec.factors(passage, method, progress=progress, **options))
    for methods, layers, seeds in ((("nmf", "pca", "ica"), range(10), (0, 1)), (("pca", "ica"), None, (0, 1, 2)),
                                   (("pca",), range(10), (0, 1, 2)), (("ica",), range(20, 30), (0, 1)),
                                   (("nmf", "pca"), range(10, 20), (0, 1))):
        options = dict(n_components=10, positions=tokens, layers=layers)
        fitted = ec.factors(passage, methods[0], **options)
        blocks = "all blocks" if layers is None else f"blocks {layers[0]}-{layers[-1]}"
        rows.run("factor quality", f"factor quality, {', '.join(methods)}, {blocks}, seeds {seeds}",
                 lambda: estimates.factor_quality_seconds(passage, methods, seeds=seeds, fitted=fitted, **options),
                 lambda progress: ec.trust.factor_quality(passage, methods, seeds=seeds, fitted=fitted,
                                                          progress=progress, **options))


def saliency_cases(lm, rows: Cases) -> None:
    """The Saliency page's default text (the sidebar's prompt, 20 new tokens) and a longer passage, few tokens."""
    short = ec.capture(lm, SALIENCY_PROMPT, max_new_tokens=20)
    long = ec.capture(lm, PASSAGE, max_new_tokens=4)
    for cap, method, steps in ((short, "grad_x_input", 1), (short, "integrated_gradients", 20),
                               (long, "integrated_gradients", 8), (short, "erasure", 1), (long, "erasure", 1),
                               (long, "gradient", 1)):
        name = f"saliency {method}" + (f", {steps} steps" if method == "integrated_gradients" else "")
        rows.run("saliency", f"{name}, {cap.n_tokens} tokens, {cap.n_generated} explained",
                 lambda: estimates.saliency_seconds(lm, cap, method, steps=steps),
                 lambda progress: ec.saliency(lm, cap, method, steps=steps, progress=progress))


def faithfulness_cases(lm, rows: Cases) -> None:
    """The Saliency page's faithfulness check (every method at one explained token), as the page calls it."""
    short = ec.capture(lm, SALIENCY_PROMPT, max_new_tokens=20)
    long = ec.capture(lm, PASSAGE, max_new_tokens=4)
    for cap, position, steps in ((short, short.n_input, 20), (short, short.n_tokens - 1, 20),
                                 (short, short.n_tokens - 1, 8), (long, long.n_input, 8),
                                 (long, long.n_tokens - 1, 20)):
        rows.run("faithfulness", f"faithfulness, {cap.n_tokens} tokens, position {position}, {steps} steps",
                 lambda: estimates.faithfulness_seconds(lm, cap, positions=position, steps=steps),
                 lambda progress: ec.trust.faithfulness(lm, cap, positions=position, steps=steps, progress=progress))


def patching_cases(lm, rows: Cases) -> None:
    """Exact patching as the Causal tracing page runs it (its two examples, one site and all three)."""
    names = ("When Mary and John went to the store, John gave a drink to",
             "When Mary and John went to the store, Mary gave a drink to", "Mary", "John")
    fact = ("The Eiffel Tower is located in the city of", ec.Noise([0, 1, 2, 3]), "Paris", None)
    for (clean, corrupted, answer, foil), sites in ((names, ("ffn",)), (names, ("attention",)),
                                                     (names, ("residual", "attention", "ffn")), (fact, ("ffn",)),
                                                     (fact, ("residual", "attention", "ffn"))):
        runs, positions = patching.work(lm, clean, corrupted, answer, foil, sites=sites)
        rows.run("exact patching", f"exact patching, {clean[:20]}..., sites {', '.join(sites)} ({runs} runs)",
                 lambda: estimates.patching_seconds(lm, runs, positions),
                 lambda progress: ec.patch(lm, clean, corrupted, answer, foil, sites=sites, progress=progress))


def verify_cases(lm, rows: Cases) -> None:
    """The Circuits page's "Verify by patching" on its two examples and a short prompt, exact or not."""
    ioi = ("When Mary and John went to the store, John gave a drink to", "Mary", "John")
    fact = ("The Eiffel Tower is located in the city of", "Paris", None)
    short = ("The capital of France is", "Paris", None)
    for (prompt, answer, foil), exact, routes in ((ioi, True, False), (fact, True, False), (short, True, False),
                                                  (short, True, True), (ioi, False, True)):
        result = ec.circuits(lm, prompt, answer, foil, routes=routes)
        rows.run("verify", f"verify, {result.n_tokens} tokens, exact {exact}, routes {routes}",
                 lambda: estimates.verify_seconds(lm, result, exact=exact),
                 lambda progress: ec.circuits.verify(lm, result, exact=exact, progress=progress))


GROUPS = {"probing": probing_cases, "similarity": similarity_cases, "chance": chance_cases, "factors": factors_cases,
          "saliency": saliency_cases, "faithfulness": faithfulness_cases, "patching": patching_cases,
          "verify": verify_cases}


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
    # Torch on its default threads, as the app runs it (the estimates divide torch's work by estimates.thread_speedup);
    # similarity and factors run on one BLAS thread whatever torch's.
    print(f"load average at the start: {' '.join(open('/proc/loadavg').read().split()[:3])}; torch on "
          f"{torch.get_num_threads()} threads (speedup {estimates.thread_speedup():.2f})", flush=True)
    lm = ec.load()
    rows = Cases()
    for group in groups:
        GROUPS[group](lm, rows)
    paths = defaultdict(list)
    for path, case, measured, estimated, wait, reference_ratio, slowdown in rows:
        paths[path].append((measured / estimated, reference_ratio, wait))
    print("\npath | cases | within 0.5-2x | geometric mean | range | reference ratio (median) | longest wait")
    for path, found in paths.items():
        ratios = [ratio for ratio, _, _ in found]
        print(f"{path} | {len(found)} | {sum(0.5 <= r <= 2 for r in ratios)} | {geometric_mean(ratios):.2f} | "
              f"{min(ratios):.2f}-{max(ratios):.2f} | {statistics.median(r for _, r, _ in found):.2f} | "
              f"{max(w for _, _, w in found):.1f} s")
    ratios = [measured / estimated for _, _, measured, estimated, *_ in rows]
    worst = max(range(len(rows)), key=lambda i: abs(math.log(ratios[i])))
    wait = max(range(len(rows)), key=lambda i: rows[i][4])
    slowdowns = [row[6] for row in rows]
    print(f"geometric mean {geometric_mean(ratios):.2f}, range {min(ratios):.2f} to {max(ratios):.2f}, "
          f"{sum(0.5 <= r <= 2 for r in ratios)} of {len(rows)} within 0.5-2x ({', '.join(groups)}); reference "
          f"ratios' median {statistics.median(row[5] for row in rows):.2f}; the reference ran {min(slowdowns):.1f} "
          f"to {max(slowdowns):.1f} times its quiet time; longest progress wait {rows[wait][4]:.1f} s "
          f"({rows[wait][1]}); load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"worst measured / estimated time over {len(rows)} cases: {ratios[worst]:.2f} ({rows[worst][1]}; "
          f"target 0.5 to 2)")


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(value) for value in values) / len(values))


if __name__ == "__main__":
    main()
