"""FFN neuron activations and their factors: NMF, PCA and ICA over the tokens of a text.

A model's FFN layers hold thousands of neurons (SmolLM2-135M: 30 layers x 1536
= 46,080). Decomposing the activation matrix of shape (n_tokens, n_neurons)
into a few factors (the Ecco paper's section 4.2-4.3, Figures 9 and 10)
gives each factor a firing pattern over the tokens and a loading on every
neuron::

    activations (n_tokens, n_neurons) ~= token_activations.T @ components  (+ per-neuron mean for PCA and ICA)

Several blocks' FFNs are analysed together by stacking their neurons side by
side, as the paper does for "the entire network". ``layers`` are block
indices: block ``i``'s FFN (``Capture.ffn[i]``) is labelled ``"block i FFN"``
(:mod:`ecco_core.layers`) in every table.

The trap: NMF needs non-negative data. GPT-2's GELU dips slightly below 0,
but Llama-style gated FFNs (``act(gate) * up``) are signed with as much mass
below 0 as above; clipping at 0, as Ecco does, then throws half of each
neuron away. The result reports the clipped fraction; ``negatives="split"``
keeps both sides as two non-negative columns per neuron, and PCA and ICA use
the signed values. A second trap: causal models put a few activations tens of
times larger than any other token's on the first token (an attention sink:
SmolLM2 reaches 2800 there, 71 elsewhere); leave it out with
``positions=range(1, n_tokens)`` or it takes a factor of its own.

>>> import ecco_core as ec
>>> cap = ec.capture(ec.load(), "The keys to the cabinet are on the table.")
>>> result = ec.factors(cap, n_components=5, method="nmf", layers=range(0, 6))
>>> result.token_activations.shape               # (n_components, n_tokens)
(5, 10)
>>> result.top_neurons(3).head(3)                # factor, rank, layer ("block 2 FFN"), block, neuron, ...
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from ._blas import one_blas_thread
from ._checks import choice, indices, invalid, whole
from ._heartbeat import heartbeat
from .capture import FETCH_BYTES, Capture
from .layers import site_label

MAX_ITER = 1000
TOLERANCE = 1e-4
#: Factors asked for by default on a text of 20 analysed tokens or more (the paper's Figure 9 has 10).
DEFAULT_COMPONENTS = 10
#: Each factor's strongest neurons that come back with a fit made where the model ran (the page shows 10).
SERVED_TOP_NEURONS = 100


# ------------------------------------------------------------------ results
class _ServedLoadings:
    """The loadings of a fit made where the model ran (:func:`factors`' ``fit_on``): each factor's strongest
    neurons came back with the factors; every loading is fetched when first read (one request that fits again
    there, to the same result), once for every thread that shares the result.

    A pickled copy keeps what is here (the strongest neurons, and every loading if read before), not the way
    to fetch the rest.
    """

    def __init__(self, fetch: Callable[[], np.ndarray], top_columns: np.ndarray, top_loadings: np.ndarray):
        self._fetch, self.top_columns, self.top_loadings = fetch, top_columns, top_loadings
        self._array = None
        self._lock = threading.Lock()

    def full(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                if self._fetch is None:
                    raise ValueError("the loadings of this fit stayed where the model ran and this copy of the result "
                                     "cannot fetch them: read result.components before copying, or fit again")
                self._array = self._fetch()
            return self._array

    def __getstate__(self) -> dict:
        return {"top_columns": self.top_columns, "top_loadings": self.top_loadings, "array": self._array}

    def __setstate__(self, state: dict) -> None:
        self.__init__(None, state["top_columns"], state["top_loadings"])
        self._array = state["array"]


class _Loadings:
    """:class:`Factors`' ``components``: the array, or a :class:`_ServedLoadings` that fetches it when first read."""

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, result, owner=None):
        if result is None:
            raise AttributeError(self.name)  # no class-level default: a required dataclass field
        value = result.__dict__[self.name]
        return value.full() if isinstance(value, _ServedLoadings) else value

    def __set__(self, result, value):
        result.__dict__[self.name] = value  # the dataclass's __init__ only: the result is frozen


@dataclass(frozen=True, eq=False)
class Factors:
    """A decomposition of FFN activations into a few factors.

    Attributes
    ----------
    method : str
        ``"nmf"``, ``"pca"`` or ``"ica"``.
    token_activations : ndarray of shape (n_components, n_positions)
        How strongly each factor fires on each analysed token.
    components : ndarray of shape (n_components, n_neurons)
        Each factor's loading on every neuron (NMF's ``H``, PCA's orthonormal
        axes, ICA's mixing matrix transposed), so that the analysed matrix is
        ``token_activations.T @ components`` (plus ``mean`` for PCA and ICA).
        Of a fit made where the model ran (``fit_on``), fetched when first
        read: the factors came back with each one's strongest neurons alone
        (:meth:`top_neurons`).
    mean : ndarray of shape (n_neurons,)
        Per-neuron mean removed before PCA and ICA; zeros for NMF.
    layers : tuple of int
        The blocks whose FFN neurons were stacked, in order (block ``i`` is
        ``Capture.ffn[i]``, labelled ``"block i FFN"``).
    neuron_layers, neuron_indices : ndarray of shape (n_neurons,), int
        Block and index within its FFN (0 .. d_ff - 1) of each column.
    neuron_signs : ndarray of shape (n_neurons,), int
        +1 for a neuron's activation (or its positive part), -1 for the
        column holding its negated negative part (``negatives="split"``).
    positions : ndarray of shape (n_positions,), int
        The token positions analysed (all tokens unless ``positions`` was given).
    tokens : tuple of str, length n_positions
        Display text of the analysed tokens.
    reconstruction_error : float
        ``||X - X_hat||_F / ||X||_F`` of the analysed matrix ``X`` (clipped for NMF).
    explained_variance : float
        ``1 - ||X - X_hat||^2 / ||X - mean(X)||^2``: the share of the
        activations' variance over tokens that the factors reproduce.
    negatives : str
        How NMF treated negative activations: ``"clip"`` or ``"split"``
        (``"signed"`` for PCA and ICA).
    clipped_fraction : float
        Share of activation entries below 0 that NMF set to 0 (0.0 when
        split, and for PCA and ICA).
    converged : bool
        False when NMF or FastICA stopped at its iteration limit.
    seed : int
    """

    method: str
    token_activations: np.ndarray
    components: np.ndarray = _Loadings()
    mean: np.ndarray
    layers: tuple[int, ...]
    neuron_layers: np.ndarray
    neuron_indices: np.ndarray
    neuron_signs: np.ndarray
    positions: np.ndarray
    tokens: tuple[str, ...]
    reconstruction_error: float
    explained_variance: float
    negatives: str
    clipped_fraction: float
    converged: bool
    seed: int

    @property
    def n_components(self) -> int:
        return self.token_activations.shape[0]

    @property
    def n_neurons(self) -> int:
        return len(self.neuron_indices)

    @property
    def fitted_on(self) -> str:
        """Where the fit ran: ``"server"`` where the model ran (only the factors came back, ``components`` is
        fetched when first read), else ``"here"`` (:func:`factors`' ``fit_on``)."""
        return "server" if isinstance(self.__dict__["components"], _ServedLoadings) else "here"

    @property
    def note(self) -> str:
        """What was done to the activations before factoring, in one sentence."""
        scope = f"{self.n_neurons} neurons of {_ffn_span(self.layers)} over {len(self.positions)} tokens"
        if self.negatives == "split":
            return (
                f"NMF of {scope}; each neuron's positive part and negated negative part are two "
                "non-negative columns (sign +1 and -1), so nothing was clipped."
            )
        if self.negatives == "clip":
            return (
                f"NMF of {scope}; negative activations ({self.clipped_fraction:.1%} of entries) "
                "were clipped to 0 because NMF needs non-negative data."
            )
        centring = "each neuron's mean was removed and " if np.any(self.mean) else ""
        return f"{method_name(self.method)} of {scope}; {centring}each factor's sign chosen so that its strongest " \
               "token is positive."

    def top_neurons(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` neurons with the largest loading magnitude in each factor.

        Returns
        -------
        DataFrame with columns factor, rank (1 = strongest), layer (the
        neuron's FFN, ``"block 2 FFN"``), block (2), neuron, sign (see
        ``neuron_signs``), loading; ``n_components * k`` rows.
        """
        k = whole("k", k, low=1, high=self.n_neurons)
        served = self.__dict__["components"]
        if isinstance(served, _ServedLoadings) and k <= served.top_columns.shape[1]:
            order, loadings = served.top_columns[:, :k], served.top_loadings[:, :k]  # no request
        else:
            order = np.argsort(-np.abs(self.components), axis=1, kind="stable")[:, :k]
            loadings = np.take_along_axis(self.components, order, axis=1)
        factor = np.repeat(np.arange(self.n_components), k)
        columns = order.ravel()
        return pd.DataFrame(
            {
                "factor": factor,
                "rank": np.tile(np.arange(1, k + 1), self.n_components),
                **_ffn_columns(self.neuron_layers[columns]),
                "neuron": self.neuron_indices[columns],
                "sign": self.neuron_signs[columns],
                "loading": loadings.ravel(),
            }
        )

    def to_html(self, text_tokens=None, n_input: int | None = None, *, script: bool = True) -> str:
        """The interactive factor view (the paper's Figure 9) as self-contained HTML with an inline script.

        Tokens are coloured by their strongest factor; hovering a factor's
        sparkline shows it alone on the text (see
        :func:`ecco_core.plots.factor_view_html`, also for ``script``). Pass
        the capture's ``tokens`` (and ``n_input``) to show the tokens left out
        of the analysis too, unshaded.
        """
        from .plots import factor_view_html

        if text_tokens is None:  # the analysed tokens alone, side by side
            return factor_view_html(self.token_activations, self.tokens, script=script)
        return factor_view_html(self.token_activations, self.tokens, text_tokens=text_tokens,
                                positions=self.positions, n_input=n_input, script=script)

    def _repr_html_(self) -> str:
        return self.to_html()

    def show(self, text_tokens=None, n_input: int | None = None) -> None:
        """Display :meth:`to_html` in a notebook (Jupyter, VS Code, Colab); needs IPython."""
        from IPython.display import HTML, display

        display(HTML(self.to_html(text_tokens, n_input)))

    def to_frame(self) -> pd.DataFrame:
        """Factor x token activations: one row per analysed token, one column per factor."""
        frame = pd.DataFrame({"position": self.positions, "token": list(self.tokens)})
        for factor, row in enumerate(self.token_activations):
            frame[f"factor_{factor}"] = row
        return frame

    def loadings_frame(self) -> pd.DataFrame:
        """Factor x neuron loadings: one row per neuron column (layer, block, neuron, sign), one column per factor.

        ``layer`` names the neuron's FFN (``"block 2 FFN"``), ``block`` its block (2).
        """
        frame = pd.DataFrame(
            {**_ffn_columns(self.neuron_layers), "neuron": self.neuron_indices, "sign": self.neuron_signs}
        )
        for factor, row in enumerate(self.components):
            frame[f"factor_{factor}"] = row
        return frame


@dataclass(frozen=True, eq=False)
class Neurons:
    """Some neurons of one block's FFN and their activation on every token.

    Attributes
    ----------
    layer : int
        The block whose FFN holds the neurons (``Capture.ffn[layer]``, ``"block i FFN"``).
    position : int or None
        The token the neurons were ranked on; None when ranked over all tokens.
    neurons : ndarray of shape (n_neurons,), int
        Indices within the FFN (0 .. d_ff - 1), strongest first when ranked.
    scores : ndarray of shape (n_neurons,)
        What they were ranked by: ``|activation|`` at ``position``, or the
        peak ``|activation|`` over all tokens.
    activations : ndarray of shape (n_neurons, n_tokens)
        Each neuron's (signed) activation on every token.
    tokens : tuple of str, length n_tokens
    """

    layer: int
    position: int | None
    neurons: np.ndarray
    scores: np.ndarray
    activations: np.ndarray
    tokens: tuple[str, ...]

    def table(self) -> pd.DataFrame:
        """One row per neuron, as a page shows it: ``neuron``, its score, then its activation on each token.

        The score column says what it is (``"|activation|"`` on the ranked
        token, or ``"peak |activation|"``); the token columns are named
        ``"3: Paris"`` (:func:`ecco_core.text.position_labels`, unique).
        """
        from .text import position_labels

        frame = pd.DataFrame(self.activations, columns=position_labels(self.tokens))
        frame.insert(0, "neuron", self.neurons)
        frame.insert(1, "peak |activation|" if self.position is None else "|activation|", self.scores)
        return frame

    def to_frame(self) -> pd.DataFrame:
        """One row per (neuron, token): layer (``"block 2 FFN"``), block, neuron, score, position, token, activation."""
        n_neurons, n_tokens = self.activations.shape
        return pd.DataFrame(
            {
                **_ffn_columns(np.full(n_neurons * n_tokens, self.layer)),
                "neuron": np.repeat(self.neurons, n_tokens),
                "score": np.repeat(self.scores, n_tokens),
                "position": np.tile(np.arange(n_tokens), n_neurons),
                "token": list(self.tokens) * n_neurons,
                "activation": self.activations.ravel(),
            }
        )


# ------------------------------------------------------------- decompositions
@dataclass(frozen=True, eq=False)
class _Fit:
    token_activations: np.ndarray  # (n_positions, n_components)
    components: np.ndarray  # (n_components, n_neurons)
    mean: np.ndarray  # (n_neurons,)
    converged: bool


# scikit-learn is imported when a factorisation runs: it costs about a second of every app start otherwise.
def _fit_nmf(matrix: np.ndarray, n_components: int, seed: int) -> _Fit:
    from sklearn.decomposition import NMF

    # nndsvda starts from an SVD, so it needs far fewer iterations than Ecco's random start.
    model = NMF(n_components=n_components, init="nndsvda", solver="cd", max_iter=MAX_ITER,
                tol=TOLERANCE, random_state=seed)
    weights = model.fit_transform(matrix)
    return _Fit(weights, model.components_, np.zeros(matrix.shape[1], matrix.dtype), model.n_iter_ < MAX_ITER)


def _fit_pca(matrix: np.ndarray, n_components: int, seed: int) -> _Fit:
    # ARPACK finds only the leading axes (seconds -> a fraction of one on 46,080 neurons); it needs
    # n_components < min(n_positions, n_neurons), the full SVD covers the rest.
    from sklearn.decomposition import PCA

    solver = "arpack" if n_components < min(matrix.shape) else "full"
    model = PCA(n_components=n_components, svd_solver=solver, random_state=seed)
    weights = model.fit_transform(matrix)
    return _Fit(weights, model.components_, model.mean_, True)


def _fit_ica(matrix: np.ndarray, n_components: int, seed: int) -> _Fit:
    from sklearn.decomposition import FastICA

    model = FastICA(n_components=n_components, whiten="unit-variance", max_iter=MAX_ITER, tol=TOLERANCE,
                    random_state=seed)
    sources = model.fit_transform(matrix)
    return _Fit(sources, model.mixing_.T, model.mean_, model.n_iter_ < MAX_ITER)


# The cost model: multiply-adds of one fit on an (n_positions, n_neurons) matrix, priced by
# ecco_core.estimates.factors_seconds, in passes over the matrix fitted 2026-12-07 to bench/estimates.py factors on
# FFN activations of 55 tokens (30 blocks: NMF 32 s, PCA 0.4 s, ICA 0.6 s at load 11). NMF's coordinate descent
# makes about NMF_PASSES_PER_ITERATION x 2 n_positions n_neurons n_components a solver iteration (70 ms on 55 x
# 46,080, 28 ms on 55 x 15,360, one thread) and stops on its tolerance after a number of iterations the data
# decides and neither the sizes nor a cheap look at the data tell: 10 factors on the causal default took 24 to 394
# (26 tokens: blocks 0-9 24, 10-19 68, 20-29 394, all 30 64; 55 tokens: 67, 189, 384, 391), and neither fits on a
# twentieth of the neurons (26-777) nor the start's error against the SVD's followed them. NMF_ITERATIONS is the
# count that puts the long ones (7 of those 12, 142 to 394) within 2x; early blocks alone run faster than
# announced (down to 0.11 of it), never slower than 2x. PCA's partial SVD (ARPACK's products) and FastICA
# (whitening by an SVD, then its iterations) in passes too. Each adds FIT_SET_UP, a fit's fixed cost (the
# matrix built, scikit-learn's checks and set-up) as multiply-adds at the estimate's rate (about 0.01 s): against
# bench/estimates.py's reference PCA of 10 blocks' 55 x 15,360 ran at 0.26 of an estimate of 9 passes and 0.2 s of
# set-up, of 30 blocks at 0.49 (4 passes and 0.01 s put them at about 0.6 and 1.1). FastICA's iterations cost more
# than their products (ICA_ITERATION_WORK each: its Python and small calls, about 0.8 s a fit whatever its size at
# the reference, where its products count milliseconds).
NMF_ITERATIONS = 220
NMF_PASSES_PER_ITERATION = 3
SVD_PASSES = 4
ICA_SVD_PASSES = 4  # FastICA whitens by one LAPACK SVD, about half ARPACK's passes (ICA ran at 0.35 of twice them)
ICA_ITERATIONS = 200
ICA_ITERATION_WORK = 1e7
FIT_SET_UP = 3e7


def _svd_work(n_positions: int, n_neurons: int, n_components: int) -> float:
    return SVD_PASSES * n_positions * n_neurons * min(n_positions, n_neurons) + FIT_SET_UP


def _nmf_work(n_positions: int, n_neurons: int, n_components: int) -> float:
    return NMF_ITERATIONS * NMF_PASSES_PER_ITERATION * 2 * n_positions * n_neurons * n_components + FIT_SET_UP


def _ica_work(n_positions: int, n_neurons: int, n_components: int) -> float:
    return ICA_SVD_PASSES * n_positions * n_neurons * min(n_positions, n_neurons) + (
        ICA_ITERATIONS * (n_positions * n_components**2 + ICA_ITERATION_WORK)) + FIT_SET_UP


class FactorMethod(NamedTuple):
    """One entry of :data:`METHODS`.

    ``function(matrix, n_components, seed)`` fits a (n_positions, n_neurons)
    matrix and returns a ``_Fit``. ``work(n_positions, n_neurons,
    n_components)`` counts one fit's multiply-adds, for the estimate of a run
    (:func:`ecco_core.estimates.factors_seconds`); the default counts an SVD.
    ``label``: the method's name on a page (its key, upper-cased, when empty).
    ``non_negative``: it fits a non-negative matrix, so :func:`factors` clips
    or splits the negative activations first (``negatives``) and keeps its
    factors' signs; otherwise it factors the signed values and turns each
    factor so that its strongest token is positive. ``served``: a torch twin
    of ``function`` fits where the model ran (:mod:`ecco_core.backends.nmf`),
    so that only the factors come back (:func:`factors`' ``fit_on``).
    """

    function: Callable[[np.ndarray, int, int], _Fit]
    description: str
    work: Callable[[int, int, int], float] = _svd_work
    label: str = ""
    non_negative: bool = False
    served: bool = False


METHODS = {
    "nmf": FactorMethod(_fit_nmf, "non-negative matrix factorisation (negatives clipped to 0 or split off)",
                        _nmf_work, "NMF (non-negative)", non_negative=True, served=True),
    "pca": FactorMethod(_fit_pca, "principal component analysis", _svd_work, "PCA"),
    "ica": FactorMethod(_fit_ica, "independent component analysis (FastICA)", _ica_work, "ICA (FastICA)"),
}
"""Decomposition methods by name. Adding one is a ``function(matrix (n_positions, n_neurons), n_components,
seed)`` returning a ``_Fit`` and one :class:`FactorMethod` entry here; the page lists it and its estimate counts
its ``work``."""

def method_name(method: str) -> str:
    """The factor method ``method``'s name in a sentence: its label without the parenthesis ("ICA" of
    "ICA (FastICA)"), else its key upper-cased."""
    label = getattr(METHODS.get(method), "label", "")
    return label.split(" (")[0] if label else method.upper()


def fits_non_negative(method: str) -> bool:
    """Whether the factor method ``method`` fits non-negative data: its entry's ``non_negative`` (an entry that is
    a plain :class:`~ecco_core._registry.Method` factors the signed values)."""
    return getattr(METHODS[method], "non_negative", False)


NEGATIVES = {
    "clip": "negative activations set to 0 (Ecco's way; loses the negative side of signed neurons)",
    "split": "each neuron's positive part and negated negative part as two non-negative columns",
}
"""How NMF treats negative activations."""


# ----------------------------------------------------------------- selection
def _ffn_span(blocks: tuple[int, ...]) -> str:
    """``"block 2 FFN to block 5 FFN"`` for a run of blocks, else their labels joined by commas."""
    contiguous = len(blocks) > 2 and blocks == tuple(range(blocks[0], blocks[-1] + 1))
    if contiguous:
        return f"{site_label('ffn', blocks[0])} to {site_label('ffn', blocks[-1])}"
    return ", ".join(site_label("ffn", block) for block in blocks)


def _ffn_columns(blocks: np.ndarray) -> dict:
    """Table columns naming each row's FFN: ``layer`` (``"block 2 FFN"``) and ``block`` (2)."""
    return {"layer": [site_label("ffn", block) for block in blocks], "block": blocks}


def activation_matrix(cap: Capture, layers=None, positions=None) -> np.ndarray:
    """FFN activations of some blocks stacked along the neuron axis.

    Parameters
    ----------
    cap : Capture
    layers : int, range, slice, sequence of int or None
        Block indices (block ``i``'s FFN is ``cap.ffn[i]``); None for every block.
    positions : int, range, slice, sequence of int or None
        Token positions; None for all.

    Returns
    -------
    ndarray of shape (n_positions, len(layers) * d_ff)
        Column ``i * d_ff + j`` is neuron ``j`` of the ``i``-th selected block's FFN.
    """
    layer_ids = indices("layers", layers, cap.n_layers, "block")
    position_ids = indices("positions", positions, cap.n_tokens, "position")
    return _stacked(cap, layer_ids, position_ids, clipped=False)[0]


def _stacked(cap: Capture, layer_ids: np.ndarray, position_ids: np.ndarray, *,
             clipped: bool) -> tuple[np.ndarray, int]:
    """:func:`activation_matrix` of these blocks and positions (``clipped``: its entries below 0 set to 0), and how
    many entries are below 0 (counted when clipped, else 0).

    A capture made through nnsight fetches only these blocks at these positions,
    a few blocks per request; clipped, only their positive part, in one
    request (:meth:`Capture.clipped`: exact, about half the bytes).
    """
    d_ff = cap.d_ff
    cap.fetch("ffn", layer_ids, position_ids, clipped=clipped)  # when captured through nnsight
    # Filled block by block: selecting every block first, then transposing, would hold two copies at once.
    matrix = None
    n_negative = 0
    for column, layer in enumerate(layer_ids):
        if clipped:
            block, negatives = cap.clipped("ffn", [layer], position_ids)
            n_negative += int(negatives.sum())
        else:
            block = cap.rows("ffn", [layer], position_ids)
        if matrix is None:
            matrix = np.empty((len(position_ids), len(layer_ids) * d_ff), dtype=block.dtype)
        matrix[:, column * d_ff : (column + 1) * d_ff] = block[0]
    return matrix, n_negative


# ------------------------------------------------------------------ factors
def analysed_positions(cap: Capture, *, skip_special: bool = True, skip_first: bool = False) -> list[int]:
    """The token positions worth factoring: every one but special tokens and, if asked, the first.

    Special tokens (BOS, ``[CLS]``, ``[SEP]``) often fire far above every other
    token. Causal models also park a few activations tens of times larger than
    any other token's on the first token (an attention sink), special or not;
    left in, it takes a factor of its own and dwarfs the rest. Pass the result
    as :func:`factors`' ``positions``.
    """
    return [
        position for position in range(cap.n_tokens)
        if not (skip_special and cap.special[position]) and not (skip_first and position == 0)
    ]


def max_components(n_positions: int, n_neurons: int) -> int:
    """The most factors an activation matrix of shape (n_positions, n_neurons) allows: the smaller side.

    NMF, PCA and ICA all find at most ``min(n_positions, n_neurons)`` factors;
    on a text, the analysed tokens are nearly always the limit.
    """
    return min(whole("n_positions", n_positions, low=0), whole("n_neurons", n_neurons, low=0))


def default_components(n_positions: int) -> int:
    """How many factors to ask for on ``n_positions`` analysed tokens: 10, fewer on a short text.

    At most :data:`DEFAULT_COMPONENTS` (10) and at most half the tokens, so
    that each factor groups two tokens or more on average: as many factors as
    tokens would give every token a factor of its own and group nothing.
    Never below 1. ``factors(cap)`` uses it when ``n_components`` is None.

    >>> default_components(40), default_components(11), default_components(2)
    (10, 5, 1)
    """
    return max(1, min(DEFAULT_COMPONENTS, whole("n_positions", n_positions, low=0) // 2))


def matrix_shape(cap: Capture, method: str = "nmf", *, layers=None, positions=None,
                 negatives: str = "clip") -> tuple[int, int]:
    """(n_positions, n_neurons) of the matrix :func:`factors` decomposes for these arguments (its own names).

    ``negatives="split"`` doubles the neurons of NMF.
    """
    method = choice("method", method, METHODS)
    split = fits_non_negative(method) and choice("negatives", negatives, NEGATIVES) == "split"
    n_blocks = len(indices("layers", layers, cap.n_layers, "block"))
    n_positions = len(indices("positions", positions, cap.n_tokens, "position"))
    return n_positions, n_blocks * cap.d_ff * (2 if split else 1)


@one_blas_thread()
def factors(
    cap: Capture,
    method: str = "nmf",
    *,
    n_components: int | None = None,
    layers=None,
    positions=None,
    seed: int = 0,
    negatives: str = "clip",
    fit_on: str = "auto",
    progress: Callable[[float, str], None] | None = None,
) -> Factors:
    """Decompose FFN neuron activations into ``n_components`` factors.

    Parameters
    ----------
    cap : Capture
        From :func:`ecco_core.capture`; reads ``cap.ffn`` of shape (n_layers, n_tokens, d_ff).
    method : {"nmf", "pca", "ica"}, default "nmf"
        See :data:`METHODS`. NMF clips negative activations to 0 first (the
        result's ``clipped_fraction`` says how many); PCA and ICA centre each
        neuron and orient each factor so its strongest token is positive.
    n_components : int or None, default None
        Number of factors, 1 to ``min(n_positions, n_neurons)``
        (:func:`max_components`); None for :func:`default_components`: 10,
        or half the analysed tokens on a text shorter than 20.
    layers : int, range, slice, sequence of int or None, default None
        Which blocks' FFN neurons to stack (``n_neurons = len(layers) * d_ff``);
        None for the entire network.
    positions : int, range, slice, sequence of int or None, default None
        Which token positions to analyse (e.g. all but a BOS token); None for all.
    seed : int, default 0
        Random state of NMF's SVD start and of FastICA; the result is the
        same for the same seed.
    negatives : {"clip", "split"}, default "clip"
        NMF only. ``"clip"`` sets negative activations to 0 (Ecco's way);
        ``"split"`` gives every neuron two non-negative columns, its positive
        part and its negated negative part (``neuron_signs`` +1 and -1), so
        signed gated FFNs lose nothing; ``n_neurons`` doubles.
    fit_on : {"auto", "here", "server"}, default "auto"
        Where NMF is fitted for a capture made through nnsight or NDIF (its
        FFN activations not read whole yet). ``"server"``: where the model ran, in
        one request that brings back the factors, each one's
        :data:`SERVED_TOP_NEURONS` strongest neurons and the fit's errors, not
        the activations; the same algorithm as scikit-learn's, step for step
        (:mod:`ecco_core.backends.nmf`), equal to it to float32 precision,
        with ``components`` fetched when first read. ``"here"``: the
        activations come here and scikit-learn fits them. ``"auto"``: there
        when the signed activations are more than one fetch
        (:data:`ecco_core.capture.FETCH_BYTES`, 960 KiB: SmolLM2's 30 FFNs
        over 5 tokens are 900 KiB), else here.
        PCA and ICA fit here.
    progress : callable(fraction, message), optional
        Called every second while the fit runs (scikit-learn's fits report
        nothing, so the fraction stays 0 and the message says so:
        :mod:`ecco_core._heartbeat`); an exception it raises stops the fit.

    Returns
    -------
    Factors
        ``token_activations`` (n_components, n_positions), ``components``
        (n_components, n_neurons) labelled by ``neuron_layers``,
        ``neuron_indices`` and ``neuron_signs``.

    Examples
    --------
    >>> result = factors(cap, n_components=10, method="nmf", layers=0)   # the paper's Figure 9
    >>> result.token_activations.shape == (10, cap.n_tokens)
    True
    """
    method = choice("method", method, METHODS)
    negatives = choice("negatives", negatives, NEGATIVES)
    if not fits_non_negative(method) and negatives != "clip":
        raise invalid("negatives", negatives, f"'clip' for {method_name(method)}, which factors the signed values "
                      "('split' applies to NMF only)")
    seed = whole("seed", seed)
    layer_ids = indices("layers", layers, cap.n_layers, "block")
    position_ids = indices("positions", positions, cap.n_tokens, "position")
    if len(position_ids) < 2:
        raise invalid("positions", positions, "at least 2 token positions (factors need 2 tokens)")
    clipping = fits_non_negative(method) and negatives == "clip"
    served_by = _served_by(cap, method, layer_ids, position_ids, negatives, choice("fit_on", fit_on, FIT_ON))
    n_positions, n_neurons = len(position_ids), len(layer_ids) * cap.d_ff * (1 + (negatives == "split"))
    fitting = (f"Fitting {method_name(method)} to {n_positions} tokens x {n_neurons} neurons (the fit reports no "
               "progress: the time left is the estimate's)")
    if served_by is not None:
        n_components = _components(n_components, n_positions, n_neurons)
        with heartbeat(progress, 0.0, fitting + " where the model ran"):
            return _served(served_by, cap, method, layer_ids, position_ids, negatives, n_components, seed)
    matrix, n_negative = _stacked(cap, layer_ids, position_ids, clipped=clipping)  # the positive part, if clipped
    matrix, (neuron_layers, neuron_indices, neuron_signs), clipped_fraction = _factored_matrix(
        matrix, layer_ids, cap.d_ff, method, negatives, n_negative)
    n_components = _components(n_components, *matrix.shape)

    with heartbeat(progress, 0.0, fitting):
        fit = METHODS[method].function(matrix, n_components, seed)
    weights, components = fit.token_activations, fit.components
    if not fits_non_negative(method):
        weights, components = _oriented(weights, components)

    residual, total, variance = _fit_sums(matrix, weights, components, fit.mean)
    return _result(cap, method, negatives, seed, layer_ids, position_ids, weights, components, fit.mean,
                   (neuron_layers, neuron_indices, neuron_signs), (residual, total, variance), clipped_fraction,
                   fit.converged)


def _components(n_components, n_positions: int, n_neurons: int) -> int:
    """``n_components`` checked for a matrix of this shape; None for :func:`default_components`."""
    if n_components is None:
        n_components = default_components(n_positions)
    return whole("n_components", n_components, low=1, high=max_components(n_positions, n_neurons))


def _result(cap: Capture, method: str, negatives: str, seed: int, layer_ids: np.ndarray, position_ids: np.ndarray,
            weights: np.ndarray, components, mean: np.ndarray, columns: tuple, sums: tuple[float, float, float],
            clipped_fraction: float, converged: bool) -> Factors:
    """The :class:`Factors` of a fit: ``weights`` (n_positions, n_components), ``columns`` of :func:`_columns`,
    ``sums`` of :func:`_fit_sums`."""
    residual, total, variance = sums
    neuron_layers, neuron_indices, neuron_signs = columns
    return Factors(
        method=method,
        token_activations=weights.T.copy(),
        components=components,
        mean=mean,
        layers=tuple(int(i) for i in layer_ids),
        neuron_layers=neuron_layers,
        neuron_indices=neuron_indices,
        neuron_signs=neuron_signs,
        positions=position_ids,
        tokens=tuple(cap.tokens[i] for i in position_ids),
        reconstruction_error=float(np.sqrt(residual / total)),
        explained_variance=1.0 - residual / variance if variance > 0 else 0.0,
        negatives=negatives if fits_non_negative(method) else "signed",
        clipped_fraction=clipped_fraction,
        converged=bool(converged),
        seed=int(seed),
    )


#: Where :func:`factors` fits (``fit_on``).
FIT_ON = {
    "auto": "where the model ran when the FFN activations are still there (a capture made through nnsight or NDIF) "
            "and more than one fetch (FETCH_BYTES) of them, for a method that fits there (NMF); else here",
    "here": "here, with scikit-learn, on the activations (fetched first if still where the model ran)",
    "server": "where the model ran (NMF of a capture made through nnsight or NDIF, not yet read whole)",
}


def _served_by(cap: Capture, method: str, layer_ids: np.ndarray, position_ids: np.ndarray, negatives: str,
               fit_on: str):
    """The LM whose session fits ``method`` where the model ran, as ``fit_on`` says, or None to fit here."""
    if fit_on == "here":
        return None
    lm = cap.fetched_through("ffn")
    if fit_on == "server" and (lm is None or not METHODS[method].served):
        raise invalid("fit_on", fit_on, "'auto' or 'here' for " + (
            f"{method_name(method)}, which fits here only" if lm is not None else
            "a capture whose FFN activations are here (made by the hook path, or read whole)"))
    if fit_on == "server":
        return lm
    clipped = fits_non_negative(method) and negatives == "clip"
    if lm is None or not METHODS[method].served or cap.here("ffn", layer_ids, position_ids, clipped=clipped):
        return None
    return lm if len(position_ids) * len(layer_ids) * cap.d_ff * 4 > FETCH_BYTES else None  # signed float32


def _served(lm, cap: Capture, method: str, layer_ids: np.ndarray, position_ids: np.ndarray, negatives: str,
            n_components: int, seed: int) -> Factors:
    """:func:`factors`' NMF fitted where the model ran (:func:`ecco_core.backends.sessions.factors`): one request
    brings back the factors and each one's :data:`SERVED_TOP_NEURONS` strongest neurons, and the FFN of the block
    holding the first factor's strongest neuron at every token, which the capture keeps (the neuron view that
    follows reads it without a request); every loading comes in a second one, when :attr:`Factors.components`
    is first read."""
    from .backends import nmf, sessions

    n_neurons = len(layer_ids) * cap.d_ff * (1 + (negatives == "split"))
    draw = np.random.RandomState(seed).normal(size=nmf.start_draw_shape(len(position_ids), n_neurons, n_components))
    request = dict(token_ids=cap.token_ids.tolist(), layers=layer_ids.tolist(), positions=position_ids.tolist(),
                   n_components=n_components, negatives=negatives, draw=draw.astype(np.float32),
                   max_iter=MAX_ITER, tol=TOLERANCE, top_k=SERVED_TOP_NEURONS)
    fit = sessions.factors(lm, **request)
    if fit["empty"]:
        raise _nothing_to_factor(layer_ids, method, negatives)
    cap.keep("ffn", [fit["strongest_block"]], fit["strongest_row"][None])  # the neuron view's next read
    loadings = _ServedLoadings(lambda: sessions.factors(lm, **request, loadings=True)["components"],
                               fit["top_columns"], fit["top_loadings"])
    clipped_fraction = fit["n_negative"] / (len(position_ids) * n_neurons) if negatives == "clip" else 0.0
    return _result(cap, method, negatives, seed, layer_ids, position_ids, fit["token_activations"], loadings,
                   np.zeros(n_neurons, np.float32), _columns(layer_ids, cap.d_ff, negatives == "split"),
                   (fit["residual"], fit["total"], fit["variance"]), clipped_fraction, fit["n_iter"] < MAX_ITER)


def _factored_matrix(matrix: np.ndarray, layer_ids: np.ndarray, d_ff: int, method: str, negatives: str,
                     n_negative: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray], float]:
    """The (n_positions, n_neurons) matrix ``method`` factors, what each column is, and the fraction clipped.

    NMF clips negative activations to 0 (``matrix`` comes clipped, with
    ``n_negative`` entries that were below 0: :func:`_stacked`) or, with
    ``negatives="split"``, gives each neuron a positive and a negated negative
    column; PCA and ICA take the signed values. Returns the matrix, each
    column's ``(neuron_layers, neuron_indices, neuron_signs)`` and the clipped
    fraction (0 unless clipped); raises when the method would have nothing to factor.
    """
    split = fits_non_negative(method) and negatives == "split"
    clipped_fraction = 0.0
    if split:
        matrix = np.concatenate([np.maximum(matrix, 0), np.maximum(-matrix, 0)], axis=1)
    elif fits_non_negative(method):
        clipped_fraction = n_negative / matrix.size
    if not (matrix.any() if fits_non_negative(method) else np.ptp(matrix, axis=0).any()):
        raise _nothing_to_factor(layer_ids, method, negatives)
    return matrix, _columns(layer_ids, d_ff, split), clipped_fraction


def _columns(layer_ids: np.ndarray, d_ff: int, split: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(neuron_layers, neuron_indices, neuron_signs)`` of the columns of the stacked FFNs of ``layer_ids``;
    ``split``: every neuron's positive part, then every neuron's negated negative part."""
    neuron_layers = np.repeat(layer_ids, d_ff)
    neuron_indices = np.tile(np.arange(d_ff), len(layer_ids))
    if not split:
        return neuron_layers, neuron_indices, np.ones(len(neuron_indices), dtype=int)
    return np.tile(neuron_layers, 2), np.tile(neuron_indices, 2), np.repeat([1, -1], len(neuron_indices))


def _nothing_to_factor(layer_ids: np.ndarray, method: str, negatives: str) -> ValueError:
    """The error of a matrix ``method`` cannot factor: all 0 (NMF), or constant over the tokens (PCA, ICA)."""
    span = _ffn_span(tuple(layer_ids.tolist()))
    if fits_non_negative(method) and negatives == "split":
        return ValueError(f"all activations of {span} are 0 on these tokens, so NMF has nothing to factor")
    if fits_non_negative(method):
        return ValueError(f"all activations of {span} are <= 0 on these tokens, so NMF has nothing to factor; "
                          "try negatives='split', method='pca' or method='ica'")
    return ValueError(
        f"the activations of {span} do not vary over these tokens, so {method_name(method)} has nothing to factor"
    )


def _oriented(weights: np.ndarray, components: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A signed fit's factors turned so that each one's strongest token is positive (weights (n_positions,
    n_components), components (n_components, n_neurons)): a sign that means nothing is fixed."""
    strongest = np.abs(weights).argmax(axis=0)
    signs = np.sign(weights[strongest, np.arange(weights.shape[1])])
    signs[signs == 0] = 1
    return weights * signs, components * signs[:, None]


def _fit_sums(matrix: np.ndarray, weights: np.ndarray, components: np.ndarray, mean: np.ndarray,
              max_chunk_bytes: int = 16 * 2**20) -> tuple[float, float, float]:
    """Squared sums of the residual, of ``matrix`` and of ``matrix`` about its column means, in float64.

    Taken a block of rows at a time: at once, the reconstruction and the float64
    copies of a 576-token x 46,080-neuron matrix would hold about 600 MB.
    """
    column_mean = matrix.mean(axis=0, dtype=np.float64)
    rows = max(1, max_chunk_bytes // (8 * matrix.shape[1]))
    residual = total = variance = 0.0
    for start in range(0, matrix.shape[0], rows):
        block = matrix[start : start + rows]
        reconstruction = weights[start : start + rows] @ components + mean
        residual += float(np.sum((block - reconstruction) ** 2, dtype=np.float64))
        total += float(np.sum(block.astype(np.float64) ** 2))
        variance += float(np.sum((block - column_mean) ** 2))
    return residual, total, variance


# ------------------------------------------------------------------ neurons
def neurons(cap: Capture, layer: int, *, top_k: int = 10, position: int | None = None, ids=None) -> Neurons:
    """The most active neurons of one block's FFN, and each one's activation on every token.

    Activity is magnitude: Llama-style gated FFNs fire as strongly below 0 as
    above, and GPT-2's GELU barely goes below 0, so ``|activation|`` ranks
    both alike.

    Parameters
    ----------
    cap : Capture
    layer : int
        The block, 0 to n_layers - 1 (its FFN: ``cap.ffn[layer]``, ``"block i FFN"``).
    top_k : int, default 10
        How many neurons, 1 to d_ff.
    position : int, optional
        Rank by ``|activation|`` on this token; by default by the peak
        ``|activation|`` over all tokens.
    ids : sequence of int, optional
        Report these neurons (0 .. d_ff - 1), in this order, instead of the top ``top_k``.

    Returns
    -------
    Neurons
        ``activations`` of shape (n_neurons, n_tokens).
    """
    layer = whole("layer", layer, low=0, high=cap.n_layers - 1)
    layer_activations = cap.rows("ffn", [layer])[0].T  # (d_ff, n_tokens): this block's only, if still to fetch
    d_ff = layer_activations.shape[0]
    if position is None:
        strength = np.abs(layer_activations).max(axis=1)
    else:
        position = whole("position", position, low=0, high=cap.n_tokens - 1)
        strength = np.abs(layer_activations[:, position])
    if ids is None:
        chosen = np.argsort(-strength, kind="stable")[: whole("top_k", top_k, low=1, high=d_ff)]
    else:
        chosen = indices("ids", ids, d_ff, "neuron")
    return Neurons(
        layer=int(layer),
        position=None if position is None else int(position),
        neurons=chosen,
        scores=strength[chosen],
        activations=layer_activations[chosen],
        tokens=tuple(cap.tokens),
    )
