"""The estimates of ecco_core.estimates against real runs on this machine (what the dashboard announces).

Each case runs a real analysis on the causal default (SmolLM2-135M) once and
prints its measured time, the estimate from its sizes, and their ratio. The
rates in ecco_core/estimates.py were set from this script's output on the
development machine (2 shared CPU cores); on another machine the ratios show
how far off they are (divide a rate by its cases' ratio to recalibrate).
Usage: ``OMP_WAIT_POLICY=PASSIVE python bench/estimates.py [group ...]``, groups
``probing``, ``similarity``, ``factors``, ``saliency`` (default: all, in that
order). Last line: the geometric mean of measured / estimated over the cases
run (``bench/estimates.py saliency``: the saliency estimate's alone).
"""

import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ecco_core as ec  # noqa: E402
from ecco_core import estimates, probing  # noqa: E402
from ecco_core.layers import EMBEDDINGS  # noqa: E402
from ecco_core import similarity as sim  # noqa: E402

PASSAGE = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined "
    "movable metal type, oil-based ink and a wooden press adapted from those used to make wine. Within a few "
    "decades printing shops had spread from Mainz to more than two hundred cities across Europe."
)
SALIENCY_PROMPT = "William Shakespeare was born in the year"  # 7 tokens, as the sidebar's default prompt
QUIET = lambda fraction, message: None  # noqa: E731


def timed(work):
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


class Cases(list):
    """(case, measured s, estimated s) rows, each printed as it is added."""

    def append(self, row) -> None:
        case, measured, estimated = row
        print(f"{case}: measured {measured:.2f} s, estimated {estimated:.2f} s, ratio {measured / estimated:.2f}",
              flush=True)
        super().append(row)


def probing_cases(lm, rows: Cases) -> None:
    for layers in ([EMBEDDINGS, 5, 11, 17, 23, 29], None):
        data, seconds = timed(lambda: probing.collect(lm, probing.UD_ENGLISH_EWT_DEV, n_tokens=1000, layers=layers,
                                                      progress=QUIET))
        rows.append((f"probe collection, 1000 words, layers {layers or 'all'}", seconds,
                     estimates.probe_collection_seconds(lm, 1000, layers)))
        _, seconds = timed(lambda: probing.train_probes(
            [data.hidden_states, data.ffn], data.tags, data.words, trials=1, epochs=5, progress=QUIET))
        rows.append((f"probe training, 1000 words, 1 trial, 5 epochs, layers {layers or 'all'}", seconds,
                     estimates.probe_training_seconds(1000, estimates.probe_width(lm, layers), 1, 5)))


def similarity_cases(lm, rows: Cases) -> None:
    texts = sim.ud_sentences(10)
    captures, seconds = timed(lambda: [ec.capture(lm, text, max_new_tokens=0) for text in texts])
    n_tokens = sum(cap.n_tokens for cap in captures)
    rows.append((f"capture of {len(texts)} UD sentences ({n_tokens} tokens)", seconds,
                 estimates.capture_seconds(lm, n_tokens)))
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    # The CCA family on pooled sentences takes minutes on a loaded 2-core machine: CKA there, all four on the passage.
    for pooled, name, methods in ((captures, f"{len(texts)} UD sentences", ["cka"]),
                                  ([passage], "one passage", list(sim.METHODS))):
        n_samples = len(sim.layer_activations(pooled, "hidden")[0])
        for method in methods:
            _, seconds = timed(lambda: sim.layer_similarity(pooled, method))
            rows.append((f"similarity {method}, hidden x ffn, {name} ({n_samples} positions)", seconds,
                         estimates.similarity_seconds(n_samples, [lm.d_model] * (lm.n_layers + 1),
                                                      [lm.d_ff] * lm.n_layers, method)))


def factors_cases(lm, rows: Cases) -> None:
    passage = ec.capture(lm, PASSAGE, max_new_tokens=0)
    for method in ("nmf", "pca", "ica"):
        _, seconds = timed(lambda: ec.factors(passage, method, n_components=10, positions=range(1, passage.n_tokens)))
        rows.append((f"factors {method}, all 30 layers, {passage.n_tokens - 1} tokens", seconds,
                     estimates.factors_seconds(passage.n_tokens - 1, lm.n_layers * lm.d_ff, 10, method)))


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


GROUPS = {"probing": probing_cases, "similarity": similarity_cases, "factors": factors_cases,
          "saliency": saliency_cases}


def main() -> None:
    groups = sys.argv[1:] or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown groups {unknown}; groups: {list(GROUPS)}")
    lm = ec.load()
    rows = Cases()
    for group in groups:
        GROUPS[group](lm, rows)
    ratios = [measured / estimated for _, measured, estimated in rows]
    mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"measured / estimated time ({', '.join(groups)}), geometric mean over {len(rows)} cases: {mean:.2f} "
          f"(range {min(ratios):.2f} to {max(ratios):.2f})")


if __name__ == "__main__":
    main()
