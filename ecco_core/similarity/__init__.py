"""How similar are two sets of activations? CCA, SVCCA, PWCCA and CKA, from 0 to 1.

The paper's section 3.1 (Figure 6): compare the representations of two layers
(hidden states with hidden states, hidden states with FFN activations, one
model with another) over the same token positions. Every function takes
``X`` of shape (n_samples, d1) and ``Y`` of shape (n_samples, d2), where a
sample is one token position, and returns a float in [0, 1]:

- :func:`cca`: mean canonical correlation (Raghu et al. 2017, "SVCCA").
  Invariant to any invertible linear map of either side.
- :func:`svcca`: first keep the top singular directions of each side (99% of
  the variance by default), then mean canonical correlation (Raghu et al.).
- :func:`pwcca`: canonical correlations weighted by how much of the
  activations each canonical variate accounts for (Morcos et al. 2018).
- :func:`cka`: centred kernel alignment, linear or RBF kernel (Kornblith et
  al. 2019). Invariant to orthogonal maps and isotropic scaling only.

The trap of the CCA family: it needs many more token positions than
dimensions. Whenever rank(X) + rank(Y) exceeds n_samples - 1, some canonical
correlations are exactly 1 whatever the data, and with a few dozen tokens of
one prompt against 1536 FFN neurons *every* CCA score is 1. Use CKA for a
single prompt, or pool the tokens of many sentences
(:func:`corpus_similarity` over :func:`ud_sentences`, batched and on disk;
or :func:`layer_similarity` with several captures).
:attr:`SimilarityMatrix.warning` says when a result is in that regime.

Everything is computed in float64 on column-centred data. Rank-deficient
inputs (duplicate columns, more dimensions than samples, repeated tokens in
the embedding layer) are handled by keeping only the singular directions
above a tolerance, so no NaN comes out. Each matrix of a
:func:`similarity_matrix` is decomposed once, not once per pair. All of it runs
on one BLAS thread (:mod:`ecco_core._blas`): thousands of small LAPACK calls,
which more threads only slow down on a shared machine.

The parts, each a module of this package: :mod:`.metrics` (the measures of
two matrices, and :data:`METHODS`), :mod:`.matrix` (:func:`similarity_matrix`,
:func:`saturation`) and :mod:`.layers` (a model's layers, from captures or
over a corpus); through nnsight (here or on NDIF) :mod:`.traced` keeps a
corpus's layers and compares them where the model runs, with the same
numpy functions (:func:`matrix_values`, :func:`shuffled_scores`). The names in ``__all__`` are names of this package too
(``ec.similarity.cka``, ``ec.similarity.corpus_similarity``).

>>> import numpy as np, ecco_core as ec
>>> X = np.random.default_rng(0).normal(size=(500, 20))
>>> round(ec.similarity.cka(X, 3 * X @ np.linalg.qr(np.ones((20, 20)) + np.eye(20))[0]), 6)
1.0
"""

from ..layers import REPRESENTATION_TITLES, REPRESENTATIONS
from ..layers import representation_labels as layer_labels
from ..probing.data import ud_sentences
from .layers import (
    compare_layers, corpus_pair, corpus_similarity, layer_activations, layer_pair, layer_similarity,
    positions_compared, served_comparison, ud_sentences_for,
)
from .matrix import (
    Saturation, SimilarityMatrix, matrix_values, median_cell, saturation, shuffled_scores, similarity_matrix,
)
from .metrics import KERNELS, METHODS, Options, SimilarityMethod, Work, cca, cka, pwcca, svcca

__all__ = [
    "KERNELS", "METHODS", "Options", "REPRESENTATIONS", "REPRESENTATION_TITLES", "Saturation", "SimilarityMatrix",
    "SimilarityMethod", "Work", "cca", "cka", "compare_layers", "corpus_pair", "corpus_similarity",
    "layer_activations", "layer_labels", "layer_pair", "layer_similarity", "matrix_values", "median_cell",
    "positions_compared", "pwcca", "saturation", "served_comparison", "shuffled_scores", "similarity_matrix", "svcca",
    "ud_sentences", "ud_sentences_for",
]
