"""The one message template for bad arguments, asserted once: the argument, what is allowed, what was given."""

import numpy as np
import pytest

from ecco_core import _checks as checks


def test_every_refusal_uses_the_template():
    assert checks.message("k", 0, "a whole number >= 1") == "k must be a whole number >= 1; got 0"
    cases = [
        (lambda: checks.whole("k", 0, low=1), ValueError, "k must be a whole number >= 1; got 0"),
        (lambda: checks.whole("k", 2.5, low=1, high=9), TypeError, "k must be a whole number from 1 to 9; got 2.5"),
        (lambda: checks.whole("k", True), TypeError, "k must be a whole number; got True"),
        (lambda: checks.whole("k", 10, high=9), ValueError, "k must be a whole number <= 9; got 10"),
        (lambda: checks.choice("method", "svd", {"nmf": "", "pca": ""}), ValueError,
         "method must be one of 'nmf', 'pca'; got 'svd'"),
        (lambda: checks.choice("method", ["nmf"], ("nmf",)), ValueError, "method must be one of 'nmf'; got ['nmf']"),
        (lambda: checks.positive("lr", 0), ValueError, "lr must be a finite number > 0; got 0"),
        (lambda: checks.positive("lr", float("inf")), ValueError, "lr must be a finite number > 0; got inf"),
        (lambda: checks.positive("lr", "1e-3"), TypeError, "lr must be a finite number > 0; got '1e-3'"),
        (lambda: checks.indices("layers", [1, 1], 4, "block"), ValueError,
         "layers must be an int, a range, a slice or a sequence of distinct block indices from 0 to 3, at least one; "
         "got [1, 1]"),
    ]
    for call, error, text in cases:
        with pytest.raises(error) as raised:
            call()
        assert str(raised.value) == text


def test_values_that_pass_come_back_normalised():
    assert checks.whole("k", np.int64(3), low=1) == 3 and type(checks.whole("k", np.int64(3))) is int
    assert checks.positive("lr", 1) == 1.0
    assert checks.choice("method", "pca", {"nmf": "", "pca": ""}) == "pca"
    np.testing.assert_array_equal(checks.indices("layers", None, 3, "block"), [0, 1, 2])
    np.testing.assert_array_equal(checks.indices("layers", slice(1, None), 3, "block"), [1, 2])
    np.testing.assert_array_equal(checks.indices("layers", range(2), 3, "block"), [0, 1])
    np.testing.assert_array_equal(checks.indices("layers", 2, 3, "block"), [2])


def test_sizes_and_shapes_are_described_in_words_after_got():
    with pytest.raises(ValueError) as raised:
        checks.entries("tokens", ["a", "b"], 3, "one per row of weights")
    assert str(raised.value) == "tokens must be 3 entries, one per row of weights; got 2 entries"
    assert str(checks.shaped("weights", np.zeros((2, 3)), "(n_heads, n_tokens, n_tokens)")) == (
        "weights must be an array of shape (n_heads, n_tokens, n_tokens); got shape (2, 3)"
    )
    assert checks.entries("tokens", ("a", "b"), 2, "one per row") == ["a", "b"]


def test_a_capture_is_read_only_with_the_model_that_made_it(lm, encoder):
    """One check, used by every analysis that reads a capture with a model (saliency, attention, rankings)."""
    import ecco_core as ec
    from ecco_core.capture import captured_by

    cap = ec.capture(lm, "The keys", max_new_tokens=1)
    assert captured_by(lm, cap) is cap
    other = ec.capture(encoder, "The keys")
    expected = (
        "cap must be a capture made by this model, 'SmolLM2-135M-Instruct' (30 layers, d_model 576); capture the "
        "text with it; got one made by 'all-MiniLM-L6-v2' (6 layers, d_model 384)"
    )
    for analysis in (captured_by, ec.saliency, ec.attention, ec.rankings):
        with pytest.raises(ValueError) as raised:
            analysis(lm, other)
        assert str(raised.value) == expected, analysis
    with pytest.raises(TypeError, match="cap must be a Capture from ecco_core.capture; got <class 'str'>"):
        captured_by(lm, "The keys")
    with pytest.raises(TypeError, match="lm must be an LM from ecco_core.load; got <class 'str'>"):
        captured_by("SmolLM2", cap)
