"""Every matrix of one list against every matrix of another, each decomposed once; and the saturation verdict.

:func:`similarity_matrix` returns a :class:`SimilarityMatrix`; :func:`saturation`
says from the sizes alone whether a CCA-family matrix can be anything but 1.
"""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .. import _checks as checks
from .._blas import one_blas_thread
from ..store import StoredArray
from .metrics import (
    KERNELS, METHODS, SAMPLES_PER_DIMENSION, SATURATED_TOLERANCE, Options, SimilarityMethod, centred_columns,
    check_keep, fits_gram_budget, kept_dimensions,
)

#: Seconds between two progress reports while one matrix's pairs are scored: a report comes after the first pair past
#: them.
REPORT_EVERY_S = 1.0


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
        if not METHODS[self.method].canonical or self.n_samples >= SAMPLES_PER_DIMENSION * self.max_dimensions:
            return None
        return (
            f"{self.label} compares {self.n_samples} token positions in up to {self.max_dimensions} dimensions. "
            "Canonical correlations are biased towards 1 unless the positions far outnumber the dimensions "
            f"(rule of thumb here: {SAMPLES_PER_DIMENSION}x), and are exactly 1 once both ranks together reach "
            "the number of positions. Use CKA, or pool more sentences."
        )

    @property
    def saturated(self) -> bool:
        """True when a CCA-family score is 1 for every pair: a consequence of too few positions, not a finding.

        Once the two subspaces together span every token position, each
        direction of one is a linear combination of the other's, so every
        canonical correlation is 1 (a single prompt always does this).
        """
        return self.method != "cka" and bool(np.all(self.values > 1 - SATURATED_TOLERANCE))

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
        Called after every matrix decomposed, and every second or so while a matrix's pairs are scored.

    Returns
    -------
    SimilarityMatrix
        ``values[i, j]`` = method(A_list[i], B_list[j]).
    """
    method = checks.choice("method", method, METHODS)
    kernel = checks.choice("kernel", kernel, KERNELS)
    keep = check_keep(keep)
    bandwidth = checks.positive("bandwidth", bandwidth)
    symmetric = A_list is B_list
    A_list, B_list, row_shapes, column_shapes, n_samples = _checked_lists(A_list, B_list)
    row_labels = _labels(row_labels, len(A_list), "row_labels")
    column_labels = _labels(column_labels, len(B_list), "column_labels")
    values, max_dimensions = matrix_values(
        A_list, B_list, METHODS[method], Options(kernel, keep, bandwidth),
        widths=([shape[1] for shape in row_shapes], [shape[1] for shape in column_shapes]), n_samples=n_samples,
        symmetric=symmetric, progress=progress,
    )
    return SimilarityMatrix(values, row_labels, column_labels, method, kernel, keep, n_samples, max_dimensions)


def matrix_values(A_list, B_list, entry: SimilarityMethod, options: Options, *, widths: tuple, n_samples: int,
                  symmetric: bool = False, progress: Callable[[float, str], None] | None = None,
                  ) -> tuple[np.ndarray, int]:
    """The work of :func:`similarity_matrix` on checked inputs: ``(values, max_dimensions)``.

    ``entry`` is the method's entry of :data:`METHODS`, ``options`` its
    options (``gram`` is decided here), ``widths`` the width of each matrix
    of ``A_list`` and of ``B_list`` and ``symmetric`` whether they are one
    list. numpy and this package's metrics alone, so that a similarity
    session (:func:`ecco_core.similarity.traced._session`) runs this
    same function where the model runs, on the layers it kept there.
    """
    def kept_size(side_widths) -> int:
        return sum(min(n_samples, width) for width in side_widths)

    swap = not symmetric and entry.symmetric and kept_size(widths[0]) < kept_size(widths[1])
    kept, streamed = (A_list, B_list) if swap else (B_list, A_list)
    kept_name, streamed_name = ("A_list", "B_list") if swap else ("B_list", "A_list")
    # Many pairs: a Gram dot product (n^2) beats X^T Y (n * d1 * d2) whenever the Grams fit in memory.
    options = Options(options.kernel, options.keep, options.bandwidth,
                      gram=options.kernel == "rbf" or fits_gram_budget(n_samples, len(kept) + 1))
    report = progress or (lambda fraction, message: None)
    # Each kept matrix is read, centred (float64) and prepared in turn: its preparation is kept, not the matrix.
    prepared_kept, max_dimensions = [], 0
    steps = len(kept) + len(streamed)  # one per decomposition: each kept matrix, then each other one with its scores
    for j in range(len(kept)):
        centred = centred_columns(kept[j], f"{kept_name}[{j}]")
        prepared_kept.append(entry.prepare(centred, options))
        max_dimensions = max(max_dimensions, kept_dimensions(prepared_kept[-1], centred.shape[1]))
        del centred
        report((j + 1) / steps, f"decomposed {j + 1} of the {len(kept)} {'row' if swap else 'column'} matrices")
    values = np.empty((len(streamed), len(kept)))
    reported = time.perf_counter()
    for i in range(len(streamed)):
        if symmetric:
            prepared = prepared_kept[i]
        else:
            centred = centred_columns(streamed[i], f"{streamed_name}[{i}]")
            prepared = entry.prepare(centred, options)
            max_dimensions = max(max_dimensions, kept_dimensions(prepared, centred.shape[1]))
            del centred
        for j, other in enumerate(prepared_kept):
            values[i, j] = entry.function(prepared, other)
            if time.perf_counter() - reported >= REPORT_EVERY_S:  # a row of PWCCA pairs can take many seconds
                report((len(kept) + i + j / len(kept)) / steps, f"scoring {'column' if swap else 'row'} {i + 1} "
                       f"of {len(streamed)}")
                reported = time.perf_counter()
        report(
            (len(kept) + i + 1) / steps,
            f"scored {'column' if swap else 'row'} {i + 1} of {len(streamed)}",
        )
    return (values.T if swap else values), max_dimensions


@contextmanager
def one_blas_thread_anywhere() -> Iterator[None]:
    """:func:`ecco_core._blas.one_blas_thread` where this package is installed, else (NDIF's server, where a
    similarity session runs :func:`matrix_values`) threadpoolctl's limit where it is installed, else nothing.

    numpy's many small LAPACK calls run far slower on every core than on one
    (:mod:`ecco_core._blas`): 12 x 12 PWCCA pairs of 153 positions took 67 s
    on the shared 2-core machine's default threads, 1.9 s on one.
    """
    try:
        from ecco_core._blas import one_blas_thread as limited  # here, or the simulated server (remote="local")
        limit = limited()
    except ImportError:
        try:
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(1, user_api="blas")
        except ImportError:  # numpy's own threads: slower, the same values
            limit = nullcontext()
    with limit:
        yield


def shuffled_scores(X, Y, entry: SimilarityMethod, options: Options, *, n_permutations: int, seed: int,
                    progress: Callable[[float, str], None] | None = None) -> np.ndarray:
    """The score of ``X`` (n_samples, d1) against ``Y`` (n_samples, d2) with ``Y``'s rows shuffled, once per
    permutation: shape (n_permutations,), float64.

    The null of :func:`ecco_core.trust.permutation_baseline` on checked
    inputs (``entry`` and ``options`` as in :func:`matrix_values`; the
    shuffles drawn by ``numpy.random.default_rng(seed)``); a similarity
    session runs the same function where the model runs. Each matrix is
    decomposed once and each shuffle permutes ``Y``'s decomposition
    (:attr:`SimilarityMethod.permute`; a method without one prepares each
    shuffled ``Y``), so a shuffle costs one score: decomposed again at each
    shuffle, a CCA score of 1,145 positions went 22 s between two reports
    under load. ``progress`` after each shuffle, and after each
    decomposition that ends a second or more after the last report.
    """
    X, Y = np.asarray(X), np.asarray(Y)
    options = Options(options.kernel, options.keep, options.bandwidth,
                      gram=options.kernel == "rbf" or fits_gram_budget(len(X), 2))
    report = progress or (lambda fraction, message: None)
    reported = time.perf_counter()
    prepared_x = entry.prepare(centred_columns(X, "X"), options)
    if time.perf_counter() - reported >= REPORT_EVERY_S:
        report(0.0, "decomposed the first layer")
    centred_y = centred_columns(Y, "Y")
    prepared_y = entry.prepare(centred_y, options)
    if time.perf_counter() - reported >= REPORT_EVERY_S:
        report(0.0, "decomposed the second layer")
    if entry.permute is not None:
        del centred_y  # the shuffles permute its decomposition
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for shuffle in range(n_permutations):
        order = rng.permutation(len(Y))
        shuffled = entry.permute(prepared_y, order) if entry.permute is not None else entry.prepare(
            centred_y[order], options)
        null[shuffle] = entry.function(prepared_x, shuffled)
        report((shuffle + 1) / n_permutations, f"Shuffle {shuffle + 1} of {n_permutations}")
    return null


def median_cell(values: np.ndarray) -> tuple[int, int]:
    """The (row, column) of a matrix's median value (the upper one of an even count): a typical cell to test."""
    values = np.asarray(values)
    return tuple(int(i) for i in np.unravel_index(np.argsort(values, axis=None)[values.size // 2], values.shape))


def _checked_lists(A_list, B_list):
    """Both lists read by index, each matrix's shape (2-D, one number of samples) and that number of samples."""
    if isinstance(A_list, np.ndarray) and A_list.ndim == 2 or isinstance(B_list, np.ndarray) and B_list.ndim == 2:
        raise checks.invalid("A_list and B_list", "a single matrix",
                             "sequences of 2-D matrices (wrap a single matrix in a list)", TypeError)
    A_list, B_list = _indexable(A_list), _indexable(B_list)
    for name, matrices in (("A_list", A_list), ("B_list", B_list)):
        if not len(matrices):
            raise checks.invalid(name, matrices, "a non-empty sequence of (n_samples, d) matrices")
    row_shapes, column_shapes = _shapes(A_list), _shapes(B_list)
    n_samples = column_shapes[0][0] if len(column_shapes[0]) == 2 else None
    if any(len(shape) != 2 or shape[0] != n_samples for shape in row_shapes + column_shapes):
        raise checks.invalid(
            "the matrices' shapes", [tuple(shape) for shape in row_shapes + column_shapes],
            "2-D, all with the same number of samples (token positions)",
        )
    return A_list, B_list, row_shapes, column_shapes, n_samples


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
    keep = check_keep(keep)
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
