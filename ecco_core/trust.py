"""How far to trust a view: figures computed beside an explanation that say how much it can be believed.

- :func:`lens_diagnostics`: per layer, how far the logit lens's distribution
  is from the model's final one (KL divergence) and how often its top token
  is the model's (top-1 agreement): the tuned-lens paper's diagnostics
  (Belrose et al. 2023, "Eliciting Latent Predictions from Transformers with
  the Tuned Lens"). Early layers read through the final norm and head are
  known to be unreliable; this says from which block the lens means
  something on *this* text. :func:`rankings_and_diagnostics` reads them off
  the Layer predictions view's own pass of the lens.
- :func:`patching_agreement`: attribution patching against exact patching
  on the same run, per site: Pearson and Spearman correlation of the
  effects and the recall of the exact top cells among the approximate top
  cells (Kramár et al. 2024, "AtP*").
- :func:`factor_quality`: per decomposition method, the fraction of the
  activations' variance that the factors leave unexplained, and how stable
  the factors are across seeds (matched one to one by the Hungarian
  algorithm, :func:`matched_correlation`).
- :func:`permutation_baseline`: a similarity score beside the same score
  with one side's token positions shuffled, so that "0.6" reads against
  chance.
- :func:`faithfulness`: how faithful saliency methods are to the model, by
  erasure curves (DeYoung et al. 2020, ERASER): the drop of the explained
  token's probability when its most salient input tokens are removed
  (comprehensiveness) or when only they are kept (sufficiency), as AOPC
  over the ERASER bins, beside random orders of the same tokens; and how
  far the methods agree with each other (Kendall tau).

>>> import ecco_core as ec
>>> lm = ec.load()
>>> cap = ec.capture(lm, "The capital of France is")
>>> ec.trust.lens_diagnostics(lm, cap).to_frame()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import kendalltau, rankdata

from . import similarity
from ._blas import one_blas_thread
from ._heartbeat import batch_heartbeat, heartbeat
from ._checks import choice, indices, invalid, row_of, shaped, whole, words
from .backward import activation_bytes, items_per_report, items_within
from .capture import DEFAULT_CHUNK_BYTES, Capture, Deferred, captured_by, check_chunk_bytes
from .factors import METHODS as FACTOR_METHODS
from .factors import Factors, default_components, factors, fits_non_negative
from .layers import residual_labels
from .lens import RankReducer, Rankings, head_device, own_logits, ranked_columns, rankings_result, unembed_rows
from .models import LM
from .readouts import reader
from .saliency import METHODS as SALIENCY_METHODS
from .saliency import Saliency, explained_positions, target_values
from .saliency import saliency as saliency_of


# ------------------------------------------------------------ the lens
@dataclass(frozen=True, eq=False)
class LensDiagnostics:
    """How close the logit lens at every layer is to the model's own output, at the captured positions.

    Row ``i`` reads ``hidden_states[i]`` through the final norm and LM head
    (the lens of :mod:`ecco_core.lens`): row 0 is the embeddings, row
    ``i + 1`` block ``i``'s output (:attr:`layer_labels`); the last row is
    the model's own output.

    Attributes
    ----------
    kl : ndarray of shape (n_layers + 1, n_positions), float64
        ``KL(final || lens)`` in nats at each position: the divergence of the
        lens's distribution from the model's final distribution,
        ``sum_v p_final(v) (log p_final(v) - log p_lens(v))``, as in the
        tuned-lens paper. About 0 at the last row.
    agreement : ndarray of shape (n_layers + 1, n_positions), bool
        True where the lens's top token is the model's final top token.
    positions : ndarray of shape (n_positions,), int64
        The sequence positions read.
    final_ids : ndarray of shape (n_positions,), int64
        The model's top token at each position, from a real forward pass.
    model_name : str
    tokens : tuple of str
        The capture's tokens.
    """

    kl: np.ndarray
    agreement: np.ndarray
    positions: np.ndarray
    final_ids: np.ndarray
    model_name: str
    tokens: tuple[str, ...]

    @property
    def layer_labels(self) -> tuple[str, ...]:
        """``"embeddings"``, ``"block 0"``, ..., one per row."""
        return tuple(residual_labels(self.kl.shape[0] - 1))

    @property
    def mean_kl(self) -> np.ndarray:
        """Mean KL over positions, shape (n_layers + 1,)."""
        return self.kl.mean(axis=1)

    @property
    def top1_agreement(self) -> np.ndarray:
        """Fraction of positions where the lens's top token is the final one, shape (n_layers + 1,)."""
        return self.agreement.mean(axis=1)

    def first_layer_agreeing(self, threshold: float = 0.5) -> str | None:
        """Label of the first row whose top-1 agreement exceeds ``threshold``, or None."""
        above = np.flatnonzero(self.top1_agreement > threshold)
        return self.layer_labels[above[0]] if len(above) else None

    def beside(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (a view's table with a ``layer`` column, e.g. ``Rankings.to_frame()``) with each row's layer's
        ``lens_mean_kl`` and ``lens_top1_agreement`` added: the view's download carries how far to trust it."""
        columns = self.to_frame()[["layer", "mean_kl", "top1_agreement"]]
        columns = columns.rename(columns={"mean_kl": "lens_mean_kl", "top1_agreement": "lens_top1_agreement"})
        return frame.merge(columns, on="layer", how="left", validate="many_to_one")

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: ``layer`` (its label), ``block`` (its index; missing for the embeddings),
        ``mean_kl``, ``max_kl`` (nats, over positions), ``top1_agreement``, ``n_positions``."""
        n_rows = self.kl.shape[0]
        return pd.DataFrame(
            {
                "layer": self.layer_labels,
                "block": pd.array([None, *range(n_rows - 1)], dtype="Int64"),
                "mean_kl": self.mean_kl,
                "max_kl": self.kl.max(axis=1),
                "top1_agreement": self.top1_agreement,
                "n_positions": len(self.positions),
            }
        )


@torch.inference_mode()
def lens_diagnostics(
    lm: LM, cap: Capture, *, positions=None, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> LensDiagnostics:
    """KL divergence to the model's final distribution and top-1 agreement of the logit lens, per layer.

    Parameters
    ----------
    lm : LM
        The model that made ``cap``, with an LM head.
    cap : Capture
        From :func:`ecco_core.capture`; ``hidden_states`` has shape
        (n_layers + 1, n_tokens, d_model).
    positions : int, slice, range or sequence of int, optional
        Positions to read; by default every token that is not a special token
        (BOS, [CLS], ...).
    max_chunk_bytes : int, default 64 MiB
        Most lens logits held at once; (n_layers + 1, n_positions,
        vocab_size) is never materialised.

    Returns
    -------
    LensDiagnostics
        ``kl`` and ``agreement`` of shape (n_layers + 1, n_positions).

    Raises
    ------
    ValueError
        The model has no LM head, the capture comes from another model, a
        position is out of range, or the capture holds special tokens only.
    """
    lm.require_head()
    captured_by(lm, cap)
    check_chunk_bytes(max_chunk_bytes)
    positions = _read_positions(cap) if positions is None else indices("positions", positions, cap.n_tokens, "position")
    positions = np.asarray(positions, dtype=np.int64)
    if lm.backend.traced:
        return _traced_diagnostics(lm, cap, positions, _lensed(lm, cap, [], [], positions, 1, max_chunk_bytes))
    divergence = _Divergence(own_logits(lm, cap.token_ids, positions).to(head_device(lm)))
    unembed_rows(lm, _lens_rows(cap, positions), max_chunk_bytes // _Divergence.CHUNKS_ALIVE, [divergence])
    return divergence.result(lm, cap, positions, range(len(positions)))


@torch.inference_mode()
def rankings_and_diagnostics(
    lm: LM, cap: Capture, *, k: int = 5, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[Rankings, LensDiagnostics]:
    """:func:`ecco_core.rankings` and :func:`lens_diagnostics` of ``cap`` from one pass of the lens.

    Every position either reads goes through the final norm and LM head
    once, and the model's own logits come from one forward pass: the ranks
    and the divergence are read off the same logits. The results are those
    of the two functions called one after the other (the Layer predictions
    page shows both), in about the time of the diagnostics alone.

    Parameters and errors are those of :func:`ecco_core.rankings`, and of
    :func:`lens_diagnostics` at its default positions.
    """
    lm.require_head()
    k = whole("k", k, low=1)
    captured_by(lm, cap)
    check_chunk_bytes(max_chunk_bytes)
    ranked, target_ids, kind = ranked_columns(lm, cap)
    read = _read_positions(cap)
    if lm.backend.traced:  # one nnsight session reads both off the same logits, on the server
        lensed = _lensed(lm, cap, ranked, target_ids, read, k, max_chunk_bytes)
        rankings = rankings_result(lm, None, cap.token_ids, ranked, lensed["target_ids"], None, kind=kind, k=k,
                                   max_chunk_bytes=max_chunk_bytes, lensed=lensed)
        return rankings, _traced_diagnostics(lm, cap, read, lensed)
    both = np.union1d(read, ranked)
    ranked_at, read_at = np.searchsorted(both, ranked), np.searchsorted(both, read)
    model_logits = own_logits(lm, cap.token_ids, both).to(head_device(lm))
    if target_ids is None:
        target_ids = model_logits[ranked_at].argmax(-1).cpu().numpy()
    n_rows = cap.hidden_states.shape[0]
    keep = np.zeros((n_rows, len(both)), dtype=bool)
    keep[1:, ranked_at] = True  # the rankings read every block's output, not the embeddings
    ranks = RankReducer(lm, keep.ravel(), np.tile(target_ids, n_rows - 1), k, model_logits[ranked_at])
    divergence = _Divergence(model_logits)
    unembed_rows(lm, _lens_rows(cap, both), max_chunk_bytes // _Divergence.CHUNKS_ALIVE, [ranks, divergence])
    rankings = rankings_result(lm, None, cap.token_ids, ranked, target_ids, None, kind=kind, k=k,
                               max_chunk_bytes=max_chunk_bytes, lensed=ranks.result(n_rows - 1, len(ranked)))
    return rankings, divergence.result(lm, cap, read, read_at)


def _lensed(lm: LM, cap: Capture, ranked, target_ids, diagnosed, k: int, max_chunk_bytes: int) -> dict:
    """The lens through nnsight: ranks at ``ranked`` and the divergence at ``diagnosed``, from one session."""
    from .backends import sessions

    return sessions.lens(lm, cap.token_ids, ranked, target_ids, k=k, max_chunk_bytes=max_chunk_bytes,
                         diagnosed=diagnosed)


def _traced_diagnostics(lm: LM, cap: Capture, positions: np.ndarray, lensed: dict) -> LensDiagnostics:
    """:class:`LensDiagnostics` at ``positions`` from a lens session's ``kl``, ``agreement`` and ``final_ids``."""
    return LensDiagnostics(kl=lensed["kl"], agreement=lensed["agreement"],
                           positions=np.asarray(positions, dtype=np.int64), final_ids=lensed["final_ids"],
                           model_name=lm.name, tokens=tuple(cap.tokens))


def _read_positions(cap: Capture) -> np.ndarray:
    """The positions :func:`lens_diagnostics` reads by default: every token that is not a special token."""
    positions = np.flatnonzero(~cap.special)
    if not len(positions):
        raise ValueError("the capture holds special tokens only: there is no position to read")
    return positions


def _lens_rows(cap: Capture, positions: np.ndarray) -> np.ndarray:
    """Every layer's hidden state at ``positions``, layer by layer: shape (n_layers + 1) * n_positions x d_model."""
    return np.ascontiguousarray(cap.hidden_states[:, positions], dtype=np.float32).reshape(
        -1, cap.hidden_states.shape[2])


class _Divergence:
    """KL(final || lens) and top-1 agreement of each row of :func:`_lens_rows`, chunk by chunk.

    ``model_logits`` (n_columns, vocab_size), the model's own logits at the rows' positions, become its
    log-probabilities in place (taken a few rows at a time, so no second copy of them is ever made).
    """

    CHUNKS_ALIVE = 3  # chunks of logits that add() holds at once: the lens's, its log-probabilities, the targets'

    def __init__(self, model_logits: torch.Tensor):
        self.final_ids = model_logits.argmax(-1)
        for rows in model_logits.split(64):
            rows.copy_(torch.log_softmax(rows, dim=-1))
        self.final = model_logits
        self.kl, self.agreement = [], []

    def add(self, start: int, stop: int, logits: torch.Tensor) -> None:
        lens = torch.log_softmax(logits, dim=-1)
        column = torch.arange(start, stop, device=lens.device) % len(self.final)
        self.agreement.append((lens.argmax(-1) == self.final_ids[column]).cpu())
        target = self.final[column]
        # KL = sum exp(target) * (target - lens), in place: three chunks of logits alive (these two and the
        # lens's own), where exp, difference and product each made one more.
        difference = lens.neg_().add_(target)
        self.kl.append(target.exp_().mul_(difference).sum(-1).double().cpu())

    def result(self, lm: LM, cap: Capture, positions: np.ndarray, columns) -> LensDiagnostics:
        """The diagnostics at ``positions``, the rows' ``columns`` (their indices among the rows' positions)."""
        columns = np.asarray(columns)
        return LensDiagnostics(
            kl=torch.cat(self.kl).view(-1, len(self.final)).numpy()[:, columns],
            agreement=torch.cat(self.agreement).view(-1, len(self.final)).numpy()[:, columns],
            positions=np.asarray(positions, dtype=np.int64),
            final_ids=self.final_ids.cpu().numpy().astype(np.int64)[columns],
            model_name=lm.name,
            tokens=tuple(cap.tokens),
        )


# ------------------------------------------------------------ attribution patching vs exact
@dataclass(frozen=True, eq=False)
class PatchingAgreement:
    """How well attribution patching reproduces exact patching, per site and over all cells.

    Attributes
    ----------
    sites : tuple of str, length n_sites
        The sites compared; the last entry of each array below is ``"all"``
        (every cell of every site together), so arrays have n_sites + 1 entries.
    pearson : ndarray of shape (n_sites + 1,)
        Pearson correlation of the two effects; NaN where either is constant.
    spearman : ndarray of shape (n_sites + 1,)
        Spearman rank correlation (ties get their average rank); NaN where
        either is constant.
    recall : ndarray of shape (n_sites + 1,)
        Fraction of the exact top-``top`` cells (by absolute effect) that are
        among the approximate top-``top`` cells (AtP*'s measure of missed
        cells: 1 - recall is its false-negative rate).
    top : int
        How many cells each top set holds (fewer where a site has fewer cells).
    n_cells : ndarray of shape (n_sites + 1,), int64
    """

    sites: tuple[str, ...]
    pearson: np.ndarray
    spearman: np.ndarray
    recall: np.ndarray
    top: int
    n_cells: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per site and one ``"all"`` row: site, pearson, spearman, recall_at_top, top, n_cells."""
        return pd.DataFrame(
            {
                "site": [*self.sites, "all"],
                "pearson": self.pearson,
                "spearman": self.spearman,
                "recall_at_top": self.recall,
                "top": self.top,
                "n_cells": self.n_cells,
            }
        )


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def top_recall(exact: np.ndarray, approximate: np.ndarray, top: int = 10) -> float:
    """Fraction of ``exact``'s ``top`` largest cells (by absolute value) among ``approximate``'s.

    Parameters
    ----------
    exact, approximate : ndarray of the same shape
        Effects of the same cells; flattened. Ties are broken by cell order.
    top : int, default 10
        Size of each top set; capped at the number of cells.

    Returns
    -------
    float
        In [0, 1].
    """
    exact, approximate = np.ravel(exact), np.ravel(approximate)
    if exact.shape != approximate.shape:
        raise invalid("approximate", words(f"{approximate.size} cells"), f"{exact.size} cells, as many as exact")
    top = min(whole("top", top, low=1), exact.size)
    best_exact = np.argsort(-np.abs(exact), kind="stable")[:top]
    best_approximate = np.argsort(-np.abs(approximate), kind="stable")[:top]
    return len(np.intersect1d(best_exact, best_approximate)) / top


def _effects(name: str, result) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """A patching result's effects and sites, or an array of shape (n_sites, n_layers, n_tokens) and None."""
    if hasattr(result, "effects") and hasattr(result, "sites"):
        return np.asarray(result.effects, dtype=np.float64), tuple(result.sites)
    if isinstance(result, (str, bytes)) or not hasattr(result, "__len__"):
        raise invalid(name, result, "a Patching result or an array of shape (n_sites, n_layers, n_tokens)", TypeError)
    array = np.asarray(result, dtype=np.float64)
    if array.ndim != 3:
        raise shaped(name, array, "(n_sites, n_layers, n_tokens)")
    return array, None


def patching_agreement(exact, approximate, *, top: int = 10) -> PatchingAgreement:
    """Pearson, Spearman and top-cell recall of attribution patching against exact patching, per site.

    Parameters
    ----------
    exact : Patching or ndarray of shape (n_sites, n_layers, n_tokens)
        :func:`ecco_core.patch` with ``approximate=False``, or its ``effects``.
    approximate : Patching or ndarray of the same shape
        The same run with ``approximate=True``, or its ``effects``.
    top : int, default 10
        Size of the top sets compared by ``recall`` (AtP* uses the exact top
        cells as the ones that must not be missed).

    Returns
    -------
    PatchingAgreement
        Arrays of n_sites + 1 entries, the last over all cells.

    Raises
    ------
    ValueError
        The two cover different sites or shapes, or ``top`` is not a whole number >= 1.
    """
    top = whole("top", top, low=1)
    exact_effects, exact_sites = _effects("exact", exact)
    approximate_effects, approximate_sites = _effects("approximate", approximate)
    if approximate_effects.shape != exact_effects.shape:
        raise shaped("approximate", approximate_effects, f"{exact_effects.shape}, the shape of exact's effects")
    if exact_sites is not None and approximate_sites is not None and exact_sites != approximate_sites:
        raise invalid("approximate", words(f"sites {approximate_sites}"), f"the sites of exact {exact_sites}")
    sites = exact_sites or approximate_sites or tuple(f"site {i}" for i in range(len(exact_effects)))
    pairs = [*zip(exact_effects, approximate_effects), (exact_effects, approximate_effects)]
    pearson, spearman, recall, n_cells = [], [], [], []
    for a, b in pairs:
        a, b = a.ravel(), b.ravel()
        pearson.append(_pearson(a, b))
        spearman.append(_pearson(rankdata(a), rankdata(b)))
        recall.append(top_recall(a, b, top))
        n_cells.append(a.size)
    return PatchingAgreement(
        sites=sites,
        pearson=np.array(pearson),
        spearman=np.array(spearman),
        recall=np.array(recall),
        top=top,
        n_cells=np.array(n_cells, dtype=np.int64),
    )


# ------------------------------------------------------------ factors
def matched_correlation(first, second) -> tuple[float, np.ndarray]:
    """Mean absolute correlation of two sets of factors, matched one to one (Hungarian assignment).

    Parameters
    ----------
    first, second : array of shape (n_components, n_features)
        One factor per row (e.g. ``Factors.token_activations``); the two may
        list the same factors in any order and with either sign.

    Returns
    -------
    mean : float
        Mean |Pearson r| over the matched pairs, in [0, 1]; 1 = the same
        factors up to order, sign and scale. A constant row correlates 0.
    match : ndarray of shape (n_components,), int
        ``second``'s row matched to each row of ``first``.
    """
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if first.ndim != 2:
        raise shaped("first", first, "(n_components, n_features)")
    if second.shape != first.shape:
        raise shaped("second", second, f"{first.shape}, the shape of first")

    def standardised(rows):
        rows = rows - rows.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)

    similarity = np.abs(standardised(first) @ standardised(second).T)
    rows, columns = linear_sum_assignment(similarity, maximize=True)
    return float(similarity[rows, columns].mean()), columns[np.argsort(rows)]


@dataclass(frozen=True, eq=False)
class FactorQuality:
    """How well each decomposition method reproduces the activations and how stable its factors are.

    Attributes
    ----------
    methods : tuple of str, length n_methods
    fvu : ndarray of shape (n_methods,)
        Fraction of variance unexplained at the first seed,
        ``||X - X_hat||^2 / ||X - mean(X)||^2`` over the analysed matrix
        (``1 - Factors.explained_variance``; for NMF, of the matrix it
        factored: clipped, or split).
    stability : ndarray of shape (n_methods,)
        Mean over the other seeds of :func:`matched_correlation` between the
        factors' token activations at that seed and at the first; NaN with
        one seed. NMF starts from an SVD (``nndsvda``) and its seed only
        picks the random projections of that randomized SVD, which finds the
        same SVD whatever the seed: NMF's stability is about 1 by
        construction and says nothing of how much its factors depend on the
        start. PCA's is 1 the same way (an SVD); ICA's is the informative one.
    seeds : tuple of int
    n_components : int
    """

    methods: tuple[str, ...]
    fvu: np.ndarray
    stability: np.ndarray
    seeds: tuple[int, ...]
    n_components: int

    def beside(self, frame: pd.DataFrame, method: str) -> pd.DataFrame:
        """``frame`` (a view's table, e.g. ``Factors.to_frame()``) with ``method``'s ``fvu``, ``stability`` and
        ``n_seeds`` on every row: the view's download says how far to trust it."""
        row = self.to_frame().set_index("method").loc[choice("method", method, self.methods)]
        return frame.assign(fvu=row["fvu"], stability=row["stability"], n_seeds=row["n_seeds"])

    def to_frame(self) -> pd.DataFrame:
        """One row per method: method, fvu, stability, n_seeds, n_components."""
        return pd.DataFrame(
            {
                "method": self.methods,
                "fvu": self.fvu,
                "stability": self.stability,
                "n_seeds": len(self.seeds),
                "n_components": self.n_components,
            }
        )


def _check_fitted(fitted, cap: Capture, methods: tuple[str, ...], seed: int, options: dict) -> Factors:
    """``fitted`` checked to be the fit :func:`factor_quality` would make of its method at ``seed``."""
    if not isinstance(fitted, Factors):
        raise invalid("fitted", fitted, "a Factors result of ecco_core.factors", TypeError)
    positions = indices("positions", options.get("positions"), cap.n_tokens, "position")
    layers = indices("layers", options.get("layers"), cap.n_layers, "block")
    n_components = options.get("n_components") or default_components(len(positions))
    negatives = options.get("negatives", "clip") if fits_non_negative(fitted.method) else "signed"
    expected = (fitted.method in methods, seed, tuple(positions.tolist()), tuple(layers.tolist()), n_components,
                negatives, tuple(cap.tokens[p] for p in positions))
    given = (True, fitted.seed, tuple(fitted.positions.tolist()), fitted.layers, fitted.n_components,
             fitted.negatives, fitted.tokens)
    if given != expected:
        raise invalid("fitted", words(f"a {fitted.method} fit at seed {fitted.seed}"),
                      f"the fit of one of the methods {list(methods)} at the first seed {seed} with the same "
                      "capture, positions, layers, n_components and negatives")
    return fitted


def factor_quality(cap: Capture, methods=tuple(FACTOR_METHODS), *, seeds=(0, 1, 2), fitted=None, progress=None,
                   **options) -> FactorQuality:
    """Fraction of variance unexplained and seed stability of :func:`ecco_core.factors`, per method.

    Parameters
    ----------
    cap : Capture
        As for :func:`ecco_core.factors`.
    methods : sequence of str, default every method
        Names from :data:`ecco_core.factors.METHODS`.
    seeds : sequence of int, default (0, 1, 2)
        Distinct seeds; each method is fitted once per seed.
    fitted : Factors, optional
        A fit already made (the view's): ``ecco_core.factors(cap, method,
        seed=seeds[0], **options)`` for one of ``methods``. It is used as that
        method's first fit instead of fitting it again (NMF, the slowest
        method, is the view's default); anything else raises.
    progress : callable, optional
        ``progress(fraction, message)`` after each fit, and every second
        while one runs (see :func:`ecco_core.factors`).
    **options
        Passed to :func:`ecco_core.factors` (``n_components``, ``layers``,
        ``positions``; ``negatives`` applies to NMF only and is dropped for
        the other methods).

    Returns
    -------
    FactorQuality
        ``fvu`` and ``stability`` of shape (n_methods,).
    """
    allowed = f"a non-empty sequence of method names from {list(FACTOR_METHODS)}"
    if isinstance(methods, str) or not hasattr(methods, "__iter__"):
        raise invalid("methods", methods, allowed, TypeError)
    methods = tuple(choice("methods", method, FACTOR_METHODS) for method in methods)
    if not methods:
        raise invalid("methods", methods, allowed)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise invalid("seeds", seeds, "a sequence of distinct whole numbers, at least one", TypeError)
    seeds = tuple(whole("seeds", seed) for seed in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise invalid("seeds", seeds, "a sequence of distinct whole numbers, at least one")
    if fitted is not None:
        fitted = _check_fitted(fitted, cap, methods, seeds[0], options)
    fits_to_run = len(methods) * len(seeds) - (fitted is not None)
    done = 0
    fvu, stability, n_components = [], [], 0
    for method in methods:
        method_options = (options if fits_non_negative(method)
                          else {k: v for k, v in options.items() if k != "negatives"})
        fits = []
        for seed in seeds:
            if fitted is not None and method == fitted.method and seed == seeds[0]:
                fits.append(fitted)
                continue
            during = None if progress is None else (  # the fit's own reports, while it runs
                lambda fraction, message, done=done, seed=seed: progress(
                    done / fits_to_run, f"{message}, seed {seed}: fit {done + 1} of {fits_to_run}"))
            fits.append(factors(cap, method, seed=seed, progress=during, **method_options))
            done += 1
            if progress is not None:
                progress(done / fits_to_run, f"{method.upper()} at seed {seed}: {done} of {fits_to_run} fits")
        n_components = fits[0].n_components
        fvu.append(1.0 - fits[0].explained_variance)
        others = [matched_correlation(fits[0].token_activations, fit.token_activations)[0] for fit in fits[1:]]
        stability.append(float(np.mean(others)) if others else float("nan"))
    return FactorQuality(
        methods=methods, fvu=np.array(fvu), stability=np.array(stability), seeds=seeds, n_components=n_components
    )


# ------------------------------------------------------------ similarity
@dataclass(frozen=True, eq=False)
class PermutationBaseline:
    """A similarity score and the same score on shuffled token positions of one side.

    Attributes
    ----------
    method : str
        A name from :data:`ecco_core.similarity.METHODS`.
    score : float
        The score of ``X`` against ``Y``.
    null : ndarray of shape (n_permutations,)
        The score of ``X`` against ``Y`` with its rows (token positions)
        shuffled, once per permutation.
    p_value : float
        ``(1 + #(null >= score)) / (n_permutations + 1)``: how often chance
        does as well, counting the observed score itself.
    seed : int
    """

    method: str
    score: float
    null: np.ndarray
    p_value: float
    seed: int

    @property
    def null_mean(self) -> float:
        return float(self.null.mean())

    @property
    def null_std(self) -> float:
        return float(self.null.std(ddof=1)) if len(self.null) > 1 else float("nan")

    def beside(self, frame: pd.DataFrame, **cell) -> pd.DataFrame:
        """``frame`` (a view's table, e.g. ``SimilarityMatrix.to_frame()``) with this baseline's null_mean,
        null_std, null_max, p_value and n_permutations on the rows whose columns equal ``cell``
        (``row_index=3, column_index=5``) and missing elsewhere: the view's download says which cell was tested."""
        if not cell:
            raise invalid("cell", cell, "one or more column=value pairs that pick the tested rows")
        missing = sorted(set(cell) - set(frame.columns))
        if missing:
            raise invalid("cell", words(f"columns {missing}"), f"columns of frame {list(frame.columns)}")
        tested = np.logical_and.reduce([frame[name] == value for name, value in cell.items()])
        frame = frame.copy()
        summary = self.to_frame().iloc[0]
        for name in ("null_mean", "null_std", "null_max", "p_value", "n_permutations"):
            frame[name] = np.where(tested, summary[name], np.nan)
        return frame

    def to_frame(self) -> pd.DataFrame:
        """One row: method, score, null_mean, null_std, null_max, p_value, n_permutations, seed."""
        return pd.DataFrame(
            [{
                "method": self.method,
                "score": self.score,
                "null_mean": self.null_mean,
                "null_std": self.null_std,
                "null_max": float(self.null.max()),
                "p_value": self.p_value,
                "n_permutations": len(self.null),
                "seed": self.seed,
            }]
        )


def permutation_baseline(X, Y, method: str = "cka", *, n_permutations: int = 100, seed: int = 0,
                         progress: Callable[[float, str], None] | None = None, **options) -> PermutationBaseline:
    """The similarity of ``X`` and ``Y`` beside its value when ``Y``'s token positions are shuffled.

    Shuffling the rows of one side breaks the pairing of token positions and
    keeps everything else (each side's own geometry, the number of samples
    and dimensions), so the null scores are what the method gives two
    unrelated representations of this size: high for the CCA family on few
    tokens, whatever the data.

    Parameters
    ----------
    X : array of shape (n_samples, d1)
    Y : array of shape (n_samples, d2)
        One row per token position, the same positions as ``X``.
    method : str, default "cka"
        A name from :data:`ecco_core.similarity.METHODS`; its entry scores
        each pair (through :func:`ecco_core.similarity.similarity_matrix`).
    n_permutations : int, default 100
        How many shuffles, at least 1.
    seed : int, default 0
        Seed of the shuffles; the same seed gives the same null scores.
    progress : callable(fraction, message), optional
        Called after each shuffle's score, and every second or so while the
        layers are decomposed (the shuffles permute ``Y``'s decomposition:
        :func:`ecco_core.similarity.shuffled_scores`); an exception it raises
        stops the work.
    **options
        Passed to the method (``kernel=`` for CKA, ``keep=`` for SVCCA).

    Returns
    -------
    PermutationBaseline
        ``null`` of shape (n_permutations,).
    """
    method = choice("method", method, similarity.METHODS)
    n_permutations = whole("n_permutations", n_permutations, low=1)
    seed = whole("seed", seed)
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim == Y.ndim == 2 and len(X) != len(Y):
        raise invalid("Y.shape", Y.shape, f"{len(X)} samples (token positions), the same number as X")

    # Through the registry, so that a method added as one entry has its baseline too (not a module attribute).
    with heartbeat(progress, 0.0, f"Scoring the unshuffled pair ({len(X):,} positions)"):
        checked = similarity.similarity_matrix([X], [Y], method, **options)  # checks X, Y and the options first
    entry = similarity.METHODS[method]
    bandwidth = options.get("bandwidth", 1.0)
    # One BLAS thread for all the shuffles: threadpoolctl's limit costs more than a CKA score of 56 positions (100
    # shuffles took 8.8 s at load 16 for 0.1 s of counted work when each score set it).
    with one_blas_thread():
        null = similarity.shuffled_scores(
            X, Y, entry, similarity.Options(checked.kernel, checked.keep, bandwidth), n_permutations=n_permutations,
            seed=seed, progress=progress)
    return baseline_of(method, float(checked.values[0, 0]), null, seed)


def baseline_of(method: str, score: float, null: np.ndarray, seed: int) -> PermutationBaseline:
    """The :class:`PermutationBaseline` of ``score`` and its ``null`` (shuffled scores), with its p-value."""
    return PermutationBaseline(method=method, score=float(score), null=null,
                               p_value=float((1 + np.sum(null >= score)) / (len(null) + 1)), seed=seed)


def cell_baseline(lm: LM, source, row: int, column: int, method: str = "cka", *, rows: str = "hidden",
                  columns: str = "ffn", skip_special: bool = True, skip_first: bool = False, n_permutations: int = 100,
                  seed: int = 0, progress: Callable[[float, str], None] | None = None,
                  **options) -> PermutationBaseline:
    """:func:`permutation_baseline` of one cell of :func:`ecco_core.similarity.compare_layers`' matrix over ``source``.

    ``row`` and ``column`` index the layers of ``rows`` and ``columns``; the
    other arguments are :func:`~ecco_core.similarity.layer_pair`'s and
    :func:`permutation_baseline`'s. Here the two layers are gathered
    (:func:`~ecco_core.similarity.layer_pair`; over texts, one pass reports
    the first half of ``progress``), then shuffled. Over texts through nnsight
    (here or on NDIF) both happen where the model runs, in one request, by
    the same functions, and only the scores come back
    (:func:`~ecco_core.similarity.served_comparison`).
    """
    skips = dict(skip_special=skip_special, skip_first=skip_first)
    if lm.backend.traced and not isinstance(source, Capture):
        _, _, score, null = similarity.served_comparison(
            lm, source, method, cell=(row, column), whole=False, n_permutations=n_permutations, seed=seed, rows=rows,
            columns=columns, progress=progress, **skips, **options)
        return baseline_of(choice("method", method, similarity.METHODS), score, null, seed)
    share = 0.0 if isinstance(source, Capture) else 0.5
    report = progress or (lambda fraction, message: None)
    pair = similarity.layer_pair(lm, source, row, column, rows=rows, columns=columns, **skips,
                                 progress=lambda fraction, message: report(share * fraction, message))
    return permutation_baseline(*pair, method, n_permutations=n_permutations, seed=seed, **options,
                                progress=lambda fraction, message: report(share + (1 - share) * fraction, message))


def similarity_with_baseline(lm: LM, source, method: str = "cka", *, n_permutations: int = 100, seed: int = 0,
                             progress: Callable[[float, str], None] | None = None, **options,
                             ) -> tuple[similarity.SimilarityMatrix, tuple[int, int], PermutationBaseline]:
    """:func:`ecco_core.similarity.compare_layers`' matrix over ``source`` and the chance level of its median cell
    (:func:`~ecco_core.similarity.median_cell`, by :func:`cell_baseline`): what a similarity view shows at first.

    ``options`` are :func:`~ecco_core.similarity.compare_layers`' (``rows``,
    ``columns``, ``kernel``, ``keep``, ``skip_special``, ``skip_first`` ...).
    Over texts through nnsight (here or on NDIF) it is one request: the
    matrix, the median cell and its shuffles are all computed where the model
    runs. Returns ``(matrix, (row, column), baseline)``.
    """
    if lm.backend.traced and not isinstance(source, Capture):
        matrix, cell, score, null = similarity.served_comparison(
            lm, source, method, cell="median", n_permutations=n_permutations, seed=seed, progress=progress, **options)
        return matrix, cell, baseline_of(matrix.method, score, null, seed)
    report = progress or (lambda fraction, message: None)
    matrix = similarity.compare_layers(lm, source, method, progress=lambda fraction, message: report(
        fraction / 2, message), **options)
    cell = similarity.median_cell(matrix.values)
    reads = {name: options[name] for name in ("rows", "columns", "skip_special", "skip_first") if name in options}
    scored = {name: options[name] for name in ("kernel", "keep", "bandwidth") if name in options}
    baseline = cell_baseline(lm, source, *cell, method, n_permutations=n_permutations, seed=seed, **reads, **scored,
                             progress=lambda fraction, message: report(0.5 + fraction / 2, message))
    return matrix, cell, baseline


# ------------------------------------------------------------ saliency
#: The ERASER bins (DeYoung et al. 2020): percent of a row's tokens removed (or kept) at each point of the curves.
PERCENTS = (1, 5, 10, 20, 50)


def rationale_sizes(n_candidates: int, percents=PERCENTS) -> np.ndarray:
    """How many tokens each percent of ``n_candidates`` removes: ``max(1, floor(percent / 100 * n_candidates))``.

    At least one token, so that on a short text the 1% point removes the top
    token rather than nothing (ferret-xai skips a percent that rounds to 0
    tokens); sizes never exceed ``n_candidates``.

    >>> rationale_sizes(27).tolist()
    [1, 1, 2, 5, 13]
    """
    n_candidates = whole("n_candidates", n_candidates, low=1)
    return np.array([min(n_candidates, max(1, int(percent / 100 * n_candidates))) for percent in percents])


def _distinct(sizes: np.ndarray) -> np.ndarray:
    """True at the first percent of each distinct size, shape (..., n_percents): the points AOPC averages."""
    first = np.ones(sizes.shape, dtype=bool)
    first[..., 1:] = sizes[..., 1:] != sizes[..., :-1]
    return first


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """Erasure curves of saliency methods against random orders, and the methods' agreement, per explained token.

    "Removed" means the token's input embedding set to zero, as the ``erasure``
    saliency method does; the quantity read is the softmax probability of the
    explained token (ERASER's), whatever target the saliency attributed.
    The tokens that can be removed (*candidates*) are those the saliency
    attributes, less special tokens (BOS, [CLS], [SEP]) and, in a masked
    model, the explained [MASK] itself. A method's order ranks them by its
    :attr:`Saliency.scores <ecco_core.saliency.Saliency.scores>` (the
    magnitudes the view shows), ties by position.

    Attributes
    ----------
    methods : tuple of str, length n_methods
        The saliency methods compared (keys of :data:`ecco_core.saliency.METHODS`).
    positions : ndarray of shape (n_positions,), int64
        Sequence position of each explained token.
    explained_tokens : tuple of str, length n_positions
    explained_ids : ndarray of shape (n_positions,), int64
    percents : tuple of int, length n_percents
        The bins, percent of the candidates (:data:`PERCENTS`).
    sizes : ndarray of shape (n_positions, n_percents), int64
        Tokens removed (or kept) at each percent (:func:`rationale_sizes`).
    n_candidates : ndarray of shape (n_positions,), int64
    probability : ndarray of shape (n_positions,), float64
        The explained token's probability on the whole text.
    comprehensiveness : ndarray of shape (n_methods, n_positions, n_percents), float64
        ``probability`` minus the probability with the method's top tokens
        removed: high when the method found what the model used.
    sufficiency : ndarray of shape (n_methods, n_positions, n_percents), float64
        ``probability`` minus the probability with only the top tokens kept
        (every other candidate removed): low when they suffice.
    random_comprehensiveness, random_sufficiency : ndarray of shape (n_random, n_positions, n_percents)
        The same for random orders of the candidates (one seeded
        permutation per order and position): the baseline a method must beat.
    kendall_tau : ndarray of shape (n_positions, n_methods, n_methods), float64
        Kendall's tau-b (scipy) between two methods' scores over the
        candidates; 1 on the diagonal, NaN where a row is constant.
    seed : int
        Seed of the random orders.
    model_name : str
    """

    methods: tuple[str, ...]
    positions: np.ndarray
    explained_tokens: tuple[str, ...]
    explained_ids: np.ndarray
    percents: tuple[int, ...]
    sizes: np.ndarray
    n_candidates: np.ndarray
    probability: np.ndarray
    comprehensiveness: np.ndarray
    sufficiency: np.ndarray
    random_comprehensiveness: np.ndarray
    random_sufficiency: np.ndarray
    kendall_tau: np.ndarray
    seed: int
    model_name: str

    def aopc(self, curves: np.ndarray) -> np.ndarray:
        """Area over the perturbation curve: the mean of ``curves`` (..., n_positions, n_percents) over the
        percents of distinct sizes, shape (..., n_positions).

        Percents that remove the same number of tokens (1% and 5% of a short
        text are both one token) count once, as in ferret-xai.
        """
        first = _distinct(self.sizes)
        return (curves * first).sum(-1) / first.sum(-1)

    @property
    def n_random(self) -> int:
        return len(self.random_comprehensiveness)

    def index_of(self, position: int) -> int:
        """The index into :attr:`positions` of the explained token at sequence ``position``."""
        return row_of(self.positions, position)

    def to_frame(self) -> pd.DataFrame:
        """One row per explained token and method, then one ``"random"`` row per explained token.

        Columns: ``position``, ``explained_token``, ``method``,
        ``aopc_comprehensiveness``, ``aopc_sufficiency`` (for ``"random"``:
        the mean over the random orders), ``comprehensiveness_std``,
        ``sufficiency_std`` (spread over the random orders, ddof=1; NaN for a
        method), ``n_random``, ``n_candidates``, ``probability`` (of the
        explained token on the whole text), ``seed``, then ``kendall_tau_<method>``
        for every method: the row's agreement with it (NaN for ``"random"``).
        """
        comprehensiveness, sufficiency = self.aopc(self.comprehensiveness), self.aopc(self.sufficiency)
        random_c, random_s = self.aopc(self.random_comprehensiveness), self.aopc(self.random_sufficiency)
        ddof = 1 if self.n_random > 1 else 0
        rows = []
        for index, position in enumerate(self.positions):
            common = {"position": int(position), "explained_token": self.explained_tokens[index]}
            for m, method in enumerate(self.methods):
                rows.append({**common, "method": method, "aopc_comprehensiveness": comprehensiveness[m, index],
                             "aopc_sufficiency": sufficiency[m, index], "comprehensiveness_std": np.nan,
                             "sufficiency_std": np.nan})
            rows.append({**common, "method": "random", "aopc_comprehensiveness": random_c[:, index].mean(),
                         "aopc_sufficiency": random_s[:, index].mean(),
                         "comprehensiveness_std": random_c[:, index].std(ddof=ddof),
                         "sufficiency_std": random_s[:, index].std(ddof=ddof)})
        frame = pd.DataFrame(rows)
        index_of = {int(position): index for index, position in enumerate(self.positions)}
        at = frame["position"].map(index_of)
        frame["n_random"] = self.n_random
        frame["n_candidates"] = self.n_candidates[at].astype(np.int64)
        frame["probability"] = self.probability[at]
        frame["seed"] = self.seed
        row_of = {method: m for m, method in enumerate(self.methods)}
        for o, other in enumerate(self.methods):
            frame[f"kendall_tau_{other}"] = [
                self.kendall_tau[index_of[position], row_of[method], o] if method in row_of else np.nan
                for position, method in zip(frame["position"], frame["method"])
            ]
        return frame

    def agreement_frame(self) -> pd.DataFrame:
        """One row per explained token and pair of distinct methods: ``position``, ``explained_token``,
        ``method``, ``other``, ``kendall_tau``."""
        rows = [
            {"position": int(position), "explained_token": self.explained_tokens[index], "method": first,
             "other": self.methods[j], "kendall_tau": self.kendall_tau[index, i, j]}
            for index, position in enumerate(self.positions)
            for i, first in enumerate(self.methods)
            for j in range(i + 1, len(self.methods))
        ]
        return pd.DataFrame(rows, columns=["position", "explained_token", "method", "other", "kendall_tau"])

    def agreement(self, position: int) -> pd.DataFrame:
        """Kendall tau between every two methods for the explained token at ``position``: a square DataFrame."""
        return pd.DataFrame(self.kendall_tau[self.index_of(position)], index=list(self.methods),
                            columns=list(self.methods))


def _prefix(cap: Capture, length: int) -> Capture:
    """``cap``'s first ``length`` tokens, as if the text ended there (views of its arrays, nothing copied)."""
    if length >= cap.n_tokens:
        return cap
    return replace(
        cap, tokens=cap.tokens[:length], token_ids=cap.token_ids[:length], n_input=min(cap.n_input, length),
        hidden_states=_prefix_rows(cap, "hidden_states", length), ffn=_prefix_rows(cap, "ffn", length),
        top_ids=cap.top_ids[:length], top_probs=cap.top_probs[:length], top_tokens=cap.top_tokens[:length],
        special=cap.special[:length],
    )


def _prefix_rows(cap: Capture, name: str, length: int):
    """``cap``'s array ``name`` over its first ``length`` tokens; one still where the model ran (NDIF) stays there,
    as the prefix's own (a causal model's first tokens do not see the rest), fetched only if read."""
    if name in cap.pending:
        pending = cap.__dict__[name]
        return Deferred(pending.lm, pending.token_ids[:length], name, (pending.shape[0], length, pending.shape[2]),
                        pending.fetch_bytes)
    return getattr(cap, name)[:, :length]


def candidates(lm: LM, cap: Capture, position: int) -> np.ndarray:
    """The positions :func:`faithfulness` may remove for the explained token at ``position``, ascending.

    Those it can see (before it, in a causal model; all, in a masked one),
    less special tokens and, in a masked model, ``position`` itself.
    """
    seen = np.arange(position if lm.is_causal else cap.n_tokens)
    keep = ~cap.special[seen] & (seen != position)
    return seen[keep]


def _saliency_list(cap: Capture, saliencies) -> tuple[list, list]:
    """The Saliency results given (or the names to compute), each checked against ``cap``."""
    allowed = "a Saliency result, a saliency method name, or a non-empty sequence of them"
    if isinstance(saliencies, (Saliency, str)):
        saliencies = [saliencies]
    elif not hasattr(saliencies, "__iter__"):
        raise invalid("saliencies", saliencies, allowed, TypeError)
    saliencies = list(saliencies)
    if not saliencies:
        raise invalid("saliencies", saliencies, allowed)
    for item in saliencies:
        if isinstance(item, str):
            choice("saliencies", item, SALIENCY_METHODS)
        elif isinstance(item, Saliency):
            if item.model_name != cap.model_name or tuple(item.tokens) != tuple(cap.tokens):
                raise invalid("saliencies", words(f"a saliency of another text or model ({item.model_name})"),
                              "saliency results of cap itself")
        else:
            raise invalid("saliencies", item, allowed, TypeError)
    methods = [item if isinstance(item, str) else item.method for item in saliencies]
    if len(set(methods)) != len(methods):
        raise invalid("saliencies", methods, "distinct methods, each once")
    return saliencies, methods


def faithfulness(
    lm: LM,
    cap: Capture,
    saliencies=("grad_x_input", "gradient", "integrated_gradients", "erasure"),
    *,
    positions=None,
    percents=PERCENTS,
    n_random: int = 10,
    seed: int = 0,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress=None,
    **options,
) -> Faithfulness:
    """Comprehensiveness and sufficiency (ERASER) of saliency methods against random orders, and their agreement.

    For each explained token, the candidates are ordered by each method's
    scores (and by ``n_random`` seeded random permutations); at each percent
    the top tokens are removed (comprehensiveness) or alone kept
    (sufficiency), removal being the embedding set to zero, as the
    ``erasure`` method does. Every variant of one explained token (all
    methods, random orders, percents, both curves; identical ones once) runs
    forward in batches within ``max_chunk_bytes``, over the text up to the
    explained token in a causal model. Through nnsight (NDIF) each saliency
    computed here is one request and each explained token's variants one
    more; only the probabilities come back.

    The trap: comprehensiveness rewards any order that finds tokens whose
    removal moves the model off its data, which zeroed embeddings are; the
    random baseline, removed the same way, is what a method must beat, and
    a small gap to it says the curve is mostly the removal, not the method.

    Parameters
    ----------
    lm : LM
        The model that made ``cap``, with an LM head.
    cap : Capture
    saliencies : Saliency, str, or sequence of them, default all four methods
        Saliency results of ``cap`` to judge, or method names, computed here
        by :func:`ecco_core.saliency` for ``positions`` with ``**options``.
        One entry per method.
    positions : int or sequence of int, optional
        Sequence positions of the explained tokens; by default every
        position the first given Saliency explains (or, with names only,
        :func:`ecco_core.saliency.explained_positions`).
    percents : sequence of float, default (1, 5, 10, 20, 50)
        Percent of the candidates removed or kept, increasing, in (0, 100].
    n_random : int, default 10
        Random orders for the baseline, at least 1.
    seed : int, default 0
        Seed of the random orders.
    max_chunk_bytes : int, default 64 MiB
        Memory budget of each batch of variants (and of the saliency computed here).
    progress : callable, optional
        ``progress(fraction, message)`` as the work goes; an exception it
        raises (a Stop button) ends the work.
    **options
        Passed to :func:`ecco_core.saliency` for names (``target``,
        ``contrast_with``, ``steps``).

    Returns
    -------
    Faithfulness
        Curves of shape (n_methods, n_positions, n_percents); ``to_frame()``
        gives the AOPC of each method beside the random mean and spread.

    Examples
    --------
    >>> cap = ec.capture(lm, "Romeo and Juliet was written by", max_new_tokens=3)
    >>> ec.trust.faithfulness(lm, cap, positions=cap.n_input).to_frame()   # doctest: +SKIP
    """
    lm.require_head()
    captured_by(lm, cap)
    check_chunk_bytes(max_chunk_bytes)
    n_random = whole("n_random", n_random, low=1)
    seed = whole("seed", seed)
    percents = _checked_percents(percents)
    saliencies, methods = _saliency_list(cap, saliencies)
    positions = _positions_to_explain(lm, cap, saliencies, positions)
    n_computed = sum(isinstance(item, str) for item in saliencies)
    stages = n_computed + 1  # one share of the progress bar per saliency computed here, one for the erasures

    def report(stage: int):
        if progress is None:
            return None
        return lambda fraction, message: progress((stage + fraction) / stages, message)

    saliencies = _computed_saliencies(lm, cap, saliencies, positions, max_chunk_bytes, report, options)
    explained_ids = np.asarray(cap.token_ids[positions] if lm.is_causal else cap.top_ids[positions, 0],
                               dtype=np.int64)
    curves = _erasure_curves(lm, cap, _score_rows(saliencies, positions, cap.n_tokens), positions, explained_ids,
                             percents, n_random, np.random.default_rng(seed), max_chunk_bytes, report(n_computed))
    n_methods = len(methods)
    return Faithfulness(
        methods=tuple(methods),
        positions=np.asarray(positions, dtype=np.int64),
        explained_tokens=tuple(saliencies[0].explained_tokens[saliencies[0].index_of(int(p))] for p in positions),
        explained_ids=explained_ids,
        percents=percents,
        sizes=curves["sizes"],
        n_candidates=curves["n_candidates"],
        probability=curves["probability"],
        comprehensiveness=curves["comprehensiveness"][:n_methods],
        sufficiency=curves["sufficiency"][:n_methods],
        random_comprehensiveness=curves["comprehensiveness"][n_methods:],
        random_sufficiency=curves["sufficiency"][n_methods:],
        kendall_tau=curves["kendall_tau"],
        seed=seed,
        model_name=lm.name,
    )


def _checked_percents(percents) -> tuple:
    """:func:`faithfulness`'s ``percents`` as a tuple, when they increase within (0, 100]."""
    percents_allowed = "an increasing sequence of percents in (0, 100], at least one"
    if isinstance(percents, (str, bytes)) or not hasattr(percents, "__iter__"):
        raise invalid("percents", percents, percents_allowed, TypeError)
    percents = tuple(percents)
    if (not percents or not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in percents)
            or not all(0 < p <= 100 for p in percents) or list(percents) != sorted(set(percents))):
        raise invalid("percents", percents, percents_allowed)
    return percents


def _positions_to_explain(lm: LM, cap: Capture, saliencies: list, positions) -> np.ndarray:
    """:func:`faithfulness`'s explained positions, checked: by default those of the first given Saliency."""
    if positions is None:
        given = [item for item in saliencies if isinstance(item, Saliency)]
        positions = given[0].positions if given else explained_positions(lm, cap)
    elif isinstance(positions, (int, np.integer)) and not isinstance(positions, bool):
        positions = [positions]
    positions = explained_positions(lm, cap, positions)
    if len(np.unique(positions)) != len(positions):
        raise invalid("positions", positions.tolist(), "distinct positions")
    return positions


def _computed_saliencies(lm: LM, cap: Capture, saliencies: list, positions: np.ndarray, max_chunk_bytes: int,
                         report: Callable, options: dict) -> list:
    """``saliencies`` with each method name replaced by its Saliency of ``positions`` (progress stage ``i`` for
    the ``i``-th computed)."""
    # In a causal model nothing after the last explained token counts: the methods computed here read the text up
    # to it (erasure would otherwise erase every later token too, for a drop of 0).
    text = _prefix(cap, int(positions.max()) + 1) if lm.is_causal else cap
    computed = 0
    for i, item in enumerate(saliencies):
        if isinstance(item, str):
            saliencies[i] = saliency_of(lm, text, item, positions=positions, max_chunk_bytes=max_chunk_bytes,
                                        progress=report(computed), **options)
            computed += 1
    return saliencies


def _score_rows(saliencies: list, positions: np.ndarray, n_tokens: int) -> np.ndarray:
    """Each method's scores of each explained token, shape (n_methods, n_positions, n_tokens), 0 past a row."""
    rows = np.zeros((len(saliencies), len(positions), n_tokens))
    for i, item in enumerate(saliencies):
        for index, position in enumerate(positions):
            row = item.row(int(position))
            rows[i, index, : len(row)] = row
    return rows


def _kendall_taus(scores: np.ndarray) -> np.ndarray:
    """Kendall tau between the methods' scores (n_methods, n_candidates) of one token: (n_methods, n_methods),
    NaN where a method's scores are all equal."""
    n_methods = len(scores)
    tau = np.full((n_methods, n_methods), np.nan)
    for i in range(n_methods):
        tau[i, i] = 1.0
        for j in range(i + 1, n_methods):
            if np.ptp(scores[i]) > 0 and np.ptp(scores[j]) > 0:
                tau[i, j] = tau[j, i] = kendalltau(scores[i], scores[j]).statistic
    return tau


def _variant_masks(orders: list, sizes: np.ndarray, length: int) -> np.ndarray:
    """Where each variant zeroes the embeddings: the full text first, then for each order and size the top tokens
    removed and the top tokens alone kept, shape (1 + n_orders * n_sizes * 2, length), True where zeroed."""
    masks = np.zeros((len(orders), len(sizes), 2, length), dtype=bool)
    for o, order in enumerate(orders):
        for p, size in enumerate(sizes):
            masks[o, p, 0, order[:size]] = True
            masks[o, p, 1, order[size:]] = True
    return np.concatenate([np.zeros((1, length), dtype=bool), masks.reshape(-1, length)])


def _erasure_curves(lm: LM, cap: Capture, rows: np.ndarray, positions: np.ndarray, explained_ids: np.ndarray,
                    percents: tuple, n_random: int, rng: np.random.Generator, max_chunk_bytes: int,
                    erase: Callable | None) -> dict:
    """Comprehensiveness and sufficiency of each method's order (then ``n_random`` random ones) for each explained
    token, with what they stand on: a dict of :class:`Faithfulness`'s arrays, the random orders' rows last."""
    n_orders, n_positions, n_percents = len(rows) + n_random, len(positions), len(percents)
    curves = {
        "comprehensiveness": np.zeros((n_orders, n_positions, n_percents)),
        "sufficiency": np.zeros((n_orders, n_positions, n_percents)),
        "sizes": np.zeros((n_positions, n_percents), dtype=np.int64),
        "n_candidates": np.zeros(n_positions, dtype=np.int64),
        "probability": np.zeros(n_positions),
        "kendall_tau": np.full((n_positions, len(rows), len(rows)), np.nan),
    }
    erased = _erased_through(lm, cap, max_chunk_bytes)
    for index, position in enumerate(positions):
        position = int(position)
        removable = candidates(lm, cap, position)
        if not len(removable):
            raise invalid("positions", position, "positions with at least one earlier token that is not special")
        curves["n_candidates"][index] = len(removable)
        curves["sizes"][index] = rationale_sizes(len(removable), percents)
        scores = rows[:, index][:, removable]
        curves["kendall_tau"][index] = _kendall_taus(scores)
        orders = [removable[np.argsort(-row, kind="stable")] for row in scores]
        orders += [rng.permutation(removable) for _ in range(n_random)]
        length = position if lm.is_causal else cap.n_tokens
        unique, inverse = np.unique(_variant_masks(orders, curves["sizes"][index], length), axis=0,
                                    return_inverse=True)
        probabilities = erased(
            length, unique, position - 1 if lm.is_causal else position, int(explained_ids[index]),
            None if erase is None else lambda f, m, i=index: erase((i + f) / n_positions, m),
        )[inverse.reshape(-1)]
        curves["probability"][index] = probabilities[0]
        drops = (probabilities[0] - probabilities[1:]).reshape(len(orders), n_percents, 2)
        curves["comprehensiveness"][:, index], curves["sufficiency"][:, index] = drops[..., 0], drops[..., 1]
    return curves


def _erased_through(lm: LM, cap: Capture, max_chunk_bytes: int) -> Callable:
    """``erased(length, masks, read_position, explained_id, progress)``: :func:`_erased_probabilities` of ``cap``'s
    first ``length`` tokens, here, or through nnsight in one session (one request per explained token)."""
    if not lm.backend.traced:
        embeddings = lm.embeddings(torch.as_tensor(cap.token_ids[None], device=lm.device)).detach()
        return lambda length, masks, read_position, explained_id, progress: _erased_probabilities(
            lm, embeddings[:, :length], masks, read_position, explained_id, max_chunk_bytes, progress)
    from .backends import sessions

    def erased(length, masks, read_position, explained_id, progress):
        probabilities = sessions.erased_values(
            lm, cap.token_ids[:length], masks, [read_position], [explained_id], target="prob", foil_id=None,
            rows_per_batch=_variants_per_batch(lm, length, len(masks), max_chunk_bytes, 4))[:, 0]
        if progress is not None:
            progress(1.0, f"Erased {len(masks)} variants")
        return probabilities

    return erased


def _variants_per_batch(lm: LM, length: int, n_variants: int, max_chunk_bytes: int, element_size: int) -> int:
    """Erased variants of a ``length``-token text run together: within the budget and a progress report's work."""
    return min(items_within(max_chunk_bytes, length * activation_bytes(lm, element_size), n_variants),
               items_per_report(lm, length * lm.n_layers, n_variants))


@torch.inference_mode()
def _erased_probabilities(lm: LM, embeddings: torch.Tensor, masks: np.ndarray, read_position: int,
                          explained_id: int, max_chunk_bytes: int, progress) -> np.ndarray:
    """The explained token's probability (float64) with the embeddings zeroed where ``masks`` (n_variants,
    length) is True, the variants in batches within the budget: shape (n_variants,)."""
    length = embeddings.shape[1]
    target_of = reader("prob", torch.as_tensor([explained_id], device=embeddings.device))
    per_batch = _variants_per_batch(lm, length, len(masks), max_chunk_bytes, embeddings.element_size())
    out = np.empty(len(masks))
    for start in range(0, len(masks), per_batch):
        stop = min(len(masks), start + per_batch)
        copies = embeddings.repeat(stop - start, 1, 1)
        copies[torch.as_tensor(masks[start:stop], device=embeddings.device)] = 0.0
        with batch_heartbeat(progress, start / len(masks), f"Erasing variants {start + 1}-{stop} of {len(masks)}"):
            out[start:stop] = target_values(lm, copies, np.array([read_position]), target_of)[:, 0].cpu().numpy()
        if progress is not None:
            progress(stop / len(masks), f"Erased {stop} of {len(masks)} variants")
    return out
