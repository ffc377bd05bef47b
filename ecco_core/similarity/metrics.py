"""The similarity measures of two matrices, and the registry of methods (numbers in, a float in [0, 1] out).

:func:`cca`, :func:`svcca`, :func:`pwcca` and :func:`cka` compare ``X`` of
shape (n_samples, d1) with ``Y`` of shape (n_samples, d2); :data:`METHODS`
holds each one's per-matrix preparation and pairwise score, which
:func:`ecco_core.similarity.similarity_matrix` runs over many matrices. See
:mod:`ecco_core.similarity` for the methods and the trap of the CCA family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from .. import _checks as checks
from .._blas import one_blas_thread

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
SAMPLES_PER_DIMENSION = 5
# Canonical correlations are accurate to about 1e-8; every score above 1 - this is "all 1".
SATURATED_TOLERANCE = 1e-6


# ----------------------------------------------------------------- validation
def centred_columns(values, name: str) -> np.ndarray:
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
    X, Y = centred_columns(X, "X"), centred_columns(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise checks.invalid("Y.shape", Y.shape, f"{X.shape[0]} samples (token positions), the same number as X")
    return X, Y


def check_keep(keep) -> float | int:
    """SVCCA's ``keep``, checked: a fraction of the variance in (0, 1] (float) or a number of directions (int)."""
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


# A preparation of the same matrix with its rows (token positions) in another order, made without decomposing it
# again: shuffling the samples permutes the rows of the basis of their span (the Gram X^T X and so the directions
# and loadings stay, or the eigenvectors of X X^T are permuted alike) and both axes of an (n, n) Gram.
def _permuted_subspace(space: _Subspace, order: np.ndarray) -> _Subspace:
    return _Subspace(space.basis[order], space.loadings, space.variances)


def _permuted_kernel_input(prepared: _KernelInput, order: np.ndarray) -> _KernelInput:
    if prepared.unit_gram is not None:
        return _KernelInput(unit_gram=prepared.unit_gram[np.ix_(order, order)])
    if prepared.centred is not None:
        return _KernelInput(centred=prepared.centred[order], feature_norm=prepared.feature_norm)
    return prepared  # a constant input: nothing to permute


class Work(NamedTuple):
    """The counted work of one step of :func:`similarity_matrix`, which :mod:`ecco_core.estimates` turns into seconds.

    ``products``: matrix-product multiply-adds; ``eigh`` / ``eigvals``: ``m^3 + EIG_SQUARES m^2``
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


#: An (m, m) symmetric eigendecomposition counts ``m^3 + EIG_SQUARES * m^2`` (:class:`Work`'s ``eigh`` and
#: ``eigvals``): LAPACK's O(m^2) passes cost as much as its m^3 below m of about 200 (one BLAS thread, 2026-12-07:
#: eigh ran at 4e8 m^3 per second at m = 30, 2.4e9 at 200, 4.6e9 at 1,128), so one rate per m^3 fitted to small
#: matrices counted the large ones several times over.
EIG_SQUARES = 200
#: SVCCA's kept directions for a fraction ``keep`` of the variance, as a share of the rank: ``keep ** KEPT_EXPONENT``
#: (0.67 at 0.99). Measured on the causal default at keep 0.99 (40 UD sentences, 1,145 positions): 742-792 of the
#: FFN's 1,128 directions, 249 of block 5's hidden state's 576, and 1 where the attention sink holds the variance
#: (10 UD sentences: 184-194 of 233 and 110). The data decides; an estimate takes the usual share.
KEPT_EXPONENT = 40


def _eig(m: int) -> float:
    return float(m) ** 3 + EIG_SQUARES * float(m) ** 2


def _kept_rank(rank: int, keep: float | int) -> int:
    """The directions SVCCA is expected to keep of ``rank``: ``keep`` of them, or the usual share for a fraction."""
    if isinstance(keep, int):
        return min(keep, rank)
    return max(1, min(rank, round(rank * keep**KEPT_EXPONENT)))


def _subspace_work(n: int, d: int, options: Options) -> Work:
    """The CCA family's preparation: the smaller Gram (``d^2 n`` or ``n^2 d``), its eigh and the basis (``n d r``)."""
    return Work(products=n * d * min(n, d) + n * d * min(n - 1, d), eigh=_eig(min(n, d)))


def _overlap_work(n: int, rank_x: int, rank_y: int) -> Work:
    """The overlap ``Ux^T Uy`` of two bases, its smaller square and that square's eigenvalues."""
    small, large = sorted((rank_x, rank_y))
    return Work(products=n * small * large + small * small * large, eigvals=_eig(small), calls=1)


def _canonical_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    """CCA over all directions: :func:`_overlap_work` at the ranks' bound ``min(n - 1, d)``."""
    return _overlap_work(n, min(n - 1, d_x), min(n - 1, d_y))


def _top_canonical_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    """SVCCA: :func:`_overlap_work` over the top directions it is expected to keep (:func:`_kept_rank`)."""
    return _overlap_work(n, _kept_rank(min(n - 1, d_x), options.keep), _kept_rank(min(n - 1, d_y), options.keep))


def _projection_weighted_work(n: int, d_x: int, d_y: int, options: Options) -> Work:
    """As :func:`_canonical_work` with vectors, and the weights from the smaller side's loadings (``r^2 d``): on
    both sides when the ranks tie."""
    rank_x, rank_y = min(n - 1, d_x), min(n - 1, d_y)
    small, large = sorted((rank_x, rank_y))
    width = d_x if rank_x <= rank_y else d_y
    sides = 2 if rank_x == rank_y else 1
    return Work(products=sides * (n * small * large + small * small * large + small * small * width),
                eigh=sides * _eig(small), calls=7)


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
    centring and one cross product ``Xc^T Yc``. ``options``: the options of
    :func:`similarity_matrix` it reads (``"kernel"``, ``"keep"``); a page
    shows their controls for it alone. ``permute(prepared, order)``: the
    preparation of the same matrix with its rows in ``order``, without
    preparing it again (a chance level scores many shuffles of one matrix:
    :func:`ecco_core.similarity.shuffled_scores`); None prepares each
    shuffled matrix (``prepare_work`` each time).
    """

    function: Callable[[Any, Any], float]
    description: str
    prepare: Callable[[np.ndarray, Options], Any] = _as_is
    canonical: bool = False
    symmetric: bool = False
    prepare_work: Callable[[int, int, Options], Work] = _centring_work
    pair_work: Callable[[int, int, int, Options], Work] = _cross_product_work
    options: tuple[str, ...] = ()
    permute: Callable[[Any, np.ndarray], Any] | None = None


METHODS = {
    "cka": SimilarityMethod(
        _kernel_alignment, "centred kernel alignment (Kornblith et al. 2019); kernel 'linear' or 'rbf'", _kernel_input,
        symmetric=True, prepare_work=_gram_work, pair_work=_gram_pair_work, options=("kernel",),
        permute=_permuted_kernel_input,
    ),
    "pwcca": SimilarityMethod(
        _projection_weighted,
        "projection-weighted mean canonical correlation (Morcos et al. 2018)", _all_directions, canonical=True,
        symmetric=True, prepare_work=_subspace_work, pair_work=_projection_weighted_work, permute=_permuted_subspace,
    ),
    "svcca": SimilarityMethod(
        _mean_cca,
        "mean canonical correlation of the top singular directions (Raghu et al. 2017)", _top_singular_directions,
        canonical=True, symmetric=True, prepare_work=_subspace_work, pair_work=_top_canonical_work,
        options=("keep",), permute=_permuted_subspace,
    ),
    "cca": SimilarityMethod(
        _mean_cca,
        "mean canonical correlation over all directions (Raghu et al. 2017)", _all_directions, canonical=True,
        symmetric=True, prepare_work=_subspace_work, pair_work=_canonical_work, permute=_permuted_subspace,
    ),
}
"""Similarity methods by name. Adding one is a ``function(a, b)`` (on centred
(n_samples, d) matrices unless it names a ``prepare``) and one entry here; the
page lists it and its estimate counts its ``prepare_work`` and ``pair_work``."""


def kept_dimensions(prepared, width: int) -> int:
    """Dimensions a prepared matrix kept: its numerical rank (CCA family), else its width."""
    return prepared.rank if isinstance(prepared, _Subspace) else width


def fits_gram_budget(n_samples: int, n_cached: int) -> bool:
    """Whether ``n_cached`` Gram matrices of ``n_samples`` positions fit in the cache budget (1 GiB)."""
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
    keep = check_keep(keep)
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
    gram = kernel == "rbf" or (n <= widest and fits_gram_budget(n, 2))
    options = Options(kernel=kernel, bandwidth=bandwidth, gram=gram)
    return _kernel_alignment(_kernel_input(X, options), _kernel_input(Y, options))
