"""Attention weights, value-weighted attention and rollout, on every family and on the real defaults."""

import copy
import json
import re
import threading

import numpy as np
import pytest
import torch

import ecco_core as ec
from browser import expected_head_view_lines, head_view_lines, view_payload
from ecco_core import plots


def _capture(model):
    if model.is_causal:
        return ec.capture(model, "The keys to the cabinet", max_new_tokens=2)
    return ec.capture(model, "The keys to the cabinet are on the table.")


def _reference_attentions(model, cap):
    """The model's own eager attentions, from a full copy switched by transformers' own setter."""
    reference = copy.deepcopy(model.model)
    reference.set_attn_implementation("eager")
    with torch.no_grad():
        output = reference(input_ids=torch.tensor(cap.token_ids[None]), output_attentions=True)
    return reference, np.stack([a[0].numpy() for a in output.attentions])


def _hook_counts(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.model.modules())


def _check_raw(model):
    cap = _capture(model)
    hooks_before, implementation = _hook_counts(model), model.config._attn_implementation
    att = ec.attention(model, cap)
    _, expected = _reference_attentions(model, cap)
    n_tokens = cap.n_tokens
    assert att.scores.shape == (model.n_layers, model.n_heads, n_tokens, n_tokens)
    assert att.layers == tuple(range(model.n_layers)) and att.heads[0] == "head 0"
    np.testing.assert_allclose(att.scores, expected, atol=1e-6)
    np.testing.assert_allclose(att.scores.sum(-1), 1, atol=1e-5)
    if model.is_causal:
        assert not np.triu(att.scores, k=1).any()
    else:
        assert (att.scores > 0).all()
    # the shared model is left as it was
    assert model.config._attn_implementation == implementation
    assert _hook_counts(model) == hooks_before


def test_raw_weights_are_the_models_own_eager_attentions(tiny):
    _check_raw(tiny)


@pytest.mark.parametrize("which", ["lm", "encoder"])
def test_raw_weights_of_the_real_defaults(which, request):
    model = request.getfixturevalue(which)
    assert model.config._attn_implementation == "sdpa"  # the weights never exist in the default pass
    _check_raw(model)
    if which == "lm":  # grouped-query attention: 9 query heads read 3 key/value heads, one map per query head
        assert (model.n_heads, model.n_kv_heads) == (9, 3)


def _values_of(model, output):
    """Value vectors (n_tokens, n_kv_heads, head_dim) cut from the value projection's output as each family does."""
    n_heads, head_dim = model.n_heads, model.head_dim
    if model.spec.qkv_layout == "fused":  # GPT-2: c_attn(x).split(d_model, dim=-1) -> q, k, v
        values = output.split(n_heads * head_dim, dim=-1)[2]
    elif model.spec.qkv_layout == "fused_per_head":  # NeoX: view(..., n_heads, 3 * head_dim).chunk(3) -> q, k, v
        values = output.view(output.shape[0], n_heads, 3 * head_dim).chunk(3, dim=-1)[2]
    else:
        values = output
    return values.reshape(output.shape[0], -1, head_dim)


def _value_weighted_by_hand(model, cap):
    """||alpha_ij f_h(x_j)||, f_h(x_j) from the real output projection applied to head h's value alone."""
    reference, weights = _reference_attentions(model, cap)
    blocks = ec.models._get(reference.base_model, model.spec.blocks)
    outputs = {}
    handles = [
        ec.models._get(block, model.spec.value_projection).register_forward_hook(
            lambda module, args, out, layer=layer: outputs.__setitem__(layer, out[0])
        )
        for layer, block in enumerate(blocks)
    ]
    with torch.no_grad():
        reference(input_ids=torch.tensor(cap.token_ids[None]))
    for handle in handles:
        handle.remove()
    n_heads, head_dim, group = model.n_heads, model.head_dim, model.n_heads // model.n_kv_heads
    expected = np.zeros_like(weights)
    with torch.no_grad():
        for layer, block in enumerate(blocks):
            values = _values_of(model, outputs[layer])
            projection = ec.models._get(block, model.spec.output_projection)
            zero = projection(torch.zeros(1, n_heads * head_dim))
            for head in range(n_heads):
                alone = torch.zeros(cap.n_tokens, n_heads * head_dim)
                alone[:, head * head_dim : (head + 1) * head_dim] = values[:, head // group]
                norms = (projection(alone) - zero).norm(dim=-1).numpy()
                expected[layer, head] = weights[layer, head] * norms[None, :]
    return weights, expected


def test_value_weighted_norms_equal_a_recomputation(tiny):
    cap = _capture(tiny)
    weights, expected = _value_weighted_by_hand(tiny, cap)
    att = ec.attention(tiny, cap, "value_weighted")
    np.testing.assert_allclose(att.scores, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(att.normalised().sum(-1), 1, atol=1e-5)
    assert not np.allclose(att.normalised(), weights, atol=1e-3)


def test_value_weighted_on_the_real_causal_default(lm):
    cap = _capture(lm)
    _, expected = _value_weighted_by_hand(lm, cap)
    att = ec.attention(lm, cap, "value_weighted", layers=[0, 17, 29])
    np.testing.assert_allclose(att.scores, expected[[0, 17, 29]], rtol=1e-4, atol=1e-5)


def test_value_weighting_shrinks_the_weight_on_special_tokens_in_the_encoder(encoder):
    """Kobayashi et al.'s finding: much raw weight on [CLS]/[SEP] moves little (their transformed vectors are small)."""
    cap = _capture(encoder)
    raw = ec.attention(encoder, cap).scores
    weighted = ec.attention(encoder, cap, "value_weighted").normalised()
    special = cap.special
    assert weighted[..., special].sum(-1).mean() < raw[..., special].sum(-1).mean()


def _rollout_by_hand(weights):
    n_tokens = weights.shape[-1]
    product = np.eye(n_tokens)
    maps = []
    for layer_weights in weights.astype(np.float64):
        mixed = 0.5 * layer_weights.mean(axis=0) + 0.5 * np.eye(n_tokens)
        mixed /= mixed.sum(-1, keepdims=True)
        product = mixed @ product
        maps.append(product)
    return np.stack(maps)[:, None]


@pytest.mark.parametrize("which", ["lm", "encoder"])
def test_rollout_equals_a_direct_recomputation(which, request):
    model = request.getfixturevalue(which)
    cap = _capture(model)
    raw = ec.attention(model, cap).scores
    rollout = ec.attention(model, cap, "rollout")
    assert rollout.scores.shape == (model.n_layers, 1, cap.n_tokens, cap.n_tokens)
    assert rollout.heads == ("mean of heads",)
    np.testing.assert_allclose(rollout.scores, _rollout_by_hand(raw), atol=1e-5)
    np.testing.assert_allclose(rollout.scores.sum(-1), 1, atol=1e-5)
    later = ec.attention(model, cap, "rollout", layers=[model.n_layers - 1])
    np.testing.assert_allclose(later.scores[0], rollout.scores[-1], atol=1e-6)


def test_some_blocks_only_equal_the_same_blocks_of_all(lm):
    cap = _capture(lm)
    every = ec.attention(lm, cap)
    some = ec.attention(lm, cap, layers=[4, 2])
    assert some.layers == (2, 4)
    np.testing.assert_array_equal(some.scores, every.scores[[2, 4]])
    np.testing.assert_array_equal(some.map(4, 3), every.scores[4, 3])
    assert ec.attention(lm, cap, layers=7).layers == (7,)


def test_frame_lists_what_each_query_sees(lm):
    cap = _capture(lm)
    att = ec.attention(lm, cap, "value_weighted", layers=[1])
    frame = att.to_frame()
    n_pairs = cap.n_tokens * (cap.n_tokens + 1) // 2
    assert len(frame) == lm.n_heads * n_pairs
    assert list(frame.columns) == [
        "layer", "block", "head", "query_position", "query_token", "key_position", "key_token", "score",
        "normalised",
    ]
    assert (frame.key_position <= frame.query_position).all() and (frame.block == 1).all()
    assert (frame.layer == "block 1 attention").all()  # as patching's attention site names it: tables join
    row = frame[(frame["head"] == "head 3") & (frame.query_position == 5) & (frame.key_position == 2)].iloc[0]
    assert row.score == pytest.approx(att.scores[0, 3, 5, 2]) and row.key_token == cap.tokens[2]
    np.testing.assert_allclose(frame.groupby(["head", "query_position"]).normalised.sum(), 1, atol=1e-5)


def test_concurrent_passes_are_unaffected(lm):
    """Other sessions keep running SDPA with their own hooks while attention runs on its private eager twin."""
    text = "The keys to the cabinet"
    expected = ec.capture(lm, text).hidden_states
    cap = _capture(lm)
    single = ec.attention(lm, cap, layers=[0, 29]).scores
    calls_from_here = []
    hook = lm.attention_modules[0].register_forward_hook(
        lambda module, args, output: calls_from_here.append(threading.get_ident())
    )
    errors, seen = [], []

    def other_session():
        try:
            for _ in range(6):
                seen.append(lm.config._attn_implementation)
                np.testing.assert_allclose(ec.capture(lm, text).hidden_states, expected, atol=1e-5)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    try:
        worker = threading.Thread(target=other_session)
        worker.start()
        results = [ec.attention(lm, cap, layers=[0, 29]).scores for _ in range(4)]
        worker.join()
    finally:
        hook.remove()
    assert not errors, errors
    assert set(seen) == {"sdpa"}
    assert all(np.array_equal(r, single) for r in results)
    # the hook another session put on the shared model ran for that session's passes only
    assert threading.get_ident() not in calls_from_here and calls_from_here


def test_result_above_the_budget_is_refused_before_any_work(lm):
    cap = _capture(lm)
    with pytest.raises(ValueError, match=r"max_bytes must be at least \d+ \(\d+ MiB\) .*layers=.*; got 1000"):
        ec.attention(lm, cap, max_bytes=1000)
    one_map = cap.n_tokens**2 * 4
    assert ec.attention(lm, cap, "rollout", layers=[3], max_bytes=one_map).scores.shape[0] == 1


def test_blocks_that_fit_are_the_window_the_budget_holds(lm):
    """The window of blocks a page asks for: as many as the budget holds, every block when all fit, at least one."""
    per_block = lm.n_heads * 450**2 * 4
    assert ec.attention.block_bytes(lm, 450, "raw") == per_block
    assert ec.attention.block_bytes(lm, 450, "rollout") == 450**2 * 4
    assert ec.attention.blocks_that_fit(lm, 450, "raw", max_bytes=64 * 2**20) == 64 * 2**20 // per_block == 9
    assert ec.attention.blocks_that_fit(lm, 450, "rollout", max_bytes=64 * 2**20) == lm.n_layers
    assert ec.attention.blocks_that_fit(lm, 450, "value_weighted", max_bytes=1) == 1
    cap = _capture(lm)  # what it says fits, attention builds
    three = 3 * ec.attention.block_bytes(lm, cap.n_tokens)
    fit = ec.attention.blocks_that_fit(lm, cap.n_tokens, "raw", max_bytes=three)
    assert fit == 3 and ec.attention(lm, cap, layers=range(fit), max_bytes=three).scores.shape[0] == 3
    with pytest.raises(ValueError, match="method must be one of"):
        ec.attention.blocks_that_fit(lm, 450, "gradient")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(method="softmax"), ValueError, "method must be one of 'raw', 'value_weighted', 'rollout'; got 'softmax'"),
        (dict(method=["raw"]), ValueError, "method must be one of"),
        (dict(layers=30), ValueError, "layers must be .* block indices from 0 to 29, at least one; got 30"),
        (dict(layers=[-1]), ValueError, "from 0 to 29"),
        (dict(layers=[]), ValueError, "at least one"),
        (dict(layers=[True]), TypeError, "from 0 to 29"),
        (dict(layers="0"), TypeError, "from 0 to 29"),
        (dict(layers=[1, 1]), ValueError, "distinct"),
        (dict(layers=2.0), TypeError, "got 2.0"),
        (dict(max_bytes=0), ValueError, "max_bytes must be a whole number >= 1; got 0"),
    ],
)
def test_bad_arguments_are_named(lm, kwargs, error, message):
    cap = _capture(lm)
    with pytest.raises(error, match=message):
        ec.attention(lm, cap, **kwargs)


def test_a_head_outside_the_computed_blocks_is_refused(lm):
    with pytest.raises(ValueError, match="layer must be a computed block, one of 0; got 5"):
        ec.attention(lm, _capture(lm), layers=[0]).map(5)


# ------------------------------------------------------------------ summaries, thumbnails, blocks
def _known(scores, causal=False, method="raw"):
    """An Attention around given scores of shape (n_layers_kept, n_heads, n_tokens, n_tokens)."""
    n_kept, n_heads, n_tokens, _ = scores.shape
    return ec.Attention(
        scores=np.asarray(scores, np.float32), layers=tuple(range(3, 3 + n_kept)),
        heads=tuple(f"head {h}" for h in range(n_heads)), tokens=tuple(f" t{i}" for i in range(n_tokens)),
        n_input=n_tokens, method=method, model_name="known", causal=causal,
    )


def test_head_summary_names_the_classic_head_types():
    n_tokens = 5
    first = np.zeros((n_tokens, n_tokens)); first[:, 0] = 1
    previous = np.eye(n_tokens, k=-1); previous[0, 0] = 1
    same = np.eye(n_tokens)
    att = _known(np.stack([first, previous, same])[None] * 3.0, causal=True, method="value_weighted")
    summary = att.head_summary()
    assert list(summary.columns) == ["layer", "block", "head", "first_token", "previous_token", "same_token"]
    assert summary["layer"].tolist() == ["block 3 attention"] * 3 and summary["block"].tolist() == [3, 3, 3] and summary["head"].tolist() == ["head 0", "head 1", "head 2"]
    np.testing.assert_allclose(summary[["first_token", "previous_token", "same_token"]],
                               [[1, 0.25, 0.2], [0.4, 1, 0.2], [0.2, 0, 1]])  # query 1's previous token is the first


def test_thumbnails_max_pool_each_map_and_scale_it_to_its_peak():
    rng = np.random.default_rng(0)
    scores = rng.random((2, 3, 10, 10))
    att = _known(scores)
    shares = scores / scores.sum(-1, keepdims=True)
    assert att.thumbnails(10).shape == (2, 3, 10, 10)
    np.testing.assert_allclose(att.thumbnails(10), shares / shares.max((-1, -2), keepdims=True), rtol=1e-5)
    pooled = att.thumbnails(4)  # 3 tokens per pixel: 10 tokens -> 4 pixels, the last one pools a single token
    assert pooled.shape == (2, 3, 4, 4)
    expected = shares[1, 2, 3:6, 6:9].max() / shares[1, 2].max()
    assert pooled[1, 2, 1, 2] == pytest.approx(expected, rel=1e-5)
    assert pooled[1, 2, 3, 3] == pytest.approx(shares[1, 2, 9, 9] / shares[1, 2].max(), rel=1e-5)
    with pytest.raises(ValueError, match="size must be a whole number >= 1; got 0"):
        att.thumbnails(0)


def test_frame_of_some_blocks_only(lm):
    att = ec.attention(lm, _capture(lm), layers=[2, 5, 9])
    frame = att.to_frame(layers=[5])
    assert set(frame["block"]) == {5}
    every = att.to_frame()
    np.testing.assert_array_equal(frame["score"], every[every["block"] == 5]["score"])
    with pytest.raises(ValueError, match="layer must be a computed block, one of 2, 5, 9; got 4"):
        att.to_frame(layers=[4])


# ------------------------------------------------------------------ figures and the head view
def test_head_view_escapes_tokens_and_sends_only_numbers_to_its_script():
    tokens = ["<script>alert(1)</script>", " x", "\n", "&amp;"]
    weights = np.zeros((2, 4, 4))
    weights[:, :, 0] = 0.5
    weights[0, :, 1] = 0.5
    weights[1, :, 3] = 0.495
    weights[1, :, 2] = 0.005  # under min_weight: not drawn
    text = plots.attention_head_view_html(weights, tokens, title="<b>block 3</b>", n_input=3)
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "\u21b5" in text and "&amp;amp;" in text and "&lt;b&gt;block 3&lt;/b&gt;" in text
    assert not re.search(r"src=|<link|import\(|fetch\(|https?://(?!www\.w3\.org/2000/svg)", text)  # nothing is fetched
    payload = view_payload(text)
    assert "alert" not in json.dumps(payload)  # the script's data are numbers (and head colours) only
    queries, keys, drawn = payload["lines"][1]
    assert sorted(zip(queries, keys)) == sorted([(q, 0) for q in range(4)] + [(q, 3) for q in range(4)])
    assert drawn == [0.5, 0.495] * 4
    assert text.count('text-decoration: underline') == 2  # the generated token, in both columns
    strongest = np.random.default_rng(0).random((2, 4, 4))
    lines = view_payload(plots.attention_head_view_html(strongest, tokens, max_lines=5))["lines"]
    kept = sorted(weight for _, _, weights in lines for weight in weights)
    assert len(kept) == 5 and kept == sorted(np.round(np.sort(strongest.ravel())[-5:], 3))
    with pytest.raises(ValueError, match="tokens must be 4 entries, one per row of weights; got 3 entries"):
        plots.attention_head_view_html(weights, tokens[:3])
    with pytest.raises(ValueError, match=r"weights must be an array of shape \(n_heads, n_tokens, n_tokens\); got shape \(4, 4\)"):
        plots.attention_head_view_html(weights[0], tokens)


def test_attention_renders_itself_in_a_notebook(lm):
    cap = _capture(lm)
    att = ec.attention(lm, cap, "value_weighted", layers=[4, 7])
    assert att._repr_html_().startswith('<div id="ecco-heads-') and "block 4, value-weighted" in att._repr_html_()
    payload = view_payload(att.to_html(7))
    queries, keys, weights = payload["lines"][2]
    expected = att.normalised()[1, 2]
    np.testing.assert_allclose(weights, np.round(expected[queries, keys], 3))
    assert (expected[expected >= 0.01].size == len(weights)) and len(payload["colors"]) == lm.n_heads
    with pytest.raises(ValueError, match="layer must be a computed block.*; got 5"):
        att.to_html(5)


def test_heatmap_and_model_view_carry_their_cells(lm):
    cap = _capture(lm)
    att = ec.attention(lm, cap, layers=[1, 2])
    figure = plots.attention_heatmap(att, 2, 4)
    assert figure.layout.title.text == "block 2, head 4: raw weights"
    cells, markers = figure.data
    assert np.isnan(cells.z[0, 1]) and cells.z[1, 0] == pytest.approx(att.map(2, 4)[1, 0])
    assert markers.hovertext[1 * cap.n_tokens + 0] == (
        f"query 1: keys<br>key 0: The<br>weight {att.map(2, 4)[1, 0]:.3f}"
    )
    view = plots.attention_model_view(att, selected=(2, 4))
    grid, markers = view.data
    assert [list(cell) for cell in markers.customdata][:2] == [[1, 0], [1, 1]]
    assert len(markers.customdata) == 2 * lm.n_heads and list(view.layout.yaxis.ticktext) == ["block 1", "block 2"]
    assert markers.hovertext[0].startswith("block 1, head 0<br>on average a query puts")
    assert len(view.layout.shapes) == 1


# ------------------------------------------------------------------ the head view in Chromium
def test_head_view_works_on_its_own_in_chromium(lm, browser):
    """The notebook / downloaded file: no Streamlit, no network; lines drawn, hover and toggles work."""
    cap = ec.capture(lm, " ".join(["The keys to the cabinet are on the table."] * 8))
    att = ec.attention(lm, cap, layers=[5])
    shares = att.normalised()[0]
    tab = browser.new_page()
    try:
        tab.route("**/*", lambda route: route.abort())  # nothing may be fetched
        tab.set_content(f'<!doctype html><html><head><meta charset="utf-8"></head><body>{att.to_html()}</body></html>')
        every, shown = head_view_lines(tab)
        assert every == shown == expected_head_view_lines(shares)
        assert tab.locator(".ecco-scroll").evaluate("node => node.scrollHeight > node.clientHeight")  # it scrolls
        last = cap.n_tokens - 1
        tab.locator(f'.ecco-token[data-side="query"][data-position="{last}"]').hover()  # scrolled into view
        assert head_view_lines(tab)[1] == expected_head_view_lines(shares, query=last)
        tab.locator('.ecco-head-toggle[data-head="0"]').click()  # the pointer leaves the token
        assert head_view_lines(tab)[1] == expected_head_view_lines(shares, heads=range(1, lm.n_heads))
    finally:
        tab.close()
