"""One layer vocabulary: the same label names the same array in every view.

Every view is computed on one capture of one sentence (the causal default,
nothing generated), and each view's label is traced back to the array it
claims: "embeddings" = ``hidden_states[0]``, "block 2" = ``hidden_states[3]``,
"block 2 FFN" = ``ffn[2]``.
"""

import numpy as np
import pytest
import torch

import ecco_core as ec
from ecco_core import layers, probing
from ecco_core import similarity as sim

BLOCK = 2


@pytest.fixture(scope="module")
def sentence():
    return ec.read_conllu(probing.UD_ENGLISH_EWT_DEV)[1]


@pytest.fixture(scope="module")
def cap(lm, sentence):
    return ec.capture(lm, " ".join(sentence.words))


def test_the_labels():
    assert layers.residual_labels(3) == ["embeddings", "block 0", "block 1", "block 2"]
    assert [layers.site_label(site, 2) for site in ("residual", "ffn", "attention")] == [
        "block 2", "block 2 FFN", "block 2 attention",
    ]
    with pytest.raises(ValueError, match="site must be one of"):
        layers.site_label("mlp", 2)



def test_the_representations_are_named_once_here(lm):
    """Titles, widths and labels of the "hidden" and "ffn" representations live in layers; similarity, its page
    and the probing figure read them there, and the UD sentences come from probing's CoNLL-U module."""
    assert sim.REPRESENTATIONS is layers.REPRESENTATIONS and sim.REPRESENTATION_TITLES is layers.REPRESENTATION_TITLES
    assert sim.ud_sentences is probing.ud_sentences is probing.data.ud_sentences
    assert layers.representation_widths(lm, "hidden") == [lm.d_model] * (lm.n_layers + 1)
    assert layers.representation_widths(lm, "ffn") == [lm.d_ff] * lm.n_layers
    assert layers.representation_labels("hidden", 3) == ["embeddings", "block 0", "block 1"]
    assert sim.layer_labels("ffn", 2) == ["block 0 FFN", "block 1 FFN"]
    allowed = r"representation must be one of \['ffn', 'hidden'\]; got "
    with pytest.raises(ValueError, match=allowed + "'attention'"):
        layers.representation_labels("attention", 2)
    with pytest.raises(ValueError, match=allowed + "'mlp'"):
        layers.representation_widths(lm, "mlp")

def test_lens_row_block_2_reads_hidden_states_3(lm, cap):
    result = ec.rankings(lm, cap)
    row = result.layer_labels.index(layers.block_label(BLOCK))
    with torch.inference_mode():
        logits = lm.unembed(torch.as_tensor(cap.hidden_states[BLOCK + 1][result.positions])).float()
    target = logits.gather(-1, torch.as_tensor(result.target_ids)[:, None])
    np.testing.assert_array_equal(result.ranks[row], ((logits > target).sum(-1) + 1).numpy())
    frame = result.to_frame()
    np.testing.assert_array_equal(frame[frame["layer"] == "block 2"]["rank"], result.ranks[row])
    assert result.layer_labels == tuple(layers.residual_labels(lm.n_layers)[1:])


def test_similarity_labels_name_the_arrays_they_compare(lm, cap):
    result = sim.layer_similarity(cap, "cka", rows="hidden", columns="ffn")
    kept = ~cap.special
    row, column = result.row_labels.index("block 2"), result.column_labels.index("block 2 FFN")
    assert result.row_labels.index("embeddings") == 0
    expected = sim.cka(cap.hidden_states[BLOCK + 1][kept], cap.ffn[BLOCK][kept])
    assert result.values[row, column] == pytest.approx(expected, abs=1e-12)
    embeddings = sim.cka(cap.hidden_states[0][kept], cap.ffn[BLOCK][kept])
    assert result.values[0, column] == pytest.approx(embeddings, abs=1e-12)
    cells = result.to_frame()
    cell = cells[(cells["row"] == "block 2") & (cells["column"] == "block 2 FFN")]
    assert cell["value"].item() == pytest.approx(expected, abs=1e-12)


def test_probing_row_block_2_uses_hidden_states_3(lm, cap, sentence):
    data = probing.collect(lm, [sentence], layers=[layers.EMBEDDINGS, 1, BLOCK], progress=lambda f, m: None)
    positions = list(probing.align(lm.tokenizer, sentence).positions)
    for label, rows in ((layers.EMBEDDINGS, 0), ("block 1", 2), ("block 2", BLOCK + 1)):
        features = data.hidden_states[data.hidden_layers.index(label)]
        np.testing.assert_allclose(features, cap.hidden_states[rows][positions], atol=1e-4, rtol=1e-4)
    ffn = data.ffn[data.ffn_layers.index("block 2 FFN")]
    np.testing.assert_allclose(ffn, cap.ffn[BLOCK][positions], atol=1e-4, rtol=1e-4)

    # The table's rows keep their arrays' labels through training and sorting.
    scores = ec.train_probes([data.hidden_states, data.ffn], data.tags, data.words, trials=1, epochs=2,
                             precision="float32", progress=lambda f, m: None)
    table = probing.scores_table(data, scores).to_frame()
    probed = list(data.hidden_layers) + list(data.ffn_layers)
    for label in ("embeddings", "block 2", "block 2 FFN"):
        accuracy = table.loc[table["layer"] == label, "accuracy"].item()
        assert accuracy == pytest.approx(scores.accuracy[probed.index(label)].mean())
    assert table["layer"].tolist() == ["embeddings", "block 1", "block 1 FFN", "block 2", "block 2 FFN"]


def test_factors_of_block_2_ffn_use_ffn_2(cap):
    n_positions = cap.n_tokens
    result = ec.factors(cap, n_components=n_positions - 1, method="pca", layers=BLOCK)
    # n_tokens - 1 principal axes of n_tokens centred rows reproduce them exactly.
    rebuilt = result.token_activations.T @ result.components + result.mean
    np.testing.assert_allclose(rebuilt, cap.ffn[BLOCK], atol=1e-3 * np.abs(cap.ffn[BLOCK]).max())
    assert set(result.loadings_frame()["layer"]) == set(result.top_neurons(3)["layer"]) == {"block 2 FFN"}

    neurons = ec.neurons(cap, BLOCK, top_k=2)
    frame = neurons.to_frame()
    assert set(frame["layer"]) == {"block 2 FFN"}
    np.testing.assert_array_equal(frame["activation"], cap.ffn[BLOCK][:, neurons.neurons].T.ravel())
