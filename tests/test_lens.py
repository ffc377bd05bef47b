"""Layer predictions (logit lens): invariants on the real causal default, structure on every family."""

import dataclasses

import numpy as np
import pytest
import torch

import ecco_core as ec
from ecco_core import plots
from ecco_core.tokens import encode_prompt
from families import TINY_N_LAYERS, tiny_lm


@pytest.fixture(scope="module")
def generated(lm):
    cap = ec.capture(lm, "The capital of France is", max_new_tokens=6)
    return cap, ec.rankings(lm, cap)


# float32 through 30 blocks: the lens's head runs on chunks of positions, so its matmuls are blocked
# differently from the model's own and agree to float32 precision, not bitwise (seen: 2e-6 at p=0.19).
FLOAT32 = {"rtol": 2e-5, "atol": 1e-6}


def _model_logits(lm, token_ids):
    with torch.inference_mode():
        return lm.model(input_ids=torch.as_tensor(np.asarray(token_ids)[None])).logits[0].double()


def test_greedy_generation_ranks_every_generated_token_first_at_the_last_layer(lm, generated):
    cap, result = generated
    assert result.kind == "generated"
    assert result.ranks.shape == (lm.n_layers, cap.n_generated)
    assert (result.ranks >= 1).all()
    assert (result.ranks[-1] == 1).all()
    assert list(result.target_ids) == list(cap.token_ids[cap.n_input :])
    assert list(result.positions) == list(range(cap.n_input - 1, cap.n_tokens - 1))
    assert result.max_abs_diff_vs_model < 1e-4


def test_last_layer_probabilities_are_the_softmax_of_the_model_logits(lm, generated):
    cap, result = generated
    probs = torch.softmax(_model_logits(lm, cap.token_ids), -1)[result.positions]
    expected = probs[torch.arange(len(result.positions)), torch.as_tensor(result.target_ids)]
    np.testing.assert_allclose(result.probs[-1], expected.numpy(), **FLOAT32)
    top = probs.topk(result.k, -1)
    np.testing.assert_array_equal(result.top_ids[-1], top.indices.numpy())
    np.testing.assert_allclose(result.top_probs[-1], top.values.numpy(), **FLOAT32)


def test_an_intermediate_layer_matches_norm_and_head_on_the_tests_own_hook(lm, generated):
    cap, result = generated
    layer = 12
    seen = []
    handle = lm.model.model.layers[layer].register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        with torch.inference_mode():
            lm.model(input_ids=torch.as_tensor(cap.token_ids[None]))
    finally:
        handle.remove()
    block_output = seen[0][0] if isinstance(seen[0], tuple) else seen[0]
    with torch.inference_mode():
        logits = lm.model.lm_head(lm.model.model.norm(block_output[0]))[result.positions]
    order = torch.argsort(logits, dim=-1, descending=True)
    expected = (order == torch.as_tensor(result.target_ids)[:, None]).float().argmax(-1) + 1
    np.testing.assert_array_equal(result.ranks[layer], expected.numpy())


def test_parity_is_measured_not_assumed(lm, generated):
    cap, result = generated
    noise = np.random.default_rng(0).normal(0, 0.5, cap.hidden_states.shape).astype(np.float32)
    drifted = dataclasses.replace(cap, hidden_states=cap.hidden_states + noise)
    assert ec.rankings(lm, drifted).max_abs_diff_vs_model > 100 * max(result.max_abs_diff_vs_model, 1e-6)


def test_chunking_does_not_change_the_result(lm, generated):
    cap, result = generated
    seven_rows = 7 * 4 * lm.config.vocab_size  # chunks that straddle layers (6 columns per layer)
    chunked = ec.rankings(lm, cap, max_chunk_bytes=seven_rows)
    # A matmul over fewer rows may sum in another float32 order: equal up to rounding, near-ties may swap.
    assert np.abs(chunked.ranks - result.ranks).max() <= 1
    np.testing.assert_allclose(chunked.probs, result.probs, rtol=1e-4, atol=1e-9)
    np.testing.assert_array_equal(chunked.top_ids[..., 0], result.top_ids[..., 0])


def test_to_frame_has_one_row_per_layer_and_token(lm, generated):
    cap, result = generated
    frame = result.to_frame()
    assert len(frame) == lm.n_layers * cap.n_generated
    last = frame[frame["layer"] == f"block {lm.n_layers - 1}"]
    assert (last["block"] == lm.n_layers - 1).all()
    assert (last["rank"] == 1).all()
    assert list(last["token"]) == list(cap.tokens[cap.n_input :])
    assert all(len(tokens) == result.k for tokens in frame["top_tokens"])


def test_a_prompt_without_generation_ranks_each_next_input_token(lm):
    cap = ec.capture(lm, "The keys to the cabinet")
    result = ec.rankings(lm, cap, k=3)
    assert result.kind == "next input token"
    assert result.ranks.shape == (lm.n_layers, cap.n_tokens - 1)
    assert list(result.target_ids) == list(cap.token_ids[1:])
    assert list(result.target_positions) == list(range(1, cap.n_tokens))
    assert result.top_ids.shape == (lm.n_layers, cap.n_tokens - 1, 3)


def test_watch_ranks_candidates_after_the_text(lm):
    text = "The keys to the cabinet"
    result = ec.watch(lm, text, ["is", "are"])
    assert result.kind == "candidate"
    assert result.ranks.shape == (lm.n_layers, 2)
    assert result.targets == (" is", " are")
    assert result.candidates == ("is", "are")
    assert not result.first_token_only.any() and result.notes == ()
    ids = encode_prompt(lm, text)
    probs = torch.softmax(_model_logits(lm, ids)[-1], -1)
    np.testing.assert_allclose(result.probs[-1], probs[result.target_ids].numpy(), **FLOAT32)
    expected_final_ranks = [int((probs > probs[i]).sum()) + 1 for i in result.target_ids]
    assert list(result.ranks[-1]) == expected_final_ranks
    assert result.max_abs_diff_vs_model < 1e-4


def test_watch_uses_the_first_token_of_a_split_word_and_says_so(lm):
    result = ec.watch(lm, "The keys to the cabinet", ["cabinetry", " are", 359])
    assert list(result.first_token_only) == [True, False, False]
    assert result.targets[0] == " cabinet"
    assert result.target_ids[1] == result.target_ids[2] == 359  # a token id is taken as is
    assert result.candidates[2] == " are"  # and labelled by its text, not its number
    assert len(result.notes) == 1 and "'cabinetry' is 2 tokens" in result.notes[0]


@pytest.mark.parametrize(
    "candidates, error, message",
    [
        ([], ValueError, r"candidates must be a non-empty list .*; got \[\]"),
        (["is", "  "], ValueError, "each candidate must be a word .*; got '  '"),
        ([10**9], ValueError, "each candidate token id must be in the vocabulary, 0 to 49151; got 1000000000"),
        ("is", TypeError, "candidates must be a non-empty list"),
        ([1.5], TypeError, "each candidate must be a word .*; got 1.5"),
    ],
)
def test_watch_rejects_bad_candidates(lm, candidates, error, message):
    with pytest.raises(error, match=message):
        ec.watch(lm, "The keys to the cabinet", candidates)


def test_watch_rejects_text_that_fills_the_context(lm):
    with pytest.raises(ValueError, match="fills the model's context of 8192"):
        ec.watch(lm, " the" * lm.context_length, ["is"])
    with pytest.raises(ValueError, match="empty or whitespace"):
        ec.watch(lm, "  ", ["is"])


def test_suggestions_are_the_top_k_of_any_layer(lm):
    text = "The keys to the cabinet"
    result = ec.suggest_candidates(lm, text, k=3, max_candidates=None)
    suggestions = result.to_frame()  # a frozen result, as every other view's
    assert list(suggestions.columns) == [
        "token", "token_id", "best_rank", "best_layer", "layers_in_top_k", "final_rank", "final_probability",
    ]
    assert result.tokens == tuple(suggestions["token"]) and len(result) == len(suggestions)
    layers = ec.watch(lm, text, ["is"], k=3)
    union = set(layers.top_ids[:, 0, :].ravel().tolist()) - set(lm.tokenizer.all_special_ids)
    assert set(suggestions["token_id"]) == union
    assert suggestions["token_id"].is_unique
    assert (suggestions["best_rank"] <= 3).all()
    assert (suggestions["final_rank"] > 3).any(), "intermediate layers' favourites are included"
    assert suggestions["best_rank"].is_monotonic_increasing
    assert len(ec.suggest_candidates(lm, text, k=3)) == min(12, len(union))
    # every suggestion can be watched by its id
    watched = ec.watch(lm, text, suggestions["token_id"].tolist())
    np.testing.assert_array_equal(watched.ranks[-1], suggestions["final_rank"])


def test_an_encoder_without_mlm_head_says_so(encoder):
    cap = ec.capture(encoder, "The keys to the cabinet [MASK] on the table.")
    with pytest.raises(ValueError, match="no language-modelling head"):
        ec.rankings(encoder, cap)
    with pytest.raises(ValueError, match="no MLM head"):
        ec.watch(encoder, "The keys to the cabinet [MASK] on the table.", ["is", "are"])


def test_every_family_ranks_watches_and_suggests(tiny):
    text = "The keys to the cabinet [MASK] on the table." if not tiny.is_causal else "The keys to the cabinet"
    if tiny.is_causal:
        cap = ec.capture(tiny, text, max_new_tokens=3, stop_at_eos=False)
        expected_kind, n_columns = "generated", 3
    else:
        cap = ec.capture(tiny, text)
        expected_kind, n_columns = "masked", 1
    result = ec.rankings(tiny, cap, k=4)
    assert result.kind == expected_kind
    assert result.ranks.shape == (TINY_N_LAYERS, n_columns)
    assert result.top_tokens and len(result.top_tokens[0][0]) == 4
    assert result.max_abs_diff_vs_model < 1e-4
    if not tiny.is_causal:
        assert (result.ranks[-1] == 1).all()  # the target is the model's own prediction at the mask
    watched = ec.watch(tiny, text, ["is", "are"])
    assert watched.ranks.shape == (TINY_N_LAYERS, 2)
    assert watched.max_abs_diff_vs_model < 1e-4
    watched_position = cap.n_input - 1 if tiny.is_causal else result.positions[0]
    assert list(watched.positions) == [watched_position] * 2
    assert len(ec.suggest_candidates(tiny, text, k=2)) >= 1


def test_a_masked_model_needs_exactly_one_mask_and_known_words(lm, encoder):
    bert = tiny_lm("bert", causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)
    with pytest.raises(ValueError, match=r"exactly one \[MASK\].*found 0"):
        ec.watch(bert, "The keys to the cabinet", ["is"])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ec.watch(bert, "The keys [MASK] here.", ["\u2603"])
    without_mask = ec.rankings(bert, ec.capture(bert, "The keys to the cabinet"))
    assert without_mask.kind == "input token"
    assert without_mask.ranks.shape[1] == len(ec.capture(bert, "The keys to the cabinet").tokens) - 2


def test_figures_escape_tokens_and_show_ranks(generated):
    _, result = generated
    figure = plots.rankings_figure(result)
    heat = figure.data[0]
    assert heat.text.shape == result.ranks.shape and heat.text[-1][0] == "1"
    np.testing.assert_allclose(heat.z, np.log10(result.ranks))
    cells = figure.data[1]  # the layer the pointer meets carries the hover text, cell by cell, row-major
    assert cells.hovertext[0].startswith("block 0: ") and "block 0's top 5" in cells.hovertext[0]
    assert len(cells.hovertext) == result.ranks.size
    assert list(figure.data[0].y) == [f"block {block}" for block in range(result.n_layers)]
    lines = plots.layer_probability_figure(result, [0])
    np.testing.assert_allclose(lines.data[0].y, result.probs[:, 0])
    last = result.n_columns - 1
    with pytest.raises(ValueError, match=rf"columns must be .* from 0 to {last}, at least one; got \[{last + 1}\]"):
        plots.layer_probability_figure(result, [result.n_columns])


def test_token_text_reaches_the_figures_escaped(lm):
    result = ec.watch(lm, "Write the tag", ["<b>"])
    figure = plots.rankings_figure(result)
    assert list(figure.data[0].x) == ["&lt;b&gt; (1st token)"]  # "<", "b", ">": three tokens
    assert "<b>" not in "".join(figure.data[1].hovertext)
    assert "<b>" not in plots.layer_probability_figure(result, [0]).data[0].name


def test_watch_says_when_candidates_share_their_first_token(lm):
    """#31 item 3: SmolLM2 continues a year as ' ' + digits, so '1' and '2' are both ranked by ' ': the same ranks,
    which must not pass for an answer. A word that is its own single token beside its id is not such a case."""
    result = ec.watch(lm, "William Shakespeare was born in the year", ["1", "2", "is"])
    assert result.target_ids[0] == result.target_ids[1]
    np.testing.assert_array_equal(result.ranks[:, 0], result.ranks[:, 1])
    (shared,) = [note for note in result.notes if "share their first token" in note]
    # #31 item 16: tokens written as the views write them, not as Python's reprs ([' ', '1'] read as a blank).
    assert shared.startswith("'1', '2' share their first token '␣'") and "'is'" not in shared
    assert "'1' is 2 tokens ['␣', '1']; its first token is ranked" in result.notes


def test_the_probability_axis_reads_as_probabilities_and_stops_at_1(lm):
    """Ticks at powers of ten written as numbers ("0.01", "10⁻⁵"), not Plotly's "100µ", and no "2" above 1."""
    result = ec.watch(lm, "The keys to the cabinet", ["is", "zebra"])
    axis = plots.layer_probability_figure(result, [0, 1]).layout.yaxis
    lowest = result.probs[result.probs > 0].min()
    assert lowest < 1e-4  # the case that had SI prefixes
    assert axis.type == "log" and axis.range[0] <= np.log10(lowest) and 0 < axis.range[1] < np.log10(2)
    assert axis.tickvals[0] == 1 and all(a > b for a, b in zip(axis.tickvals, axis.tickvals[1:]))
    assert axis.tickvals[-1] <= 10 * lowest
    plain = {"⁻": "-", **{chr(code): str(digit) for digit, code in enumerate([8304, 185, 178, 179, *range(8308, 8314)])}}
    for value, text in zip(axis.tickvals, axis.ticktext):
        shown = float(text) if "⁻" not in text else 10.0 ** int("".join(plain[c] for c in text[2:]))
        assert shown == pytest.approx(value), text
