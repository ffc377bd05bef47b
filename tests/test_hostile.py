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


# ----------------------------------------------------------------- capture
@pytest.mark.parametrize("top_k", [-5, 0, 2.5, True])
def test_sampling_top_k_out_of_range_is_named(lm, top_k):
    with pytest.raises(ValueError, match=rf"top_k must be a positive int or None \(no cut-off\), got {top_k!r}"):
        ec.capture(lm, "The capital of France is", max_new_tokens=2, do_sample=True, top_k=top_k)


def test_a_given_answer_can_be_bounded_like_generation(lm):
    with pytest.raises(ValueError, match="answer is 500 tokens; max_answer_tokens allows at most 64"):
        ec.capture(lm, "The capital of France is", answer=" word" * 500, max_answer_tokens=64)
    assert ec.capture(lm, "The capital of France is", answer=" Paris", max_answer_tokens=64).n_generated == 1


# ----------------------------------------------------------------- loading
def test_a_folder_that_asks_for_remote_code_is_refused_before_any_import(tmp_path):
    import json
    import subprocess
    import sys

    marker = tmp_path / "ran"
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}}))
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    done = subprocess.run(
        [sys.executable, "-c", f"import ecco_core as ec; ec.load({str(tmp_path)!r})"],
        input="y\ny\n", capture_output=True, text=True, timeout=120,
    )
    assert "needs its own Python code (config.json has an auto_map)" in done.stderr
    assert not marker.exists()


def test_a_missing_or_empty_local_folder_is_named_as_such(tmp_path):
    with pytest.raises(ValueError, match=r"not found as a local folder \(none by that name\) or in the local hub"):
        ec.load("no-such-folder/model")
    with pytest.raises(ValueError, match="the folder holds no readable config.json"):
        ec.load(str(tmp_path))
