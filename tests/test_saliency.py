"""Input saliency: batched attributions against a token-by-token float64 recomputation, every family."""

import copy
import importlib
import json
import re

import numpy as np
import pytest
import torch

import ecco_core as ec
from browser import ARTIFACTS, expected_saliency_shading, hover_saliency_token, saliency_shading
from ecco_core import plots, readouts

# ``ec.saliency`` is the module (called as its function); it holds the helpers checked directly here.
saliency_module = importlib.import_module("ecco_core.saliency")

PROMPT = "William Shakespeare was born in the year"


@pytest.fixture(scope="module")
def shakespeare(lm):
    return ec.capture(lm, PROMPT, max_new_tokens=6)


@pytest.fixture(scope="module")
def tiny_gpt2(lm, encoder):
    from families import tiny_lm

    return tiny_lm("gpt2", causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)


def _float64(lm):
    return ec.wrap(copy.deepcopy(lm.model).double(), lm.tokenizer, name=lm.name)


def _token_by_token(lm, cap, method="grad_x_input", target="prob", foil_id=None, positions=None, signed=False):
    """What ecco does, one forward per prefix and one backward per token, but all in float64.

    ``signed``: the dot product of gradient and embedding per token instead of
    its L2 norm, divided by the row's sum of magnitudes (Yin & Neubig's
    contrastive Gradient x Input).

    (A float32 model recomputed prefix by prefix differs from itself run on the full sequence by
    about 1e-5: summation order. Against float64 the batched float32 result is within 3e-6.)
    """
    lm = _float64(lm)
    rows = []
    for position in range(cap.n_input, cap.n_tokens) if positions is None else positions:
        ids = torch.tensor(cap.token_ids[None, :position])
        embeds = lm.embeddings(ids).detach().requires_grad_(True)
        logits = lm.model(inputs_embeds=embeds).logits[0, -1].double()
        scores = {"prob": torch.softmax, "logprob": torch.log_softmax}.get(target, lambda x, dim: x)(logits, dim=-1)
        value = scores[int(cap.token_ids[position])] - (scores[foil_id] if foil_id is not None else 0)
        (gradient,) = torch.autograd.grad(value, embeds)
        per_dimension = gradient[0] if method == "gradient" else gradient[0] * embeds[0]
        if signed:
            per_token = per_dimension.double().sum(dim=-1).detach().numpy()
        else:
            per_token = torch.linalg.vector_norm(per_dimension.double(), dim=-1).detach().numpy()
        row = np.zeros(cap.n_tokens)
        row[:position] = per_token / np.abs(per_token).sum()
        rows.append(row)
    return np.array(rows)


# ------------------------------------------------------------ correctness
def test_batched_matches_token_by_token_on_the_causal_default(lm):
    # The benchmark's case. With no BOS, the first token is an attention sink of huge norm whose
    # float32 backward is the least precise entry; it stays within 1e-5 of float64 here.
    cap = ec.capture(lm, PROMPT, max_new_tokens=20)
    batched = ec.saliency(lm, cap)
    checked = np.arange(cap.n_input, cap.n_tokens, 4)  # a float64 pass per prefix is slow: every 4th token
    reference = _token_by_token(lm, cap, positions=checked)
    assert np.abs(batched.scores[checked - cap.n_input] - reference).max() < 3e-5


@pytest.mark.parametrize("target", ["prob", "logit", "logprob"])
@pytest.mark.parametrize("method", ["grad_x_input", "gradient"])
def test_batched_matches_token_by_token_on_gpt2(tiny_gpt2, method, target):
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=5)
    batched = ec.saliency(tiny_gpt2, cap, method=method, target=target)
    assert np.abs(batched.scores - _token_by_token(tiny_gpt2, cap, method, target)).max() < 1e-5


@pytest.mark.parametrize("method", list(ec.SALIENCY_METHODS))
def test_a_tiny_memory_budget_gives_the_same_scores(tiny_gpt2, method):
    """1 byte: one explained token, one path point and one erased copy per chunk, one block at a time."""
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=5)
    whole = ec.saliency(tiny_gpt2, cap, method=method, steps=3)
    chunked = ec.saliency(tiny_gpt2, cap, method=method, steps=3, max_chunk_bytes=1)
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-6)
    np.testing.assert_allclose(chunked.target_values, whole.target_values, rtol=1e-6, atol=1e-12)


def test_a_tiny_memory_budget_keeps_the_causal_default_exact(lm, shakespeare):
    """Chunked one token at a time, the scores stay within float32 summation order of the whole batch
    (at the attention sink: 2.5e-6 on one CPU, 1.15e-5 on an AMD EPYC whose BLAS blocks sums differently)
    and within 3e-5 of the float64 token-by-token recomputation (1.3e-5 seen there)."""
    whole = ec.saliency(lm, shakespeare)
    chunked = ec.saliency(lm, shakespeare, max_chunk_bytes=1)
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=2e-5)
    checked = np.arange(shakespeare.n_input, shakespeare.n_tokens, 3)
    reference = _token_by_token(lm, shakespeare, positions=checked)
    assert np.abs(chunked.scores[checked - shakespeare.n_input] - reference).max() < 3e-5


def test_the_backward_holds_one_tensor_of_every_targets_cotangents(tiny_gpt2):
    """#31 item 18: pulling every explained token's gradient back through the blocks held three tensors of all of
    them at once (the cotangents, those pulled back, the gradients summed so far; 85 MB each at 64 tokens
    explained in 576 on the causal default): now the pull-back writes over the cotangents and the sum is made
    after it. The scores are the same bit for bit (checked against the tree before)."""
    import gc

    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=5)
    every = cap.n_generated * (cap.n_tokens - 1) * tiny_gpt2.d_model
    alive = []

    def count(fraction, message):  # during the first pull-back only: a scan of every object is slow
        if message.startswith("Gradients") and not alive:
            alive.append(sum(type(o) is torch.Tensor and o.numel() >= every and o.shape[-1] == tiny_gpt2.d_model
                             for o in gc.get_objects()))

    ec.saliency(tiny_gpt2, cap, progress=count)
    assert alive == [1]


def test_rows_sum_to_one_and_only_earlier_tokens_count(lm, shakespeare):
    result = ec.saliency(lm, shakespeare)
    assert result.scores.shape == (shakespeare.n_generated, shakespeare.n_tokens)
    np.testing.assert_allclose(result.scores.sum(axis=1), 1.0, atol=1e-12)
    later = np.arange(shakespeare.n_tokens)[None, :] >= result.positions[:, None]
    assert not result.scores[later].any() and not result.raw[later].any()
    assert (result.scores[~later] > 0).all()
    assert result.tokens == shakespeare.tokens
    assert result.explained_tokens == shakespeare.tokens[shakespeare.n_input:]
    # The default target is the generated token's probability, the model's own top choice (greedy).
    # Both float32, summed in another order (1.6e-5 apart seen on an AMD EPYC).
    np.testing.assert_allclose(result.target_values, shakespeare.top_probs[shakespeare.n_input - 1 : -1, 0], atol=5e-5)


def test_the_head_read_from_the_base_model_gives_the_models_logits(tiny):
    """Saliency reads logits as base model + head; that must be the model's own output in every family."""
    ids = torch.tensor([tiny.tokenizer("The keys to the cabinet")["input_ids"]])
    with torch.inference_mode():
        expected = tiny.model(input_ids=ids).logits
        hidden = tiny.model.base_model(inputs_embeds=tiny.embeddings(ids)).last_hidden_state
        torch.testing.assert_close(tiny.apply_head(hidden), expected)


@pytest.mark.parametrize("method", list(ec.SALIENCY_METHODS))
def test_every_method_on_every_family(tiny, method):
    if tiny.is_causal:
        cap = ec.capture(tiny, "The keys to the cabinet", max_new_tokens=3)
        expected_positions = np.arange(cap.n_input, cap.n_tokens)
    else:
        cap = ec.capture(tiny, "The keys to the [MASK] are on the table.")
        expected_positions = np.flatnonzero(cap.token_ids == tiny.tokenizer.mask_token_id)
    result = ec.saliency(tiny, cap, method=method, steps=4)
    np.testing.assert_array_equal(result.positions, expected_positions)
    assert result.scores.shape == (len(expected_positions), cap.n_tokens)
    assert np.isfinite(result.raw).all()
    np.testing.assert_allclose(result.scores.sum(axis=1), 1.0, atol=1e-12)
    if not tiny.is_causal:  # a masked model reads both sides of the mask
        assert (result.scores[:, expected_positions[0] + 1 :] > 0).any()
        np.testing.assert_array_equal(result.explained_ids, cap.top_ids[expected_positions, 0])


def test_target_values_are_one_per_explained_token_whatever_the_method(tiny_gpt2):
    """The attributed quantity does not depend on the method: one float per explained token, the same for all."""
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    values = {method: ec.saliency(tiny_gpt2, cap, method=method, target="logprob", steps=4).target_values
              for method in ec.SALIENCY_METHODS}
    for method, value in values.items():
        assert value.shape == (cap.n_generated,), method
        np.testing.assert_allclose(value, values["grad_x_input"], atol=1e-5, err_msg=method)


def test_integrated_gradients_add_up_to_the_change_of_the_target(tiny_gpt2):
    """Completeness: the signed attributions of a row add up to target(input) - target(zero embeddings)."""
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=2)
    result = ec.saliency(tiny_gpt2, cap, method="integrated_gradients", target="logit", steps=256)
    reads = np.arange(cap.n_input, cap.n_tokens) - 1
    target_of = readouts.reader("logit", torch.as_tensor(cap.token_ids[cap.n_input :]))
    embeddings = tiny_gpt2.embeddings(torch.tensor(cap.token_ids[None])).detach()
    change = (
        saliency_module.target_values(tiny_gpt2, embeddings, reads, target_of)
        - saliency_module.target_values(tiny_gpt2, torch.zeros_like(embeddings), reads, target_of)
    )[0]
    np.testing.assert_allclose(result.signed.sum(axis=1), change.numpy(), atol=2e-3, rtol=2e-3)


def test_integrated_gradients_go_along_the_path_in_chunks_within_the_budget(tiny_gpt2):
    """Memory stays bounded whatever ``steps``: no pass sees more path points than the budget holds."""
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=2)
    batches = []
    handle = tiny_gpt2.blocks[0].register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        chunked = ec.saliency(tiny_gpt2, cap, method="integrated_gradients", steps=1000, max_chunk_bytes=200_000)
    finally:
        handle.remove()
    whole = ec.saliency(tiny_gpt2, cap, method="integrated_gradients", steps=1000, max_chunk_bytes=2**40)
    assert 1 < max(batches) < 100  # tiny GPT-2, 6 positions read: about 18 KB a point, 11 points a chunk
    np.testing.assert_allclose(chunked.scores, whole.scores, atol=1e-6)


def test_erasure_is_the_drop_when_a_token_is_zeroed(tiny_gpt2):
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=2)
    result = ec.saliency(tiny_gpt2, cap, method="erasure", target="logprob")
    erased_position = 2
    embeddings = tiny_gpt2.embeddings(torch.tensor(cap.token_ids[None])).detach().clone()
    embeddings[0, erased_position] = 0
    with torch.inference_mode():
        logits = tiny_gpt2.model(inputs_embeds=embeddings).logits[0, cap.n_input - 1].double()
    erased = torch.log_softmax(logits, -1)[int(cap.token_ids[cap.n_input])].item()
    assert result.raw[0, erased_position] == pytest.approx(result.target_values[0] - erased, abs=1e-5)


# -------------------------------------------------------------- progress
@pytest.mark.parametrize("method", list(ec.SALIENCY_METHODS))
def test_progress_rises_to_one_and_changes_nothing(tiny_gpt2, method):
    """Chunks of path points, segments of blocks, batches of erased copies (a 1-byte budget: one of each at a time):
    progress after each, rising to 1, and the very same scores without it."""
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    calls = []
    options = dict(method=method, steps=30, max_chunk_bytes=1)
    followed = ec.saliency(tiny_gpt2, cap, progress=lambda fraction, message: calls.append((fraction, message)),
                           **options)
    quiet = ec.saliency(tiny_gpt2, cap, **options)
    fractions = [fraction for fraction, _ in calls]
    assert len(calls) >= 2 and all(0 < f for f in fractions) and fractions[-1] == 1.0, calls
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions), fractions
    assert all(isinstance(message, str) and message for _, message in calls)
    # One target at a time (the 1-byte budget): "target 2 of 3", not "targets 2-2 of 3".
    assert method == "erasure" or any(message.startswith("Gradients of target 2 of 3 ") for _, message in calls)
    assert not any("targets 1-1 " in message for _, message in calls)
    # One path point at a time too: "path point 1 of 30", not "path points 1-1 of 30" (#31).
    assert not ec.SALIENCY_METHODS[method].uses_steps or any(
        message.endswith("path point 1 of 30") for _, message in calls)
    assert not any("points 1-1 " in message for _, message in calls)
    for name in ("scores", "raw", "signed", "target_values"):
        np.testing.assert_array_equal(getattr(followed, name), getattr(quiet, name), err_msg=name)


def test_progress_counts_the_planned_steps_of_integrated_gradients(tiny_gpt2):
    """``backward.plan`` (what the estimate reads) is the work done: one progress step per chunk's forward pass
    and per group of targets pulled back through each planned segment."""
    from ecco_core import backward

    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    calls = []
    ec.saliency(tiny_gpt2, cap, "integrated_gradients", steps=30, max_chunk_bytes=150_000,
                progress=lambda fraction, message: calls.append(message))
    chunks = backward.plan(tiny_gpt2, cap.n_tokens - 1, 30, cap.n_generated, 150_000)
    assert len(chunks) > 1 and any(len(chunk.segments) > 1 for chunk in chunks)
    groups = [-(-cap.n_generated // chunk.targets_per_backward) for chunk in chunks]
    assert len(calls) == sum(1 + len(chunk.segments) * n for chunk, n in zip(chunks, groups))
    assert calls[0].startswith("Forward pass, path points 1-")
    assert calls[-1].startswith("Gradients of targets 1-") and calls[-1].endswith("path points 29-30 of 30")


def test_a_chunks_forward_pass_reports_while_it_runs(tiny_gpt2, monkeypatch):
    """#31 item 6: a chunk of integrated gradients runs its path points' forward pass at once, one report after it
    (bench/estimates.py: 15 s without a report for 8 points of 60 tokens at load 20). It runs under the heartbeat
    (here beating at every call), reporting the fraction done before it."""
    from ecco_core import _heartbeat, backward

    monkeypatch.setattr(backward, "heartbeat", lambda progress, fraction, message: _heartbeat.heartbeat(
        progress, fraction, message, every_s=0.0))
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=2)
    calls = []
    ec.saliency(tiny_gpt2, cap, "integrated_gradients", steps=4, progress=lambda *call: calls.append(call))
    assert calls[0] == (0.0, "Forward pass, path points 1-4 of 4") and calls.count(calls[0]) > 1, calls[:3]
    assert calls[-1][0] == 1.0


def _token_blocks_per_report(lm) -> float:
    """Tokens x blocks of forward work in one progress report (:data:`ecco_core.backward.REPORT_MULTIPLY_ADDS`)."""
    from ecco_core import backward

    return backward.REPORT_MULTIPLY_ADDS / (sum(p.numel() for p in lm.blocks.parameters()) / lm.n_layers)


def test_batches_beat_while_they_run_where_heartbeats_are_asked(tiny_gpt2, monkeypatch):
    """#31 item 6: a batch of erased copies went 17.8 s between two reports under load (so did patched and ablated
    runs). Within ``ec.heartbeats()`` (the dashboard's status box, the bench) a batch reports every second while it
    runs; a caller that counts the steps (outside it) sees the steps alone, as before."""
    from ecco_core import _heartbeat

    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    monkeypatch.setattr(_heartbeat, "EVERY_S", 0.0)  # every call of the work is a second late
    steps, beats = [], []
    ec.saliency(tiny_gpt2, cap, "erasure", max_chunk_bytes=1, progress=lambda *call: steps.append(call))
    with ec.heartbeats():
        ec.saliency(tiny_gpt2, cap, "erasure", max_chunk_bytes=1, progress=lambda *call: beats.append(call))
    assert steps and all(message.startswith("Erased") for _, message in steps)
    assert [call for call in beats if call[1].startswith("Erased")] == steps
    assert {fraction for fraction, message in beats if message.startswith("Erasing")} == {0.0, *(
        fraction for fraction, _ in steps[:-1])}  # each batch beats at the fraction it started from


@pytest.mark.parametrize("method", ["grad_x_input", "erasure"])
def test_progress_comes_at_regular_steps_of_work_on_the_real_model(lm, method):
    """#31: gradient and erasure saliency reported nothing until done (the page sat on "Starting…"). On the
    causal default, a report comes after every report's worth of work, evenly, not once at the end."""
    cap = ec.capture(lm, "The keys to the cabinet", max_new_tokens=14)
    calls = []
    ec.saliency(lm, cap, method, progress=lambda fraction, message: calls.append(fraction))
    length = cap.n_tokens - 1
    # forward work in tokens x blocks: a forward and two per explained token (its backward), or every erased copy
    work = (1 + 2 * cap.n_generated) * length if method == "grad_x_input" else cap.n_tokens * cap.n_tokens
    assert len(calls) >= max(3, work * lm.n_layers / _token_blocks_per_report(lm)), calls
    steps = np.diff([0.0, *calls])
    assert calls[-1] == 1.0 and steps.max() <= 3 * np.median(steps), calls  # even steps: none holds the work


class _Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["integrated_gradients", "erasure"])
def test_a_progress_callback_that_raises_stops_the_work(tiny_gpt2, method):
    """What the page's Stop does: the callback raises at the next update and nothing more is computed."""
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    calls = []

    def stop_at_first(fraction, message):
        calls.append(fraction)
        raise _Stop

    with pytest.raises(_Stop):
        ec.saliency(tiny_gpt2, cap, method, steps=30, max_chunk_bytes=150_000, progress=stop_at_first)
    assert len(calls) == 1 and calls[0] < 1


# ------------------------------------------------------- answers, contrast
def test_a_given_answer_is_explained_token_by_token(lm):
    cap = ec.capture(lm, PROMPT, answer=" 1564")
    result = ec.saliency(lm, cap, target="logprob")
    assert "".join(result.explained_tokens) == " 1564"
    assert result.scores.shape == (cap.n_generated, cap.n_tokens)
    assert (result.target_values < 0).all()  # log-probabilities of a continuation the model did not pick itself
    np.testing.assert_allclose(result.scores.sum(axis=1), 1.0, atol=1e-12)


def test_contrast_explains_the_logit_difference(lm):
    cap = ec.capture(lm, "The keys to the cabinet", answer=" are")
    result = ec.saliency(lm, cap, target="logit", contrast_with="is")
    assert result.contrast_with == " is"
    with torch.inference_mode():
        logits = lm.model(input_ids=torch.tensor(cap.token_ids[None])).logits[0, cap.n_input - 1].double()
    are, is_ = (lm.tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in (" are", " is"))
    assert result.target_values[0] == pytest.approx((logits[are] - logits[is_]).item(), abs=1e-4)
    # The log-probability difference is the same quantity, so the same attribution.
    same = ec.saliency(lm, cap, target="logprob", contrast_with="is")
    np.testing.assert_allclose(same.scores, result.scores, atol=1e-5)
    assert not np.allclose(ec.saliency(lm, cap, target="logit").scores, result.scores, atol=1e-3)


def test_a_punctuation_foil_is_the_mark_itself(lm):
    cap = ec.capture(lm, "The keys to the cabinet", answer=".")
    result = ec.saliency(lm, cap, target="logit", contrast_with=",")
    assert result.contrast_with == ","  # not " ,", a different token of the byte-BPE vocabulary


def test_contrast_matches_token_by_token(tiny_gpt2):
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    result = ec.saliency(tiny_gpt2, cap, target="logit", contrast_with="are")
    foil = tiny_gpt2.tokenizer(" are", add_special_tokens=False)["input_ids"][0]
    reference = _token_by_token(tiny_gpt2, cap, target="logit", foil_id=foil)
    assert np.abs(result.scores - reference).max() < 3e-5
    # Signed (Yin & Neubig's contrastive Gradient x Input): + for the token, - for the foil.
    signed = _token_by_token(tiny_gpt2, cap, target="logit", foil_id=foil, signed=True)
    assert np.abs(result.signed_shares() - signed).max() < 1e-5
    assert (signed < 0).any() and (signed > 0).any()  # both directions occur: the scale must diverge


def test_signed_attributions_have_a_direction_where_the_method_has_one(tiny_gpt2):
    cap = ec.capture(tiny_gpt2, "The keys to the cabinet", max_new_tokens=3)
    for method in ("grad_x_input", "integrated_gradients", "erasure"):
        result = ec.saliency(tiny_gpt2, cap, method=method, contrast_with="are", steps=4)
        shares = result.signed_shares()
        np.testing.assert_allclose(np.abs(shares).sum(axis=1), 1.0, atol=1e-12, err_msg=method)
        assert not shares[~result.attributed_mask()].any(), method  # nothing after the explained token
        assert "signed" in result.to_frame(), method
        if method == "erasure":  # the drop is signed already
            np.testing.assert_array_equal(result.signed, result.raw)
    unsigned = ec.saliency(tiny_gpt2, cap, method="gradient")
    assert unsigned.signed is None and "signed" not in unsigned.to_frame()
    with pytest.raises(ValueError, match=r"method must be a method with a direction .*; got 'gradient'"):
        unsigned.signed_shares()


# ---------------------------------------------------------------- tables
def test_to_frame_has_one_row_per_attributed_pair(lm, shakespeare):
    result = ec.saliency(lm, shakespeare)
    frame = result.to_frame()
    assert len(frame) == result.positions.sum()
    assert (frame["input_position"] < frame["output_position"]).all()
    np.testing.assert_allclose(frame.groupby("output_position")["score"].sum(), 1.0, atol=1e-12)
    assert set(frame["method"]) == {"grad_x_input"}
    np.testing.assert_array_equal(result.row(shakespeare.n_input), result.scores[0])


def test_the_quantity_writes_a_token_as_the_views_do(lm):
    """#31 item 16: the Saliency page's caption read "prob('\\n')" under a view that writes the token as ↵. The
    view's header quoted a token holding a quote as ''s' (#31, readability): quoted unambiguously, as "'s"."""
    cap = ec.capture(lm, "Romeo and Juliet was written by", answer=" William Shakespeare's.\n")
    result = ec.saliency(lm, cap, positions=[cap.n_tokens - 3, cap.n_tokens - 1])
    assert result.quantity(cap.n_tokens - 1).startswith("prob('↵') = ")
    assert result.quantity(cap.n_tokens - 3).startswith("prob(\"'s\") = ")
    data = json.loads(re.search(r'<script type="application/json">(.*?)</script>', result.to_html()).group(1))
    assert data["labels"][0].startswith(f"Explaining \"'s\" (position {cap.n_tokens - 3}): prob(\"'s\") = ")


def test_one_explained_tokens_detail_table_bars_and_quantity(lm, shakespeare):
    """What the page's Detail shows, built here: the tokens one explained token can see, in percent."""
    result = ec.saliency(lm, shakespeare, target="logit", contrast_with=".")
    position = int(result.positions[1])
    detail = result.detail_frame(position)
    assert list(detail.columns) == ["position", "token", "share", "signed", "raw"]
    assert detail["position"].tolist() == list(range(position))  # causal: the tokens before it
    assert detail["token"].tolist() == [plots.display_token(t, spaces=True) for t in shakespeare.tokens[:position]]
    np.testing.assert_allclose(detail["share"].sum(), 100.0)
    np.testing.assert_allclose(detail["signed"].abs().sum(), 100.0)
    np.testing.assert_allclose(detail["raw"], result.raw[1, :position])
    bars = plots.saliency_row_bars(result, position, signed=True).data[0]
    np.testing.assert_allclose(bars.x, detail["signed"])
    assert list(bars.y) == plots.axis_labels(shakespeare.tokens[:position])
    explained = result.explained_tokens[1]
    assert result.quantity(position) == (
        f"logit({explained!r}) - logit({result.contrast_with!r}) = {result.target_values[1]:.4g}"
    )
    assert "signed" not in ec.saliency(lm, shakespeare, method="gradient").detail_frame(position)
    with pytest.raises(ValueError, match=r"position must be an explained position, one of \[.*\]; got 0"):
        result.detail_frame(0)


def test_prompt_tokens_can_be_explained_from_their_prefix(lm, shakespeare):
    result = ec.saliency(lm, shakespeare, positions=[2, 3])
    assert result.explained_tokens == shakespeare.tokens[2:4]
    assert not result.scores[0, 2:].any()


# ---------------------------------------------------------------- errors
def test_bad_arguments_are_named(lm, encoder, shakespeare):
    with pytest.raises(ValueError, match=r"method must be one of .*'erasure'.*got 'lime'"):
        ec.saliency(lm, shakespeare, method="lime")
    with pytest.raises(ValueError, match=r"target must be one of .*'logprob'.*got 'loss'"):
        ec.saliency(lm, shakespeare, target="loss")
    with pytest.raises(ValueError, match="steps must be a whole number from 1 to 1000; got 0"):
        ec.saliency(lm, shakespeare, method="integrated_gradients", steps=0)
    with pytest.raises(ValueError, match=r"contrast_with 'Shakespearean' is \d tokens"):
        ec.saliency(lm, shakespeare, contrast_with="Shakespearean")
    with pytest.raises(ValueError, match=r"positions must be .* within \[1, 12\]"):
        ec.saliency(lm, shakespeare, positions=[13])
    with pytest.raises(ValueError, match="no generated tokens"):
        ec.saliency(lm, ec.capture(lm, PROMPT))
    encoded = ec.capture(encoder, "The keys to the cabinet")
    with pytest.raises(ValueError, match="no language-modelling head"):
        ec.saliency(encoder, encoded)
    with pytest.raises(ValueError, match="cap must be a capture made by this model, 'all-MiniLM-L6-v2'"):
        ec.saliency(encoder, shakespeare)


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta"])
def test_a_masked_model_needs_a_mask(model_type, lm, encoder):
    from families import tiny_lm

    masked = tiny_lm(model_type, causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)
    with pytest.raises(ValueError, match=r"no \[MASK\] token"):
        ec.saliency(masked, ec.capture(masked, "The keys to the cabinet"))


# ------------------------------------------------- the explorable (Figure 3)
def test_saliency_view_escapes_tokens_and_fetches_nothing(lm):
    cap = ec.capture(lm, "</script><b>x</b> &amp;\n", max_new_tokens=2)
    result = ec.saliency(lm, cap)
    html = result.to_html()
    assert html.startswith('<div id="ecco-saliency-') and result._repr_html_().startswith('<div id="ecco-saliency-')
    text = html[: html.index('<script type="application/json">')]
    shown = re.findall(r'class="ecco-token[^>]*>([^<]*)</span>', text)  # each token's span, in order
    assert shown == [plots.escape_token(token) for token in cap.tokens]
    assert "<b>" not in text and "\u21b5" in text and any("&lt;" in token for token in shown)
    data = html[html.index('<script type="application/json">'):]
    assert data.count("</script>") == 2  # the JSON block's and the view's own: the token's stays inert
    assert "http" not in html and "src=" not in html  # the script is inline, nothing is fetched
    assert plots.saliency_view_html(result, script=False) == plots.saliency_view_html(result, script=False)
    with pytest.raises(ValueError, match=r"position must be an explained position, one of \[.*\]; got 1"):
        result.to_html(1)


def test_a_masked_models_view_explains_its_masks_from_both_sides(lm, encoder):
    from families import tiny_lm

    masked = tiny_lm("bert", causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)
    cap = ec.capture(masked, "The keys to the [MASK] are on the table.")
    html = ec.saliency(masked, cap).to_html()
    data = json.loads(re.search(r'<script type="application/json">(.*?)</script>', html).group(1))
    masks = np.flatnonzero(cap.token_ids == masked.tokenizer.mask_token_id).tolist()
    assert not data["causal"] and data["positions"] == masks  # every token counts, on both sides of each mask
    assert re.findall(r'class="ecco-token ecco-explained" data-position="(\d+)"', html) == [str(p) for p in masks]


def test_saliency_renders_in_a_notebook_and_hovering_a_token_reshades_the_text(lm, shakespeare, browser):
    """Figure 3 in Chromium from the library's HTML alone: hover re-shades, leaving restores, a click pins."""
    result = ec.saliency(lm, shakespeare, target="logit", contrast_with="in")
    for signed in (False, True):
        tab = browser.new_page(viewport={"width": 1000, "height": 400})
        try:
            tab.set_content(f"<html><body>{result.to_html(signed=signed)}</body></html>")
            np.testing.assert_allclose(saliency_shading(tab), expected_saliency_shading(result, 0, signed=signed),
                                       atol=1 / 255)
            painted = []
            for row in (4, 1, 5):
                painted.append(round(hover_saliency_token(tab, int(result.positions[row]))["painted"], 1))
                np.testing.assert_allclose(saliency_shading(tab),
                                           expected_saliency_shading(result, row, signed=signed), atol=1 / 255)
            print(f"notebook view, signed={signed}: re-shaded and painted {painted} ms after the pointer event")
            assert sorted(painted)[1] < 100, painted  # the median hover (one alone may wait on a busy CPU)
            tab.mouse.move(1, 390)
            np.testing.assert_allclose(saliency_shading(tab), expected_saliency_shading(result, 0, signed=signed),
                                       atol=1 / 255)
            tab.locator(f'.ecco-explained[data-position="{result.positions[2]}"]').click()
            tab.mouse.move(1, 390)
            np.testing.assert_allclose(saliency_shading(tab), expected_saliency_shading(result, 2, signed=signed),
                                       atol=1 / 255)
            assert tab.locator(".ecco-saliency-label").inner_text().startswith(
                f"Explaining '{plots.display_token(result.explained_tokens[2])}' (position {result.positions[2]})")
            if signed:  # evidence both ways, on the diverging pair
                shading = np.delete(saliency_shading(tab), result.positions[2], axis=0)  # not the token itself
                assert {tuple(rgb) for rgb in shading[shading[:, 3] > 0, :3].astype(int)} == {
                    tuple(int(c) for c in plots.SIGNED_COLORS[side].split(",")) for side in ("for", "against")}
            tab.screenshot(path=str(ARTIFACTS / f"saliency_notebook{'_signed' if signed else ''}.png"))
        finally:
            tab.close()
