"""How far to trust a view: figures computed beside an explanation that say how much it can be believed.

- :func:`lens_diagnostics`: per layer, how far the logit lens's distribution
  is from the model's final one (KL divergence) and how often its top token
  is the model's (top-1 agreement): the tuned-lens paper's diagnostics
  (Belrose et al. 2023, "Eliciting Latent Predictions from Transformers with
  the Tuned Lens"). Early layers read through the final norm and head are
  known to be unreliable; this says from which block the lens means
  something on *this* text.
- :func:`patching_agreement`: attribution patching against exact patching
  on the same run, per site: Pearson and Spearman correlation of the
  effects and the recall of the exact top cells among the approximate top
  cells (Kramár et al. 2024, "AtP*").

>>> import ecco_core as ec
>>> lm = ec.load()
>>> cap = ec.capture(lm, "The capital of France is")
>>> ec.trust.lens_diagnostics(lm, cap).to_frame()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

from ._checks import indices, invalid, shaped, whole, words
from .capture import DEFAULT_CHUNK_BYTES, Capture, captured_by, check_chunk_bytes
from .layers import residual_labels
from .lens import _head_device, _model_logits
from .models import LM


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
    if positions is None:
        positions = np.flatnonzero(~cap.special)
        if not len(positions):
            raise ValueError("the capture holds special tokens only: there is no position to read")
    else:
        positions = indices("positions", positions, cap.n_tokens, "position")
    positions = np.asarray(positions, dtype=np.int64)
    device, dtype = _head_device(lm), lm.embeddings.weight.dtype
    final = torch.log_softmax(_model_logits(lm, cap.token_ids, positions).to(device), dim=-1)
    final_ids = final.argmax(-1)
    n_rows, n_positions = cap.hidden_states.shape[0], len(positions)
    rows = np.ascontiguousarray(cap.hidden_states[:, positions], dtype=np.float32).reshape(-1, cap.hidden_states.shape[2])
    rows_per_chunk = max(1, max_chunk_bytes // (4 * lm.vocab_size))
    kl, agreement = [], []
    for start in range(0, len(rows), rows_per_chunk):
        stop = min(start + rows_per_chunk, len(rows))
        lens = torch.log_softmax(
            lm.unembed(torch.as_tensor(rows[start:stop], device=device, dtype=dtype)).float(), dim=-1
        )
        column = torch.arange(start, stop, device=device) % n_positions
        target = final[column]
        kl.append((target.exp() * (target - lens)).sum(-1).double().cpu())
        agreement.append((lens.argmax(-1) == final_ids[column]).cpu())
        del lens, target
    return LensDiagnostics(
        kl=torch.cat(kl).view(n_rows, n_positions).numpy(),
        agreement=torch.cat(agreement).view(n_rows, n_positions).numpy(),
        positions=positions,
        final_ids=final_ids.cpu().numpy().astype(np.int64),
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
