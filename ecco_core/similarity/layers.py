"""Similarity of a model's layers, from captures (:func:`layer_similarity`) or a corpus (:func:`corpus_similarity`).

The representations and their labels are :mod:`ecco_core.layers`'
(``"hidden"``: the embeddings and every block's output; ``"ffn"``: every
block's FFN); the sentences of the bundled corpus come from
:func:`ecco_core.probing.ud_sentences`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from .. import _checks as checks
from ..capture import Capture
from ..corpus import STORES, allocate, close_store, record_positions
from ..layers import REPRESENTATION_TITLES, REPRESENTATIONS
from ..layers import representation_labels as layer_labels
from ..models import LM
from ..probing.data import ud_sentences
from ..tokens import encode_prompt, special_mask
from .matrix import SimilarityMatrix, similarity_matrix
from .metrics import KERNELS, METHODS, Options, check_keep


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
    if _is_capture(source):
        masks = [source.special]
    else:
        masks = [special_mask(lm.tokenizer, encode_prompt(lm, text, argument=f"source[{index}]"))
                 for index, text in enumerate(source)]
    return sum(int(_kept(mask, skip_special, skip_first).sum()) for mask in masks)


def _is_capture(source) -> bool:
    """True for a Capture, False for a sequence of texts; anything else is refused, naming ``source``."""
    if isinstance(source, Capture):
        return True
    if isinstance(source, str) or not isinstance(source, Sequence):
        raise checks.invalid("source", source, "a Capture or a sequence of texts (str)", TypeError)
    return False


def compare_layers(lm: LM, source, method: str = "cka", **options) -> SimilarityMatrix:
    """Every layer of one representation against every layer of another, over ``source``'s token positions.

    ``source`` is one capture of ``lm`` (its tokens: :func:`layer_similarity`)
    or a sequence of texts (pooled, the model run over them:
    :func:`corpus_similarity`); ``options`` are theirs (``rows``, ``columns``,
    ``kernel``, ``keep``, ``skip_special``, ``skip_first``, ``progress`` ...).
    A view that takes either source calls this one function.

    >>> compare_layers(lm, cap, "cka", skip_first=True).values.shape      # (n_layers + 1, n_layers)
    >>> compare_layers(lm, ud_sentences(200), "pwcca", skip_first=True)   # doctest: +SKIP
    """
    if _is_capture(source):
        return layer_similarity([source], method, **options)
    return corpus_similarity(lm, source, method, **options)


def layer_pair(lm: LM, source, row: int, column: int, *, rows: str = "hidden", columns: str = "ffn",
               skip_special: bool = True, skip_first: bool = False,
               progress: Callable[[float, str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two layers of one cell of :func:`compare_layers`' matrix over ``source``, token positions pooled.

    ``row`` and ``column`` index :func:`layer_labels` of ``rows`` and
    ``columns``; over texts, one pass keeps those two layers only
    (:func:`corpus_pair`, which reports to ``progress`` after each batch).
    What a test of one cell needs (:func:`ecco_core.trust.permutation_baseline`).

    Returns
    -------
    X : ndarray of shape (n_samples, width of rows)
    Y : ndarray of shape (n_samples, width of columns)
    """
    skips = dict(skip_special=skip_special, skip_first=skip_first)
    if not _is_capture(source):
        return corpus_pair(lm, source, row, column, rows=rows, columns=columns, progress=progress, **skips)
    stacks = {"hidden": ("hidden_states", source.n_layers + 1), "ffn": ("ffn", source.n_layers)}
    rows = checks.choice("rows", rows, REPRESENTATIONS)
    columns = checks.choice("columns", columns, REPRESENTATIONS)
    row = checks.whole("row", row, low=0, high=stacks[rows][1] - 1)
    column = checks.whole("column", column, low=0, high=stacks[columns][1] - 1)
    kept = _kept(source.special, **skips)
    # Two rows read: a capture made through nnsight fetches these alone.
    return source.rows(stacks[rows][0], [row])[0][kept], source.rows(stacks[columns][0], [column])[0][kept]


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
    Through nnsight (``lm`` loaded with ``backend="nnsight"`` or ``"ndif"``)
    the layers are kept and compared where the model runs, in one request,
    and only the matrix comes back (:func:`served_comparison`; ``store`` is
    the hook path's alone).

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
    if lm.backend.traced:
        checks.choice("store", store, STORES)  # this machine's choice: checked, though the server keeps float32
        return served_comparison(
            lm, texts, method, rows=rows, columns=columns, kernel=kernel, keep=keep, bandwidth=bandwidth,
            skip_special=skip_special, skip_first=skip_first, batch_size=batch_size, progress=progress,
        )[0]
    method, kernel, keep, bandwidth, rows, columns, batch_size = _checked_corpus_options(
        method, kernel, keep, bandwidth, rows, columns, batch_size)
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


def served_comparison(lm: LM, texts: Sequence[str], method: str = "cka", *, cell=None, whole: bool = True,
                      n_permutations: int = 100, seed: int = 0, rows: str = "hidden", columns: str = "ffn",
                      kernel: str = "linear", keep: float | int = 0.99, bandwidth: float = 1.0,
                      skip_special: bool = True, skip_first: bool = False, batch_size: int = 16,
                      progress: Callable[[float, str], None] | None = None,
                      ) -> tuple[SimilarityMatrix | None, tuple[int, int] | None, float, np.ndarray]:
    """:func:`corpus_similarity` through ``lm``'s nnsight backend (here or on NDIF), and a cell's shuffled scores,
    in one request: the layers are kept and compared where the model runs (:mod:`.traced`).

    Parameters
    ----------
    lm : LM
        Loaded with ``backend="nnsight"`` or ``"ndif"``.
    texts, method, rows, columns, kernel, keep, bandwidth, skip_special, skip_first, batch_size, progress
        As for :func:`corpus_similarity`.
    cell : (row, column), "median" or None
        The cell whose score and shuffled scores come back too (indices into
        :func:`layer_labels` of ``rows`` and ``columns``; ``"median"``: the
        matrix's :func:`~ecco_core.similarity.median_cell`, chosen on the server).
    whole : bool
        Compare every pair of layers; False keeps and compares ``cell``'s two layers alone.
    n_permutations, seed : int
        As for :func:`ecco_core.trust.permutation_baseline`.

    Returns
    -------
    matrix : SimilarityMatrix, or None unless ``whole``
    cell : (row, column), or None without ``cell``
    score : float
        ``cell``'s score (0.0 without ``cell``).
    null : ndarray of shape (n_permutations,) (0 without ``cell``)
        ``cell``'s score with the column layer's token positions shuffled.
    """
    from .traced import served_layers

    if not lm.backend.traced:
        raise checks.invalid("lm", lm.name, "a model loaded with backend='nnsight' or 'ndif' (this one runs on hooks: "
                             "use corpus_similarity)")
    method, kernel, keep, bandwidth, rows, columns, batch_size = _checked_corpus_options(
        method, kernel, keep, bandwidth, rows, columns, batch_size)
    counts = {"hidden": lm.n_layers + 1, "ffn": lm.n_layers}
    if cell is not None and not (whole and isinstance(cell, str) and cell == "median"):
        cell = (checks.whole("cell[0]", cell[0], low=0, high=counts[rows] - 1),
                checks.whole("cell[1]", cell[1], low=0, high=counts[columns] - 1))
    if cell is not None:
        n_permutations = checks.whole("n_permutations", n_permutations, low=1)
        seed = checks.whole("seed", seed)
    if not whole and cell is None:
        raise checks.invalid("cell", cell, "a (row, column) pair of layers when whole is False")
    input_ids, positions = _corpus_positions(lm, texts, skip_special, skip_first)
    row_indices = list(range(counts[rows])) if whole else [cell[0]]
    column_indices = list(range(counts[columns])) if whole else [cell[1]]
    found = served_layers(
        lm, input_ids, positions, rows=rows, columns=columns, row_indices=row_indices, column_indices=column_indices,
        method=method, options=Options(kernel, keep, bandwidth), whole=whole, cell=cell if whole else (0, 0),
        n_permutations=n_permutations if cell is not None else 0, seed=seed, batch_size=batch_size,
        progress=progress,
    )
    matrix = None
    if whole:
        matrix = SimilarityMatrix(
            found["values"], tuple(layer_labels(rows, counts[rows])), tuple(layer_labels(columns, counts[columns])),
            method, kernel, keep, sum(len(kept) for kept in positions), found["max_dimensions"],
            REPRESENTATION_TITLES[rows], REPRESENTATION_TITLES[columns],
        )
    tested = None if cell is None else (found["cell"] if whole else cell)
    return matrix, tested, found["score"], found["null"]


def _checked_corpus_options(method, kernel, keep, bandwidth, rows, columns, batch_size) -> tuple:
    """The options of a comparison over texts, checked (as both paths take them), in the order given."""
    method = checks.choice("method", method, METHODS)
    kernel = checks.choice("kernel", kernel, KERNELS)
    keep = check_keep(keep)
    bandwidth = checks.positive("bandwidth", bandwidth)
    rows = checks.choice("rows", rows, REPRESENTATIONS)
    columns = checks.choice("columns", columns, REPRESENTATIONS)
    batch_size = checks.whole("batch_size", batch_size, low=1)
    return method, kernel, keep, bandwidth, rows, columns, batch_size


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
                batch_size: int = 16, progress: Callable[[float, str], None] | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
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
    progress : callable(fraction, message), optional
        Called as the pass goes (after each batch, and within a long one).

    Returns
    -------
    X : ndarray of shape (n_samples, width of rows), float32
    Y : ndarray of shape (n_samples, width of columns), float32
    """
    lm.require_hooks("one cell's two layers over texts", "they would bring back megabytes of activations; "
                     "ecco_core.trust.cell_baseline tests a cell where the model runs")
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
                     update=progress or (lambda fraction, message: None))
    pair = [outputs[sites[rep][0]][wanted[sites[rep][0]][index]] for rep, index in ((rows, row), (columns, column))]
    return np.asarray(pair[0]), np.asarray(pair[1])

