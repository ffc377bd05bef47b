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
