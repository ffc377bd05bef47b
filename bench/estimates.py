"""The estimates of ecco_core.estimates against real runs on this machine (what the dashboard announces).

Each case runs a real analysis on the causal default (SmolLM2-135M) as its
page runs it: the page's own estimate first (made with this process's pace,
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
groups ``probing``, ``similarity``, ``factors``, ``saliency``,
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


REPEATS = 1  # set by --repeat: each case's time is the median of this many runs


class Cases(list):
    """(case, measured s, estimated s, longest progress wait s) rows, each printed as it is run."""

    def run(self, case: str, estimate, work) -> object:
        """The page's ``estimate()`` now, then ``work(progress)`` timed (median of REPEATS), then fed back."""
        estimated, pace = estimate(), estimates.pace()
        times, waits = [], []
        for _ in range(REPEATS):
            reports = []
            started = time.perf_counter()
            result = work(lambda fraction, message: reports.append(time.perf_counter()))
            ended = time.perf_counter()
            times.append(ended - started)
            marks = [started, *reports, ended]
            waits.append(max(b - a for a, b in zip(marks, marks[1:])))
        measured, wait = statistics.median(times), max(waits)
        estimates.record(estimated, measured)
        print(f"{case}: measured {measured:.2f} s, estimated {estimated:.2f} s, ratio {measured / estimated:.2f} "
              f"(pace {pace:.2f}, rates' ratio {measured * pace / estimated:.2f}; longest progress wait {wait:.1f} s;"
              f" load {os.getloadavg()[0]:.1f})", flush=True)
        self.append((case, measured, estimated, wait))
        return result


def probing_cases(lm, rows: Cases) -> None:
    """Collection and training as the Probing page runs them (``store="disk"``), 1,000 and 2,000 words."""
    quick = [EMBEDDINGS, 0, 4, 8, 12, 17, 21, 25, 29]  # the quick preset's layers
    for n_tokens, layers in ((1000, [EMBEDDINGS, 5, 11, 17, 23, 29]), (1000, None), (2000, quick)):
        named = f"{n_tokens} words, layers {'all' if layers is None else len(layers)}"
        collection = dict(n_tokens=n_tokens, layers=layers, store="disk")
        data = rows.run(f"probe collection, {named}",
                        lambda: estimates.probe_collection_seconds(lm, probing.UD_ENGLISH_EWT_DEV, **collection),
                        lambda progress: probing.collect(lm, probing.UD_ENGLISH_EWT_DEV, progress=progress,
                                                         **collection))
        for trials, epochs in ((1, 4), (3, 2)):
            stacks = [data.hidden_states, data.ffn]
            rows.run(f"probe training, {named}, {trials} trial(s), {epochs} epochs",
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
        rows.run(f"similarity {method}, {rows_} x {columns}, {name} ({sim.positions_compared(lm, source)} positions)",
                 lambda: estimates.compare_layers_seconds(lm, source, method, **options),
                 lambda progress: sim.compare_layers(lm, source, method, progress=progress, **options))


def factors_cases(lm, rows: Cases) -> None:
    """The Neuron factors page's view (its first token left out) and its trust check (every method, two seeds)."""
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    for method, layers in (("nmf", None), ("pca", None), ("ica", None), ("nmf", range(10)), ("pca", range(10)),
                           ("nmf", range(20, 30))):
        options = dict(n_components=10, positions=range(1, passage.n_tokens), layers=layers)
        rows.run(f"factors {method}, {lm.n_layers if layers is None else len(layers)} blocks, "
                 f"{passage.n_tokens - 1} tokens", lambda: estimates.factors_seconds(passage, method, **options),
                 lambda progress: ec.factors(passage, method, progress=progress, **options))
    options = dict(n_components=10, positions=range(1, passage.n_tokens), layers=range(10))
    fitted = ec.factors(passage, "nmf", **options)
    rows.run("factor quality, 10 blocks, seeds 0 and 1",
             lambda: estimates.factor_quality_seconds(passage, seeds=(0, 1), fitted=fitted, **options),
             lambda progress: ec.trust.factor_quality(passage, seeds=(0, 1), fitted=fitted, progress=progress,
                                                      **options))


def saliency_cases(lm, rows: Cases) -> None:
    """The Saliency page's default text (the sidebar's prompt, 20 new tokens) and a longer passage, few tokens."""
    short = ec.capture(lm, SALIENCY_PROMPT, max_new_tokens=20)
    long = ec.capture(lm, PASSAGE, max_new_tokens=4)
    for cap, method, steps in ((short, "grad_x_input", 1), (short, "integrated_gradients", 20),
                               (long, "integrated_gradients", 8), (short, "erasure", 1), (long, "erasure", 1)):
        name = f"saliency {method}" + (f", {steps} steps" if method == "integrated_gradients" else "")
        rows.run(f"{name}, {cap.n_tokens} tokens, {cap.n_generated} explained",
                 lambda: estimates.saliency_seconds(lm, cap, method, steps=steps),
                 lambda progress: ec.saliency(lm, cap, method, steps=steps, progress=progress))


def faithfulness_cases(lm, rows: Cases) -> None:
    """The Saliency page's faithfulness check (every method at one explained token), as the page calls it."""
    short = ec.capture(lm, SALIENCY_PROMPT, max_new_tokens=20)
    long = ec.capture(lm, PASSAGE, max_new_tokens=4)
    for cap, position, steps in ((short, short.n_input, 20), (short, short.n_tokens - 1, 20),
                                 (short, short.n_tokens - 1, 8), (long, long.n_input, 8),
                                 (long, long.n_tokens - 1, 20)):
        rows.run(f"faithfulness, {cap.n_tokens} tokens, position {position}, {steps} steps",
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
        rows.run(f"exact patching, {clean[:20]}..., sites {', '.join(sites)} ({runs} runs)",
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
        rows.run(f"verify, {result.n_tokens} tokens, exact {exact}, routes {routes}",
                 lambda: estimates.verify_seconds(lm, result, exact=exact),
                 lambda progress: ec.circuits.verify(lm, result, exact=exact, progress=progress))


GROUPS = {"probing": probing_cases, "similarity": similarity_cases, "factors": factors_cases,
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
    print(f"load average at the start: {' '.join(open('/proc/loadavg').read().split()[:3])}", flush=True)
    lm = ec.load()
    rows = Cases()
    for group in groups:
        GROUPS[group](lm, rows)
    ratios = [measured / estimated for _, measured, estimated, _ in rows]
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    worst = max(range(len(rows)), key=lambda i: abs(math.log(ratios[i])))
    wait = max(range(len(rows)), key=lambda i: rows[i][3])
    print(f"geometric mean {mean:.2f}, range {min(ratios):.2f} to {max(ratios):.2f} ({', '.join(groups)}); longest "
          f"progress wait {rows[wait][3]:.1f} s ({rows[wait][0]}); load average at the end: "
          f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    print(f"worst measured / estimated time over {len(rows)} cases: {ratios[worst]:.2f} ({rows[worst][0]}; "
          f"target 0.5 to 2)")


if __name__ == "__main__":
    main()
