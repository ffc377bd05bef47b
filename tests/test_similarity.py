"""Representation similarity: invariances, independent re-implementations from the papers, real captures."""

import sys
import types

import numpy as np
import pytest
from scipy.linalg import sqrtm

import ecco_core as ec
from ecco_core import similarity as sim
from ecco_core.tokens import encode_prompt
from families import tiny_lm

PAIRWISE = {
    "cca": sim.cca,
    "svcca": sim.svcca,
    "pwcca": sim.pwcca,
    "cka": sim.cka,
    "cka_rbf": lambda X, Y: sim.cka(X, Y, kernel="rbf"),
}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _correlated(rng, n=400, d1=12, d2=18, noise=1.0):
    """Two views of a shared latent with noise: similarity strictly between 0 and 1."""
    latent = rng.normal(size=(n, 8))
    X = latent @ rng.normal(size=(8, d1)) + noise * rng.normal(size=(n, d1))
    Y = np.tanh(latent @ rng.normal(size=(8, d2))) + noise * rng.normal(size=(n, d2))
    return X, Y


# --------------------------------------------------------- papers' formulas
def _paper_cka(X, Y, kernel="linear"):
    """Kornblith et al. eq. (3) with the explicit centring matrix H, from scratch."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n

    def gram(Z):
        if kernel == "linear":
            return Z @ Z.T
        distances = np.square(Z[:, None, :] - Z[None, :, :]).sum(-1)
        sigma = np.median(np.sqrt(distances[np.triu_indices(n, 1)]))
        return np.exp(-distances / (2 * sigma**2))

    K, L = H @ gram(X) @ H, H @ gram(Y) @ H
    return np.trace(K @ L) / np.sqrt(np.trace(K @ K) * np.trace(L @ L))


def _paper_cca(X, Y):
    """Canonical correlations as singular values of Sxx^-1/2 Sxy Syy^-1/2 (Hotelling), and X's canonical directions."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    whiten_x = np.linalg.inv(np.real(sqrtm(Xc.T @ Xc)))
    whiten_y = np.linalg.inv(np.real(sqrtm(Yc.T @ Yc)))
    u, rho, _ = np.linalg.svd(whiten_x @ Xc.T @ Yc @ whiten_y)
    return rho, whiten_x @ u


def _paper_pwcca(X, Y):
    """Morcos et al. section 3.1: alpha_i = sum_j |<h_i, x_j>| with h_i the i-th canonical variate of X."""
    rho, directions = _paper_cca(X, Y)
    Xc = X - X.mean(0)
    variates = Xc @ directions[:, : len(rho)]
    variates /= np.linalg.norm(variates, axis=0)
    alpha = np.abs(variates.T @ Xc).sum(axis=1)
    return float(alpha @ rho / alpha.sum())


def _paper_svcca(X, Y, keep=0.99):
    """Raghu et al.: project each side on the singular directions holding `keep` of its variance, then CCA."""
    reduced = []
    for Z in (X, Y):
        Zc = Z - Z.mean(0)
        _, s, vt = np.linalg.svd(Zc, full_matrices=False)
        count = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= keep)) + 1
        reduced.append(Zc @ vt[:count].T)
    return float(_paper_cca(*reduced)[0].mean())


def test_agrees_with_independent_implementations_of_the_papers(rng):
    X, Y = _correlated(rng)
    assert sim.cka(X, Y) == pytest.approx(_paper_cka(X, Y), abs=1e-10)
    assert sim.cka(X, Y, kernel="rbf") == pytest.approx(_paper_cka(X, Y, "rbf"), abs=1e-10)
    assert sim.cca(X, Y) == pytest.approx(_paper_cca(X, Y)[0].mean(), abs=1e-8)
    assert sim.pwcca(X, Y) == pytest.approx(_paper_pwcca(X, Y), abs=1e-8)
    assert sim.svcca(X, Y) == pytest.approx(_paper_svcca(X, Y), abs=1e-8)
    assert sim.svcca(X, Y, keep=0.5) == pytest.approx(_paper_svcca(X, Y, keep=0.5), abs=1e-8)
    values = [sim.cka(X, Y), sim.cca(X, Y), sim.pwcca(X, Y), sim.svcca(X, Y)]
    assert all(0.05 < value < 0.95 for value in values), values


# ---------------------------------------------------------------- invariances
def test_cka_is_invariant_to_orthogonal_maps_and_scaling(rng):
    X = rng.normal(size=(300, 16))
    Q = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    assert sim.cka(X, X @ Q) == pytest.approx(1.0, abs=1e-12)
    assert sim.cka(X, -7.5 * X) == pytest.approx(1.0, abs=1e-12)
    assert sim.cka(X, X @ Q * 3.0, kernel="rbf") == pytest.approx(1.0, abs=1e-12)
    stretched = X @ np.diag(np.linspace(0.1, 10, 16))
    assert sim.cka(X, stretched) < 0.9, "linear CKA is not invariant to arbitrary linear maps"


@pytest.mark.parametrize("method", ["cca", "svcca", "pwcca"])
def test_cca_family_is_invariant_to_invertible_linear_maps(rng, method):
    X = rng.normal(size=(300, 10))
    A = rng.normal(size=(10, 10)) + 3 * np.eye(10)
    assert PAIRWISE[method](X, X @ A) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("method", sorted(PAIRWISE))
def test_symmetric_and_translation_invariant(rng, method):
    X, Y = _correlated(rng, d1=12, d2=18)
    score = PAIRWISE[method]
    assert score(X, Y) == pytest.approx(score(Y, X), abs=1e-10)
    assert score(X + 100.0, Y - 5.0) == pytest.approx(score(X, Y), abs=1e-8)
    same_width = _correlated(rng, d1=12, d2=12)
    assert score(*same_width) == pytest.approx(score(*same_width[::-1]), abs=1e-10)


@pytest.mark.parametrize("method", sorted(PAIRWISE))
def test_identical_inputs_score_one(rng, method):
    X = rng.normal(size=(200, 9))
    assert PAIRWISE[method](X, X) == pytest.approx(1.0, abs=1e-9)


def test_independent_gaussians_score_low(rng):
    X, Y = rng.normal(size=(4000, 10)), rng.normal(size=(4000, 15))
    assert sim.cka(X, Y) < 0.01
    assert sim.cka(X[:1500], Y[:1500], kernel="rbf") < 0.02
    for method in ("cca", "svcca", "pwcca"):
        assert PAIRWISE[method](X, Y) < 0.15, method


# ------------------------------------------------------------- robustness
@pytest.mark.parametrize("method", sorted(PAIRWISE))
def test_rank_deficient_inputs_give_finite_scores(rng, method):
    X = rng.normal(size=(60, 8))
    duplicated = np.hstack([X, X, np.ones((60, 2))])
    wide = rng.normal(size=(20, 50))
    score = PAIRWISE[method]
    assert score(duplicated, X) == pytest.approx(1.0, abs=1e-8)
    for value in (score(wide, wide[:, :30] ** 2), score(wide, rng.normal(size=(20, 5)))):
        assert np.isfinite(value) and 0.0 <= value <= 1.0
    assert score(np.ones((60, 4)), X) == 0.0, "a constant input shares no variance"


def test_more_dimensions_than_samples_saturates_the_cca_family(rng):
    # The documented trap: rank(X) + rank(Y) >= n - 1 makes canonical correlations 1 on pure noise.
    X, Y = rng.normal(size=(30, 40)), rng.normal(size=(30, 40))
    assert sim.cca(X, Y) == pytest.approx(1.0, abs=1e-8)
    assert sim.cka(X, Y) < 0.95


def test_the_saturation_verdict_is_what_the_cca_family_then_computes(rng):
    """#31 item 7: before a run, whether it can leave saturation (positions against the two ranks) and the fewest
    positions that can; checked against what PWCCA, CCA and SVCCA compute on noise of those sizes."""
    forced = sim.saturation(1145, [576] * 31, [1536] * 30, "pwcca")  # 40 UD sentences, hidden states x FFN
    assert forced.forced and (forced.row_rank, forced.column_rank) == (576, 1144)
    assert (forced.needed_positions, forced.unforced_positions) == (1538, 2113)
    assert "cannot leave saturation" in forced.describe() and "1,538 positions" in forced.describe()
    widths = ([8, 12], [30])
    verdict = sim.saturation(31, *widths, "pwcca")
    assert verdict.forced and verdict.needed_positions == 32 and verdict.unforced_positions == 43
    X, Y = rng.normal(size=(31, 12)), rng.normal(size=(31, 30))
    assert sim.pwcca(X, Y) == pytest.approx(1.0, abs=1e-8) and sim.cca(X, Y) == pytest.approx(1.0, abs=1e-8)
    X, Y = rng.normal(size=(32, 12)), rng.normal(size=(32, 30))  # the proposed setting: it leaves saturation
    assert not sim.saturation(32, *widths, "cca").forced and sim.cca(X, Y) < 1 - 1e-6
    assert "still forced to 1" in sim.saturation(32, *widths, "cca").describe()
    assert "no canonical correlation is forced" in sim.saturation(43, *widths, "cca").describe()
    # SVCCA keeping 99% of the variance keeps fewer directions (only the run tells): not forced; a whole number is.
    assert not sim.saturation(31, *widths, "svcca").forced
    assert sim.saturation(31, *widths, "svcca", keep=30).forced
    assert not sim.saturation(31, *widths, "svcca", keep=29).forced
    assert sim.saturation(31, *widths, "cka") is None
    with pytest.raises(ValueError, match="row_widths"):
        sim.saturation(31, [], [30])


def test_ud_sentences_for_counts_positions_as_the_corpus_run_does(lm):
    count = sim.ud_sentences_for(lm, 300, skip_special=False)
    positions = [len(encode_prompt(lm, text)) for text in sim.ud_sentences(count)]
    assert sum(positions) >= 300 > sum(positions[:-1])
    assert sim.ud_sentences_for(lm, 10**9, most=5) is None


def test_the_positions_compared_are_the_samples_the_comparison_then_has(lm):
    """The saturation verdict weighs these, not the tokens: each text's first token left out is no sample (#31)."""
    texts = sim.ud_sentences(2)
    cap = ec.capture(lm, texts[0], max_new_tokens=0)
    for skips in ({"skip_first": True}, {"skip_first": False, "skip_special": False}):
        samples = sim.layer_activations(cap, **skips)[0].shape[0]
        assert sim.positions_compared(lm, cap, **skips) == samples
    tokens = sum(len(encode_prompt(lm, text)) for text in texts)
    assert sim.positions_compared(lm, texts, skip_first=True) == tokens - 2
    with pytest.raises(TypeError, match="source must be a Capture or a sequence of texts"):
        sim.positions_compared(lm, texts[0])


def test_compare_layers_and_layer_pair_read_a_capture_or_pool_texts(lm, encoder):
    """What the Similarity page calls for either source; a tiny model, as the structure is what is checked."""
    small = tiny_lm("llama", causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)
    text = "The keys to the cabinet are on the table."
    cap = ec.capture(small, text, max_new_tokens=0)
    options = dict(rows="hidden", columns="ffn", skip_first=True)
    from_capture = sim.compare_layers(small, cap, "cka", **options)
    np.testing.assert_array_equal(from_capture.values, sim.layer_similarity(cap, "cka", **options).values)
    np.testing.assert_allclose(sim.compare_layers(small, [text], "cka", **options).values, from_capture.values,
                               atol=1e-5)
    X, Y = sim.layer_pair(small, cap, 2, 1, **options)
    np.testing.assert_array_equal(X, sim.layer_activations(cap, "hidden", skip_first=True)[2])
    np.testing.assert_array_equal(Y, sim.layer_activations(cap, "ffn", skip_first=True)[1])
    pooled = sim.layer_pair(small, [text], 2, 1, **options)
    np.testing.assert_allclose(pooled[0], X, atol=1e-5)
    np.testing.assert_allclose(pooled[1], Y, atol=1e-5)
    with pytest.raises(ValueError, match="column must be a whole number .* 1; got 2"):
        sim.layer_pair(small, cap, 0, 2, **options)
    with pytest.raises(TypeError, match="source must be a Capture or a sequence of texts"):
        sim.compare_layers(small, text)


@pytest.mark.parametrize(
    ("X", "Y", "message"),
    [
        (np.zeros((10, 3)), np.zeros((11, 3)), r"Y.shape must be 10 samples .*; got \(11, 3\)"),
        (np.zeros((1, 3)), np.zeros((1, 3)), r"X.shape must be .*n_samples >= 2.*; got \(1, 3\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), np.zeros((2, 2)), "X must be a finite .*NaN or infinite"),
        (np.zeros((4, 2)), np.full((4, 2), np.inf), "Y must be a finite .*NaN or infinite"),
        (np.zeros(5), np.zeros((5, 2)), r"X.shape must be a finite 2-D array .*; got \(5,\)"),
    ],
)
@pytest.mark.parametrize("method", sorted(PAIRWISE))
def test_bad_input_names_the_problem(X, Y, message, method):
    with pytest.raises(ValueError, match=message):
        PAIRWISE[method](X, Y)


def test_bad_options_list_what_is_allowed(rng):
    X = rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match="kernel must be one of 'linear', 'rbf'; got 'cosine'"):
        sim.cka(X, X, kernel="cosine")
    with pytest.raises(ValueError, match="bandwidth must be a finite number > 0; got 0"):
        sim.cka(X, X, kernel="rbf", bandwidth=0)
    with pytest.raises(ValueError, match="keep must be a fraction"):
        sim.svcca(X, X, keep=1.5)
    with pytest.raises(TypeError, match="keep must be"):
        sim.svcca(X, X, keep="all")
    with pytest.raises(ValueError, match="method must be one of 'cka', 'pwcca', 'svcca', 'cca'; got 'procrustes'"):
        sim.similarity_matrix([X], [X], "procrustes")
    with pytest.raises(TypeError, match="wrap a single matrix in a list"):
        sim.similarity_matrix(X, [X])
    with pytest.raises(ValueError, match=r"the matrices' shapes must be 2-D, all with the same number of samples"):
        sim.similarity_matrix([X], [X[:10]])


def test_svcca_keeps_a_number_of_directions_or_a_share_of_variance(rng):
    X, Y = _correlated(rng, n=500, d1=20, d2=20, noise=0.3)
    one = sim.svcca(X, Y, keep=1)
    assert one == pytest.approx(np.abs(np.corrcoef(_top(X), _top(Y))[0, 1]), abs=1e-8)
    assert sim.svcca(X, Y, keep=1.0) == pytest.approx(sim.cca(X, Y), abs=1e-10)


def _top(Z):
    Zc = Z - Z.mean(0)
    return Zc @ np.linalg.svd(Zc, full_matrices=False)[2][0]


# ---------------------------------------------------------------- matrices
@pytest.mark.parametrize(("method", "kernel"), [("cka", "linear"), ("cka", "rbf"), ("cca", "linear"),
                                                ("svcca", "linear"), ("pwcca", "linear")])
def test_matrix_equals_pair_by_pair(rng, method, kernel):
    latent = rng.normal(size=(250, 6))
    A = [latent @ rng.normal(size=(6, d)) + rng.normal(size=(250, d)) for d in (5, 9, 14)]
    B = [np.maximum(latent @ rng.normal(size=(6, d)), 0) + 0.5 * rng.normal(size=(250, d)) for d in (7, 11)]
    result = sim.similarity_matrix(A, B, method, kernel=kernel, row_labels=["a", "b", "c"])
    pair = (lambda X, Y: sim.cka(X, Y, kernel=kernel)) if method == "cka" else PAIRWISE[method]
    expected = np.array([[pair(X, Y) for Y in B] for X in A])
    np.testing.assert_allclose(result.values, expected, atol=1e-10)
    assert result.row_labels == ("a", "b", "c") and result.column_labels == ("0", "1")
    frame = result.to_frame()
    assert len(frame) == 6 and set(frame.columns) >= {"row", "column", "value"}
    assert frame.loc[(frame.row == "c") & (frame.column == "1"), "value"].item() == result.values[2, 1]
    closest = int(result.values[2].argmax())
    described = result.describe(2, 1)
    assert described.startswith(f"c vs 1: {result.label} = {result.values[2, 1]:.4f} over 250 token positions.")
    assert described.endswith(f"the closest column is {closest} ({result.values[2, closest]:.4f}).")
    with pytest.raises(ValueError, match="column must be a whole number from 0 to 1; got 2"):
        result.describe(0, 2)


def test_module_is_reachable_as_an_attribute():
    assert isinstance(ec.similarity, types.ModuleType)
    assert ec.similarity.cka is sim.cka and "similarity" in ec.__all__


# ------------------------------------------------------- real captures (Figure 6)
@pytest.fixture(scope="module")
def sentences():
    return sim.ud_sentences(n=12)


@pytest.fixture(scope="module")
def captures(lm, sentences):
    return [ec.capture(lm, text) for text in sentences]


def test_figure_6_on_real_sentences(lm, captures):
    result = sim.layer_similarity(captures, "cka")
    assert result.values.shape == (lm.n_layers + 1, lm.n_layers)
    assert result.row_labels[:2] == ("embeddings", "block 0")
    assert result.column_labels[-1] == f"block {lm.n_layers - 1} FFN"
    assert result.n_samples == sum(cap.n_tokens - int(cap.special.sum()) for cap in captures)
    assert np.all((result.values >= 0) & (result.values <= 1))
    # A block's FFN reads (a norm of) that block's input: its activations should be closer to the
    # hidden state that feeds it than to the embeddings on average (a real-model property, not a number).
    feeding = np.array([result.values[layer, layer] for layer in range(lm.n_layers)])
    assert feeding.mean() > result.values[0, lm.n_layers // 2 :].mean()
    same = sim.layer_similarity(captures, "cka", rows="hidden", columns="hidden")
    np.testing.assert_allclose(np.diag(same.values), 1.0, atol=1e-9)
    np.testing.assert_allclose(same.values, same.values.T, atol=1e-10)
    assert result.warning is None


def test_cca_family_warns_on_a_single_short_text(lm):
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    result = sim.layer_similarity(cap, "pwcca", rows="ffn", columns="ffn")
    assert result.values.shape == (lm.n_layers, lm.n_layers) and np.isfinite(result.values).all()
    assert "Use CKA" in result.warning and str(cap.n_tokens) in result.warning


def test_a_single_prompt_saturates_cca_and_pwcca_but_not_svcca_or_cka(lm):
    cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    assert sim.layer_similarity(cap, "cca").saturated and sim.layer_similarity(cap, "pwcca").saturated
    # SVCCA keeps 99% of each side's variance, so some pairs fall below 1: biased (warned), not saturated.
    svcca = sim.layer_similarity(cap, "svcca")
    assert not svcca.saturated and svcca.warning and svcca.values.min() < 0.99
    assert not sim.layer_similarity(cap, "cka").saturated


def test_leaving_out_a_causal_models_first_token_removes_the_attention_sink_from_every_score(lm):
    cap = ec.capture(lm, "William Shakespeare was born in the year", max_new_tokens=0)
    norms = np.linalg.norm(cap.hidden_states[16], axis=1)  # block 15's output
    assert norms[0] > 50 * norms[1:].max()  # the sink: one sample far from every other
    with_sink = sim.layer_similarity(cap, "cka")
    without = sim.layer_similarity(cap, "cka", skip_first=True)
    assert without.n_samples == with_sink.n_samples - 1 == cap.n_tokens - 1
    assert without.values[16, 28] == pytest.approx(sim.cka(cap.hidden_states[16][1:], cap.ffn[28][1:]), abs=1e-9)
    # With the sink every middle-to-late pair reads as the same representation; without, they differ.
    assert with_sink.values[16, 28] > 0.99 > without.values[16, 28]
    with pytest.raises(ValueError, match="only 1 token position.* after leaving out special tokens and the first token"):
        sim.layer_similarity(ec.capture(lm, "The keys", max_new_tokens=0), "cka", skip_first=True)


def test_special_tokens_are_left_out_of_encoder_captures(encoder, lm):
    cap = ec.capture(encoder, "The keys to the cabinet are on the table.")
    assert cap.special[0] and cap.special[-1]
    assert sim.layer_similarity(cap, "cka").n_samples == cap.n_tokens - 2
    assert sim.layer_similarity(cap, "cka", skip_special=False).n_samples == cap.n_tokens
    with pytest.raises(ValueError, match=r"the captures' models must be one model .*; got \['SmolLM2-135M-Instruct', 'all-MiniLM-L6-v2'\]"):
        sim.layer_activations([cap, ec.capture(lm, "The keys")])


def test_ud_sentences_reads_conllu(tmp_path, sentences):
    assert len(sentences) == 12 and all(len(text.split()) >= 5 for text in sentences)
    conllu_file = tmp_path / "two.conllu"
    conllu_file.write_text(
        "# text = Short one .\n1\tShort\t_\tADJ\t_\t_\t0\troot\t_\t_\n\n"
        "# text = This one is long enough .\n1\tThis\t_\tDET\t_\t_\t0\troot\t_\t_\n\n",
        encoding="utf-8",
    )
    assert sim.ud_sentences(5, path=conllu_file) == ["This one is long enough ."]
    with pytest.raises(ValueError, match="path must be a CoNLL-U file that exists; got"):
        sim.ud_sentences(5, path=tmp_path / "missing.conllu")
    with pytest.raises(ValueError, match="n must be a whole number >= 1; got 0"):
        sim.ud_sentences(0)


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_similarity_runs_on_one_blas_thread_and_gives_the_threads_back():
    """#31 item 6: with a thread per core, each of a matrix's thousands of small LAPACK calls waited for the other
    threads (4-11x slower at load 13-20, and timed by the load rather than the work). The matrix runs on one BLAS
    thread, also in a thread other than the main one; the limit is lifted after it, also when two threads' uses
    overlap and end in the other order."""
    import threading

    from ecco_core._blas import one_blas_thread
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(40, 8)) for _ in range(2)]
    seen = []
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        assert before and max(before) == 2
        # In a thread of its own, as the app's sessions run it (threadpoolctl alone ignores any thread but one).
        progress = lambda fraction, message: seen.append(_blas_threads())  # noqa: E731
        session = threading.Thread(target=sim.similarity_matrix, args=(matrices, matrices, "cca"),
                                   kwargs={"progress": progress})
        session.start()
        session.join()
        assert seen and all(threads == [1] * len(before) for threads in seen)
        assert _blas_threads() == before
        # Overlapping users in two threads, the first to enter leaving first.
        first, second, inside = one_blas_thread(), threading.Event(), threading.Event()
        first.__enter__()

        def other():
            with one_blas_thread():
                inside.set()
                second.wait()

        worker = threading.Thread(target=other)
        worker.start()
        inside.wait()
        first.__exit__(None, None, None)
        assert _blas_threads() == [1] * len(before)  # the other thread still computes
        second.set()
        worker.join()
        assert _blas_threads() == before


def test_the_served_similarity_limits_blas_threads_as_it_can_and_runs_the_same_where_nothing_limits_them(monkeypatch):
    # On NDIF neither this package nor (perhaps) threadpoolctl is importable; remote="local" runs with both, so the
    # server's fallbacks are checked here: the same values on numpy's own threads.
    from ecco_core.similarity.matrix import one_blas_thread_anywhere

    layers = [np.random.default_rng(seed).normal(size=(40, 6)) for seed in range(3)]
    arguments = dict(widths=([6] * 3, [6] * 3), n_samples=40, symmetric=True)
    with one_blas_thread_anywhere():
        expected = sim.matrix_values(layers, layers, sim.METHODS["pwcca"], sim.Options(), **arguments)[0]
    for hidden in (("ecco_core._blas",), ("ecco_core._blas", "threadpoolctl")):
        with monkeypatch.context() as patched:
            for name in hidden:
                patched.setitem(sys.modules, name, None)  # an import of it raises ImportError, as on the server
            with one_blas_thread_anywhere():
                values = sim.matrix_values(layers, layers, sim.METHODS["pwcca"], sim.Options(), **arguments)[0]
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
