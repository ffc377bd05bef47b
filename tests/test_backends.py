"""Backends (#28): every analysis through nnsight, serialised as NDIF would (remote="local"), equals the hook path.

No test reaches the network: NDIF is simulated by nnsight's own local backend, and the
unreachable host is a closed port on this machine.
"""

import ast
import inspect
import pickle
import threading

import numpy as np
import pandas as pd
import pytest

import ecco_core as ec
from ecco_core import backends

KEY = "ndif-test-key-5f2c9a"  # a made-up key: what must never show
#: The families where a view that reads only modules every family has (embeddings, final norm, head) is checked
#: beyond the cheapest reading: the default's (llama) and a masked one.
ONE_CAUSAL_ONE_MASKED = ("llama", "bert")
#: NMF's fit where the model ran reads the FFN input as the fetch does: checked on those two and OPT (which flattens it).
SERVED_NMF_FAMILIES = (*ONE_CAUSAL_ONE_MASKED, "opt")


@pytest.fixture(scope="module")
def traced(lm):
    """The causal default, every view one nnsight session serialised and deserialised as NDIF's server would."""
    return backends.use(lm, "nnsight", remote="local")


def _same_capture(hooked, through):
    assert through.tokens == hooked.tokens and through.n_input == hooked.n_input
    np.testing.assert_array_equal(through.token_ids, hooked.token_ids)
    np.testing.assert_allclose(through.hidden_states, hooked.hidden_states, rtol=0, atol=1e-5)
    np.testing.assert_allclose(through.ffn, hooked.ffn, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(through.top_ids, hooked.top_ids)
    np.testing.assert_allclose(through.top_probs, hooked.top_probs, rtol=0, atol=1e-6)
    assert through.settings == hooked.settings and through.model_name == hooked.model_name


def test_capture_through_nnsight_is_the_hook_path_in_one_request(lm, traced):
    assert traced.backend.name == "nnsight" and traced.model is lm.model and lm.backend is backends.HOOKS
    for arguments in ({"max_new_tokens": 3}, {"answer": " Paris"}):
        with backends.ledger() as record:
            through = ec.capture(traced, "The capital of France is", **arguments)
        _same_capture(ec.capture(lm, "The capital of France is", **arguments), through)
        assert record.requests == 1 and 0 < record.sent[0] < 64_000
    assert through.generated_text == " Paris"


def _same_factors(hooked, through):
    """Factors fitted on the same float32 matrix: every array identical, not close."""
    for name in ("token_activations", "components", "mean", "positions", "neuron_layers", "neuron_signs"):
        np.testing.assert_array_equal(getattr(through, name), getattr(hooked, name))
    for name in ("clipped_fraction", "reconstruction_error", "explained_variance", "negatives", "converged"):
        assert getattr(through, name) == getattr(hooked, name), name


def _close_factors(hooked, through, tolerance):
    """A fit made where the model ran (its torch NMF) against the hook path's scikit-learn fit: the same
    columns, factors and strongest neurons; values within ``tolerance`` of the largest (float32 rounding, which
    the fit amplifies: see test_a_capture_through_nnsight_brings_back_its_own_view_and_fetches_activations...)."""
    for name in ("positions", "neuron_layers", "neuron_indices", "neuron_signs", "mean"):
        np.testing.assert_array_equal(getattr(through, name), getattr(hooked, name))
    for name in ("clipped_fraction", "negatives", "converged", "method", "layers", "tokens", "seed"):
        assert getattr(through, name) == getattr(hooked, name), name
    for name in ("reconstruction_error", "explained_variance"):
        assert abs(getattr(through, name) - getattr(hooked, name)) < 1e-6, name
    scale = np.abs(hooked.token_activations).max()
    assert np.abs(through.token_activations - hooked.token_activations).max() <= tolerance * scale
    top, expected = through.top_neurons(10), hooked.top_neurons(10)
    pd.testing.assert_frame_equal(top.drop(columns="loading"), expected.drop(columns="loading"))
    assert np.abs(top["loading"] - expected["loading"]).max() <= tolerance * np.abs(expected["loading"]).max()


def test_capture_through_nnsight_on_every_family(tiny):
    text, arguments = ("The keys", {"max_new_tokens": 2}) if tiny.is_causal else ("The [MASK] is", {})
    through = ec.capture(backends.use(tiny, "nnsight", remote="local"), text, **arguments)
    hooked = ec.capture(tiny, text, **arguments)
    # Neuron factors at the page's defaults read what they factor before anything else is here: NMF's clipped
    # input comes as its positive part alone (OPT's ReLU: zeros, none below 0), a signed method's (PCA) at the
    # analysed positions (the same modules as the whole fetch: two families); the same fits as the hook path's
    positions = ec.factors.analysed_positions(hooked, skip_first=hooked.causal)
    for method in ("nmf", "pca") if tiny.config.model_type in ONE_CAUSAL_ONE_MASKED else ("nmf",):
        _same_factors(ec.factors(hooked, method, positions=positions), ec.factors(through, method, positions=positions))
    if tiny.config.model_type in SERVED_NMF_FAMILIES:  # NMF fitted where the model ran: the same fit, to float32
        negatives = "split" if tiny.config.model_type == "llama" else "clip"  # a gated FFN is as negative as positive
        served = ec.factors(through, positions=positions, negatives=negatives, fit_on="server")
        _close_factors(ec.factors(hooked, positions=positions, negatives=negatives), served, 1e-4)
    _same_capture(hooked, through)


def test_a_capture_through_nnsight_brings_back_its_own_view_and_fetches_activations_once_when_read(lm, traced, tmp_path):
    # bench/remote.py's default sizes (its 8 generated tokens given, which skips the generation's passes): the
    # capture's request brings back tokens and top predictions only
    arguments = {"answer": " Paris.\n\nThe answer is:"}
    with backends.ledger() as record:
        through = ec.capture(traced, "The capital of France is", **arguments)
    assert record.requests == 1 and record.received[0] < 64_000 and through.pending == ("hidden_states", "ffn")
    with backends.ledger() as record:
        shown = repr(through)  # says what is pending, fetches nothing
    assert record.requests == 0 and "ffn=<pending ffn: shape (30, 13, 1536), float32; 0 of 30 rows here" in shown
    hooked = ec.capture(lm, "The capital of France is", **arguments)
    assert hooked.n_tokens == 13
    ran = []  # the pass stops once block 20's FFN is read: the blocks after it never run
    watch = lm.blocks[21].register_forward_pre_hook(lambda module, args: ran.append(module))
    try:
        with backends.ledger() as record:
            np.testing.assert_allclose(through.rows("ffn", [20]), hooked.ffn[20:21], rtol=0, atol=1e-5)  # that block
    finally:
        watch.remove()
    assert record.requests == 1 and record.received[0] < 100_000 and not ran
    # Neuron factors' default (NMF, negatives clipped, every block, the first token left out; 2 factors, not 10:
    # the same request, a fit ~20x cheaper) is fitted where the model ran: one request brings back the factors,
    # each one's strongest neurons and the block of the first one's strongest neuron, which the page's neuron
    # view reads next: 85 kB (before: 1 request of every block's positive part, 1.2 MB here and 2.2 MB at the
    # app's default text, then one of that block); scikit-learn's fit to float32 precision (measured: 1.1e-5 of
    # the largest token activation, 2.1e-5 of the largest loading)
    positions = ec.factors.analysed_positions(hooked, skip_first=True)
    hooked_fit = ec.factors(hooked, positions=positions, n_components=2)
    with backends.ledger() as record:
        served = ec.factors(through, positions=positions, n_components=2)
        strongest = served.top_neurons(1).iloc[0]
        shown = ec.neurons(through, int(strongest["block"]), ids=[int(strongest["neuron"])])
    assert record.requests == 1 and record.received[0] < 100_000 and record.sent[0] < 64_000
    _close_factors(hooked_fit, served, 1e-4)
    np.testing.assert_array_equal(
        shown.activations, ec.neurons(hooked, int(strongest["block"]), ids=[int(strongest["neuron"])]).activations)
    # The coordinate descent of scikit-learn's NMF, step for step in torch (ecco_core.backends.nmf), from the same
    # start: on four blocks, 3 factors, measured against the hook path's fit: 5.7e-5 of the largest token
    # activation, 8.0e-5 of the largest loading, the same iterations and strongest neurons. Bit for bit is out of
    # reach (another BLAS), and the fit amplifies float32 rounding: scikit-learn's own fit of the app's default
    # text moves by 3.9e-5 (token activations) and 2.7e-4 (loadings) of the largest when its input moves by one
    # float32 rounding; ours differs from it by 3.1e-4 and 1.9e-4 there.
    arguments = dict(positions=positions, layers=range(20, 24), n_components=3)
    fit_here = ec.factors(hooked, **arguments)
    with backends.ledger() as record:
        fit_there = ec.factors(through, fit_on="server", **arguments)
    assert record.requests == 1 and record.received[0] < 100_000
    _close_factors(fit_here, fit_there, 2e-4)
    copy = pickle.loads(pickle.dumps(fit_there))  # the results cache measures a result pickled: nothing fetched
    assert copy.top_neurons(10).equals(fit_there.top_neurons(10))
    with pytest.raises(ValueError, match="stayed where the model ran and this copy of the result cannot fetch them"):
        copy.components
    with backends.ledger() as record:  # every loading (a download's): fetched when first read, once
        components = fit_there.components
        assert fit_there.components is components and fit_there.top_neurons(200).shape == (600, 7)
    assert record.requests == 1
    np.testing.assert_allclose(components, fit_here.components, rtol=0,
                               atol=2e-4 * np.abs(fit_here.components).max())
    with pytest.raises(ValueError, match="fit_on must be 'auto' or 'here' for a capture whose FFN activations are"):
        ec.factors(hooked, fit_on="server")
    with pytest.raises(ValueError, match="fit_on must be 'auto' or 'here' for PCA, which fits here only"):
        ec.factors(through, "pca", fit_on="server", **arguments)
    # Fitted here (fit_on="here"): one request that brings the positive part alone (exact: half of SmolLM2's
    # gated FFN is below 0), under 1 MB as NDIF sends it; the same fit as the hook path's. Before: 3 requests of
    # every block's signed activations, 2.4 MB
    with backends.ledger() as record:
        factored = ec.factors(through, positions=positions, n_components=2, fit_on="here")
    assert record.requests == 1 and record.wire[0] <= 2**20 and record.received[0] < 1.25 * 2**20
    _same_factors(hooked_fit, factored)
    assert through.pending == ("hidden_states", "ffn")  # the signed values are still to fetch

    def read(seen):  # sessions share a cached capture: two threads reading at once fetch it once
        with backends.ledger() as own:
            seen.append((through.hidden_states, own.requests))

    seen = []
    readers = [threading.Thread(target=read, args=(seen,)) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert seen[0][0] is seen[1][0] and seen[0][1] + seen[1][1] == 1 and through.pending == ("ffn",)
    with backends.ledger() as record:
        pickle.dumps(through)  # what is pickled or saved is whole: the other 29 blocks' FFN, 12 blocks a request
        through.save(tmp_path / "capture.npz")
    assert record.requests == 3 and max(record.received) <= 2**20 and through.pending == ()
    _same_capture(hooked, through)
    _same_capture(hooked, ec.Capture.load(tmp_path / "capture.npz"))


def _same_rankings(hooked, through):
    np.testing.assert_array_equal(through.ranks, hooked.ranks)
    np.testing.assert_array_equal(through.top_ids, hooked.top_ids)
    np.testing.assert_array_equal(through.target_ids, hooked.target_ids)
    np.testing.assert_allclose(through.probs, hooked.probs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(through.top_probs, hooked.top_probs, rtol=0, atol=1e-6)
    assert abs(through.max_abs_diff_vs_model - hooked.max_abs_diff_vs_model) < 1e-4
    assert (through.kind, through.candidates, through.notes) == (hooked.kind, hooked.candidates, hooked.notes)


def test_lens_rankings_and_watch_through_nnsight_rank_alike_in_one_small_request(lm, traced):
    cap = ec.capture(lm, "The capital of France is", max_new_tokens=3)
    with backends.ledger() as record:
        through = ec.rankings(traced, cap)
    _same_rankings(ec.rankings(lm, cap), through)
    with backends.ledger() as watched:
        through = ec.watch(traced, "The keys to the cabinet", ["is", "are"])
    _same_rankings(ec.watch(lm, "The keys to the cabinet", ["is", "are"]), through)
    assert record.requests == watched.requests == 1 and max(record.received + watched.received) < 64_000


def _same_diagnostics(hooked, through):
    for name in ("agreement", "positions", "final_ids"):
        np.testing.assert_array_equal(getattr(through, name), getattr(hooked, name))
    np.testing.assert_allclose(through.kl, hooked.kl, rtol=1e-5, atol=1e-6)
    assert (through.tokens, through.model_name) == (hooked.tokens, hooked.model_name)


def test_lens_through_nnsight_on_every_family(tiny):
    text = "The keys to" if tiny.is_causal else "The [MASK] to the"
    traced = backends.use(tiny, "nnsight", remote="local")
    cap = ec.capture(tiny, text, max_new_tokens=2 if tiny.is_causal else 0)
    _same_rankings(ec.rankings(tiny, cap), ec.rankings(traced, cap))
    _same_rankings(ec.watch(tiny, text, ["is", "are"]), ec.watch(traced, text, ["is", "are"]))
    with backends.ledger() as record:  # the Layer predictions page's pair, read off the same logits on the server
        rankings, diagnostics = ec.trust.rankings_and_diagnostics(traced, cap, k=3)
    hooked_rankings, hooked = ec.trust.rankings_and_diagnostics(tiny, cap, k=3)
    _same_rankings(hooked_rankings, rankings)
    _same_diagnostics(hooked, diagnostics)
    assert record.requests == 1
    if tiny.config.model_type not in ONE_CAUSAL_ONE_MASKED:  # the rest reads the same logits through the same modules
        return
    _same_diagnostics(ec.trust.lens_diagnostics(tiny, cap), ec.trust.lens_diagnostics(traced, cap))
    with backends.ledger() as record:
        through = ec.suggest_candidates(traced, text, max_candidates=None).to_frame()
    pd.testing.assert_frame_equal(through, ec.suggest_candidates(tiny, text, max_candidates=None).to_frame(),
                                  check_exact=False, rtol=1e-5, atol=1e-7)
    assert record.requests == 1 and len(through)


def _same_patching(hooked, through):
    # Raw values: a random model's clean and corrupted runs differ by 1e-5 or less, and normalised effects
    # would magnify float rounding by as much (the default model's effects are compared below).
    np.testing.assert_allclose(through.values, hooked.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([through.clean_value, through.corrupted_value],
                               [hooked.clean_value, hooked.corrupted_value], rtol=1e-5, atol=1e-6)
    assert through.patches_run == hooked.patches_run and through.top_ids.shape == hooked.top_ids.shape
    np.testing.assert_allclose(through.top_probs, hooked.top_probs, rtol=0, atol=1e-5)
    assert [token for token, _ in through.clean_top] == [token for token, _ in hooked.clean_top]


def test_patching_and_causal_tracing_through_nnsight_on_every_family(tiny):
    if tiny.is_causal:
        clean, corrupted, answer, foil = "The cat sat on the", "The dog sat on the", "mat", "floor"
    else:
        clean, corrupted, answer, foil = "The cat sat on the [MASK].", "The dog sat on the [MASK].", "mat", "floor"
    traced = backends.use(tiny, "nnsight", remote="local")
    for arguments in ({"window": 2}, {"approximate": True}):
        with backends.ledger() as record:
            through = ec.patch(traced, clean, corrupted, answer, foil, **arguments)
        _same_patching(ec.patch(tiny, clean, corrupted, answer, foil, **arguments), through)
        assert record.requests == 1
    noise = ec.Noise([1, 2])
    _same_patching(ec.patch(tiny, clean, noise, answer, foil, sites=("residual",)),
                   ec.patch(traced, clean, noise, answer, foil, sites=("residual",)))


def test_restoring_activations_of_the_default_model_through_nnsight(lm, traced):
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupted = "When Mary and John went to the store, Mary gave a drink to"
    patches = [[("residual", 15, position) for position in range(14)], [("ffn", 20, 13), ("attention", 20, 13)], []]
    with backends.ledger() as record:
        through = ec.patching.restore(traced, clean, corrupted, "Mary", "John", patches=patches)
    hooked = ec.patching.restore(lm, clean, corrupted, "Mary", "John", patches=patches)
    clean_value, corrupted_value = hooked[0], hooked[2]  # block 15 restored at every position is the clean run
    np.testing.assert_allclose((through - corrupted_value) / (clean_value - corrupted_value),
                               (hooked - corrupted_value) / (clean_value - corrupted_value), rtol=0, atol=1e-5)
    assert record.requests == 1 and record.received[0] < 8_000


def test_grad_x_input_saliency_through_nnsight_in_one_small_request(lm, traced, monkeypatch):
    cap = ec.capture(lm, "The keys to the cabinet", answer=" is")
    with backends.ledger() as record:  # contrastive: the target, the foil and the signed sums all travel
        through = ec.saliency(traced, cap, target="logit", contrast_with="are")
    hooked = ec.saliency(lm, cap, target="logit", contrast_with="are")
    np.testing.assert_allclose(through.scores, hooked.scores, rtol=0, atol=1e-5)
    np.testing.assert_allclose(through.signed, hooked.signed, rtol=1e-4, atol=1e-5 * np.abs(hooked.signed).max())
    np.testing.assert_allclose(through.target_values, hooked.target_values, rtol=1e-5)
    assert record.requests == 1 and record.received[0] < 8_000
    # A method added as one entry (#27 §2) is not among those a session spells out in torch for the server.
    monkeypatch.setitem(ec.saliency.METHODS, "trial", ec.saliency.METHODS["gradient"])
    with pytest.raises(ValueError, match="'trial' runs on this machine's hook path only; through nnsight the "
                                         "methods are 'grad_x_input', 'gradient', 'integrated_gradients', 'erasure'"):
        ec.saliency(traced, cap, method="trial")


def test_saliency_and_its_faithfulness_through_nnsight_on_every_family(tiny):
    cap = ec.capture(tiny, "The keys to" if tiny.is_causal else "The [MASK] to the",
                     max_new_tokens=2 if tiny.is_causal else 0)
    traced = backends.use(tiny, "nnsight", remote="local")
    # Every family's embeddings and logits for the gradient; the other methods read the same two modules.
    methods = ec.saliency.TRACED_METHODS if tiny.config.model_type in ONE_CAUSAL_ONE_MASKED else ("grad_x_input",)
    for method in methods:
        with backends.ledger() as record:
            through = ec.saliency(traced, cap, method, steps=3)
        hooked = ec.saliency(tiny, cap, method, steps=3)
        np.testing.assert_allclose(through.scores, hooked.scores, rtol=0, atol=1e-5)
        np.testing.assert_allclose(through.target_values, hooked.target_values, rtol=1e-5, atol=1e-7)
        assert record.requests == 1
    if tiny.config.model_type not in ONE_CAUSAL_ONE_MASKED:
        return
    # The deletion / insertion check: one request per saliency computed, one for each explained token's variants;
    # a capture made there keeps its activations there (the check reads none).
    captured = ec.capture(traced, "The keys to", max_new_tokens=2) if tiny.is_causal else cap
    explained = {"positions": cap.n_input} if tiny.is_causal else {}  # as the page asks: one token, a prefix read
    with backends.ledger() as record:
        through = ec.trust.faithfulness(traced, captured, ("grad_x_input", "erasure"), n_random=2, **explained)
    hooked = ec.trust.faithfulness(tiny, cap, ("grad_x_input", "erasure"), n_random=2, **explained)
    assert record.requests == 2 + len(hooked.positions) and captured.pending == (("hidden_states", "ffn")
                                                                                if tiny.is_causal else ())
    for name in ("sizes", "n_candidates", "kendall_tau"):
        np.testing.assert_array_equal(getattr(through, name), getattr(hooked, name))
    for name in ("probability", "comprehensiveness", "sufficiency", "random_comprehensiveness", "random_sufficiency"):
        np.testing.assert_allclose(getattr(through, name), getattr(hooked, name), rtol=0, atol=1e-6)


def _same_circuits(hooked, through):
    """DLA through the served model's own attention kernel against the hook path's eager twin: the same parts."""
    for name in ("heads", "ffn", "attention_bias"):
        np.testing.assert_allclose(getattr(through, name), getattr(hooked, name), rtol=0, atol=1e-5)
    for name in ("embeddings", "final_bias", "value", "total", "final_scale"):
        assert getattr(through, name) == pytest.approx(getattr(hooked, name), rel=1e-5, abs=1e-5), name
    assert through.top(len(hooked.components)) == hooked.top(len(hooked.components))
    assert (through.tokens, through.answer_id, through.foil_id, through.metric) == (
        hooked.tokens, hooked.answer_id, hooked.foil_id, hooked.metric)


def test_circuits_direct_logit_attribution_through_nnsight_as_ndif_would_in_one_small_request(lm):
    served = backends.simulated(lm)  # as on NDIF: the weights stay where the sessions run
    ioi = "When Mary and John went to the store, John gave a drink to"
    with backends.ledger() as record:
        through = ec.circuits(served, ioi, "Mary", "John")
    hooked = ec.circuits(lm, ioi, "Mary", "John")
    _same_circuits(hooked, through)
    assert record.requests == 1 and record.received[0] < 64_000
    assert through.head_sources is None and through.head_outputs is None
    # Each part's top tokens came back with it: those of the strongest parts, from what the hook path keeps of them.
    tops = ec.circuits.top_tokens(served, through, 5).set_index("part").loc[list(hooked.top(5))]
    logits = ec.circuits._component_logits(lm, hooked, [hooked.components.index(part) for part in hooked.top(5)])
    for side, sign in (("promoted", 1), ("suppressed", -1)):
        top = (sign * logits).topk(5, dim=-1)
        assert tops[side].tolist() == [list(ec.tokens.token_strings(lm.tokenizer, ids)) for ids in top.indices.numpy()]
        np.testing.assert_allclose(tops[f"{side}_logits"].tolist(), sign * top.values.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"k must be .*5"):
        ec.circuits.top_tokens(served, through, 6)
    with pytest.raises(ValueError, match="no split by source token: it was computed through nnsight"):
        through.sources_frame()
    # Its verification by ablation (equal to the hook path's on every family below) checks a corrupted prompt here.
    with backends.ledger() as record, pytest.raises(ValueError, match="corrupted must have as many tokens"):
        ec.circuits.verify(served, through, ablation="corrupted", corrupted="When Mary")
    assert record.requests == 0


def _same_verification(hooked, through):
    assert (through.k, through.ablation) == (hooked.k, hooked.ablation)
    values = ("all_ablated_value", "top_ablated_value", "top_kept_value")
    np.testing.assert_allclose([getattr(through, name) for name in values], [getattr(hooked, name) for name in values],
                               rtol=1e-5, atol=1e-6)
    if hooked.exact_heads is not None:
        np.testing.assert_allclose(through.exact_values, hooked.exact_values, rtol=1e-5, atol=1e-6)
        assert through.exact_top == hooked.exact_top


def test_circuits_through_nnsight_on_every_causal_family(tiny):
    if not tiny.is_causal:
        return  # refused before any model runs (test_circuits)
    traced = backends.use(tiny, "nnsight", remote="local")
    with backends.ledger() as record:
        through = ec.circuits(traced, "The keys to the", "cabinet", "door")
    hooked = ec.circuits(tiny, "The keys to the", "cabinet", "door")
    _same_circuits(hooked, through)
    # Verified by ablation where the model runs: every head and FFN alone, by the mean (and on the default's family
    # by a corrupted run: the same patches, other values), one request each, only the metrics back.
    corrupted = {"k": 3, "ablation": "corrupted", "corrupted": "The doors to the"}
    for arguments in ({"k": 2}, *[corrupted] * (tiny.config.model_type in ONE_CAUSAL_ONE_MASKED)):
        with backends.ledger() as verified:
            _same_verification(ec.circuits.verify(tiny, hooked, **arguments),
                               ec.circuits.verify(traced, through, **arguments))
        assert verified.requests == 1 and verified.received[0] < 8_000
    assert record.requests == 1


def test_views_a_served_model_cannot_give_are_refused_before_any_request(lm):
    remote = backends.use(lm, "ndif", host="http://127.0.0.1:9", api_key=KEY)  # a request would fail as unreachable
    cap = ec.capture(lm, "The keys to the cabinet", answer=" is")
    with pytest.raises(ValueError, match="attention runs on this machine's hook path only .*eager attention.*"
                                         "runs through ndif: load it with backend='hooks'"):
        ec.attention(remote, cap)
    # Circuits' direct logit attribution runs there; the routes need every head's attention weights.
    with pytest.raises(ValueError, match=r"circuits' information-flow routes \(routes=True\) runs on this machine's "
                                         "hook path only .*attention weights.*runs through ndif"):
        ec.circuits(remote, "The keys to the cabinet", "is", "are", routes=True)


def test_the_served_list_is_read_from_ndif_an_unserved_model_refused_and_a_bad_key_named(fake_ndif):
    assert backends.served_models(fake_ndif) == ["SmolLM2-135M-Instruct", "meta-llama/Llama-3.1-70B"]
    with pytest.raises(ValueError, match=r"NDIF does not serve 'meta-llama/Llama-3.2-1B' now; it serves: "
                                         r"SmolLM2-135M-Instruct, meta-llama/Llama-3.1-70B"):
        ec.load("meta-llama/Llama-3.2-1B", backend="ndif", host=fake_ndif, api_key=KEY)
    remote = ec.load(ec.DEFAULT_MODEL, backend="ndif", host=fake_ndif, api_key=KEY)  # config and tokenizer only
    assert remote.model.device.type == "meta" and remote.backend.name == "ndif"
    with pytest.raises(backends.RemoteError, match="NDIF refused the API key .* set NDIF_API_KEY or give api_key=") as raised:
        ec.capture(remote, "The capital of France is", max_new_tokens=1)
    assert KEY not in str(raised.value)


def test_every_session_keeps_its_traces_on_their_lines_when_nnsight_ships_it():
    # nnsight sends a session's body as ast.unparse'd source, padded to its first line, and finds each inner
    # trace by its line: a statement over several lines, a blank or comment line above a trace would move it.
    from ecco_core.backends import sessions

    for node in ast.walk(ast.parse(inspect.getsource(sessions))):
        if isinstance(node, ast.With) and "session" in ast.unparse(node.items[0].context_expr):
            shipped = ast.parse("\n" * (node.body[0].lineno - 1) + ast.unparse(ast.Module(node.body, [])))
            lines = [[inner.lineno for inner in ast.walk(tree) if isinstance(inner, ast.With)]
                     for tree in (ast.Module(node.body, []), shipped)]
            assert lines[0] == lines[1]


def test_backend_choice_is_checked_and_the_key_never_shows(lm, monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of 'hooks', 'nnsight', 'ndif'"):
        ec.load(backend="remote")
    with pytest.raises(ValueError, match="remote must be False, True or 'local'"):
        backends.use(lm, "nnsight", remote="yes")
    monkeypatch.setenv("NDIF_API_KEY", KEY)
    remote = backends.use(lm, "ndif", host="http://127.0.0.1:9")
    assert remote.backend.has_key and remote.backend.name == "ndif"
    assert KEY not in repr(remote) + repr(remote.backend) + str(remote.backend)


def test_an_unreachable_ndif_says_so_without_the_key(lm):
    remote = backends.use(lm, "ndif", host="http://127.0.0.1:9", api_key=KEY)  # nothing listens on port 9
    with pytest.raises(backends.RemoteError, match=r"NDIF at http://127.0.0.1:9 is unreachable") as raised:
        ec.capture(remote, "The capital of France is", max_new_tokens=1)
    assert KEY not in str(raised.value)
    with pytest.raises(backends.RemoteError, match="its model list cannot be read"):
        ec.load("meta-llama/Llama-3.1-70B", backend="ndif", host="http://127.0.0.1:9", api_key=KEY)


def test_a_request_kept_in_ndifs_queue_is_given_up_with_what_to_do(lm, queueing_ndif, monkeypatch):
    monkeypatch.setenv("NDIF_QUEUE_TIMEOUT", "0.5")
    remote = backends.use(lm, "ndif", host=queueing_ndif, api_key=KEY)
    seen = []
    with backends.watching(lambda status, waited: seen.append(status)):
        with pytest.raises(backends.QueueTimeout, match=r"kept the request waiting \(QUEUED\) for more than 0.5 s, "
                                                        "so it was given up.* try again in a few minutes") as raised:
            ec.capture(remote, "The capital of France is", max_new_tokens=1)
    assert KEY not in str(raised.value) and isinstance(raised.value, backends.RemoteError)
    assert seen[:2] == ["RECEIVED", "QUEUED"]


def test_a_simulated_request_tells_its_wait_and_its_run_and_a_stop_from_the_listener_ends_it(lm, traced, monkeypatch):
    # #28: a page's box counted "0 s so far" for minutes while a session waited for another's turn or ran here.
    monkeypatch.setattr(backends, "_TELL_EVERY_S", 0.0)
    seen = []
    taken, release = threading.Event(), threading.Event()

    def hold():
        with traced.backend.lock:
            taken.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(5)
    threading.Timer(1.5, release.set).start()
    with backends.watching(lambda status, waited: seen.append((status, waited))):
        cap = ec.capture(traced, "The keys to the cabinet", answer=" is")
    holder.join()
    assert [status for status, _ in seen][:1] == ["QUEUED"] and "RUNNING" in {status for status, _ in seen}
    assert max(waited for status, waited in seen if status == "QUEUED") >= 1.0  # told while it waited, not after

    class Stopped(Exception):
        pass

    def stop(status, waited):
        raise Stopped

    with backends.watching(stop), pytest.raises(Stopped):
        ec.capture(traced, "The keys to the cabinet", answer=" is")
    again = ec.capture(traced, "The keys to the cabinet", answer=" is")  # the model's turn was given back
    np.testing.assert_array_equal(again.top_ids, cap.top_ids)


def test_views_that_would_run_the_model_here_are_refused_on_a_simulated_ndif_before_any_request(lm, monkeypatch):
    served = backends.simulated(lm)  # as on NDIF: the model here holds no weights; lm's serve its sessions
    assert served.model.device.type == "meta" and served.backend.where.endswith("(serialised as for NDIF)")
    cap = ec.capture(lm, "The keys to the cabinet", answer=" is")
    with backends.ledger() as record:
        with pytest.raises(ValueError, match="one cell's two layers over texts runs on this machine's hook path only"):
            ec.similarity.layer_pair(served, ["a b c"], 0, 0)  # megabytes of activations: a cell is tested there
        # A readout added as one entry (#27 §2) is not among those a session spells out in torch for the server.
        monkeypatch.setitem(ec.READOUTS, "trial", ec.readouts.Readout(lambda logits: -logits, "minus the logit"))
        with pytest.raises(ValueError, match="target 'trial' runs on this machine's hook path only; through nnsight "
                                             "the targets are 'prob', 'logit', 'logprob'"):
            ec.saliency(served, cap, target="trial")
        with pytest.raises(ValueError, match="metric 'trial' runs on this machine's hook path only; through nnsight "
                                             "the metrics are 'logit_diff', 'prob', 'logprob'"):
            ec.patch(served, "The keys to the cabinet", "The key to the cabinet", "is", metric="trial")
    assert record.requests == 0


def test_similarity_over_texts_through_nnsight_compares_where_the_model_runs_and_equals_the_hook_path(tiny):
    # The layers stay on the server; the hook path's own numpy functions compare them there; only scores come back.
    # The families whose reads differ: block 0's input, a block's output, an FFN input (flattened in OPT).
    if tiny.config.model_type not in (*ONE_CAUSAL_ONE_MASKED, "opt"):
        return
    texts = ec.similarity.ud_sentences(2)
    traced = backends.use(tiny, "nnsight", remote="local")
    skips = {"skip_first": tiny.is_causal}
    hooked = ec.similarity.corpus_similarity(tiny, texts, "cka", **skips)
    with backends.ledger() as record:
        through = ec.similarity.corpus_similarity(traced, texts, "cka", **skips)
    assert record.requests == 1 and max(record.received) < 4_000
    np.testing.assert_allclose(through.values, hooked.values, rtol=0, atol=1e-12)
    assert (through.row_labels, through.column_labels, through.n_samples, through.max_dimensions) == (
        hooked.row_labels, hooked.column_labels, hooked.n_samples, hooked.max_dimensions)
    if tiny.config.model_type != "llama":  # the rest reads the same layers: once is enough
        return
    with backends.ledger() as record, pytest.raises(ValueError, match="store"):  # this machine's option, still checked
        ec.similarity.corpus_similarity(traced, texts, store="cloud")
    assert record.requests == 0
    # The view's first look, one request: the matrix (one list against itself), its median cell and its chance level.
    options = {"rows": "hidden", "columns": "hidden", "n_permutations": 3, **skips}
    hooked = ec.trust.similarity_with_baseline(tiny, texts, "pwcca", **options)
    with backends.ledger() as record:
        through = ec.trust.similarity_with_baseline(traced, texts, "pwcca", **options)
    assert record.requests == 1 and through[1] == hooked[1]
    np.testing.assert_allclose(through[0].values, hooked[0].values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(through[2].null, hooked[2].null, rtol=0, atol=1e-12)
    assert (through[2].score, through[2].p_value) == (hooked[2].score, hooked[2].p_value)
    # A clicked cell: its two layers alone, one request.
    with backends.ledger() as record:
        cell = ec.trust.cell_baseline(traced, texts, 0, 1, "svcca", n_permutations=3, keep=0.9, **skips)
    assert record.requests == 1
    expected = ec.trust.cell_baseline(tiny, texts, 0, 1, "svcca", n_permutations=3, keep=0.9, **skips)
    assert (cell.score, cell.p_value) == (expected.score, expected.p_value)
    np.testing.assert_allclose(cell.null, expected.null, rtol=0, atol=1e-12)


def test_probing_through_nnsight_collects_and_trains_where_the_model_runs_and_equals_the_hook_path(tiny, monkeypatch):
    # The probes train on the server with the hook path's own function and draws; only test counts come back.
    # The families whose reads differ: block 0's input, a block's output, an FFN input (flattened in OPT).
    if tiny.config.model_type not in (*ONE_CAUSAL_ONE_MASKED, "opt"):
        return
    sentences = ec.read_conllu(ec.probing.UD_ENGLISH_EWT_DEV)[:8]
    arguments = {"n_tokens": 60, "trials": 2, "epochs": 2, "lr": (1e-3, 0.1), "layers": ["embeddings", 1],
                 "store": "memory"}
    with pytest.warns(UserWarning, match="only 20 of the 60 tokens"):
        hooked = ec.probe_table(tiny, sentences, **arguments, progress=lambda fraction, message: None).to_frame()
    traced = backends.use(tiny, "nnsight", remote="local")
    grouped = tiny.config.model_type == "llama"
    if grouped:  # layers in groups, one request each (a server's memory): the same table
        monkeypatch.setattr(ec.probing.traced, "SERVED_GROUP_BYTES", 60 * tiny.d_ff * 4)
    seen = []
    with backends.ledger() as record, pytest.warns(UserWarning, match="only 20 of the 60 tokens"):
        through = ec.probe_table(traced, sentences, **arguments, progress=lambda *report: seen.append(report))
    pd.testing.assert_frame_equal(through.to_frame(), hooked, check_exact=True)
    assert record.requests == (3 if grouped else 1) and max(record.received) < 4_000
    if not grouped:
        return
    # Progress and Stop between requests.
    assert [fraction for fraction, _ in seen] == [0, 1 / 3, 2 / 3, 1]
    assert seen[1][1] == ("probing on this machine, through nnsight (serialised as for NDIF), request 2 of 3: the "
                          "corpus through the model, then 1 layers' probes")

    class Stopped(BaseException):  # what the page's Stop raises in its progress callback
        pass

    def stop(fraction, message):
        if fraction > 0:
            raise Stopped

    with backends.ledger() as record, pytest.warns(UserWarning), pytest.raises(Stopped):
        ec.probe_table(traced, sentences, **arguments, progress=stop)
    assert record.requests == 1
    with pytest.raises(ValueError, match="collect runs on this machine's hook path only .*ec.probe_table collects "
                                         "them and trains the probes where the model runs"):
        ec.probing.collect(traced, sentences)


def test_probings_estimate_through_nnsight_counts_a_pass_over_the_corpus_per_request(lm):
    from ecco_core import estimates

    served = backends.simulated(lm)
    quick, paper = (ec.probing.preset(name, lm.n_layers).arguments() for name in ("quick", "paper"))
    assert [ec.probing.traced.n_requests(served, s["n_tokens"], s["layers"]) for s in (quick, paper)] == [1, 2]
    here, there = (estimates.probing_seconds(model, None, **quick) for model in (lm, served))
    assert here == there
    here, there = (estimates.probing_seconds(model, None, **paper) for model in (lm, served))
    collection = estimates.probe_collection_seconds(lm, None, n_tokens=paper["n_tokens"], layers=paper["layers"])
    assert here < there < here + collection
