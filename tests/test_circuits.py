"""Direct logit attribution and its verification by ablation (ecco_core.circuits, #29).

The parts must sum to the model's own logit (difference), measured with a
real forward pass of the shared model (its default attention kernel), on
every causal family of the table and on the IOI prompt of the causal default;
exact ablation effects are checked against a one-at-a-time recomputation with
the test's own hook.
"""

import dataclasses

import numpy as np
import pytest
import torch

import ecco_core as ec
from ecco_core import circuits, layers
from ecco_core.attention import eager_twin

IOI = "When Mary and John went to the store, John gave a drink to"
TEXT = "The keys to the cabinet"
TOLERANCE = 1e-4


def real_metric(lm, text, answer_id, foil_id=-1):
    """The model's own logit (difference) after ``text``, from a plain forward pass (no hooks, default kernels)."""
    ids = lm.tokenizer(text)["input_ids"]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
    return float(logits[answer_id] - (logits[foil_id] if foil_id >= 0 else 0.0))


def extremes(lm, text):
    """The most and the least likely next token after ``text``: a logit difference far from 0."""
    ids = lm.tokenizer(text)["input_ids"]
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return int(logits.argmax()), int(logits.argmin())


def assert_sources_sum_to_heads(result):
    """Each head's part split by source token adds back up to the head (float32 rounding: 1e-6 of the largest)."""
    scale = np.abs(result.heads).max()
    np.testing.assert_allclose(result.head_sources.sum(-1), result.heads, rtol=0, atol=1e-6 * scale)


def assert_routes_sum_to_one(result):
    """Every residual sum's parts share its importance: 1 per sum, or 0 where all of its parts cancel."""
    attention = result.route_heads.sum((1, 3)) + result.route_attention_residual + result.route_attention_bias
    ffn = result.route_ffn + result.route_ffn_residual
    for sums in (attention, ffn):
        assert np.all((np.abs(sums - 1) < 1e-5) | (sums == 0)) and (sums > 0).mean() > 0.9


@pytest.fixture(scope="module")
def ioi(lm):
    return ec.circuits(lm, IOI, "Mary", "John", routes=True)


def test_parts_sum_to_the_real_logit_in_every_causal_family(tiny):
    assert tiny.spec.norm in ec.models.NORM_KINDS
    if not tiny.is_causal:
        with pytest.raises(ValueError, match="circuits need a causal model"):
            ec.circuits(tiny, "The keys to the [MASK]", "cabinet")
        return
    answer, foil = extremes(tiny, TEXT)
    for result, real in [
        (routed := ec.circuits(tiny, TEXT, answer, foil, routes=True), real_metric(tiny, TEXT, answer, foil)),
        (ec.circuits(tiny, TEXT, answer), real_metric(tiny, TEXT, answer)),
    ]:
        assert abs(result.total - real) <= TOLERANCE * abs(real)
        assert abs(result.to_frame()["value"].sum() - real) <= TOLERANCE * abs(real)
        # Every head's part, split by source token, adds back up to the head (GQA: query heads share values).
        assert_sources_sum_to_heads(result)
        assert result.heads.shape == (tiny.n_layers, tiny.n_heads)
        assert result.head_sources.shape == (tiny.n_layers, tiny.n_heads, len(tiny.tokenizer(TEXT)["input_ids"]))
    assert_routes_sum_to_one(routed)


def test_ioi_on_the_default_sums_to_the_real_logit_difference(lm, ioi):
    real = real_metric(lm, IOI, ioi.answer_id, ioi.foil_id)
    assert (ioi.answer, ioi.foil, ioi.metric) == (" Mary", " John", "logit_diff")
    assert abs(ioi.total - real) <= TOLERANCE * abs(real)
    assert ioi.heads.shape == (30, 9) and ioi.ffn.shape == (30,)
    assert not ioi.attention_bias.any()  # Llama's o_proj has no bias; nor has its RMSNorm
    assert_sources_sum_to_heads(ioi)
    # The heads that write the answer read it from the names: the top head's main source is a name token.
    top_head = next(label for label in ioi.top(10) if "head" in label)
    sources = ioi.sources_frame().query("part == @top_head")
    assert sources.loc[sources["value"].abs().idxmax(), "source_token"] in (" Mary", " John")


def test_the_final_norm_scale_is_the_real_runs(lm, ioi):
    cap = ec.capture(lm, IOI)
    last = cap.hidden_states[-1, -1].astype(np.float64)  # block 29's output at the read position
    eps = lm.final_norm[0].variance_epsilon
    assert ioi.final_scale == pytest.approx(1 / np.sqrt(np.mean(last**2) + eps), rel=1e-5)


def test_a_capture_reads_its_answer_after_the_prompt(lm, ioi):
    cap = ec.capture(lm, IOI, answer=" Mary")
    result = ec.circuits(lm, cap, foil="John")
    assert result.tokens == ioi.tokens and result.answer_id == ioi.answer_id
    np.testing.assert_allclose(result.heads, ioi.heads, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="answer is needed"):
        ec.circuits(lm, ec.capture(lm, "The keys"), position=1)


def test_frame_names_every_part_in_the_one_layer_vocabulary(ioi):
    frame = ioi.to_frame()
    n_layers, n_heads = ioi.heads.shape
    assert len(frame) == 1 + n_layers * n_heads + 2 * n_layers + 1
    assert frame["part"].iloc[0] == "embeddings" and frame["part"].iloc[-1] == layers.FINAL_BIAS
    row = frame.query("block == 9 and head == 3").iloc[0]
    assert row["part"] == "block 9 head 3" == layers.head_label(9, 3) and row["value"] == ioi.heads[9, 3]
    assert frame.query("part == 'block 9 FFN'")["value"].item() == ioi.ffn[9]
    assert frame.query("part == 'block 9 attention bias'")["kind"].item() == "attention bias"
    ranked = frame.dropna(subset=["rank"]).sort_values("rank")
    assert tuple(ranked["part"][:10]) == ioi.top(10)
    assert set(frame["kind"]) == set(circuits.KINDS)


def ablate_one(lm, ids, component, answer_id, foil_id):
    """The metric with one head or FFN replaced by its mean over positions, by the test's own hooks."""
    kind, block, *head = component
    seen = {}
    if kind == "head":
        module, register = lm.output_projections[block], "register_forward_pre_hook"
        columns = slice(head[0] * lm.head_dim, (head[0] + 1) * lm.head_dim)

        def record(module, args):
            seen["mean"] = args[0][..., columns].mean(-2, keepdim=True)

        def replace(module, args):
            z = args[0].clone()
            z[..., columns] = seen["mean"]
            return (z,)
    else:
        module, register = lm.ffn_projections[block], "register_forward_hook"

        def record(module, args, output):
            seen["mean"] = output.mean(-2, keepdim=True)

        def replace(module, args, output):
            return seen["mean"].expand_as(output).clone()
    for hook in (record, replace):
        handle = getattr(module, register)(hook)
        try:
            with torch.inference_mode():
                logits = lm.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
        finally:
            handle.remove()
    return float(logits[answer_id] - logits[foil_id])


@pytest.mark.parametrize("model_type", ["gpt2", "qwen2"])
def test_exact_ablation_effects_equal_one_at_a_time_ablation(model_type, lm, encoder):
    from families import tiny_lm

    tiny = tiny_lm(model_type, lm.tokenizer, encoder.tokenizer)
    answer, foil = extremes(tiny, TEXT)
    result = ec.circuits.verify(tiny, ec.circuits(tiny, TEXT, answer, foil), k=3)
    ids = list(result.token_ids)
    unablated = real_metric(tiny, TEXT, answer, foil)
    for component, effect in [(("head", 1, 2), result.exact_heads[1, 2]), (("ffn", 0), result.exact_ffn[0])]:
        expected = unablated - ablate_one(tiny, ids, component, answer, foil)
        assert effect == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert len(result.exact_top) == 3 and 0 <= result.recall <= 1
    frame = result.to_frame()
    assert frame.dropna(subset=["exact_rank"]).sort_values("exact_rank")["part"].head(3).tolist() == list(
        result.exact_top
    )


def test_every_exact_effect_equals_one_at_a_time_ablation_in_every_causal_family(tiny):
    """The batched passes' shortcuts (a row joins at its first ablated block, the last block computes only the
    read position) change no effect: each equals a plain pass of the whole model with the test's own hook."""
    if not tiny.is_causal:
        return
    answer, foil = extremes(tiny, TEXT)
    result = ec.circuits.verify(tiny, ec.circuits(tiny, TEXT, answer, foil), k=2)
    ids = list(result.token_ids)
    unablated = real_metric(tiny, TEXT, answer, foil)
    components = [("head", l, h) for l in range(tiny.n_layers) for h in range(tiny.n_heads)]
    expected = [unablated - ablate_one(tiny, ids, component, answer, foil)
                for component in [*components, *(("ffn", l) for l in range(tiny.n_layers))]]
    # float32 rounding of the metric itself: 1e-5 of its size.
    np.testing.assert_allclose(result.exact_values, expected, rtol=0, atol=1e-5 * max(1.0, abs(unablated)))


def test_keeping_every_component_keeps_the_whole_effect(tiny):
    if not tiny.is_causal:
        return
    answer, foil = extremes(tiny, TEXT)
    result = ec.circuits(tiny, TEXT, answer, foil)
    everything = ec.circuits.verify(tiny, result, k=len(result.components), exact=False)
    assert everything.top_kept_value == pytest.approx(result.value, rel=1e-4)
    assert everything.top_ablated_value == pytest.approx(everything.all_ablated_value, rel=1e-6, abs=1e-9)
    assert everything.kept_share == pytest.approx(1, rel=1e-3)
    assert everything.ablated_share == pytest.approx(1, rel=1e-3)
    assert everything.exact_heads is None and np.isnan(everything.recall)


def test_verify_on_the_ioi_default(lm, ioi):
    checked = ec.circuits.verify(lm, ioi, k=10, exact=False)
    assert checked.k == 10 and checked.ablation == circuits.ABLATIONS["mean"]
    assert np.isfinite([checked.all_ablated_value, checked.top_ablated_value, checked.top_kept_value]).all()
    # Ablating DLA's top 10 moves the logit difference towards the fully ablated model.
    assert abs(checked.top_ablated_value - checked.all_ablated_value) < abs(ioi.value - checked.all_ablated_value)
    corrupted = ec.circuits.verify(
        lm, ioi, k=10, ablation="corrupted", corrupted="When Alice and Bob went to the store, Carl gave a drink to",
        exact=False,
    )
    assert "Carl gave" in corrupted.ablation and corrupted.all_ablated_value != checked.all_ablated_value


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"k": 0}, ValueError, "k must be a whole number from 1 to 300"),
        ({"ablation": "zero"}, ValueError, "ablation must be one of 'mean', 'corrupted'"),
        ({"ablation": "corrupted"}, ValueError, "needs corrupted="),
        ({"corrupted": "When Mary"}, ValueError, "corrupted= is for ablation='corrupted'"),
        ({"ablation": "corrupted", "corrupted": "When Mary and John"}, ValueError, "as many tokens as"),
    ],
)
def test_bad_verification_arguments_are_named(lm, ioi, kwargs, error, message):
    with pytest.raises(error, match=message):
        ec.circuits.verify(lm, ioi, exact=False, **kwargs)


def test_bad_inputs_are_named(lm, encoder):
    with pytest.raises(ValueError, match="answer is needed with a text"):
        ec.circuits(lm, IOI)
    with pytest.raises(ValueError, match="same token"):
        ec.circuits(lm, IOI, "Mary", " Mary")
    with pytest.raises(ValueError, match="circuits need a causal model"):
        ec.circuits(encoder, "The keys to the [MASK]", "cabinet")
    with pytest.raises(ValueError, match="position is for a Capture"):
        ec.circuits(lm, IOI, "Mary", position=3)
    with pytest.raises(TypeError, match="result must be a Circuits result"):
        ec.circuits.verify(lm, "not a result")


def l1_proximity(parts, total):
    return np.maximum(0, np.abs(total).sum(-1) - np.abs(total - parts).sum(-1))


def test_routes_of_one_block_equal_a_recomputation(lm, ioi):
    """Block 23's edges from the capture's hidden states, ec.attention's weights and the model's own attention
    output (its default kernel), with the test's own hook on the value projection."""
    block, n_heads, head_dim = 23, lm.n_heads, lm.head_dim
    cap = ec.capture(lm, IOI)
    weights = ec.attention(lm, cap, layers=[block]).scores[0].astype(np.float64)  # (n_heads, n_tokens, n_tokens)
    seen = {}
    handles = [
        lm.value_projections[block].register_forward_hook(lambda m, a, out: seen.update(values=out[0])),
        lm.attention_modules[block].register_forward_hook(lambda m, a, out: seen.update(attention=out[0][0])),
    ]
    try:
        with torch.inference_mode():
            lm.model(input_ids=torch.tensor(cap.token_ids[None]))
    finally:
        for handle in handles:
            handle.remove()
    x, out = cap.hidden_states[block].astype(np.float64), cap.hidden_states[block + 1].astype(np.float64)
    mid = x + seen["attention"].double().numpy()
    values = seen["values"].double().numpy().reshape(cap.n_tokens, lm.n_kv_heads, head_dim)
    output = lm.output_projections[block].weight.double().numpy()  # (d_model, n_heads * head_dim)
    group = n_heads // lm.n_kv_heads
    heads = np.stack([
        l1_proximity(weights[h][:, :, None] * (values[:, h // group] @ output[:, h * head_dim:(h + 1) * head_dim].T),
                     mid[:, None])
        for h in range(n_heads)
    ])
    residual = l1_proximity(x, mid)
    total = heads.sum((0, 2)) + residual  # Llama's o_proj has no bias
    np.testing.assert_allclose(ioi.route_heads[block], heads / total[None, :, None], atol=1e-4)
    np.testing.assert_allclose(ioi.route_attention_residual[block], residual / total, atol=1e-4)
    kept, added = l1_proximity(mid, out), l1_proximity(out - mid, out)
    np.testing.assert_allclose(ioi.route_ffn[block], added / (kept + added), atol=1e-4)
    assert_routes_sum_to_one(ioi)


def test_routes_frame_is_the_graph_from_the_prediction_back(ioi):
    frame = ioi.routes_frame(threshold=0.04)
    assert (frame["importance"] >= 0.04).all()
    top = frame.iloc[0]
    assert (top["target"], top["target_position"]) == ("block 29", ioi.read_position)
    targets = set(zip(frame["target"], frame["target_position"]))
    # Every kept node is reached from the prediction: each source is itself a target, or an input token.
    for source, position in zip(frame["source"], frame["source_position"]):
        assert (source, position) in targets or source == "embeddings"
    heads = frame[frame["part"] == "head"]
    assert heads["source"].str.fullmatch(r"block \d+|embeddings").all()
    assert heads["target"].str.endswith("after attention").all()
    assert len(ioi.routes_frame(threshold=0.2)) < len(frame)
    with pytest.raises(ValueError, match="threshold must be a number in"):
        ioi.routes_frame(threshold=2)
    with pytest.raises(ValueError, match="routes=True"):
        dataclasses.replace(ioi, route_heads=None).routes_frame()


def test_what_each_component_writes_is_its_dla_on_every_logit(lm, ioi):
    """Each head's and FFN's vector through the frozen final norm and the head: its answer - foil is its DLA."""
    top = [ioi.components.index(label) for label in ioi.top(5)]
    logits = circuits._component_logits(lm, ioi, top).double().numpy()
    np.testing.assert_allclose(logits[:, ioi.answer_id] - logits[:, ioi.foil_id], ioi.component_values[top],
                               rtol=1e-4, atol=1e-5)
    table = circuits.top_tokens(lm, ioi, k=3)
    assert list(table["part"]) == list(ioi.components)
    row = table.set_index("part").loc[ioi.top(1)[0]]
    assert len(row["promoted"]) == 3 and row["promoted_logits"] == sorted(row["promoted_logits"], reverse=True)
    assert row["promoted_logits"][0] == pytest.approx(logits[0].max(), rel=1e-5)
    assert row["suppressed_logits"][0] == pytest.approx(logits[0].min(), rel=1e-5)
    # Made in chunks, the last one shorter, the table is the same (up to float rounding). 64 components a chunk,
    # not one: each chunk reads the LM head's whole weight, and 300 reads of it took 10 s.
    chunked = circuits.top_tokens(lm, ioi, k=3, max_chunk_bytes=64 * 4 * lm.vocab_size)
    assert chunked["promoted"].tolist() == table["promoted"].tolist()
    np.testing.assert_allclose(np.array(chunked["suppressed_logits"].tolist()),
                               np.array(table["suppressed_logits"].tolist()), rtol=1e-5, atol=1e-6)


def test_a_capture_with_a_generation_reads_its_first_generated_token(lm):
    cap = ec.capture(lm, "The capital of France is", max_new_tokens=2)
    result = ec.circuits(lm, cap)
    assert result.answer_id == cap.token_ids[cap.n_input] and result.read_position == cap.n_input - 1
    real = real_metric(lm, "The capital of France is", result.answer_id)
    assert result.metric == "logit" and abs(result.total - real) <= TOLERANCE * abs(real)


def test_verification_reports_its_progress(lm, encoder):
    from families import tiny_lm

    tiny = tiny_lm("llama", lm.tokenizer, encoder.tokenizer)
    result = ec.circuits(tiny, TEXT, *extremes(tiny, TEXT))
    calls = []
    ec.circuits.verify(tiny, result, k=2, max_batch_bytes=1, progress=lambda *call: calls.append(call))
    fractions = [fraction for fraction, _ in calls]
    assert len(calls) == len(result.components) + 4 and fractions == sorted(fractions) and fractions[-1] == 1
    assert calls[-1][1] == f"{len(calls)} of {len(calls)} ablated runs"


def test_work_counts_what_verification_runs_and_its_estimate_reads_it(lm, encoder, monkeypatch):
    """#29: verify_seconds counted a row of one component as 0.8 of a whole row, where by its blocks it runs about
    half of one. circuits.work counts the token-blocks that verify's passes push through the FFNs' projections (the
    recorded run's included, the last block's at the read position only), and the estimate is that work at
    ABLATION_RATE."""
    from families import tiny_lm

    from ecco_core import estimates
    from ecco_core.hooks import Before, hooked

    tiny = tiny_lm("llama", lm.tokenizer, encoder.tokenizer)
    result = ec.circuits(tiny, TEXT, *extremes(tiny, TEXT))
    pushed = []
    hooks = {projection: Before(lambda module, args, kwargs: pushed.append(args[0].shape[0] * args[0].shape[1]))
             for projection in tiny.ffn_projections}
    with hooked(hooks):
        ec.circuits.verify(tiny, result, k=2)
    assert sum(pushed) == circuits.work(tiny, result, k=2)
    monkeypatch.setattr(estimates, "pace", lambda: 1.0)
    per_token_block = estimates.block_multiply_adds(tiny) / tiny.n_layers
    assert estimates.verify_seconds(tiny, result, k=2) == pytest.approx(
        sum(pushed) * per_token_block / estimates.ABLATION_RATE)


def test_figures_draw_every_part_with_its_tooltip_and_the_routes_of_the_result(lm, encoder, ioi):
    import json
    import re
    from importlib import resources

    from families import tiny_lm

    from ecco_core.plots import circuits as circuit_plots
    from ecco_core.plots import escape_token
    from ecco_core.plots.views import VIEWS

    tops = ec.circuits.top_tokens(lm, ioi, 5)
    figure = circuit_plots.dla_heatmap(ioi, tops, selected=(23, 3))
    cells, markers = figure.data
    z = np.asarray(cells.z)
    np.testing.assert_allclose(z, np.column_stack([ioi.heads, ioi.ffn]))
    assert list(cells.x)[-1] == "FFN" and list(cells.y)[23] == "block 23" and cells.zmin == -cells.zmax
    n_columns = lm.n_heads + 1
    index = 23 * n_columns + 3  # the cells row by row
    assert list(markers.customdata[index]) == [23, 3]
    hover = markers.hovertext[index]
    promoted = tops.set_index("part").loc["block 23 head 3", "promoted"]
    strongest = int(np.argmax(np.abs(ioi.head_sources[23, 3])))
    assert hover.startswith(f"<b>block 23 head 3</b>: +{ioi.heads[23, 3]:.3f} logits")
    assert f"promotes {escape_token(promoted[0])!r}" in hover
    assert f"reads from {strongest} {escape_token(ioi.tokens[strongest])!r}" in hover
    assert markers.hovertext[23 * n_columns + lm.n_heads].startswith("<b>block 23 FFN</b>")

    view = circuit_plots.routes_html(ioi, threshold=0.04)
    payload = re.search(r'<script type="application/json">(.*?)</script>', view, re.S).group(1)
    assert "<" not in payload  # a token "</script>" could not end the block
    data = json.loads(payload)
    frame = ioi.routes_frame(circuit_plots.ROUTES_FLOOR)
    assert len(data["edges"]) == len(frame) and data["root"] == [2 * lm.n_layers, ioi.read_position]
    np.testing.assert_allclose([edge[-1] for edge in data["edges"]], frame["importance"], rtol=1e-6)
    assert data["tokens"][1] == " Mary" and "__VIEW_ID__" not in view and 'value="0.04"' in view
    # The one bootstrap of the interactive views (#27 §3): its package files inlined, one call of its function.
    files = resources.files("ecco_core.plots")
    assert files.joinpath("routes_view.css").read_text() in view and files.joinpath("routes_view.js").read_text() in view
    root = re.match(r'<div id="([^"]+)" class="ecco-routes">', view).group(1)
    assert view.endswith(f'</script><script>{files.joinpath("routes_view.js").read_text()}\n'
                         f'{VIEWS["routes"]}(document.getElementById("{root}"));</script></div>')
    with pytest.raises(ValueError, match="threshold"):
        circuit_plots.routes_html(ioi, threshold=0.001)

    tiny = tiny_lm("llama", lm.tokenizer, encoder.tokenizer)
    answer, foil = extremes(tiny, TEXT)
    checked = ec.circuits.verify(tiny, ec.circuits(tiny, TEXT, answer, foil), k=3)
    scatter = circuit_plots.verify_scatter(checked)
    heads, ffns = scatter.data[:2]
    np.testing.assert_allclose(np.concatenate([heads.x, ffns.x]), checked.component_values)
    np.testing.assert_allclose(np.concatenate([heads.y, ffns.y]), checked.exact_values)
    ringed = [label for trace in (heads, ffns) for label, size in zip(trace.customdata[:, 0], trace.marker.size)
              if size > 6]
    assert sorted(ringed) == sorted(checked.top(3))
    again = ec.circuits.verify(tiny, checked, k=3, exact=False)  # verified again: the earlier effects go
    assert again.exact_heads is None and again.exact_ffn is None
    with pytest.raises(ValueError, match="exact"):
        circuit_plots.verify_scatter(again)


def test_the_routes_graph_ranks_the_parts_and_verification_checks_its_top_k(lm, encoder, ioi):
    from families import tiny_lm

    values = ioi.route_values(0.04)
    frame = ioi.routes_frame(0.04)
    parts = frame[frame["part"].isin(["head", "FFN"])]
    assert values.sum() == pytest.approx(parts["importance"].sum(), rel=1e-6)
    block, head = parts.loc[parts["part"] == "head", ["block", "head"]].iloc[0]
    same = parts[(parts["block"] == block) & (parts["head"] == head)]
    assert values[block * ioi.n_heads + head] == pytest.approx(same["importance"].sum(), rel=1e-6)
    assert ioi.route_top(3, 0.04) == tuple(ioi.components[i] for i in np.argsort(-values, kind="stable")[:3])

    tiny = tiny_lm("llama", lm.tokenizer, encoder.tokenizer)
    answer, foil = extremes(tiny, TEXT)
    result = ec.circuits(tiny, TEXT, answer, foil, routes=True)
    everything = ec.circuits.verify(tiny, result, k=len(result.components), exact=False)
    assert everything.route_top_kept_value == pytest.approx(result.value, rel=1e-4)
    assert everything.route_top_ablated_value == pytest.approx(everything.all_ablated_value, rel=1e-6, abs=1e-9)
    checked = ec.circuits.verify(tiny, result, k=3)
    without_routes = ec.circuits.verify(tiny, ec.circuits(tiny, TEXT, answer, foil), k=3)
    # The graph's two rows sit among the others: every other number is the same as without them.
    np.testing.assert_allclose(checked.exact_values, without_routes.exact_values, rtol=1e-5, atol=1e-6)
    assert checked.top_kept_value == pytest.approx(without_routes.top_kept_value, rel=1e-5)
    assert checked.route_checked and checked.route_threshold == circuits.DEFAULT_THRESHOLD
    assert 0 <= checked.route_recall <= 1 and np.isfinite(checked.route_kept_share)
    assert not without_routes.route_checked and np.isnan(without_routes.route_recall)



def test_dla_keeps_copies_of_the_rows_it_reads_not_views_of_whole_tensors(lm):
    """Without routes, DLA's record holds the read position's rows, each its own copy (#31 item 18).

    A row cut from a tensor is a view that keeps the whole tensor alive: each block's (n_heads, n_tokens,
    n_tokens) attention weights for their last row, every position's block inputs and FFN outputs for theirs.
    A 512-token prompt's Circuits then peaked at +674 MiB above the warm model, the largest run of the server
    at its limits; 283 MB of it were the weights.
    """
    ids = lm.tokenizer(" ".join(["The keys to the cabinet are on the table."] * 6))["input_ids"]
    seen = circuits._eager_run(eager_twin(lm), ids, every_query=False)
    for kind in ("inputs", "weights", "z", "ffn"):
        for layer, kept in seen[kind].items():
            assert kept.untyped_storage().nbytes() == kept.nbytes, f"{kind} of block {layer}: a view"
    assert {kept.shape for kept in seen["weights"].values()} == {(lm.n_heads, len(ids))}
    assert {kept.shape for kind in ("inputs", "ffn") for kept in seen[kind].values()} == {(1, lm.d_model)}
