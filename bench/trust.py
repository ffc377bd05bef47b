"""Cost of each trust figure (#30) against the view it qualifies, on the causal default at the pages' defaults.

The default capture ("Romeo and Juliet was written by", 20 generated tokens):

- lens: ``ec.trust.lens_diagnostics`` vs ``ec.rankings`` (the Layer predictions view);
- patching: ``ec.trust.patching_agreement`` on the exact and approximate results vs the exact
  ``ec.patch`` on the IOI example (the Causal tracing view), all three sites;
- factors: ``ec.trust.factor_quality`` (NMF, PCA and ICA at seeds 0 and 1, the page's seeds, the view's
  NMF at seed 0 passed in as the page does: 5 fits) vs one NMF of every FFN neuron, first token left out (the
  Neuron factors view);
- similarity: ``ec.trust.permutation_baseline`` (linear CKA, 100 shuffles) of one cell (block 15's
  output vs block 28's FFN) vs the hidden x FFN CKA matrix (the Similarity view);
- saliency: ``ec.trust.faithfulness`` of the four methods (computed by name, 20 IG steps, 10 random
  orders) for the token the Saliency page explains first vs ``ec.saliency`` (Gradient x Input of
  every generated token: the Saliency view).

Round-robin, one thread, medians of ``--repeat`` runs (default 3). Last line: the largest
trust / view time ratio (target: at most 3).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import ecco_core as ec  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
PAIRS = ("lens", "patching", "factors", "similarity", "saliency")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=PAIRS, default=PAIRS, help="the figures to time (default: all)")
    arguments = parser.parse_args()
    repeat = arguments.repeat
    torch.set_num_threads(1)
    lm = ec.load()
    cap = ec.capture(lm, "Romeo and Juliet was written by", max_new_tokens=20)
    positions = ec.factors.analysed_positions(cap, skip_first=True)
    view_nmf = ec.factors(cap, "nmf", positions=positions)  # the page's own fit, which it passes to factor_quality
    exact = ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John")
    approximate = ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John", approximate=True)
    X, Y = cap.hidden_states[16, 1:], cap.ffn[28, 1:]
    explained = ec.saliency(lm, cap).first_word_position()
    pairs = {
        "lens": (lambda: ec.rankings(lm, cap), lambda: ec.trust.lens_diagnostics(lm, cap)),
        "patching": (lambda: ec.patch(lm, CLEAN, CORRUPTED, "Mary", "John"),
                     lambda: ec.trust.patching_agreement(exact, approximate)),
        "factors": (lambda: ec.factors(cap, "nmf", positions=positions),
                    lambda: ec.trust.factor_quality(cap, positions=positions, seeds=(0, 1), fitted=view_nmf)),
        "similarity": (lambda: ec.similarity.layer_similarity([cap], "cka", skip_first=True),
                       lambda: ec.trust.permutation_baseline(X, Y, "cka")),
        "saliency": (lambda: ec.saliency(lm, cap), lambda: ec.trust.faithfulness(lm, cap, positions=explained)),
    }
    pairs = {name: pairs[name] for name in arguments.only}
    seconds = {(name, side): [] for name in pairs for side in ("view", "trust")}
    with threadpool_limits(1):
        for _ in range(repeat):
            for name, (view, trust) in pairs.items():
                for side, run in (("view", view), ("trust", trust)):
                    start = time.perf_counter()
                    run()
                    seconds[name, side].append(time.perf_counter() - start)
    ratios = {}
    for name in pairs:
        view, trust = (statistics.median(seconds[name, side]) for side in ("view", "trust"))
        ratios[name] = trust / view
        print(f"{name:<11} view {view:7.3f} s   trust {trust:7.3f} s   ratio {ratios[name]:.2f}")
    worst = max(ratios, key=ratios.get)
    print(f"largest trust / view time ratio: {ratios[worst]:.2f} ({worst})")


if __name__ == "__main__":
    main()
