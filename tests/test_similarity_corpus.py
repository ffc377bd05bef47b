"""corpus_similarity: layer similarity of many texts through batched passes and an on-disk store (real model, UD)."""

import os

import numpy as np
import pytest

import ecco_core as ec
from ecco_core import similarity as sim
from ecco_core.store import store_root

# Batched, padded passes and a single text's pass differ in float32 rounding only.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def texts():
    return sim.ud_sentences(6)


@pytest.fixture(scope="module")
def captures(lm, texts):
    return [ec.capture(lm, text) for text in texts]


@pytest.fixture(scope="module")
def over_captures(captures):
    """layer_similarity over the captures, computed once per method and options."""
    results = {}

    def result(method, **options):
        key = (method, tuple(sorted(options.items())))
        if key not in results:
            results[key] = sim.layer_similarity(captures, method, **options)
        return results[key]

    return result


def _my_stores() -> set:
    root = store_root()
    return {path for path in root.iterdir() if path.name.startswith(f"{os.getpid()}-")} if root.is_dir() else set()


# Each method once, and each store: what a store does (made on disk during the run and removed after, or none)
# does not depend on the method, and every method reads a stored stack as it reads arrays
# (test_similarity_matrix_reads_a_stored_stack_like_an_array). Linear CKA, the cheapest, runs on both stores.
@pytest.mark.parametrize(("method", "options", "store"), [
    ("cka", {}, "disk"), ("cka", {}, "memory"), ("cka", {"kernel": "rbf"}, "memory"), ("pwcca", {}, "disk"),
    ("svcca", {"keep": 8}, "memory"),
])
def test_corpus_similarity_equals_layer_similarity_over_captures(lm, texts, captures, over_captures, store, method,
                                                                options):
    stores_seen = []
    result = sim.corpus_similarity(
        lm, texts, method, store=store, batch_size=4,
        progress=lambda fraction, message: stores_seen.append(_my_stores()), **options,
    )
    expected = over_captures(method, **options)
    np.testing.assert_allclose(result.values, expected.values, rtol=0, atol=TOLERANCE)
    assert result.values.shape == (lm.n_layers + 1, lm.n_layers)
    assert (result.row_labels, result.column_labels) == (expected.row_labels, expected.column_labels)
    assert (result.row_title, result.column_title) == ("hidden states", "FFN activations")
    assert (result.n_samples, result.max_dimensions) == (expected.n_samples, expected.max_dimensions)
    assert result.n_samples == sum(int((~cap.special).sum()) for cap in captures)
    assert (result.label, result.saturated, result.warning) == (expected.label, expected.saturated, expected.warning)
    # The disk store existed while the model ran and is gone once the result is made; memory made none.
    assert any(stores_seen) == (store == "disk")
    assert not _my_stores()


def test_special_tokens_rows_columns_and_batching(lm, texts, captures):
    kept = sim.corpus_similarity(lm, texts, "cka", rows="ffn", columns="hidden", skip_special=False, batch_size=1)
    expected = sim.layer_similarity(captures, "cka", rows="ffn", columns="hidden", skip_special=False)
    np.testing.assert_allclose(kept.values, expected.values, rtol=0, atol=TOLERANCE)
    assert kept.n_samples == sum(cap.n_tokens for cap in captures)
    assert kept.row_labels[0] == "block 0 FFN" and kept.column_labels[0] == "embeddings"
    # Swapping rows and columns transposes the matrix (similarity_matrix keeps the cheaper side either way).
    swapped = sim.corpus_similarity(lm, texts, "cka", rows="hidden", columns="ffn", skip_special=False, store="disk")
    np.testing.assert_allclose(swapped.values, kept.values.T, rtol=0, atol=TOLERANCE)
    same = sim.corpus_similarity(lm, texts, "cka", rows="hidden", columns="hidden")
    assert np.allclose(np.diag(same.values), 1.0) and same.column_title == "hidden states"


def test_similarity_matrix_reads_a_stored_stack_like_an_array():
    with ec.store.ActivationStore(dtype="float32") as disk:
        rng = np.random.default_rng(0)
        values = rng.normal(size=(3, 40, 7)).astype(np.float32)
        stack = disk.array("stack", values.shape)
        for row in range(3):
            stack.write(row, np.arange(40), values[row])
        for method in sim.METHODS:
            np.testing.assert_allclose(
                sim.similarity_matrix(stack, [values[0], values[1][:, :3]], method).values,
                sim.similarity_matrix(list(values), [values[0], values[1][:, :3]], method).values,
                rtol=0, atol=1e-10,
            )


@pytest.mark.parametrize(("arguments", "error", "message"), [
    ({"texts": []}, ValueError, r"texts must be a non-empty sequence of texts \(str\); got \[\]"),
    ({"texts": "one text"}, TypeError, r"texts must be a non-empty sequence of texts \(str\); got 'one text'"),
    ({"texts": ["A real sentence here.", " "]}, ValueError, r"texts\[1\] must be a string of text to analyse"),
    ({"store": "x"}, ValueError, r"store must be one of 'auto', 'disk', 'memory'; got 'x'"),
    ({"batch_size": 0}, ValueError, r"batch_size must be a whole number >= 1; got 0"),
    ({"method": "procrustes"}, ValueError, r"method must be one of 'cka', 'pwcca', 'svcca', 'cca'; got 'procrustes'"),
    ({"rows": "attention"}, ValueError, r"rows must be one of 'hidden', 'ffn'; got 'attention'"),
])
def test_bad_arguments_are_refused_with_the_checks_message(lm, arguments, error, message):
    arguments = {"texts": ["The keys to the cabinet are on the table."], **arguments}
    with pytest.raises(error, match=message):
        sim.corpus_similarity(lm, arguments.pop("texts"), **arguments)
    assert not _my_stores()


def test_each_texts_first_token_is_left_out_as_in_layer_similarity(lm, texts, captures, over_captures):
    result = sim.corpus_similarity(lm, texts, "cka", skip_first=True, batch_size=4)
    expected = over_captures("cka", skip_first=True)
    np.testing.assert_allclose(result.values, expected.values, rtol=0, atol=TOLERANCE)
    assert result.n_samples == expected.n_samples == sum(int((~cap.special[1:]).sum()) for cap in captures)

