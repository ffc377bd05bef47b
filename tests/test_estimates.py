"""The cost model's shape (ecco_core.estimates): what grows with what, and no fixed term that swamps the work.

Timing targets live in bench/estimates.py (measured / estimated per case); these tests check only the model."""

import numpy as np
import pytest

from ecco_core import estimates

FFN = [1536] * 30  # the causal default's FFN activations


def shaped(n_samples: int, widths) -> list:
    """Stand-ins for matrices of these shapes (n_samples, d): the estimates read shapes only (no memory taken)."""
    return [np.broadcast_to(np.float32(0), (n_samples, width)) for width in widths]


def test_small_similarity_matrices_are_not_announced_as_minutes():
    """#31 item 6: a fixed 0.02 s per pair of layers (measured while each LAPACK call waited for a second BLAS
    thread) announced 18 s for a 31 x 30 CCA matrix over 56 positions that ran in 0.13 s on a quiet machine and
    0.6-0.8 s at load 16. On one thread the calls cost a fraction of a millisecond."""
    for method in ("cca", "svcca", "pwcca", "cka"):
        small = estimates.similarity_seconds(shaped(56, FFN), shaped(56, FFN), method)
        assert small < 5.0, (method, small)
        # Still the work's shape: more positions and more pairs cost more.
        assert estimates.similarity_seconds(shaped(545, FFN), shaped(545, FFN), method) > small
        assert estimates.similarity_seconds(shaped(56, FFN + FFN), shaped(56, FFN), method) > small



def test_svcca_counts_the_directions_it_keeps_and_large_decompositions_at_their_own_rate():
    """#31 item 6: SVCCA's pairs were counted at full rank whatever ``keep``, and every eigendecomposition at one
    rate per m^3 fitted to small ones, so 40 UD sentences (1,145 positions) were announced at 2-6 times their run."""
    from ecco_core.similarity import METHODS, Options

    def pair(method, keep):
        return estimates._similarity(1145, [576], [1536], method, "linear", keep, 1.0, False)

    assert pair("svcca", 0.5) < pair("svcca", 0.99) < pair("cca", 0.99)
    # A whole number keeps that many directions: as CCA over matrices of that width.
    assert METHODS["svcca"].pair_work(1145, 576, 1536, Options(keep=10)) == METHODS["cca"].pair_work(1145, 10, 10,
                                                                                                   Options())
    n_small, n_large = 56, 1145
    per_cubed = [METHODS["cca"].prepare_work(n, 1536, Options()).eigh / min(n, 1536) ** 3 for n in (n_small, n_large)]
    assert per_cubed[0] > 2 * per_cubed[1]  # small decompositions cost more per m^3 (LAPACK's m^2 passes)

def test_layer_comparison_estimates_price_what_the_page_runs(lm):
    """compare_layers over texts adds the model's passes keeping both representations (once when they are the
    same); a cell's chance baseline is its shuffles plus, over texts, the pass that gathers its two layers."""
    import ecco_core as ec
    from ecco_core import similarity as sim
    from ecco_core.tokens import encode_prompt

    hidden, ffn = [lm.d_model] * (lm.n_layers + 1), [lm.d_ff] * lm.n_layers
    texts = sim.ud_sentences(3)
    n = sim.positions_compared(lm, texts, skip_first=True)
    tokens = sum(len(encode_prompt(lm, text)) for text in texts)
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    on_capture = estimates.compare_layers_seconds(lm, cap, "cka", rows="hidden", columns="ffn")
    assert on_capture == estimates.similarity_seconds(shaped(cap.n_tokens, hidden), shaped(cap.n_tokens, ffn), "cka")
    pooled = estimates.compare_layers_seconds(lm, texts, "cka", rows="hidden", columns="ffn", skip_first=True)
    assert pooled == (estimates.similarity_seconds(shaped(n, hidden), shaped(n, ffn), "cka")
                      + estimates.corpus_seconds(lm, tokens, sum(hidden) + sum(ffn)))
    same = estimates.compare_layers_seconds(lm, texts, "cca", rows="ffn", columns="ffn", skip_first=True)
    stack = shaped(n, ffn)
    assert same == estimates.similarity_seconds(stack, stack, "cca") + estimates.corpus_seconds(lm, tokens, sum(ffn))
    # A chance level decomposes each layer for its score and once for the shuffles, then scores each shuffle of a
    # permuted decomposition (#31 item 6: it decomposed both layers at every shuffle, and its estimate counted one
    # similarity_matrix call each).
    def cell(source, n_permutations):
        return estimates.cell_baseline_seconds(lm, source, 3, 4, "cka", skip_first=True, kernel="rbf",
                                               n_permutations=n_permutations)

    pass_s = estimates.corpus_seconds(lm, tokens, lm.d_model + lm.d_ff)
    n_cap = cap.n_tokens - 1
    for source, positions, forward in ((cap, n_cap, 0.0), (texts, n, pass_s)):
        one = estimates.similarity_seconds(shaped(positions, [lm.d_model]), shaped(positions, [lm.d_ff]), "cka",
                                           kernel="rbf")
        shuffle = cell(source, 2) - cell(source, 1)  # a score and a permuted copy
        assert cell(source, 10) == pytest.approx(cell(source, 1) + 9 * shuffle)
        assert 2 * one + forward < cell(source, 1) <= 2 * one + forward + shuffle + 1e-12
    long = sim.ud_sentences(40)  # 1,145 positions: a shuffle is a score and a permuted copy, not two decompositions
    assert 0 < cell(long, 2) - cell(long, 1) < (cell(long, 1) - estimates.corpus_seconds(
        lm, sum(len(encode_prompt(lm, text)) for text in long), lm.d_model + lm.d_ff)) / 10


def test_an_estimate_takes_the_arguments_of_the_analysis_it_estimates():
    """#27 §2: factors_seconds took (n_positions, n_neurons, n_components, method), saliency_seconds (n_tokens,
    n_explained, ...), faithfulness_seconds one position, verify_seconds n_tokens and routes: sizes a page worked out
    from its settings (and the factor quality's estimate was summed by the page). Each now takes its analysis's own
    arguments, so a page passes the same call to both."""
    import inspect

    import ecco_core as ec

    for estimate, analysis in ((estimates.factors_seconds, ec.factors.factors),
                               (estimates.factor_quality_seconds, ec.trust.factor_quality),
                               (estimates.saliency_seconds, ec.saliency.saliency),
                               (estimates.faithfulness_seconds, ec.trust.faithfulness),
                               (estimates.verify_seconds, ec.circuits.verify),
                               (estimates.similarity_seconds, ec.similarity.similarity_matrix),
                               (estimates.probing_seconds, ec.probe_table),
                               (estimates.probe_collection_seconds, ec.probing.collect),
                               (estimates.probe_training_seconds, ec.probing.train_probes)):
        assert list(inspect.signature(estimate).parameters) == list(inspect.signature(analysis).parameters)
    # compare_layers passes its options on to layer_similarity or corpus_similarity: the estimate takes them all.
    taken = set(inspect.signature(estimates.compare_layers_seconds).parameters)
    for analysis in (ec.similarity.layer_similarity, ec.similarity.corpus_similarity):
        assert set(inspect.signature(analysis).parameters) - {"captures", "texts", "lm"} <= taken, analysis


def test_a_factor_method_added_with_its_cost_model_is_estimated_from_its_entry(lm):
    """#27 §2: the factor estimate branched on method names ("nmf", "pca", else ICA's cost). An entry carries its
    work (multiply-adds of one fit), a method added as one entry is estimated from it with no other edit, and one
    added without a cost model is counted as an SVD."""
    import ecco_core as ec
    from ecco_core.factors import METHODS, FactorMethod

    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    options = dict(n_components=3, layers=range(4), positions=range(1, cap.n_tokens))
    seen = []
    METHODS["trial"] = FactorMethod(METHODS["pca"].function, "PCA, as a trial",
                                    lambda *sizes: seen.append(sizes) or 1e12)
    METHODS["plain"] = FactorMethod(METHODS["pca"].function, "PCA, no cost model")
    try:
        seconds = estimates.factors_seconds(cap, "trial", **options)
        assert seen == [(cap.n_tokens - 1, 4 * lm.d_ff, 3)]
        assert seconds == 1e12 / estimates.NUMPY_RATE * estimates.pace()
        assert estimates.factors_seconds(cap, "plain", **options) == estimates.factors_seconds(cap, "pca", **options)
        with_trial = estimates.factor_quality_seconds(cap, ("pca", "trial"), seeds=(0, 1), **options)
        assert with_trial == 2 * (seconds + estimates.factors_seconds(cap, "pca", **options))
    finally:
        del METHODS["trial"], METHODS["plain"]


def test_estimates_follow_the_pace_this_process_measures(monkeypatch):
    """#31 item 6: fixed rates ran at 0.25-0.37 of their estimates at load 3-4 and 0.74-1.49 at load 12-16 (and
    patching at up to 2.6): the load cannot be known in advance. Each run recorded moves this process's pace
    halfway (in log space) towards its own measured / estimated, so the next estimate follows how fast the process
    runs now; a run too short to say (fixed costs) moves nothing. Before any run, the pace is the load's."""
    matrices = shaped(56, FFN)
    base = estimates.similarity_seconds(matrices, matrices, "cca")  # the tests' fixed pace (conftest: ECCO_PACE=1)
    assert estimates.record(1.0, 4.0) == 1.0
    monkeypatch.delenv(estimates.PACE_VARIABLE)
    before = estimates.pace()
    try:
        estimates.reset_pace(1.0)
        rated = estimates.similarity_seconds(matrices, matrices, "cca")
        assert estimates.record(10.0, 40.0) == 2.0  # four times the estimate: halfway in log space
        assert estimates.similarity_seconds(matrices, matrices, "cca") == 2 * rated
        assert estimates.record(0.1, 0.9) == 2.0  # under PACE_MIN_S: not recorded
        estimates.record(10.0, 10.0)
        assert estimates.pace() == 2.0  # as estimated: the pace holds
        for _ in range(12):  # a quieter machine: the pace comes down with it
            estimates.record(10.0 * estimates.pace(), 5.0)
        assert abs(estimates.pace() - 0.5) < 0.01
        estimates.reset_pace()  # measured again from the load average at the next estimate
        assert estimates.PACE_LIMITS[0] <= estimates.pace() <= estimates.PACE_LIMITS[1]
    finally:
        estimates.reset_pace(before)


def test_the_first_pace_is_measured_not_read_from_the_load_average(monkeypatch):
    """#31 item 6: the pace started from the 1-minute load average, which lags: just after other jobs ended
    (load average 18) a fixed workload ran at 1.4-2 times its time alone where the load promised 6.5, and the
    first estimates were 6 times too long. The first pace now times that workload (a tenth of a second)."""
    monkeypatch.delenv(estimates.PACE_VARIABLE)
    monkeypatch.setattr(estimates.os, "getloadavg", lambda: (100.0, 100.0, 100.0))  # a load that is not there
    before = estimates.pace()
    try:
        estimates.reset_pace()
        assert estimates.pace() < estimates.load_pace() / 2
    finally:
        estimates.reset_pace(before)


def test_faithfulness_counts_the_distinct_texts_it_runs():
    """#31 item 6: faithfulness runs each distinct erased text once, and at an early position its orders' top tokens
    meet and its sizes repeat (7 candidates: sizes 1, 1, 1, 1, 3), so it ran about a quarter of the ``1 + 2 x orders
    x percents`` texts the estimate counted. The count of distinct texts follows what such orders give."""
    import numpy as np

    from ecco_core.trust import rationale_sizes

    rng = np.random.default_rng(0)
    for n_candidates in (2, 7, 26):
        sizes = rationale_sizes(n_candidates)
        masks = [np.zeros(n_candidates, dtype=bool)]
        for order in (rng.permutation(n_candidates) for _ in range(14)):
            for size in sizes:
                masks += [np.isin(np.arange(n_candidates), order[:size]), np.isin(np.arange(n_candidates), order[size:])]
        distinct = len(np.unique(np.array(masks), axis=0))
        assert 0.75 * distinct <= estimates.erased_variants(n_candidates, 14) <= 1.25 * distinct, n_candidates
    assert estimates.erased_variants(7, 14) < (1 + 2 * 14 * 5) / 3


def test_fixed_costs_are_counted_once_per_fit_and_per_chunk(lm):
    """#31 item 6: a PCA of one block's FFN ran about 1 s where its counted work was a tenth of that (a fit's
    set-up), and gradient x input (one point) ran at 1.5 times integrated gradients' share of its estimate (the
    vectorised backward's cost per chunk besides its points). Each fit now carries a fixed cost, and one point costs
    more than a twentieth of twenty."""
    import ecco_core as ec
    from ecco_core.factors import FIT_SET_UP

    cap = ec.capture(lm, "The keys to the cabinet", max_new_tokens=12)  # many explained tokens, as measured
    assert estimates.factors_seconds(cap, "pca", n_components=2, layers=[0]) > FIT_SET_UP / estimates.NUMPY_RATE
    one = estimates.saliency_seconds(lm, cap, "grad_x_input")
    assert estimates.saliency_seconds(lm, cap, "integrated_gradients", steps=20) < 16 * one


def test_torch_work_is_estimated_on_the_threads_it_runs_on(lm, monkeypatch):
    """#31 item 6: the rates are one thread's, and the app runs torch on two (torch's default on the 2 cores), where
    saliency, patching and the model's passes ran 2-3 times faster: a 506-token prompt's saliency was announced at
    80 s and took about 40 s with its capture, causal tracing's example 19 s for 6 s. Torch's work is divided by the
    speedup of its threads; numpy's, on one BLAS thread whatever torch's, is not."""
    import torch

    matrices = shaped(56, FFN)
    monkeypatch.delenv(estimates.PACE_VARIABLE)
    before, threads = estimates.pace(), torch.get_num_threads()
    try:
        estimates.reset_pace(1.0)
        torch.set_num_threads(1)
        one = (estimates.capture_seconds(lm, 100), estimates.patching_seconds(lm, 100, 1000),
               estimates.similarity_seconds(matrices, matrices, "cca"))
        assert estimates.thread_speedup() == 1.0
        torch.set_num_threads(2)
        speedup = estimates.thread_speedup()
        assert speedup == pytest.approx(estimates.TWO_THREAD_SPEEDUP if estimates.os.cpu_count() >= 2 else 1.0)
        two = (estimates.capture_seconds(lm, 100), estimates.patching_seconds(lm, 100, 1000),
               estimates.similarity_seconds(matrices, matrices, "cca"))
        assert two[0] == pytest.approx(one[0] / speedup)
        assert two[1] == pytest.approx(one[1] - (1 - 1 / speedup) * (one[1] - estimates.PATCHING_START_S))
        assert two[2] == one[2]
    finally:
        torch.set_num_threads(threads)
        estimates.reset_pace(before)
