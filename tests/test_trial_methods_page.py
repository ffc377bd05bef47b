"""A method added as one function and one registry entry appears in its page and in its estimate (#27 §2).

These run the pages (AppTest), so they live apart from the library's tests of the cost model (test_estimates.py).
"""

import pytest

from ecco_core import estimates

HIDDEN, FFN = [576] * 31, [1536] * 30  # the causal default's hidden states and FFN activations


def test_a_similarity_method_added_as_one_entry_is_estimated_and_offered_by_the_page():
    """#27 §2: the estimate indexed per-method tables, so a method added as one function and one registry entry
    appeared in the page's picker and then raised KeyError in the estimate. The entry's defaults now count its
    work; the page offers the method and runs it with no other edit."""
    import numpy as np

    from apptest import charts, page, run
    from ecco_core import similarity as sim

    sim.METHODS["trial"] = sim.SimilarityMethod(lambda a, b: sim.cka(a, b), "linear CKA again, as a trial")
    try:
        def shaped(n_samples, widths):  # stand-ins of these shapes: the estimate reads shapes only
            return [np.broadcast_to(np.float32(0), (n_samples, width)) for width in widths]

        small = estimates.similarity_seconds(shaped(56, HIDDEN), shaped(56, FFN), "trial")
        assert 0 < small < estimates.similarity_seconds(shaped(545, HIDDEN), shaped(545, FFN), "trial")
        rng = np.random.default_rng(0)
        pair = [rng.normal(size=(30, 4)), rng.normal(size=(30, 6))]
        assert sim.similarity_matrix(pair, pair, "trial").values.shape == (2, 2)
        app = page("pages/4_Similarity.py")
        app.query_params["similarity_method"] = "trial"
        run(app)
        assert app.selectbox(key="similarity_method").value == "trial"
        assert not app.exception and not app.error
        assert charts(app)  # the heatmap of the trial method
    finally:
        del sim.METHODS["trial"]


def test_a_saliency_method_added_as_one_entry_says_whether_it_takes_steps(lm, trial_readout):
    """#27 §2: the estimate and the page knew by name that integrated gradients (alone) takes steps and that erasure
    runs erased copies. Entries say it (uses_steps, erases, label); a trial method that takes steps is estimated with
    them, and the page enables its steps box, with no other edit. The same run explains a trial readout (one entry
    of ec.READOUTS): the page offers it as a target and differentiates it."""
    import ecco_core as ec
    from apptest import page, run

    entry = ec.SALIENCY_METHODS["integrated_gradients"]
    ec.SALIENCY_METHODS["trial"] = ec.saliency.SaliencyMethod(entry.function, "IG again, as a trial", signed=True,
                                                              uses_steps=True)
    try:
        cap = ec.capture(lm, "The keys to the cabinet", max_new_tokens=4)
        few, many = (estimates.saliency_seconds(lm, cap, "trial", steps=steps) for steps in (2, 16))
        assert few < many
        assert estimates.saliency_seconds(lm, cap, "grad_x_input", steps=2) == estimates.saliency_seconds(
            lm, cap, "grad_x_input", steps=16)
        app = page("pages/1_Saliency.py")
        app.query_params.update({"text": "The keys to the cabinet", "new": "1", "saliency_method": "trial",
                                 "saliency_steps": "2", "saliency_target": "trial"})
        run(app)
        assert not app.error and not app.number_input(key="saliency_steps").disabled
        assert app.selectbox(key="saliency_target").value == "trial" and trial_readout
    finally:
        del ec.SALIENCY_METHODS["trial"]



@pytest.fixture
def trial_readout():
    """A readout added as one function and one entry of ec.READOUTS (surprisal), and the logits it read."""
    import torch

    import ecco_core as ec

    read = []

    def surprisal(logits):
        read.append(logits.shape)
        return -torch.log_softmax(logits, dim=-1)

    ec.READOUTS["trial"] = ec.readouts.Readout(surprisal, "surprisal of the answer, as a trial")
    try:
        yield read
    finally:
        del ec.READOUTS["trial"]


def test_a_readout_added_as_one_entry_is_a_patching_metric(trial_readout):
    """#27 §2: saliency targets and patching metrics were the same idea written twice, two if-chains, and the
    Causal tracing page knew by name which metric needs a foil. A readout added as one function and one entry of
    ec.READOUTS is offered by the page and read by the analysis, with no other edit (the Saliency page's target
    in the test below)."""
    from apptest import page, run

    app = page("pages/6_Causal_tracing.py")
    app.query_params.update({"trace_metric": "trial", "trace_method": "approximate", "trace_compare": "false"})
    run(app)
    assert app.selectbox(key="trace_metric").value == "trial"
    assert "surprisal of the answer, as a trial" in app.selectbox(key="trace_metric").options
    assert not app.error and trial_readout  # the page's patching read the trial readout
    assert "metric: surprisal of the answer, as a trial" in " ".join(text.value for text in app.markdown)


def test_a_factor_method_added_as_one_entry_is_estimated_and_offered_by_the_page():
    """#27 §2: the factor estimate branched on method names and the page named each method itself (a method added
    to the registry showed as "None"). The entry carries its cost model and label; the page offers it, names it,
    estimates it from the entry and runs it, with no other edit."""
    from apptest import page, run
    from ecco_core.factors import METHODS, FactorMethod

    METHODS["trial"] = FactorMethod(METHODS["pca"].function, "PCA again, as a trial", lambda *sizes: 1e9, "Trial")
    try:
        app = page("pages/3_Neuron_factors.py")
        app.query_params.update({"text": "The keys to the cabinet are on the table.", "new": "0",
                                 "factors_method": "trial"})
        run(app)
        box = app.selectbox(key="factors_method")
        assert box.value == "trial" and "Trial" in box.options
        assert not app.exception and not app.error
        assert "Trial of" in " ".join(caption.value for caption in app.caption)
    finally:
        del METHODS["trial"]
