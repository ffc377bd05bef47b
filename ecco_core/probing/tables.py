"""The paper's Table 1: probe every layer, lay the scores out as the paper does, and the paper's own numbers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from ..layers import depth_labels, residual_label, site_label
from ..models import LM
from .. import _checks as checks
from ..corpus import STORES
from ._progress import Progress, progress_bar
from .collection import ProbeData, align_corpus, collect, corpus_sentences, selected_layers
from .traced import probe_counts
from .training import ProbeScores, check_precision, plan_training, train_probes


@dataclass(frozen=True, eq=False)
class ProbeTable:
    """The paper's Table 1 for one model: one entry per probed array, in depth order.

    Attributes
    ----------
    layer_labels : tuple of str, length n_rows
        Each array's label (:mod:`ecco_core.layers`): ``"embeddings"``,
        ``"block 0"`` (block 0's output), ``"block 0 FFN"``, ...
    representations : tuple of str, length n_rows
        ``"hidden"`` (the embeddings or a block's output) or ``"ffn"``.
    blocks : tuple of (int or None), length n_rows
        The block index; None for the embeddings.
    accuracy, accuracy_std, selectivity, selectivity_std, control_accuracy : ndarray of shape (n_rows,)
        Fractions; mean and ddof=0 standard deviation over trials.
    majority_accuracy : float
        The most-frequent-tag baseline.
    lr : float
        The learning rate used (the best one when several were tried).
    n_tokens : int
        Labelled tokens probed.
    """

    layer_labels: tuple[str, ...]
    representations: tuple[str, ...]
    blocks: tuple
    accuracy: np.ndarray
    accuracy_std: np.ndarray
    selectivity: np.ndarray
    selectivity_std: np.ndarray
    control_accuracy: np.ndarray
    majority_accuracy: float
    lr: float
    n_tokens: int

    def to_frame(self) -> pd.DataFrame:
        """One row per probed array: columns ``layer``, ``representation``, ``block`` (missing for the
        embeddings), ``accuracy``, ``accuracy_std``, ``selectivity``, ``selectivity_std``,
        ``control_accuracy``, ``majority_accuracy``, ``lr``; ``attrs["n_tokens"]`` the tokens probed."""
        frame = pd.DataFrame({
            "layer": list(self.layer_labels), "representation": list(self.representations),
            "block": pd.array(list(self.blocks), dtype="Int64"),
            "accuracy": self.accuracy, "accuracy_std": self.accuracy_std, "selectivity": self.selectivity,
            "selectivity_std": self.selectivity_std, "control_accuracy": self.control_accuracy,
            "majority_accuracy": self.majority_accuracy, "lr": self.lr,
        })
        frame.attrs["n_tokens"] = self.n_tokens
        return frame

    def to_markdown(self) -> str:
        """The table laid out like the paper's Table 1, in percent (:func:`table1_markdown`)."""
        return table1_markdown(self.to_frame())


def probe_table(
    lm: LM,
    corpus,
    *,
    n_tokens: int = 10_000,
    trials: int = 5,
    epochs: int = 50,
    lr: float | Sequence[float] = 1e-3,
    seed: int = 0,
    layers=None,
    store: str = "auto",
    progress: Progress | None = None,
) -> ProbeTable:
    """The paper's Table 1: part-of-speech probes with control tasks at every layer.

    Parameters
    ----------
    lm : LM
    corpus : path, bytes, CoNLL-U text, or sequence of Sentence
        UPOS-tagged sentences, e.g. Universal Dependencies English EWT.
    n_tokens : int, default 10000
        Labelled words (a word's first sub-token) to probe.
    trials : int, default 5
        Each trial draws its own 67/33 split, control task and initialisation.
    epochs : int, default 50
    lr : float or sequence of float, default 1e-3
        Adam's learning rate; give ``LEARNING_RATES`` to try the paper's
        three and keep the best.
    seed : int, default 0
    layers : sequence of int or "embeddings", optional
        Block indices (and ``"embeddings"``) to probe; all by default.
    store : {"auto", "disk", "memory"}, default "auto"
        Where the representations wait for training, as in
        :func:`ecco_core.probing.collect`: on disk (float16, trained a group
        of layers at a time) when they would pass
        :data:`ecco_core.probing.IN_MEMORY_BYTES`, else in memory. The disk
        store is deleted before this returns. Through nnsight it is only
        checked: the features stay where the model runs, in float32.
    progress : callable(fraction, message), optional
        Progress of the whole run (capture, then training); tqdm by default.
        The probes train on the model's device. Through nnsight (``lm``
        loaded with ``backend="nnsight"`` or ``"ndif"``) the features are
        collected and the probes trained where the model runs, with the same
        training function and draws (:mod:`ecco_core.probing.traced`): one
        request per group of layers, progress between requests, only the
        counts behind the accuracies coming back; the table is the hook
        path's with ``store="memory"``.

    Returns
    -------
    ProbeTable
        One entry per probed array, in depth order; ``.to_frame()`` has a row
        each: ``layer`` (its label, :mod:`ecco_core.layers`: ``"embeddings"``,
        ``"block 0"`` = block 0's output, ``"block 0 FFN"``, ...),
        ``representation`` (``"hidden"`` = the embeddings or a block's
        output, ``"ffn"`` = a block's FFN activations), ``block`` (the block
        index; missing for the embeddings), ``accuracy``, ``accuracy_std``,
        ``selectivity``, ``selectivity_std`` (fractions; mean and ddof=0
        standard deviation over trials), ``control_accuracy``,
        ``majority_accuracy`` (the most-frequent-tag baseline) and ``lr``.

    Examples
    --------
    >>> table = probe_table(ec.load(ec.DEFAULT_ENCODER), "en_ewt-ud-dev.conllu").to_frame()
    >>> table[table.representation == "hidden"][["layer", "accuracy", "selectivity"]]
    """
    if lm.backend.traced:
        return _traced_table(lm, corpus, n_tokens=n_tokens, trials=trials, epochs=epochs, lr=lr, seed=seed,
                             layers=layers, store=store, progress=progress)
    update, close = progress_bar(progress)
    data = None
    try:
        data = collect(
            lm, corpus, n_tokens=n_tokens, layers=layers, store=store,
            progress=lambda fraction, message: update(0.2 * fraction, message),
        )
        scores = train_probes(
            [data.hidden_states, data.ffn], data.tags, data.words, trials=trials, epochs=epochs, lr=lr,
            seed=seed, device=lm.device,
            progress=lambda fraction, message: update(0.2 + 0.8 * fraction, message),
        )
        return scores_table(data, scores)
    finally:
        close()
        if data is not None:
            data.close()


def _traced_table(lm: LM, corpus, *, n_tokens, trials, epochs, lr, seed, layers, store, progress) -> ProbeTable:
    """:func:`probe_table` through ``lm``'s nnsight backend: every argument checked and every draw made here,
    before any request; the features collected and the probes trained where the model runs
    (:func:`ecco_core.probing.traced.probe_counts`). ``store`` is checked only: the features stay on the
    server, in float32, as the hook path's ``store="memory"`` keeps them."""
    n_tokens = checks.whole("n_tokens", n_tokens, low=1)
    checks.choice("store", store, STORES)
    include_embedding, blocks = selected_layers(lm, layers)
    hidden_rows = ([0] if include_embedding else []) + [block + 1 for block in blocks]
    aligned = align_corpus(lm, corpus_sentences(corpus), n_tokens)
    tags = [tag for item in aligned for tag in item.tags]
    plan = plan_training(tags, [word for item in aligned for word in item.words], trials=trials, epochs=epochs,
                         lr=lr, seed=seed)
    update, close = progress_bar(progress)
    try:
        counts = probe_counts(lm, aligned, hidden_rows, blocks, plan, precision=check_precision("auto"),
                              update=update)
    finally:
        close()
    return _table(hidden_rows, blocks, len(tags), plan.scores(counts))


def scores_table(data: ProbeData, scores: ProbeScores) -> ProbeTable:
    """Table 1 from :func:`train_probes` run on ``[data.hidden_states, data.ffn]``."""
    return _table(data.hidden_indices, data.ffn_blocks, len(data.tags), scores)


def _table(hidden_indices, ffn_blocks, n_tokens: int, scores: ProbeScores) -> ProbeTable:
    """Table 1 from scores whose rows are the ``hidden_states`` rows ``hidden_indices``, then the FFNs of
    ``ffn_blocks``."""
    frame = scores.to_frame().drop(columns="probe")
    blocks = [index - 1 if index else None for index in hidden_indices] + list(ffn_blocks)
    frame.insert(0, "block", pd.array(blocks, dtype="Int64"))
    frame.insert(0, "representation", ["hidden"] * len(hidden_indices) + ["ffn"] * len(ffn_blocks))
    frame.insert(0, "layer", [residual_label(index) for index in hidden_indices]
                 + [site_label("ffn", block) for block in ffn_blocks])
    frame["majority_accuracy"] = scores.majority_accuracy.mean()
    frame["lr"] = scores.lr
    # Each block's output, then its FFN; the embeddings first.
    frame["_order"] = frame["block"].fillna(-1).astype(int) * 2 + (frame["representation"] == "ffn")
    frame = frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    return ProbeTable(
        layer_labels=tuple(frame["layer"]), representations=tuple(frame["representation"]),
        blocks=tuple(None if pd.isna(block) else int(block) for block in frame["block"]),
        **{column: frame[column].to_numpy(dtype=np.float64) for column in
           ("accuracy", "accuracy_std", "selectivity", "selectivity_std", "control_accuracy")},
        majority_accuracy=float(scores.majority_accuracy.mean()), lr=float(scores.lr), n_tokens=n_tokens,
    )


def table1_markdown(frame: pd.DataFrame) -> str:
    """A :meth:`ProbeTable.to_frame` (or :func:`paper_table1`) frame laid out like the paper's Table 1, in percent,
    as Markdown.

    One line per block (and one for the embeddings), its FFN and its output side by side.
    """
    lines = [
        "| layer | FFN accuracy | FFN selectivity | hidden accuracy | hidden selectivity |",
        "|---|---:|---:|---:|---:|",
    ]
    for layer, rows in frame.groupby(depth_labels(frame), sort=False):
        cells = []
        for representation in ("ffn", "hidden"):
            row = rows[rows["representation"] == representation]
            for column in ("accuracy", "selectivity"):
                cells.append(
                    f"{100 * row[column].iloc[0]:.1f} (±{100 * row[column + '_std'].iloc[0]:.1f})" if len(row) else "-"
                )
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The paper's Table 1 (Alammar 2021, BERT-base, UD English, percent: mean, std over 5 trials),
# as reference data for comparisons: (block, None for the embeddings; ffn accuracy, std,
# ffn selectivity, std, hidden accuracy, std, hidden selectivity, std); None where the
# paper has no FFN. The paper's "layer 0" is block 0 (its output and its FFN).
_PAPER_TABLE1 = (
    (None, None, None, None, None, 87.6, 0.5, 6.1, 1.1),
    (0, 90.5, 0.4, 9.1, 0.7, 92.2, 0.3, 13.6, 0.8),
    (1, 93.3, 0.5, 14.8, 0.8, 93.6, 0.4, 17.9, 1.0),
    (2, 87.3, 0.5, 35.9, 0.5, 94.2, 0.3, 20.9, 0.8),
    (3, 84.7, 0.5, 34.6, 0.3, 94.7, 0.3, 23.9, 0.7),
    (4, 94.2, 0.3, 18.9, 0.6, 94.9, 0.2, 27.5, 0.6),
    (5, 94.6, 0.3, 22.2, 0.6, 94.8, 0.3, 31.5, 0.7),
    (6, 93.6, 0.5, 27.1, 1.1, 94.1, 0.4, 34.3, 0.8),
    (7, 92.8, 0.6, 31.5, 0.5, 93.7, 0.6, 36.0, 0.4),
    (8, 91.9, 0.6, 34.4, 1.1, 92.4, 0.7, 37.1, 0.5),
    (9, 90.5, 0.4, 35.2, 0.4, 91.6, 0.6, 37.3, 0.7),
    (10, 88.8, 0.5, 36.4, 0.6, 90.6, 0.5, 37.3, 0.9),
    (11, 87.9, 0.5, 36.5, 0.8, 89.0, 0.7, 36.7, 1.1),
)


def paper_table1() -> pd.DataFrame:
    """The Ecco paper's Table 1 (BERT-base) in :func:`probe_table`'s layout, as fractions."""
    rows = []
    for block, *values in _PAPER_TABLE1:
        for representation, (accuracy, accuracy_std, selectivity, selectivity_std) in (
            ("hidden", values[4:]), ("ffn", values[:4]),
        ):
            if accuracy is not None:
                label = site_label("ffn", block) if representation == "ffn" else (
                    residual_label(0 if block is None else block + 1)
                )
                rows.append({
                    "layer": label, "representation": representation, "block": block,
                    "accuracy": accuracy / 100, "accuracy_std": accuracy_std / 100,
                    "selectivity": selectivity / 100, "selectivity_std": selectivity_std / 100,
                })
    frame = pd.DataFrame(rows)
    frame["block"] = frame["block"].astype("Int64")
    return frame
