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

>>> import numpy as np, ecco_core as ec
>>> X = np.random.default_rng(0).normal(size=(500, 20))
>>> round(ec.similarity.cka(X, 3 * X @ np.linalg.qr(np.ones((20, 20)) + np.eye(20))[0]), 6)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from . import _checks as checks
from ._blas import one_blas_thread
from .capture import Capture
from .corpus import STORES, allocate, close_store, record_positions
from .layers import REPRESENTATION_TITLES, REPRESENTATIONS
from .layers import representation_labels as layer_labels
from .models import LM
from .probing.data import ud_sentences
from .store import StoredArray
from .tokens import encode_prompt, special_mask

KERNELS = {
    "linear": "k(x, y) = <x, y>",
    "rbf": "k(x, y) = exp(-|x - y|^2 / (2 sigma^2)), sigma = bandwidth * median pairwise distance",
}

# Singular directions whose variance is below this fraction of the largest (times the
# matrix size) are numerically zero; eigenvalues of X^T X are only accurate to about
# eps * largest, so the cut is made on variances, not on singular values.
_RANK_RTOL = np.finfo(np.float64).eps
# Above this many bytes of cached Gram matrices, linear CKA works in feature space instead.
_GRAM_CACHE_BYTES = 1 << 30
# Rule of thumb for the CCA family: below this many samples per dimension the scores
# are biased towards 1 (they are exactly 1 once the ranks add up to n_samples - 1).
_SAMPLES_PER_DIMENSION = 5
# Canonical correlations are accurate to about 1e-8; every score above 1 - this is "all 1".
_SATURATED_TOLERANCE = 1e-6


# ----------------------------------------------------------------- validation
def _centred(values, name: str) -> np.ndarray:
    """``values`` as float64, checked, scaled (see below) and centred: shape (n_samples, n_features)."""
    allowed = "a finite 2-D array of numbers of shape (n_samples >= 2, n_features >= 1)"
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise checks.invalid(name, type(values), allowed, TypeError) from error
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise checks.invalid(f"{name}.shape", array.shape, allowed)
    if not np.isfinite(array).all():
        raise checks.invalid(name, "an array holding NaN or infinite values", allowed)
    # Every method is invariant to scaling an input, so scale by a power of two (exact) to a largest
    # value in [0.5, 1): Gram products of inputs near 1e300 (or 1e-300) neither overflow nor vanish.
    largest = np.abs(array).max()
    if largest > 0:
        array = np.ldexp(array, -np.frexp(largest)[1])
    return array - array.mean(axis=0)


def _check_pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _centred(X, "X"), _centred(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise checks.invalid("Y.shape", Y.shape, f"{X.shape[0]} samples (token positions), the same number as X")
    return X, Y


def _check_keep(keep) -> float | int:
    allowed = "a fraction of variance in (0, 1] or a whole number of directions >= 1"
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise checks.invalid("keep", keep, allowed, TypeError)
    if checks.is_whole(keep) and keep >= 1:
        return int(keep)
    if not 0.0 < float(keep) <= 1.0:
        raise checks.invalid("keep", keep, allowed)
    return float(keep)


# ------------------------------------------------- per-matrix decompositions
@dataclass(frozen=True, eq=False)
class _Subspace:
    """An orthonormal basis of a centred matrix's column space: ``Xc ~= basis @ loadings``.

    ``basis`` (n_samples, rank) holds the left singular vectors ordered by
    decreasing singular value, ``loadings`` (rank, d) is ``basis.T @ Xc``
    (singular values times right singular vectors).
    """

    basis: np.ndarray
    loadings: np.ndarray
    variances: np.ndarray  # squared singular values, decreasing

    @property
    def rank(self) -> int:
        return self.basis.shape[1]


def _subspace(Xc: np.ndarray) -> _Subspace:
    """SVD of a centred matrix through the eigendecomposition of its smaller Gram matrix.

    ``eigh`` of the (d, d) or (n, n) Gram is several times faster than a full
    SVD of the (n, d) matrix. Directions whose variance is at most
    ``max(n, d) * eps`` of the largest are dropped (duplicate columns, d > n,
    constant features), so no division by a zero singular value happens.
    """
    n, d = Xc.shape
    if d <= n:
        variances, vectors = np.linalg.eigh(Xc.T @ Xc)
    else:
        variances, vectors = np.linalg.eigh(Xc @ Xc.T)
    variances, vectors = variances[::-1], vectors[:, ::-1]
    largest = variances[0] if variances.size else 0.0
    kept = variances > max(largest * max(n, d) * _RANK_RTOL, np.finfo(np.float64).tiny)
    vectors = vectors[:, kept]
    if d <= n:
        scores = Xc @ vectors
        # Column norms are more accurate than sqrt of small eigenvalues (those carry
        # an absolute error of about eps * largest), so normalise by them.
        norms = np.linalg.norm(scores, axis=0)
        return _Subspace(scores / norms, norms[:, None] * vectors.T, norms**2)
    return _Subspace(vectors, vectors.T @ Xc, variances[kept])


def _top_directions(space: _Subspace, keep: float | int) -> _Subspace:
    """The leading singular directions: ``keep`` of them, or enough for ``keep`` of the variance."""
    if isinstance(keep, int):
        count = min(keep, space.rank)
    else:
        fraction = np.cumsum(space.variances) / space.variances.sum() if space.rank else np.zeros(0)
        count = int(np.searchsorted(fraction, keep - 1e-12) + 1) if space.rank else 0
    return _Subspace(space.basis[:, :count], space.loadings[:count], space.variances[:count])


def _canonical(space_x: _Subspace, space_y: _Subspace, *, vectors: bool):
    """Canonical correlations (decreasing) of two subspaces; with the smaller side's canonical weights.

    The canonical correlations are the singular values of ``Ux^T Uy``
    (Bjorck & Golub); the eigendecomposition of the smaller of ``M M^T`` and
    ``M^T M`` gives them (and the left or right singular vectors) faster
    than an SVD, accurate to ~1e-8 absolute.
    """
    overlap = space_x.basis.T @ space_y.basis
    x_is_smaller = space_x.rank <= space_y.rank
    small = overlap @ overlap.T if x_is_smaller else overlap.T @ overlap
    if not vectors:
        squared = np.linalg.eigvalsh(small)[::-1]
        return np.sqrt(np.clip(squared, 0.0, 1.0)), None, x_is_smaller
    squared, rotation = np.linalg.eigh(small)
    return np.sqrt(np.clip(squared[::-1], 0.0, 1.0)), rotation[:, ::-1], x_is_smaller


def _mean_cca(space_x: _Subspace, space_y: _Subspace) -> float:
    if space_x.rank == 0 or space_y.rank == 0:
        return 0.0
    correlations, _, _ = _canonical(space_x, space_y, vectors=False)
    return float(np.clip(correlations.mean(), 0.0, 1.0))


def _projection_weighted(space_x: _Subspace, space_y: _Subspace) -> float:
    """Morcos et al.'s PWCCA, weighted on the side with fewer dimensions (both sides averaged on a tie).

    With canonical variates ``h_i = U a_i`` of that side and its centred
    neurons ``x_j``, the weight of correlation ``rho_i`` is
    ``sum_j |<h_i, x_j>|`` = ``sum_j |(a_i^T loadings)_j|``, normalised to sum 1.
    """
    if space_x.rank == 0 or space_y.rank == 0:
        return 0.0
    correlations, rotation, x_is_smaller = _canonical(space_x, space_y, vectors=True)
    weighted_side = space_x if x_is_smaller else space_y
    weights = np.abs(rotation.T @ weighted_side.loadings).sum(axis=1)
    score = float(weights @ correlations / weights.sum())
    if space_x.rank == space_y.rank:
        # Equal ranks: either side could carry the weights; average them so pwcca is symmetric.
        correlations, rotation, _ = _canonical(space_y, space_x, vectors=True)
        weights = np.abs(rotation.T @ space_y.loadings).sum(axis=1)
        score = (score + float(weights @ correlations / weights.sum())) / 2
    return float(np.clip(score, 0.0, 1.0))


def _rbf_gram(Xc: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian kernel with sigma = bandwidth * median distance between distinct samples."""
    sq_norms = np.einsum("ij,ij->i", Xc, Xc)
    sq_distances = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2 * (Xc @ Xc.T), 0.0)
    median_sq = np.median(sq_distances[np.triu_indices(len(Xc), k=1)])
    if median_sq <= 0:
        # Over half the samples coincide: the median rule gives no scale; use the mean distance.
        median_sq = sq_distances.mean()
    if median_sq <= 0:
        return np.ones_like(sq_distances)
    return np.exp(-sq_distances / (2 * bandwidth**2 * median_sq))


def _centred_unit_gram(gram: np.ndarray) -> np.ndarray | None:
    """H K H / ||H K H||_F with H the centring matrix; None when it is zero (constant input)."""
    gram = gram - gram.mean(axis=0, keepdims=True)
    gram -= gram.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(gram)
    return gram / norm if norm > 0 else None


@dataclass(frozen=True)
class Options:
    """What a method may use besides the matrices (the keyword options of :func:`similarity_matrix`).

    ``gram``: whether CKA may hold an (n_samples, n_samples) Gram matrix per
    input (faster for many pairs; decided from a memory budget).
    """

    kernel: str = "linear"
    keep: float | int = 0.99
    bandwidth: float = 1.0
    gram: bool = True


@dataclass(frozen=True, eq=False)
class _KernelInput:
    """What CKA needs of one matrix: its unit-norm centred Gram, or (linear, no Gram) the matrix and ||X^T X||."""

    unit_gram: np.ndarray | None = None
    centred: np.ndarray | None = None
    feature_norm: float = 0.0


def _kernel_input(Xc: np.ndarray, options: Options) -> _KernelInput:
    if options.kernel == "rbf":
        return _KernelInput(unit_gram=_centred_unit_gram(_rbf_gram(Xc, options.bandwidth)))
    if options.gram:
        return _KernelInput(unit_gram=_centred_unit_gram(Xc @ Xc.T))
    return _KernelInput(centred=Xc, feature_norm=float(np.linalg.norm(Xc.T @ Xc)))


def _kernel_alignment(a: _KernelInput, b: _KernelInput) -> float:
    if a.unit_gram is not None and b.unit_gram is not None:
        value = float(np.vdot(a.unit_gram, b.unit_gram))
    elif a.centred is not None and b.centred is not None and a.feature_norm > 0 and b.feature_norm > 0:
        value = float(np.linalg.norm(a.centred.T @ b.centred) ** 2 / (a.feature_norm * b.feature_norm))
    else:
        value = 0.0  # a constant input shares no variance with anything
    return float(np.clip(value, 0.0, 1.0))


def _all_directions(Xc: np.ndarray, options: Options) -> _Subspace:
    return _subspace(Xc)


def _top_singular_directions(Xc: np.ndarray, options: Options) -> _Subspace:
    return _top_directions(_subspace(Xc), options.keep)


def _as_is(Xc: np.ndarray, options: Options) -> np.ndarray:
    return Xc


class Work(NamedTuple):
    """The counted work of one step of :func:`similarity_matrix`, which :mod:`ecco_core.estimates` turns into seconds.

    ``products``: matrix-product multiply-adds; ``eigh`` / ``eigvals``: m^3
    of each symmetric (m, m) eigendecomposition with / without vectors;
    ``elements``: element-wise passes over arrays; ``calls``: small numpy and
    LAPACK calls, whose fixed cost outweighs their arithmetic on small matrices.
    """

    products: float = 0.0
    eigh: float = 0.0
    eigvals: float = 0.0
    elements: float = 0.0
    calls: float = 0.0


def _centring_work(n: int, d: int, options: Options) -> Work:
    return Work(elements=n * d)


def _cross_product_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    return Work(products=n * d_x * d_y, calls=1)


def _gram_work(n: int, d: int, options: Options) -> Work:
    """CKA's preparation: the (n, n) Gram (RBF: its distances, median and exp) and its centring."""
    return Work(products=n * n * d, elements=(20 if options.kernel == "rbf" else 3) * n * n)


def _gram_pair_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    return Work(elements=n * n)


def _subspace_work(n: int, d: int, options: Options) -> Work:
    """The CCA family's preparation: the smaller Gram (``d^2 n`` or ``n^2 d``), its eigh and the basis (``n d r``)."""
    return Work(products=n * d * min(n, d) + n * d * min(n - 1, d), eigh=float(min(n, d)) ** 3)


def _canonical_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    """The overlap ``Ux^T Uy``, its smaller square and that square's eigenvalues; ranks at their bound
    ``min(n - 1, d)`` (SVCCA keeps fewer directions: an upper bound)."""
    small, large = sorted((min(n - 1, d_x), min(n - 1, d_y)))
    return Work(products=n * small * large + small * small * large, eigvals=float(small) ** 3, calls=1)


def _projection_weighted_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    """As :func:`_canonical_work` with vectors, and the weights from the smaller side's loadings (``r^2 d``, d
    about r): on both sides when the ranks tie."""
    rank_x, rank_y = min(n - 1, d_x), min(n - 1, d_y)
    small, large = sorted((rank_x, rank_y))
    sides = 2 if rank_x == rank_y else 1
    return Work(products=sides * (n * small * large + small * small * large + small**3),
                eigh=sides * float(small) ** 3, calls=7)


class SimilarityMethod(NamedTuple):
    """One entry of :data:`METHODS`.

    ``prepare(Xc, options)`` runs once per matrix (``Xc`` centred, shape
    (n_samples, d)); ``function(a, b)`` scores two prepared matrices in [0, 1].
    ``canonical``: a CCA-family method, biased towards 1 unless the samples
    far outnumber the dimensions (the result then warns). ``symmetric``:
    ``function(a, b) == function(b, a)``, so :func:`similarity_matrix` may
    keep whichever side is cheaper to hold. ``prepare_work(n_samples, d,
    options)`` and ``pair_work(n_samples, d_x, d_y, options)`` count the
    :class:`Work` of one preparation and one score, for the estimate of a run
    (:func:`ecco_core.estimates.similarity_seconds`); the defaults count a
    centring and one cross product ``Xc^T Yc``.
    """

    function: Callable[[Any, Any], float]
    description: str
    prepare: Callable[[np.ndarray, Options], Any] = _as_is
    canonical: bool = False
    symmetric: bool = False
    prepare_work: Callable[[int, int, Options], Work] = _centring_work
    pair_work: Callable[[int, int, int, Options], Work] = _cross_product_work


METHODS = {
    "cka": SimilarityMethod(
        _kernel_alignment, "centred kernel alignment (Kornblith et al. 2019); kernel 'linear' or 'rbf'", _kernel_input,
        symmetric=True, prepare_work=_gram_work, pair_work=_gram_pair_work,
    ),
    "pwcca": SimilarityMethod(
        _projection_weighted,
        "projection-weighted mean canonical correlation (Morcos et al. 2018)", _all_directions, canonical=True,
        symmetric=True, prepare_work=_subspace_work, pair_work=_projection_weighted_work,
    ),
    "svcca": SimilarityMethod(
        _mean_cca,
        "mean canonical correlation of the top singular directions (Raghu et al. 2017)", _top_singular_directions,
        canonical=True, symmetric=True, prepare_work=_subspace_work, pair_work=_canonical_work,
    ),
    "cca": SimilarityMethod(
        _mean_cca,
        "mean canonical correlation over all directions (Raghu et al. 2017)", _all_directions, canonical=True,
        symmetric=True, prepare_work=_subspace_work, pair_work=_canonical_work,
    ),
}
"""Similarity methods by name. Adding one is a ``function(a, b)`` (on centred
(n_samples, d) matrices unless it names a ``prepare``) and one entry here; the
page lists it and its estimate counts its ``prepare_work`` and ``pair_work``."""


def _dimensions(prepared, width: int) -> int:
    """Dimensions a prepared matrix kept: its numerical rank (CCA family), else its width."""
    return prepared.rank if isinstance(prepared, _Subspace) else width


def _fits_gram_budget(n_samples: int, n_cached: int) -> bool:
    return n_cached * n_samples * n_samples * 8 <= _GRAM_CACHE_BYTES


# ------------------------------------------------------------------ pairwise
@one_blas_thread()
def cca(X, Y) -> float:
    """Mean canonical correlation of X and Y.

    Parameters
    ----------
    X : array-like of shape (n_samples, d1)
    Y : array-like of shape (n_samples, d2)
        Activations of the same n_samples token positions.

    Returns
    -------
    float in [0, 1]
        The mean of the min(rank X, rank Y) canonical correlations: 1 when
        one side is an invertible linear map of the other. Needs
        n_samples >> d1, d2 (see the module docstring).
    """
    X, Y = _check_pair(X, Y)
    return _mean_cca(_subspace(X), _subspace(Y))


@one_blas_thread()
def svcca(X, Y, *, keep: float | int = 0.99) -> float:
    """SVCCA: mean canonical correlation of each side's top singular directions.

    Parameters
    ----------
    X : array-like of shape (n_samples, d1)
    Y : array-like of shape (n_samples, d2)
    keep : float in (0, 1] or int >= 1
        A fraction: keep the fewest directions that explain this fraction of
        each side's variance (Raghu et al. keep 0.99). An int: keep this many
        directions on each side (ecco's ``svcca(dims=20)``).

    Returns
    -------
    float in [0, 1]
    """
    X, Y = _check_pair(X, Y)
    keep = _check_keep(keep)
    return _mean_cca(_top_directions(_subspace(X), keep), _top_directions(_subspace(Y), keep))


@one_blas_thread()
def pwcca(X, Y) -> float:
    """Projection-weighted CCA (Morcos et al. 2018).

    Each canonical correlation ``rho_i`` is weighted by
    ``alpha_i = sum_j |<h_i, x_j>|``, how strongly its canonical variate
    ``h_i`` projects on the neurons ``x_j`` of the side with fewer
    dimensions, so directions that carry little of the representation count
    little. On equal ranks both sides' scores are averaged (symmetric).

    Parameters
    ----------
    X : array-like of shape (n_samples, d1)
    Y : array-like of shape (n_samples, d2)

    Returns
    -------
    float in [0, 1]

    Notes
    -----
    The reference code that ecco 0.1.2 bundles (google/svcca ``pwcca.py``)
    forms its directions without the whitening ``Sigma_xx^{-1/2}`` and then
    orthonormalises them with a QR; on real activations its value differs
    from the paper's formula used here (``bench/similarity.py`` prints by
    how much).
    """
    X, Y = _check_pair(X, Y)
    return _projection_weighted(_subspace(X), _subspace(Y))


@one_blas_thread()
def cka(X, Y, *, kernel: str = "linear", bandwidth: float = 1.0) -> float:
    """Centred kernel alignment (Kornblith et al. 2019).

    ``CKA = <HKH, HLH>_F / (||HKH||_F ||HLH||_F)`` with ``K``, ``L`` the
    kernel (Gram) matrices of X and Y over the samples and ``H`` the
    centring matrix. Linear CKA equals ``||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)``
    on centred X, Y; it is invariant to orthogonal maps and isotropic
    scaling but not to arbitrary linear maps, and works with fewer samples
    than dimensions.

    Parameters
    ----------
    X : array-like of shape (n_samples, d1)
    Y : array-like of shape (n_samples, d2)
    kernel : {"linear", "rbf"}
    bandwidth : float
        RBF only: sigma = bandwidth * median Euclidean distance between
        distinct samples of that matrix (Kornblith et al.'s rule; they report
        0.2 to 0.8 as well as 1).

    Returns
    -------
    float in [0, 1]
        0 when either input is constant.
    """
    X, Y = _check_pair(X, Y)
    kernel = checks.choice("kernel", kernel, KERNELS)
    bandwidth = checks.positive("bandwidth", bandwidth)
    # One pair: the (n, n) Grams only pay off when there are more features than samples.
    n, widest = X.shape[0], max(X.shape[1], Y.shape[1])
    gram = kernel == "rbf" or (n <= widest and _fits_gram_budget(n, 2))
    options = Options(kernel=kernel, bandwidth=bandwidth, gram=gram)
    return _kernel_alignment(_kernel_input(X, options), _kernel_input(Y, options))


# -------------------------------------------------------------------- matrix
@dataclass(frozen=True, eq=False)
class SimilarityMatrix:
    """Similarity of every row representation with every column representation.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_columns), float64 in [0, 1]
    row_labels : tuple of str, length n_rows
    column_labels : tuple of str, length n_columns
    method : str
        One of :data:`METHODS`; ``kernel`` and ``keep`` are its options.
    kernel : str
    keep : float or int
    n_samples : int
        Token positions compared.
    max_dimensions : int
        The largest number of dimensions any input kept (its numerical rank;
        for SVCCA the directions kept).
    row_title, column_title : str
        What the rows and the columns are (axis titles), e.g. "hidden states".
    """

    values: np.ndarray
    row_labels: tuple[str, ...]
    column_labels: tuple[str, ...]
    method: str
    kernel: str
    keep: float | int
    n_samples: int
    max_dimensions: int
    row_title: str = ""
    column_title: str = ""

    @property
    def label(self) -> str:
        if self.method == "cka":
            return f"CKA ({self.kernel})"
        return self.method.upper()

    @property
    def warning(self) -> str | None:
        """Why the values may be near 1 for every pair, or None."""
        if not METHODS[self.method].canonical or self.n_samples >= _SAMPLES_PER_DIMENSION * self.max_dimensions:
            return None
        return (
            f"{self.label} compares {self.n_samples} token positions in up to {self.max_dimensions} dimensions. "
            "Canonical correlations are biased towards 1 unless the positions far outnumber the dimensions "
            f"(rule of thumb here: {_SAMPLES_PER_DIMENSION}x), and are exactly 1 once both ranks together reach "
            "the number of positions. Use CKA, or pool more sentences."
        )

    @property
    def saturated(self) -> bool:
        """True when a CCA-family score is 1 for every pair: a consequence of too few positions, not a finding.

        Once the two subspaces together span every token position, each
        direction of one is a linear combination of the other's, so every
        canonical correlation is 1 (a single prompt always does this).
        """
        return self.method != "cka" and bool(np.all(self.values > 1 - _SATURATED_TOLERANCE))

    def describe(self, row: int, column: int) -> str:
        """One pair of layers in words: its value, what 1 and 0 would mean, and the row's closest column.

        >>> result.describe(3, 3)                                   # doctest: +SKIP
        'block 2 vs block 2 FFN: CKA (linear) = 0.8123 over 27 token positions. ...'
        """
        row = checks.whole("row", row, low=0, high=len(self.row_labels) - 1)
        column = checks.whole("column", column, low=0, high=len(self.column_labels) - 1)
        closest = int(self.values[row].argmax())
        return (
            f"{self.row_labels[row]} vs {self.column_labels[column]}: {self.label} = {self.values[row, column]:.4f} "
            f"over {self.n_samples} token positions. 1 would mean one is a linear transformation of the other, 0 "
            f"that they are unrelated. In this row, the closest column is {self.column_labels[closest]} "
            f"({self.values[row, closest]:.4f})."
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per (row, column) pair: row, column, their indices and the value."""
        rows, columns = np.meshgrid(np.arange(len(self.row_labels)), np.arange(len(self.column_labels)), indexing="ij")
        return pd.DataFrame(
            {
                "row": [self.row_labels[i] for i in rows.ravel()],
                "column": [self.column_labels[j] for j in columns.ravel()],
                "row_index": rows.ravel(),
                "column_index": columns.ravel(),
                "method": self.label,
                "value": self.values.ravel(),
            }
        )


@one_blas_thread()
def similarity_matrix(
    A_list,
    B_list,
    method: str = "cka",
    *,
    kernel: str = "linear",
    keep: float | int = 0.99,
    bandwidth: float = 1.0,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> SimilarityMatrix:
    """Similarity of every matrix of ``A_list`` with every matrix of ``B_list``.

    Each matrix is decomposed once (its SVD basis, or its centred Gram
    matrix for CKA), then every pair costs only the comparison: a dot product
    of two Grams for CKA, one small eigendecomposition for the CCA family.
    The decompositions of one side are kept and the other side's are made
    one matrix at a time: for a method that is :attr:`~SimilarityMethod.symmetric`
    (all built-in ones), the side cheaper to keep (the smaller sum of
    ``min(n_samples, d)`` over its matrices), else ``B_list``. Passing the
    same list object twice decomposes it once.

    Matrices are read by index, one at a time, as they are decomposed, so
    a :class:`~ecco_core.store.StoredArray` (an on-disk stack) is never read
    whole: the peak memory is the kept side's decompositions (float64,
    about ``n_samples * min(n_samples, d) * 8`` bytes each, or one
    ``n_samples ** 2`` Gram each for CKA when they fit in 1 GiB) plus one
    matrix being decomposed.

    Parameters
    ----------
    A_list : sequence of array-like, each of shape (n_samples, d_i)
    B_list : sequence of array-like, each of shape (n_samples, d_j)
        All matrices share the same n_samples token positions. A 3-D array
        or StoredArray of shape (n_matrices, n_samples, d) is a sequence too.
    method : {"cka", "pwcca", "svcca", "cca"}
    kernel, bandwidth : CKA options, as in :func:`cka`
    keep : SVCCA option, as in :func:`svcca`
    row_labels, column_labels : sequence of str, optional
        Default "0", "1", ...
    progress : callable(fraction, message), optional
        Called once the kept side is decomposed and after every matrix of the other.

    Returns
    -------
    SimilarityMatrix
        ``values[i, j]`` = method(A_list[i], B_list[j]).
    """
    method = checks.choice("method", method, METHODS)
    kernel = checks.choice("kernel", kernel, KERNELS)
    keep = _check_keep(keep)
    bandwidth = checks.positive("bandwidth", bandwidth)
    if isinstance(A_list, np.ndarray) and A_list.ndim == 2 or isinstance(B_list, np.ndarray) and B_list.ndim == 2:
        raise checks.invalid(
            "A_list and B_list", "a single matrix", "sequences of 2-D matrices (wrap a single matrix in a list)", TypeError
        )
    symmetric = A_list is B_list
    A_list, B_list = _indexable(A_list), _indexable(B_list)
    for name, matrices in (("A_list", A_list), ("B_list", B_list)):
        if not len(matrices):
            raise checks.invalid(name, matrices, "a non-empty sequence of (n_samples, d) matrices")
    row_labels = _labels(row_labels, len(A_list), "row_labels")
    column_labels = _labels(column_labels, len(B_list), "column_labels")

    row_shapes, column_shapes = _shapes(A_list), _shapes(B_list)
    n_samples = column_shapes[0][0] if len(column_shapes[0]) == 2 else None
    if any(len(shape) != 2 or shape[0] != n_samples for shape in row_shapes + column_shapes):
        raise checks.invalid(
            "the matrices' shapes", [tuple(shape) for shape in row_shapes + column_shapes],
            "2-D, all with the same number of samples (token positions)",
        )
    entry = METHODS[method]

    def kept_size(shapes) -> int:
        return sum(min(n_samples, shape[1]) for shape in shapes)

    swap = not symmetric and entry.symmetric and kept_size(row_shapes) < kept_size(column_shapes)
    kept, streamed = (A_list, B_list) if swap else (B_list, A_list)
    kept_name, streamed_name = ("A_list", "B_list") if swap else ("B_list", "A_list")
    # Many pairs: a Gram dot product (n^2) beats X^T Y (n * d1 * d2) whenever the Grams fit in memory.
    options = Options(kernel, keep, bandwidth, gram=kernel == "rbf" or _fits_gram_budget(n_samples, len(kept) + 1))
    report = progress or (lambda fraction, message: None)
    # Each kept matrix is read, centred (float64) and prepared in turn: its preparation is kept, not the matrix.
    prepared_kept, max_dimensions = [], 0
    for j in range(len(kept)):
        centred = _centred(kept[j], f"{kept_name}[{j}]")
        prepared_kept.append(entry.prepare(centred, options))
        max_dimensions = max(max_dimensions, _dimensions(prepared_kept[-1], centred.shape[1]))
        del centred
    steps = len(kept) + len(streamed)  # one per decomposition: each kept matrix, then each other one with its scores
    report(len(kept) / steps, f"decomposed the {len(kept)} {'row' if swap else 'column'} matrices")
    values = np.empty((len(streamed), len(kept)))
    for i in range(len(streamed)):
        if symmetric:
            prepared = prepared_kept[i]
        else:
            centred = _centred(streamed[i], f"{streamed_name}[{i}]")
            prepared = entry.prepare(centred, options)
            max_dimensions = max(max_dimensions, _dimensions(prepared, centred.shape[1]))
            del centred
        values[i] = [entry.function(prepared, other) for other in prepared_kept]
        report(
            (len(kept) + i + 1) / steps,
            f"scored {'column' if swap else 'row'} {i + 1} of {len(streamed)}",
        )
    return SimilarityMatrix(
        values.T if swap else values, row_labels, column_labels, method, kernel, keep, n_samples, max_dimensions
    )


def _indexable(matrices):
    """``matrices`` as a sequence read by index: a list, tuple, 3-D array or StoredArray as it is (a stored
    stack is read one matrix at a time, never whole), anything else iterable as a list."""
    if isinstance(matrices, (list, tuple, np.ndarray, StoredArray)):
        return matrices
    try:
        return list(matrices)
    except TypeError as error:
        raise checks.invalid("A_list and B_list", type(matrices), "sequences of 2-D matrices", TypeError) from error


def _shapes(matrices) -> list[tuple[int, ...]]:
    """The shape of each matrix of a sequence, without reading a stored stack."""
    if isinstance(matrices, (np.ndarray, StoredArray)) and len(matrices.shape) == 3:
        return [tuple(matrices.shape[1:])] * len(matrices)
    return [tuple(np.shape(matrix)) for matrix in matrices]


def _labels(labels, count: int, name: str) -> tuple[str, ...]:
    if labels is None:
        return tuple(str(i) for i in range(count))
    labels = tuple(str(label) for label in labels)
    if len(labels) != count:
        raise checks.invalid(name, labels, f"{count} labels, one per matrix")
    return labels


# ---------------------------------------------------------------- saturation
@dataclass(frozen=True)
class Saturation:
    """Whether a CCA-family matrix can be anything but 1 everywhere, known from its sizes before any run.

    Centred over ``n_positions`` token positions, a layer of width d has rank
    at most ``min(n_positions - 1, d)``. Once one side of a pair spans all
    ``n_positions - 1`` centred dimensions, the other side lies inside it
    and every canonical correlation is exactly 1 whatever the activations.
    Real activations have full rank up to that bound (numerically a little
    less), so this is the verdict to expect.

    Attributes
    ----------
    method : str
    n_positions : int
    row_rank, column_rank : int
        The largest rank a row / column layer can have: its widest layer (for
        SVCCA with a whole-number ``keep``, the directions kept), at most
        ``n_positions - 1``. SVCCA with a fraction keeps fewer directions, known
        only from the run.
    row_width, column_width : int
        The widest row and column layer.
    forced : bool
        Every value is 1 whatever the activations: no run can leave saturation.
    needed_positions : int
        The fewest positions with which no side can span them all (the widest
        layer's width + 2), so the matrix can leave saturation.
    unforced_positions : int
        From this many positions on no canonical correlation is forced to 1
        (the widest row and column layers' widths together + 1).
    """

    method: str
    n_positions: int
    row_rank: int
    column_rank: int
    row_width: int
    column_width: int
    forced: bool
    needed_positions: int
    unforced_positions: int

    def describe(self) -> str:
        """The verdict in words: the positions against the two ranks, and what would leave saturation."""
        label = self.method.upper()
        sides = (f"{self.n_positions:,} token positions against ranks of up to {self.row_rank:,} (rows, "
                 f"{self.row_width:,} wide) and {self.column_rank:,} (columns, {self.column_width:,} wide)")
        if self.forced:
            return (f"{label} cannot leave saturation here: {sides}. One side spans every position, so every "
                    f"canonical correlation is exactly 1 whatever the activations. It takes at least "
                    f"{self.needed_positions:,} positions to leave saturation, and {self.unforced_positions:,} "
                    "for no canonical correlation to be forced to 1.")
        if self.n_positions < self.unforced_positions:
            return (f"{label} can leave saturation: {sides}. Some canonical correlations are still forced to 1 "
                    f"(the two ranks together pass the positions) until {self.unforced_positions:,} positions.")
        return f"{label} can leave saturation: {sides}; no canonical correlation is forced to 1."


def saturation(
    n_positions: int, row_widths: Sequence[int], column_widths: Sequence[int], method: str = "pwcca",
    keep: float | int = 0.99,
) -> Saturation | None:
    """Whether :func:`similarity_matrix` of layers this wide over ``n_positions`` can leave saturation.

    Parameters
    ----------
    n_positions : int
        Token positions compared (the samples).
    row_widths, column_widths : sequence of int
        The width of each row / column layer (``d_model`` for hidden states, ``d_ff`` for FFN activations).
    method : {"cka", "pwcca", "svcca", "cca"}
    keep : SVCCA's option, as in :func:`svcca`

    Returns
    -------
    Saturation or None
        None for CKA, which does not saturate.

    Examples
    --------
    >>> saturation(1145, [576] * 31, [1536] * 30, "pwcca").forced   # 40 UD sentences, hidden states x FFN
    True
    """
    method = checks.choice("method", method, METHODS)
    keep = _check_keep(keep)
    n_positions = checks.whole("n_positions", n_positions, low=2)
    if not METHODS[method].canonical:
        return None
    widths = []
    for name, values in (("row_widths", row_widths), ("column_widths", column_widths)):
        values = [checks.whole(f"{name}[{i}]", width, low=1) for i, width in enumerate(values)]
        if not values:
            raise checks.invalid(name, values, "the width of each layer (a non-empty sequence of whole numbers)")
        widths.append(max(values))
    # The dimensions each side can keep: its widest layer, or SVCCA's whole number of directions.
    kept = [min(width, keep) for width in widths] if method == "svcca" and isinstance(keep, int) else widths
    ranks = [min(n_positions - 1, dimensions) for dimensions in kept]
    # SVCCA keeping a fraction of the variance keeps fewer directions than the rank: only the run tells how many.
    can_span = method != "svcca" or isinstance(keep, int) or keep == 1.0
    return Saturation(
        method=method, n_positions=n_positions, row_rank=ranks[0], column_rank=ranks[1], row_width=widths[0],
        column_width=widths[1], forced=can_span and max(ranks) >= n_positions - 1,
        needed_positions=max(kept) + 2, unforced_positions=sum(kept) + 1,
    )


def ud_sentences_for(lm: LM, n_positions: int, *, skip_special: bool = True, skip_first: bool = False,
                     most: int = 2000) -> int | None:
    """The fewest of :func:`ud_sentences` whose token positions reach ``n_positions``; None past ``most`` sentences.

    Positions are counted as :func:`corpus_similarity` counts them: each
    sentence tokenised as a prompt, less its special tokens when
    ``skip_special`` and its first token when ``skip_first``.
    """
    n_positions = checks.whole("n_positions", n_positions, low=1)
    most = checks.whole("most", most, low=1)
    total = 0
    for count, text in enumerate(ud_sentences(most), start=1):
        total += positions_compared(lm, [text], skip_special=skip_special, skip_first=skip_first)
        if total >= n_positions:
            return count
    return None


def positions_compared(lm: LM, source, *, skip_special: bool = True, skip_first: bool = False) -> int:
    """How many token positions a comparison over ``source`` samples, counted as the comparisons count them.

    Parameters
    ----------
    lm : LM
    source : Capture, or sequence of str
        One capture (as :func:`layer_similarity` reads it) or texts, each
        tokenised as a prompt (as :func:`corpus_similarity` reads them).
    skip_special, skip_first : bool
        See :func:`layer_activations`.

    Returns
    -------
    int
        The positions left once special tokens and first tokens are left out as asked: the samples that
        :func:`saturation` weighs against the layers' ranks.
    """
    if isinstance(source, Capture):
        masks = [source.special]
    elif isinstance(source, str) or not isinstance(source, Sequence):
        raise checks.invalid("source", source, "a Capture or a sequence of texts (str)", TypeError)
    else:
        masks = [special_mask(lm.tokenizer, encode_prompt(lm, text, argument=f"source[{index}]"))
                 for index, text in enumerate(source)]
    return sum(int(_kept(mask, skip_special, skip_first).sum()) for mask in masks)


# ------------------------------------------------------------------ captures
def layer_activations(captures, representation: str = "hidden", *, skip_special: bool = True,
                      skip_first: bool = False) -> list[np.ndarray]:
    """Every layer's activations, token positions of all captures concatenated.

    Parameters
    ----------
    captures : Capture or sequence of Capture
        Captures of one model (several texts pool their token positions).
    representation : {"hidden", "ffn"}
    skip_special : bool
        Leave out special tokens (BOS, [CLS], [SEP]): their hidden states are
        often orders of magnitude larger than any other token's and would
        dominate every score.
    skip_first : bool
        Leave out each text's first token too, special or not. Causal models
        make it an attention sink: SmolLM2-135M's block 15 output has a norm
        near 24,600 there against 150 to 200 elsewhere, one sample that
        dominates every score (linear CKA of block 15 against block 28's FFN:
        1.00 with it, 0.73 without). Pages leave it out on causal models.

    Returns
    -------
    list of ndarray of shape (n_tokens_total, d_model) or (n_tokens_total, d_ff)
        n_layers + 1 entries for "hidden" (``hidden_states[0]``, the
        embeddings, then block ``i``'s output at entry ``i + 1``), n_layers
        for "ffn" (block ``i``'s FFN at entry ``i``); :func:`layer_labels`
        names them.
    """
    representation = checks.choice("representation", representation, REPRESENTATIONS)
    captures = _check_captures(captures)
    stacks = [cap.hidden_states if representation == "hidden" else cap.ffn for cap in captures]
    positions = [_kept(cap.special, skip_special, skip_first) for cap in captures]
    return [
        np.concatenate([stack[layer][kept] for stack, kept in zip(stacks, positions)], axis=0)
        for layer in range(stacks[0].shape[0])
    ]


def _kept(special: np.ndarray, skip_special: bool, skip_first: bool) -> np.ndarray:
    """Which positions of one text are compared: all but the special tokens and the first, as asked."""
    kept = ~special if skip_special else np.ones(len(special), dtype=bool)
    if skip_first:
        kept[:1] = False
    return kept


def _check_captures(captures) -> list[Capture]:
    captures = [captures] if isinstance(captures, Capture) else list(captures)
    if not captures:
        raise checks.invalid("captures", captures, "a Capture or a non-empty list of Captures")
    for index, cap in enumerate(captures):
        if not isinstance(cap, Capture):
            raise checks.invalid(f"captures[{index}]", type(cap), "an ecco_core Capture", TypeError)
    names = {cap.model_name for cap in captures}
    if len(names) > 1:
        raise checks.invalid("the captures' models", sorted(names), "one model (pool captures of one model)")
    return captures


def layer_similarity(
    captures,
    method: str = "cka",
    *,
    rows: str = "hidden",
    columns: str = "ffn",
    kernel: str = "linear",
    keep: float | int = 0.99,
    bandwidth: float = 1.0,
    skip_special: bool = True,
    skip_first: bool = False,
    progress: Callable[[float, str], None] | None = None,
) -> SimilarityMatrix:
    """The paper's Figure 6: layer-by-layer similarity, e.g. hidden states vs FFN activations.

    Parameters
    ----------
    captures : Capture or sequence of Capture
        One text, or several texts of one model whose token positions are
        pooled (the CCA family needs many more positions than dimensions).
    method : {"cka", "pwcca", "svcca", "cca"}
    rows, columns : {"hidden", "ffn"}
        What each axis compares: hidden states (n_layers + 1: the embeddings,
        then each block's output) or FFN activations (n_layers).
    kernel, bandwidth, keep : options of :func:`cka` and :func:`svcca`
    skip_special, skip_first : bool
        See :func:`layer_activations`; pass ``skip_first=cap.causal`` to leave
        out a causal model's attention sink.
    progress : callable(fraction, message), optional
        As in :func:`similarity_matrix`.

    Returns
    -------
    SimilarityMatrix
        Labels from :mod:`ecco_core.layers`: "embeddings" (``hidden_states[0]``),
        "block 2" (block 2's output, ``hidden_states[3]``), "block 2 FFN"
        (``ffn[2]``).

    Examples
    --------
    >>> import ecco_core as ec
    >>> lm = ec.load()
    >>> cap = ec.capture(lm, "The keys to the cabinet are on the table.")
    >>> ec.similarity.layer_similarity(cap, "cka").values.shape   # (n_layers + 1, n_layers)
    (31, 30)
    """
    skips = dict(skip_special=skip_special, skip_first=skip_first)
    row_stack = layer_activations(captures, rows, **skips)
    _check_enough_positions(len(row_stack[0]), **skips)
    column_stack = row_stack if columns == rows else layer_activations(captures, columns, **skips)
    return _layer_matrix(row_stack, column_stack, method, rows, columns, kernel=kernel, keep=keep,
                         bandwidth=bandwidth, progress=progress)


def _layer_matrix(row_stack, column_stack, method: str, rows: str, columns: str, **options) -> SimilarityMatrix:
    """:func:`similarity_matrix` of two layer stacks, labelled and titled by the representations they hold."""
    result = similarity_matrix(
        row_stack, column_stack, method,
        row_labels=layer_labels(rows, len(row_stack)), column_labels=layer_labels(columns, len(column_stack)),
        **options,
    )
    return replace(result, row_title=REPRESENTATION_TITLES[rows], column_title=REPRESENTATION_TITLES[columns])


def _check_enough_positions(n_positions: int, skip_special: bool, skip_first: bool) -> None:
    if n_positions < 2:
        left_out = [what for what, skipped in (("special tokens", skip_special), ("the first token", skip_first))
                    if skipped]
        raise ValueError(
            f"only {n_positions} token position(s) left to compare"
            + (f" after leaving out {' and '.join(left_out)}" if left_out else "")
            + "; give a longer text"
        )


def corpus_similarity(
    lm: LM,
    texts: Sequence[str],
    method: str = "cka",
    *,
    rows: str = "hidden",
    columns: str = "ffn",
    kernel: str = "linear",
    keep: float | int = 0.99,
    bandwidth: float = 1.0,
    skip_special: bool = True,
    skip_first: bool = False,
    batch_size: int = 16,
    store: str = "auto",
    progress: Callable[[float, str], None] | None = None,
) -> SimilarityMatrix:
    """:func:`layer_similarity` over many texts, without a Capture per text or every layer in memory.

    The model runs over the texts in padded batches (an attention mask,
    :func:`ecco_core.corpus.record_positions`); only the representations
    ``rows`` and ``columns`` name are kept, at the compared positions (not
    the special tokens when ``skip_special``, nor each text's first token when
    ``skip_first``), in memory or in an on-disk
    :class:`~ecco_core.store.ActivationStore` that
    :func:`similarity_matrix` reads one layer at a time. The store is deleted
    before this returns. Each text is tokenised as :func:`ecco_core.capture`
    tokenises a prompt, so the result equals
    ``layer_similarity([ec.capture(lm, t) for t in texts], ...)``.

    Parameters
    ----------
    lm : LM
    texts : sequence of str, n_texts >= 1
        Each one fits the model's context; their token positions are pooled.
    method, rows, columns, kernel, keep, bandwidth, skip_special, skip_first
        As in :func:`layer_similarity`.
    batch_size : int, default 16
        Texts per forward pass.
    store : {"auto", "disk", "memory"}, default "auto"
        Where the kept activations go; ``"auto"`` takes the disk when they
        would pass :data:`ecco_core.corpus.IN_MEMORY_BYTES` as float32.
    progress : callable(fraction, message), optional
        The model's passes take the first half, :func:`similarity_matrix` the second.

    Returns
    -------
    SimilarityMatrix
        n_layers + 1 rows or columns for "hidden", n_layers for "ffn", labelled as in :func:`layer_similarity`.

    Notes
    -----
    Precision: the store keeps float32 for every method, so the values equal
    the in-memory ones (measured on 50 UD sentences of the causal default:
    within 1e-8 for linear CKA, 5e-8 for RBF CKA). float16 (the store's
    per-dimension shift and scale, as probing uses) was measured too and
    left out: it moved linear CKA by up to 7e-5 and RBF CKA by up to 1.7e-4,
    visible at the four decimals results are read at, and the CCA family's
    float64 math is more sensitive still. It would halve the disk used, not
    the memory: a layer is read back as float32 either way.

    Examples
    --------
    >>> lm = ec.load()
    >>> result = corpus_similarity(lm, ud_sentences(200), "pwcca", store="disk")   # doctest: +SKIP
    >>> result.values.shape                                                     # (n_layers + 1, n_layers)
    (31, 30)
    """
    method = checks.choice("method", method, METHODS)
    kernel = checks.choice("kernel", kernel, KERNELS)
    keep = _check_keep(keep)
    bandwidth = checks.positive("bandwidth", bandwidth)
    rows = checks.choice("rows", rows, REPRESENTATIONS)
    columns = checks.choice("columns", columns, REPRESENTATIONS)
    batch_size = checks.whole("batch_size", batch_size, low=1)
    store = checks.choice("store", store, STORES)
    input_ids, positions = _corpus_positions(lm, texts, skip_special, skip_first)
    n_samples = sum(len(kept) for kept in positions)
    widths = {"hidden": ("hidden_states", lm.n_layers + 1, lm.d_model), "ffn": ("ffn", lm.n_layers, lm.d_ff)}
    shapes = {site: (count, n_samples, width) for site, count, width in (widths[rows], widths[columns])}
    wanted = {site: {index: index for index in range(count)} for site, (count, _, _) in shapes.items()}
    outputs = allocate(shapes, store, dtype="float32")
    report = progress or (lambda fraction, message: None)
    try:
        record_positions(
            lm, input_ids, positions, outputs, wanted, batch_size=batch_size,
            update=lambda fraction, message: report(fraction / 2, message),
        )
        return _layer_matrix(
            outputs[widths[rows][0]], outputs[widths[columns][0]], method, rows, columns, kernel=kernel, keep=keep,
            bandwidth=bandwidth, progress=lambda fraction, message: report(0.5 + fraction / 2, message),
        )
    finally:
        close_store(outputs)


def _corpus_positions(lm: LM, texts, skip_special: bool, skip_first: bool) -> tuple[list, list]:
    """Each text's token ids and the positions compared in it, checked (at least 2 positions in all)."""
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise checks.invalid("texts", texts, "a non-empty sequence of texts (str)", TypeError)
    if not texts:
        raise checks.invalid("texts", texts, "a non-empty sequence of texts (str)")
    input_ids, positions = [], []
    for index, text in enumerate(texts):
        ids = encode_prompt(lm, text, argument=f"texts[{index}]")
        if len(ids) > lm.context_length:
            raise checks.invalid(
                f"texts[{index}]", checks.words(f"{len(ids)} tokens"),
                f"at most the model's context of {lm.context_length} tokens",
            )
        kept = _kept(special_mask(lm.tokenizer, ids), skip_special, skip_first)
        input_ids.append(ids)
        positions.append(np.flatnonzero(kept))
    _check_enough_positions(sum(len(kept) for kept in positions), skip_special, skip_first)
    return input_ids, positions


def corpus_pair(lm: LM, texts: Sequence[str], row: int, column: int, *, rows: str = "hidden",
                columns: str = "ffn", skip_special: bool = True, skip_first: bool = False,
                batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The two layers of one cell of :func:`corpus_similarity`'s matrix, token positions of every text pooled.

    What a test of that one cell needs (a permutation baseline,
    :func:`ecco_core.trust.permutation_baseline`) without keeping every layer:
    one pass over the texts keeps the two layers only.

    Parameters
    ----------
    lm, texts, rows, columns, skip_special, skip_first, batch_size
        As for :func:`corpus_similarity`.
    row, column : int
        The cell: indices into :func:`layer_labels` of ``rows`` and ``columns``.

    Returns
    -------
    X : ndarray of shape (n_samples, width of rows), float32
    Y : ndarray of shape (n_samples, width of columns), float32
    """
    rows = checks.choice("rows", rows, REPRESENTATIONS)
    columns = checks.choice("columns", columns, REPRESENTATIONS)
    counts = {"hidden": lm.n_layers + 1, "ffn": lm.n_layers}
    row = checks.whole("row", row, low=0, high=counts[rows] - 1)
    column = checks.whole("column", column, low=0, high=counts[columns] - 1)
    batch_size = checks.whole("batch_size", batch_size, low=1)
    input_ids, positions = _corpus_positions(lm, texts, skip_special, skip_first)
    n_samples = sum(len(kept) for kept in positions)
    sites = {"hidden": ("hidden_states", lm.d_model), "ffn": ("ffn", lm.d_ff)}
    wanted: dict[str, dict[int, int]] = {}
    for representation, index in ((rows, row), (columns, column)):
        recorded = wanted.setdefault(sites[representation][0], {})
        recorded.setdefault(index, len(recorded))
    shapes = {site: (len(recorded), n_samples, dict(sites.values())[site]) for site, recorded in wanted.items()}
    outputs = allocate(shapes, "memory", dtype="float32")
    record_positions(lm, input_ids, positions, outputs, wanted, batch_size=batch_size,
                     update=lambda fraction, message: None)
    pair = [outputs[sites[rep][0]][wanted[sites[rep][0]][index]] for rep, index in ((rows, row), (columns, column))]
    return np.asarray(pair[0]), np.asarray(pair[1])

