"""How far to trust a view (#30): each figure against an independent recomputation, on the real default model."""

import ctypes
import functools
import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import ecco_core as ec
from ecco_core.capture import DEFAULT_CHUNK_BYTES
from ecco_core.trust import lens_diagnostics, patching_agreement, top_recall
from families import tiny_lm


@pytest.fixture(scope="module")
def capture(lm):
    return ec.capture(lm, "The capital of France is Paris, and the capital of Italy is")


@pytest.fixture(scope="module")
def diagnostics(lm, capture):
    return lens_diagnostics(lm, capture)


def test_lens_kl_and_agreement_match_norm_and_head_applied_by_the_test(lm, capture, diagnostics):
    ids = torch.as_tensor(capture.token_ids[None])
    with torch.inference_mode():
        final = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
        hidden = torch.as_tensor(capture.hidden_states)  # (n_layers + 1, n_tokens, d_model)
        lens = torch.log_softmax(lm.model.lm_head(lm.model.model.norm(hidden)).double(), -1)
    # kl_div(input, target) is sum target * (log target - input): KL(final || lens)
    expected = torch.nn.functional.kl_div(lens, final.expand_as(lens), reduction="none", log_target=True).sum(-1)
    positions = diagnostics.positions
    assert list(positions) == list(range(capture.n_tokens))  # SmolLM2 adds no special token
    np.testing.assert_allclose(diagnostics.kl, expected[:, positions].numpy(), rtol=1e-3, atol=1e-4)
    agreement = (lens.argmax(-1) == final.argmax(-1))[:, positions].numpy()
    # a near-tie between two tokens may flip under float32 blocking: allow none here, the prompt has no such tie
    np.testing.assert_array_equal(diagnostics.agreement, agreement)
    assert diagnostics.kl.shape == (lm.n_layers + 1, capture.n_tokens)


def test_the_last_layer_is_the_model_itself(diagnostics):
    assert np.abs(diagnostics.kl[-1]).max() < 1e-4
    assert diagnostics.agreement[-1].all()
    assert diagnostics.mean_kl[0] > 1.0  # the embeddings read through the head are far from the output


def test_lens_frame_uses_the_layer_vocabulary(lm, diagnostics):
    frame = diagnostics.to_frame()
    assert list(frame["layer"]) == ["embeddings", *(f"block {i}" for i in range(lm.n_layers))]
    assert frame["block"].isna().tolist() == [True] + [False] * lm.n_layers
    np.testing.assert_allclose(frame["top1_agreement"], diagnostics.agreement.mean(1))
    assert frame["top1_agreement"].iloc[-1] == 1.0
    assert diagnostics.first_layer_agreeing(0.5) in frame["layer"].tolist()


def test_lens_figures_go_beside_the_rankings_in_its_download(lm, capture, diagnostics):
    rankings = ec.rankings(lm, capture, k=1)
    frame = diagnostics.beside(rankings.to_frame())
    assert len(frame) == len(rankings.to_frame()) and list(frame["block"]) == list(rankings.to_frame()["block"])
    by_block = diagnostics.to_frame().set_index("layer")
    np.testing.assert_allclose(frame["lens_mean_kl"], by_block.loc[frame["layer"], "mean_kl"])
    np.testing.assert_allclose(frame["lens_top1_agreement"], by_block.loc[frame["layer"], "top1_agreement"])


def test_chunking_and_positions_do_not_change_the_figures(lm, capture, diagnostics):
    two_rows = 2 * 4 * lm.config.vocab_size
    chunked = lens_diagnostics(lm, capture, positions=[3, 5, 7], max_chunk_bytes=two_rows)
    np.testing.assert_allclose(chunked.kl, diagnostics.kl[:, [3, 5, 7]], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(chunked.agreement, diagnostics.agreement[:, [3, 5, 7]])


def _same_from_one_pass(lm, cap, **arguments):
    """``rankings_and_diagnostics`` against ``ec.rankings`` and ``lens_diagnostics`` called one after the other."""
    rankings, together = ec.trust.rankings_and_diagnostics(lm, cap, **arguments)
    chunk = {name: value for name, value in arguments.items() if name == "max_chunk_bytes"}
    alone, diagnostics = ec.rankings(lm, cap, **arguments), lens_diagnostics(lm, cap, **chunk)
    for name in ("ranks", "top_ids", "target_ids", "positions", "first_token_only"):
        np.testing.assert_array_equal(getattr(rankings, name), getattr(alone, name))
    # One logit in a chunk of other rows may round differently in float32's last bit: nothing more.
    np.testing.assert_allclose(rankings.probs, alone.probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rankings.top_probs, alone.top_probs, rtol=1e-5, atol=1e-7)
    assert abs(rankings.max_abs_diff_vs_model - alone.max_abs_diff_vs_model) < 1e-6
    assert (rankings.kind, rankings.targets, rankings.top_tokens) == (alone.kind, alone.targets, alone.top_tokens)
    for name in ("agreement", "positions", "final_ids"):
        np.testing.assert_array_equal(getattr(together, name), getattr(diagnostics, name))
    np.testing.assert_allclose(together.kl, diagnostics.kl, rtol=1e-5, atol=1e-6)
    assert together.tokens == diagnostics.tokens and together.model_name == diagnostics.model_name


def test_the_rankings_and_their_diagnostics_from_one_pass_are_the_two_results(lm, encoder):
    # Structure, not language: random models of the default's family and of a masked one.
    causal = tiny_lm("llama", lm.tokenizer, encoder.tokenizer)
    for arguments in ({"max_new_tokens": 3}, {}):  # ranked: the generated tokens; every token from the second on
        _same_from_one_pass(causal, ec.capture(causal, "The capital of France is", **arguments), k=3,
                            max_chunk_bytes=7 * 4 * causal.vocab_size)  # seven rows a chunk
    masked = tiny_lm("bert", lm.tokenizer, encoder.tokenizer)  # ranked at the masks, special tokens the lens skips
    cap = ec.capture(masked, "The [MASK] of France is [MASK].")
    assert set(cap.special[[2, 6]]) == {True}
    _same_from_one_pass(masked, cap, max_chunk_bytes=5 * 4 * masked.vocab_size)


def _resident_kb(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith(field + ":")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the kernel's peak (VmHWM) is Linux's")
def test_lens_diagnostics_hold_few_chunks_beside_the_models_distribution(lm, capture):
    """The lens's divergence holds three chunks of logits, not six (#31 item 18).

    Its exp, difference and product were three more vocabulary-wide temporaries per chunk: this capture's
    diagnostics peaked at ~330 MiB above the resident set, a 576-token one at +557 MiB with the default chunks,
    and two Layer predictions sessions at once took a server to 2,779 MiB. The pass reads chunks of a third of
    ``max_chunk_bytes``, so that the three together stay within it.
    """
    final = capture.n_tokens * 4 * lm.config.vocab_size
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what earlier tests freed goes back, so the peak is this call's
    Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from the resident set now
    before = _resident_kb("VmRSS")
    lens_diagnostics(lm, capture, max_chunk_bytes=DEFAULT_CHUNK_BYTES)
    above = (_resident_kb("VmHWM") - before) * 1024
    assert above < 3 * DEFAULT_CHUNK_BYTES + final + 64 * 2**20, f"{above / 2**20:.0f} MiB above the resident set"


def test_lens_diagnostics_refuse_bad_arguments(lm, capture):
    with pytest.raises(ValueError, match="positions must be"):
        lens_diagnostics(lm, capture, positions=[capture.n_tokens])
    with pytest.raises(TypeError, match="positions must be"):
        lens_diagnostics(lm, capture, positions="0")
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        lens_diagnostics(lm, capture, max_chunk_bytes=0)


def test_exposed_on_the_facade():
    assert ec.trust.lens_diagnostics is lens_diagnostics and "trust" in ec.__all__


# ------------------------------------------------------------ attribution patching vs exact
@pytest.fixture(scope="module")
def patched(lm):
    clean, corrupted = "When Mary and John went out, John gave it to", "When Mary and John went out, Mary gave it to"
    options = dict(answer="Mary", foil="John", sites=("ffn",))
    exact = ec.patch(lm, clean, corrupted, **options)
    approximate = ec.patch(lm, clean, corrupted, approximate=True, **options)
    return exact, approximate


def test_patching_agreement_matches_scipy_on_a_real_run(patched):
    exact, approximate = patched
    result = patching_agreement(exact, approximate)
    a, b = exact.effects[0].ravel(), approximate.effects[0].ravel()
    for index in (0, 1):  # the one site, and "all" (the same cells)
        assert result.pearson[index] == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-9)
        assert result.spearman[index] == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-9)
    frame = result.to_frame()
    assert list(frame["site"]) == ["ffn", "all"] and frame["n_cells"].tolist() == [a.size, a.size]
    assert 0 <= result.recall[0] <= 1
    # arrays in give the same figures as results in
    again = patching_agreement(exact.effects, approximate.effects)
    np.testing.assert_array_equal(again.recall, result.recall)


def test_top_recall_on_hand_made_cells():
    exact = np.array([9.0, -8.0, 7.0, 0.1, 0.2, 0.3])
    assert top_recall(exact, exact, top=3) == 1.0
    assert top_recall(exact, np.array([0.0, 0.0, 0.0, 3.0, 2.0, 1.0]), top=3) == 0.0
    assert top_recall(exact, np.array([1.0, 0.0, 0.0, 3.0, -2.0, 0.0]), top=3) == pytest.approx(1 / 3)
    assert top_recall(exact, -exact, top=2) == 1.0  # by magnitude: a sign flip misses nothing
    assert top_recall(exact, exact, top=100) == 1.0  # capped at the number of cells


def test_patching_agreement_per_site_on_hand_made_arrays():
    rng = np.random.default_rng(0)
    exact = rng.normal(size=(2, 4, 5))
    approximate = exact.copy()
    approximate[1] = rng.normal(size=(4, 5))
    result = patching_agreement(exact, approximate, top=5)
    assert result.sites == ("site 0", "site 1")
    assert result.pearson[0] == pytest.approx(1.0) and result.recall[0] == 1.0
    assert result.pearson[1] == pytest.approx(stats.pearsonr(exact[1].ravel(), approximate[1].ravel())[0])
    assert np.isnan(patching_agreement(np.zeros((1, 2, 2)), np.ones((1, 2, 2))).pearson[0])


def test_patching_agreement_refuses_bad_arguments():
    with pytest.raises(ValueError, match="approximate must be an array of shape"):
        patching_agreement(np.zeros((1, 2, 3)), np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="exact must be an array of shape"):
        patching_agreement(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="exact must be a Patching result"):
        patching_agreement("effects", np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="top must be a whole number >= 1"):
        patching_agreement(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)), top=0)


# ------------------------------------------------------------ factors
def test_factor_fvu_matches_sklearn_on_the_same_matrix(capture):
    from sklearn.decomposition import NMF, PCA

    from ecco_core.factors import activation_matrix

    options = dict(n_components=3, layers=[2], positions=range(1, capture.n_tokens))
    quality = ec.trust.factor_quality(capture, ("pca", "nmf"), seeds=(0,), **options)
    matrix = activation_matrix(capture, [2], np.arange(1, capture.n_tokens)).astype(np.float64)
    pca = PCA(n_components=3, svd_solver="full").fit(matrix)
    assert quality.fvu[0] == pytest.approx(1 - pca.explained_variance_ratio_.sum(), abs=1e-4)
    clipped = np.maximum(matrix, 0)
    nmf = NMF(n_components=3, init="nndsvda", solver="cd", max_iter=1000, tol=1e-4, random_state=0).fit(clipped)
    variance = ((clipped - clipped.mean(0)) ** 2).sum()
    assert quality.fvu[1] == pytest.approx(nmf.reconstruction_err_**2 / variance, rel=1e-3)
    assert np.isnan(quality.stability).all()  # one seed: nothing to compare
    assert list(quality.to_frame()["method"]) == ["pca", "nmf"]


def test_factors_of_a_clean_low_rank_matrix_are_stable_across_seeds(capture):
    import dataclasses

    rng = np.random.default_rng(0)
    n_layers, n_tokens, d_ff = capture.ffn.shape[0], 200, 64  # enough tokens for ICA to find its sources
    sources = rng.exponential(size=(n_tokens, 3)) * (rng.random((n_tokens, 3)) < 0.5)  # sparse, non-negative
    low_rank = (sources @ rng.exponential(size=(3, d_ff))).astype(np.float32)
    clean = dataclasses.replace(capture, tokens=("x",) * n_tokens,
                                ffn=np.broadcast_to(low_rank, (n_layers, n_tokens, d_ff)).copy())
    quality = ec.trust.factor_quality(clean, seeds=(0, 1, 2), n_components=3, layers=[0])
    assert quality.fvu == pytest.approx(np.zeros(3), abs=1e-3)
    assert quality.stability == pytest.approx(np.ones(3), abs=1e-3)


def test_the_views_own_fit_stands_for_its_methods_first_seed(capture):
    """The page passes its NMF (the slowest fit) instead of fitting it again: the same figures, one fit fewer."""
    options = dict(n_components=3, layers=[2], positions=range(1, capture.n_tokens))
    reports = []
    view = ec.factors(capture, "pca", **options)
    reused = ec.trust.factor_quality(capture, ("pca", "ica"), seeds=(0, 1), fitted=view,
                                     progress=lambda fraction, message: reports.append(fraction), **options)
    fresh = ec.trust.factor_quality(capture, ("pca", "ica"), seeds=(0, 1), **options)
    np.testing.assert_allclose(reused.fvu, fresh.fvu)
    np.testing.assert_allclose(reused.stability, fresh.stability)
    assert reports == [1 / 3, 2 / 3, 1.0]  # 4 fits, the view's not made again
    frame = reused.beside(view.to_frame(), "ica")
    assert (frame["stability"] == reused.stability[1]).all() and (frame["fvu"] == reused.fvu[1]).all()
    assert len(frame) == len(view.to_frame()) and (frame["n_seeds"] == 2).all()
    with pytest.raises(ValueError, match="fitted must be the fit of one of the methods"):
        ec.trust.factor_quality(capture, ("pca",), seeds=(0, 1), fitted=view, **(options | {"n_components": 2}))
    with pytest.raises(ValueError, match="fitted must be the fit of one of the methods"):
        ec.trust.factor_quality(capture, ("pca",), seeds=(1, 0), fitted=view, **options)
    with pytest.raises(TypeError, match="fitted must be a Factors result"):
        ec.trust.factor_quality(capture, ("pca",), fitted=view.token_activations, **options)


def test_matched_correlation_finds_the_same_factors_in_any_order_and_sign():
    rng = np.random.default_rng(1)
    first = rng.normal(size=(4, 50))
    second = -3 * first[[2, 0, 3, 1]] + rng.normal(scale=1e-3, size=(4, 50))
    mean, match = ec.trust.matched_correlation(first, second)
    assert mean == pytest.approx(1.0, abs=1e-4) and list(match) == [1, 3, 0, 2]
    assert ec.trust.matched_correlation(first, rng.normal(size=(4, 50)))[0] < 0.5


def test_factor_quality_refuses_bad_arguments(capture):
    with pytest.raises(ValueError, match="methods must be one of"):
        ec.trust.factor_quality(capture, ("svd",))
    with pytest.raises(TypeError, match="methods must be a non-empty sequence"):
        ec.trust.factor_quality(capture, "pca")
    with pytest.raises(ValueError, match="seeds must be a sequence of distinct"):
        ec.trust.factor_quality(capture, ("pca",), seeds=(1, 1))
    with pytest.raises(ValueError, match="second must be an array of shape"):
        ec.trust.matched_correlation(np.zeros((2, 3)), np.zeros((3, 3)))


# ------------------------------------------------------------ similarity
def test_cka_of_a_layer_with_itself_is_1_and_its_permutation_baseline_far_lower(capture):
    X = capture.hidden_states[10, 1:]  # block 9's output, the first token (an attention sink) left out
    baseline = ec.trust.permutation_baseline(X, X, n_permutations=20, seed=3)
    assert baseline.score == pytest.approx(1.0)
    assert baseline.null.shape == (20,) and baseline.null.max() < 0.9 * baseline.score
    assert baseline.p_value == pytest.approx(1 / 21)
    assert baseline.null[0] == pytest.approx(ec.similarity.cka(X, X[np.random.default_rng(3).permutation(len(X))]))
    again = ec.trust.permutation_baseline(X, X, n_permutations=20, seed=3)
    np.testing.assert_array_equal(again.null, baseline.null)
    assert not np.array_equal(ec.trust.permutation_baseline(X, X, n_permutations=20, seed=4).null, baseline.null)
    assert baseline.to_frame()["n_permutations"].item() == 20


def test_a_corpus_cell_and_its_baseline_in_the_matrix_download(lm):
    texts = ["The keys to the cabinet are on the table.", "A second sentence, with a comma."]
    matrix = ec.similarity.corpus_similarity(lm, texts, "cka", skip_first=True)
    X, Y = ec.similarity.corpus_pair(lm, texts, 12, 4, skip_first=True)
    assert ec.similarity.cka(X, Y) == pytest.approx(matrix.values[12, 4], abs=1e-6)
    baseline = ec.trust.permutation_baseline(X, Y, n_permutations=5)
    frame = baseline.beside(matrix.to_frame(), row_index=12, column_index=4)
    tested = frame[frame["null_mean"].notna()]
    assert len(tested) == 1 and tested["value"].item() == pytest.approx(baseline.score, abs=1e-6)
    assert tested["null_mean"].item() == pytest.approx(baseline.null.mean())
    assert tested["n_permutations"].item() == 5 and len(frame) == len(matrix.to_frame())
    same, _ = ec.similarity.corpus_pair(lm, texts, 3, 3, rows="ffn", columns="ffn")
    assert same.shape == (sum(len(lm.tokenizer(t)["input_ids"]) for t in texts), lm.d_ff)
    with pytest.raises(ValueError, match="cell must be"):
        baseline.beside(matrix.to_frame(), layer=1)


def test_a_cells_chance_level_reports_its_pass_and_every_shuffle(lm):
    """#31 item 6: the Similarity page's chance level of a cell (the pass gathering its two layers over the texts,
    then 100 shuffles, each a similarity of up to 1,145 positions) reported nothing until done. The pass reports
    as it goes, each shuffle after its score."""
    texts = ["The keys to the cabinet are on the table.", "A second sentence, with a comma."]
    passed, shuffled = [], []
    X, Y = ec.similarity.layer_pair(lm, texts, 12, 4, progress=lambda fraction, message: passed.append(fraction))
    assert passed and passed[-1] == 1.0
    ec.trust.permutation_baseline(X, Y, n_permutations=4, progress=lambda *call: shuffled.append(call))
    assert shuffled == [(n / 4, f"Shuffle {n} of 4") for n in range(1, 5)]


def test_a_chance_level_decomposes_each_layer_once_and_permutes_it(monkeypatch):
    """#31 item 6: each shuffle decomposed both layers again (a CCA score of 1,145 positions, 22 s between two
    reports under load). Now each layer is prepared once for the score and once for the shuffles, which permute
    Y's preparation (a method without ``permute`` prepares each shuffled Y); the scores are those of the shuffled
    matrices."""
    rng = np.random.default_rng(0)
    for n, d_x, d_y in ((30, 8, 50), (40, 60, 10)):  # the CCA family's two bases: d <= n and d > n
        X, Y = rng.normal(size=(n, d_x)), rng.normal(size=(n, d_y))
        for method, options in (("cka", {}), ("cka", {"kernel": "rbf"}), ("cca", {}), ("svcca", {}),
                                ("pwcca", {})):
            baseline = ec.trust.permutation_baseline(X, Y, method, n_permutations=3, seed=1, **options)
            orders = np.random.default_rng(1)
            shuffled = [ec.similarity.similarity_matrix([X], [Y[orders.permutation(n)]], method, **options)
                        .values[0, 0] for _ in range(3)]
            np.testing.assert_allclose(baseline.null, shuffled, atol=1e-12)
    entry = ec.similarity.METHODS["cka"]
    features = ec.similarity.Options(gram=False)  # linear CKA in feature space: the centred matrix permuted
    centred = X - X.mean(axis=0)
    order = rng.permutation(len(X))
    permuted = entry.permute(entry.prepare(centred, features), order)
    assert entry.function(entry.prepare(centred, features), permuted) == pytest.approx(
        entry.function(entry.prepare(centred, features), entry.prepare(centred[order], features)))
    prepared = []

    def counted(Xc, options):
        prepared.append(len(Xc))
        return Xc

    trial = ec.similarity.SimilarityMethod(lambda a, b: ec.similarity.cka(a, b), "CKA, counted", counted,
                                           permute=lambda Xc, order: Xc[order])
    monkeypatch.setitem(ec.similarity.METHODS, "counted", trial)
    ec.trust.permutation_baseline(X, Y, "counted", n_permutations=5)
    assert len(prepared) == 4  # 2 + 2 x 5 before
    monkeypatch.setitem(ec.similarity.METHODS, "counted", trial._replace(permute=None))
    prepared.clear()
    ec.trust.permutation_baseline(X, Y, "counted", n_permutations=5)
    assert len(prepared) == 4 + 5


def test_permutation_baseline_refuses_bad_arguments():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="method must be one of"):
        ec.trust.permutation_baseline(X, X, "rsa")
    with pytest.raises(ValueError, match="n_permutations must be a whole number >= 1"):
        ec.trust.permutation_baseline(X, X, n_permutations=0)
    with pytest.raises(TypeError, match="seed must be a whole number"):
        ec.trust.permutation_baseline(X, X, seed=0.5)
    with pytest.raises(ValueError, match="Y.shape must be"):
        ec.trust.permutation_baseline(X, X[:5])


# ------------------------------------------------------------ saliency faithfulness
@pytest.fixture(scope="module")
def short(lm):
    return ec.capture(lm, "The capital of France is", max_new_tokens=1)


@pytest.fixture(scope="module")
def faithful(lm, short):
    given = [ec.saliency(lm, short, method) for method in ("grad_x_input", "gradient")]
    return given, ec.trust.faithfulness(lm, short, [*given, "erasure"], n_random=3, seed=7)


@functools.cache
def _probability_without(lm, cap, position, zeroed=frozenset()):
    """The explained token's probability with the embeddings at ``zeroed`` set to 0: one text, the whole model."""
    with torch.inference_mode():
        embeds = lm.model.get_input_embeddings()(torch.as_tensor(cap.token_ids[None]))[:, :position].clone()
        embeds[0, list(zeroed)] = 0.0
        logits = lm.model(inputs_embeds=embeds).logits[0, -1].double()
    return torch.softmax(logits, -1)[cap.token_ids[position]].item()


def test_faithfulness_matches_a_slow_loop_over_every_removal(lm, short, faithful):
    given, result = faithful
    rows = [*given, ec.saliency(lm, short, "erasure")]
    rng = np.random.default_rng(7)  # the documented draw: n_random permutations per position, in order
    for index, position in enumerate(result.positions):
        seen = list(range(position))  # SmolLM2 adds no special token: every earlier token is a candidate
        n = len(seen)
        sizes = [min(n, max(1, int(p / 100 * n))) for p in (1, 5, 10, 20, 50)]
        assert result.sizes[index].tolist() == sizes and result.n_candidates[index] == n
        full = _probability_without(lm, short, position)
        assert result.probability[index] == pytest.approx(full, abs=1e-5)  # float32, batched or not
        orders = [sorted(seen, key=lambda column, row=sal.row(position): -row[column]) for sal in rows]
        orders += [list(rng.permutation(seen)) for _ in range(3)]
        curves = {"comprehensiveness": np.zeros((len(orders), 5)), "sufficiency": np.zeros((len(orders), 5))}
        for o, order in enumerate(orders):
            for p, size in enumerate(sizes):
                removed, kept_only = frozenset(order[:size]), frozenset(order[size:])
                curves["comprehensiveness"][o, p] = full - _probability_without(lm, short, position, removed)
                curves["sufficiency"][o, p] = full - _probability_without(lm, short, position, kept_only)
        for name, curve in curves.items():
            np.testing.assert_allclose(getattr(result, name)[:, index], curve[:3], atol=1e-5)
            np.testing.assert_allclose(getattr(result, f"random_{name}")[:, index], curve[3:], atol=1e-5)
            distinct = sorted(set(sizes))
            aopc = np.array([[curve[o, sizes.index(size)] for size in distinct] for o in range(len(orders))]).mean(1)
            frame = result.to_frame().query(f"position == {position}")
            np.testing.assert_allclose(frame[f"aopc_{name}"].iloc[:3], aopc[:3], atol=1e-5)
            assert frame[f"aopc_{name}"].iloc[3] == pytest.approx(aopc[3:].mean(), abs=1e-5)
            assert frame[f"{name}_std"].iloc[3] == pytest.approx(aopc[3:].std(ddof=1), abs=1e-5)
        tau = stats.kendalltau(rows[0].row(position)[:position], rows[2].row(position)[:position]).statistic
        assert result.agreement(position).loc["grad_x_input", "erasure"] == pytest.approx(tau)
    assert list(result.to_frame()["method"][:4]) == ["grad_x_input", "gradient", "erasure", "random"]


def test_faithfulness_seeds_names_and_bad_arguments(lm, short, faithful):
    given, result = faithful
    again = ec.trust.faithfulness(lm, short, given[1], positions=int(result.positions[0]), n_random=3, seed=7)
    assert again.methods == ("gradient",) and again.positions.tolist() == [result.positions[0]]
    np.testing.assert_allclose(again.sufficiency[0, 0], result.sufficiency[1, 0], atol=1e-12)
    np.testing.assert_allclose(again.random_sufficiency[:, 0], result.random_sufficiency[:, 0], atol=1e-12)
    np.testing.assert_array_equal(np.diagonal(result.kendall_tau, axis1=1, axis2=2), 1.0)
    frame = result.agreement_frame()
    assert len(frame) == 3 and set(frame["other"]) == {"gradient", "erasure"}
    with pytest.raises(ValueError, match="saliencies must be one of"):
        ec.trust.faithfulness(lm, short, "saliency")
    with pytest.raises(ValueError, match="saliencies must be distinct methods"):
        ec.trust.faithfulness(lm, short, [given[0], "grad_x_input"])
    with pytest.raises(ValueError, match="saliency results of cap itself"):
        ec.trust.faithfulness(lm, ec.capture(lm, "Paris is", max_new_tokens=1), given[0])
    with pytest.raises(ValueError, match=r"percents must be an increasing sequence"):
        ec.trust.faithfulness(lm, short, given[0], percents=(10, 5))
    with pytest.raises(ValueError, match="n_random must be a whole number >= 1"):
        ec.trust.faithfulness(lm, short, given[0], n_random=0)
    with pytest.raises(ValueError, match="positions must be non-empty and within"):
        ec.trust.faithfulness(lm, short, "gradient", positions=[99])
