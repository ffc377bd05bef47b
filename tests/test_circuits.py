"""Direct logit attribution and its verification by ablation (ecco_core.circuits, #29).

The parts must sum to the model's own logit (difference), measured with a
real forward pass of the shared model (its default attention kernel), on
every causal family of the table and on the IOI prompt of the causal default;
exact ablation effects are checked against a one-at-a-time recomputation with
the test's own hook.
"""

import numpy as np
import pytest
import torch

import ecco_core as ec
from ecco_core import circuits, layers

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


@pytest.fixture(scope="module")
def ioi(lm):
    return ec.circuits(lm, IOI, "Mary", "John")


def test_parts_sum_to_the_real_logit_in_every_causal_family(tiny):
    assert tiny.spec.norm in ec.models.NORM_KINDS
    if not tiny.is_causal:
        with pytest.raises(ValueError, match="circuits need a causal model"):
            ec.circuits(tiny, "The keys to the [MASK]", "cabinet")
        return
    answer, foil = extremes(tiny, TEXT)
    for result, real in [
        (ec.circuits(tiny, TEXT, answer, foil), real_metric(tiny, TEXT, answer, foil)),
        (ec.circuits(tiny, TEXT, answer), real_metric(tiny, TEXT, answer)),
    ]:
        assert abs(result.total - real) <= TOLERANCE * abs(real)
        assert abs(result.to_frame()["value"].sum() - real) <= TOLERANCE * abs(real)
        # Every head's part, split by source token, adds back up to the head (GQA: query heads share values).
        assert_sources_sum_to_heads(result)
        assert result.heads.shape == (tiny.n_layers, tiny.n_heads)
        assert result.head_sources.shape == (tiny.n_layers, tiny.n_heads, len(tiny.tokenizer(TEXT)["input_ids"]))


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
