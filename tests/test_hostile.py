"""Hostile and careless input to the library: every case is one clear error naming the argument.

The app's side (URL parameters, uploads, typed text) is in ``test_hostile_app.py``.
"""

import numpy as np
import pytest

import ecco_core as ec
from ecco_core.saliency import MAX_STEPS


@pytest.fixture(scope="module")
def paris(lm):
    return ec.capture(lm, "The capital of France is", answer=" Paris")


# ---------------------------------------------------------------- saliency
@pytest.mark.parametrize("method", [["x"], {"grad_x_input": 1}, None, 3])
def test_saliency_method_that_is_no_string_is_named(lm, paris, method):
    with pytest.raises(ValueError, match=r"method must be one of \['grad_x_input'"):
        ec.saliency(lm, paris, method=method)


@pytest.mark.parametrize("steps", [0, -3, 10**6, 2.5, True, "20"])
def test_absurd_integrated_gradients_steps_are_refused_before_any_work(lm, paris, steps):
    with pytest.raises(ValueError, match=rf"steps must be an int from 1 to {MAX_STEPS}"):
        ec.saliency(lm, paris, method="integrated_gradients", steps=steps)
