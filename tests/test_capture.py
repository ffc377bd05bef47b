"""capture(): shapes, meaning of each array, bad input, hooks, persistence."""

import dataclasses
import inspect
import pickle

import numpy as np
import pytest
import torch

import ecco_core as ec
from ecco_core.capture import DEFAULT_CHUNK_BYTES
from ecco_core.tokens import as_following_word
from families import TINY_D_FF, TINY_D_MODEL, TINY_N_LAYERS


@pytest.fixture(scope="module")
def cap(lm):
    return ec.capture(lm, "The keys to the cabinet", max_new_tokens=6)


def test_shapes_and_tokens(lm, cap):
    n = cap.n_tokens
    assert cap.n_input == 5 and cap.n_generated == 6
    assert cap.hidden_states.shape == (lm.n_layers + 1, n, lm.d_model)
    assert cap.ffn.shape == (lm.n_layers, n, lm.d_ff)
    assert cap.hidden_states.dtype == np.float32 and cap.ffn.dtype == np.float32
    assert cap.text.startswith("The keys to the cabinet")
    assert cap.top_ids.shape == (n, 10)
    assert np.all(np.diff(cap.top_probs, axis=1) <= 0)


def test_greedy_generation_follows_the_top_prediction(cap):
    # each generated token is the model's own top next-token prediction at the position before it
    for position in range(cap.n_input, cap.n_tokens):
        assert cap.token_ids[position] == cap.top_ids[position - 1, 0]


def test_arrays_are_what_they_say(lm, cap):
    ids = torch.tensor(cap.token_ids[None])
    seen = {}
    layer = 7
    handle = lm.blocks[layer].register_forward_hook(lambda m, a, out: seen.setdefault("block", out))
    handle2 = lm.blocks[layer].mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.setdefault("ffn", a[0]))
    try:
        with torch.no_grad():
            output = lm.model(input_ids=ids, output_hidden_states=True)
    finally:
        handle.remove()
        handle2.remove()
    block = seen["block"][0] if isinstance(seen["block"], tuple) else seen["block"]
    np.testing.assert_allclose(cap.hidden_states[layer + 1], block[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(cap.ffn[layer], seen["ffn"][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(cap.hidden_states[0], output.hidden_states[0][0].numpy(), atol=1e-6)
    # Hugging Face normalises its last hidden state; ours is the raw block output
    assert not np.allclose(cap.hidden_states[-1], output.hidden_states[-1][0].numpy(), atol=1e-3)


@pytest.mark.parametrize("max_chunk_bytes", [1, 3 * 4 * 49152, DEFAULT_CHUNK_BYTES])
def test_top_predictions_are_the_models_own_softmax_whatever_the_chunk(lm, cap, max_chunk_bytes):
    # 1 byte: one position per chunk; 3 positions' logits: chunks that do not divide the 11 positions
    chunked = ec.capture(lm, "The keys to the cabinet", max_new_tokens=6, max_chunk_bytes=max_chunk_bytes)
    with torch.inference_mode():
        probs = torch.softmax(lm.model(input_ids=torch.tensor(cap.token_ids[None])).logits[0], dim=-1)
    top = torch.topk(probs, 10, dim=-1)
    np.testing.assert_array_equal(chunked.top_ids, top.indices.numpy())
    # The head's float32 logits differ by ~1e-5 between a one-position matmul and the full one (the BLAS
    # blocks the sums differently, by CPU), which moves a probability by that much relative to itself.
    np.testing.assert_allclose(chunked.top_probs, top.values.numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(chunked.hidden_states, cap.hidden_states)
    np.testing.assert_array_equal(chunked.ffn, cap.ffn)


@pytest.mark.parametrize(
    "max_chunk_bytes, error", [(0, ValueError), (-5, ValueError), (2.5, TypeError), (True, TypeError), ("64MB", TypeError)]
)
def test_bad_chunk_size_is_named(lm, max_chunk_bytes, error):
    with pytest.raises(error, match=f"max_chunk_bytes must be a whole number >= 1; got {max_chunk_bytes!r}"):
        ec.capture(lm, "Hello", max_chunk_bytes=max_chunk_bytes)


def test_every_family_captures_the_promised_shapes(tiny):
    text = "The keys to the cabinet" if tiny.is_causal else "The keys to the cabinet are here."
    cap = ec.capture(tiny, text, max_new_tokens=3 if tiny.is_causal else 0, stop_at_eos=False)
    n = cap.n_tokens
    assert cap.n_generated == (3 if tiny.is_causal else 0)
    assert cap.hidden_states.shape == (TINY_N_LAYERS + 1, n, TINY_D_MODEL)
    assert cap.ffn.shape == (TINY_N_LAYERS, n, TINY_D_FF)
    assert np.isfinite(cap.hidden_states).all() and np.isfinite(cap.ffn).all()


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_no_hook_remains_after_capture_or_after_a_failing_forward(lm):
    # transformers itself may keep hooks of its own (output recorders); count ours only
    before = _hook_count(lm.model)
    ec.capture(lm, "Hooks come and go", max_new_tokens=2)
    assert _hook_count(lm.model) == before
    with pytest.raises(RuntimeError, match="forward failed"):
        with ec.recording(lm):
            assert _hook_count(lm.model) == before + 2 * lm.n_layers + 1
            raise RuntimeError("forward failed")
    assert _hook_count(lm.model) == before


def test_sampling_is_reproducible_by_seed(lm):
    one = ec.capture(lm, "Once upon a time", max_new_tokens=8, do_sample=True, seed=3)
    two = ec.capture(lm, "Once upon a time", max_new_tokens=8, do_sample=True, seed=3)
    np.testing.assert_array_equal(one.token_ids, two.token_ids)


def test_given_answer_is_appended_not_generated(lm):
    cap = ec.capture(lm, "The capital of France is", answer=" Lyon")
    assert cap.generated_text == " Lyon"
    assert cap.n_input == 5


def test_save_load_and_pickle_round_trip(cap, tmp_path):
    path = tmp_path / "capture.npz"
    cap.save(path)
    again = ec.Capture.load(path)
    assert again.tokens == cap.tokens and again.n_input == cap.n_input
    np.testing.assert_array_equal(again.ffn, cap.ffn)
    np.testing.assert_array_equal(again.hidden_states, cap.hidden_states)
    assert again.top_tokens == cap.top_tokens and again.settings == cap.settings
    assert pickle.loads(pickle.dumps(cap)).tokens == cap.tokens


def test_settings_record_every_argument_that_changes_the_result(lm):
    """``model_name`` + ``settings`` is the app's cache key: two captures differing in any result-changing
    argument (k and stop_at_eos included) must differ in it."""
    cap = ec.capture(lm, "Hello", max_new_tokens=2, k=3, stop_at_eos=False)
    assert cap.settings == ec.CaptureSettings(text="Hello", max_new_tokens=2, k=3, stop_at_eos=False)
    bounds_only = {"lm", "max_answer_tokens", "max_chunk_bytes"}  # they refuse or chunk work, never change it
    recorded = {field.name for field in dataclasses.fields(ec.CaptureSettings)}
    assert set(inspect.signature(ec.capture.capture).parameters) - bounds_only == recorded
    assert ec.capture(lm, "Hello", max_new_tokens=2, k=4, stop_at_eos=False).settings != cap.settings
    assert ec.CaptureSettings.from_dict({"text": "Hello"}) == ec.CaptureSettings(text="Hello")  # an older file
    with pytest.raises(ValueError, match=r"settings must be keys among .*; got \['colour'\]"):
        ec.CaptureSettings.from_dict({"colour": "red"})


@pytest.mark.parametrize(
    "text, kwargs, error, message",
    [
        ("", {}, ValueError, "empty or whitespace"),
        ("   \n\t", {}, ValueError, "empty or whitespace"),
        (None, {}, TypeError, "text must be a string of text .*; got None"),
        ("Hello", {"max_new_tokens": -1}, ValueError, "max_new_tokens must be a whole number from 0 to 1024; got -1"),
        ("Hello", {"max_new_tokens": 10**6}, ValueError, "max_new_tokens must be a whole number from 0 to 1024"),
        ("Hello", {"max_new_tokens": 2.5}, TypeError, "max_new_tokens must be a whole number from 0 to 1024; got 2.5"),
        ("word " * 9000, {}, ValueError, "context of 8192 tokens"),
        ("Hello", {"answer": " x", "max_new_tokens": 2}, ValueError, "not both"),
    ],
)
def test_bad_input_is_named(lm, text, kwargs, error, message):
    with pytest.raises(error, match=message):
        ec.capture(lm, text, **kwargs)


def test_masked_model_does_not_generate(encoder):
    with pytest.raises(ValueError, match="max_new_tokens must be 0 for the masked model"):
        ec.capture(encoder, "Hello there", max_new_tokens=2)


def test_predictions_frame_lists_the_top_candidates_by_rank(cap):
    frame = cap.predictions_frame(3)
    assert len(frame) == 3 * cap.n_tokens
    first = frame[frame["position"] == 0]
    assert list(first["rank"]) == [1, 2, 3] and list(first["prediction"]) == list(cap.top_tokens[0][:3])
    assert (first["token"] == cap.tokens[0]).all()
    assert np.all(np.diff(first["probability"]) <= 0)
    np.testing.assert_array_equal(frame["prediction_id"], cap.top_ids[:, :3].reshape(-1))
    assert len(cap.predictions_frame()) == cap.top_ids.shape[1] * cap.n_tokens
    with pytest.raises(ValueError, match=r"k must be a whole number from 1 to 10; got 0"):
        cap.predictions_frame(0)


@pytest.mark.parametrize(
    ("word", "text", "spelled"),
    [("is", "", " is"), (" is", "", " is"), (",", "", ","), ("'s", "", "'s"), ("is", "The keys ", "is")],
)
def test_a_word_is_spelled_as_it_follows_text(word, text, spelled):
    assert as_following_word(word, text) == spelled
