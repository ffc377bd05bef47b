"""Running a model over a corpus in batches and keeping every labelled token's representations.

The representations go to memory (numpy arrays) or, for a whole corpus, to
an on-disk :class:`ecco_core.store.ActivationStore` (``store="disk"``;
``"auto"`` picks the disk once they would pass :data:`IN_MEMORY_BYTES`).
Either way each batch's labelled tokens are picked out of every probed
layer as the forward pass produces it (:func:`ecco_core.corpus.record_positions`),
so a batch never holds more than one layer at full width beyond what is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .. import _checks as checks
from ..corpus import IN_MEMORY_BYTES, STORES, allocate, record_positions
from ..layers import EMBEDDINGS, residual_label, site_label
from ..models import LM
from ..store import StoredArray
from ._progress import Progress, progress_bar
from .data import AlignedSentence, Sentence, align, iter_conllu


@dataclass(frozen=True, eq=False)
class ProbeData:
    """Representations of every labelled token of a corpus, ready for probing.

    Attributes
    ----------
    hidden_states : ndarray or StoredArray of shape (n_hidden, n_tokens, d_model), float32
        The selected rows of a capture's ``hidden_states`` (the embeddings
        and block outputs), at the labelled tokens. A
        :class:`~ecco_core.store.StoredArray` when collected to disk: ``[i]``
        reads row ``i``, ``np.asarray`` all of it.
    ffn : ndarray or StoredArray of shape (n_ffn, n_tokens, d_ff), float32
        The selected blocks' FFN activations.
    hidden_indices : tuple of int, length n_hidden
        The ``hidden_states`` index of each row: 0 = the embeddings, ``i + 1``
        = block ``i``'s output.
    ffn_blocks : tuple of int, length n_ffn
        The block of each ``ffn`` row.
    words : tuple of str, length n_tokens
    tags : tuple of str, length n_tokens
    model_name : str
    """

    hidden_states: np.ndarray
    ffn: np.ndarray
    hidden_indices: tuple[int, ...]
    ffn_blocks: tuple[int, ...]
    words: tuple[str, ...]
    tags: tuple[str, ...]
    model_name: str

    @property
    def n_tokens(self) -> int:
        return len(self.words)

    @property
    def hidden_layers(self) -> tuple[str, ...]:
        """Label of each ``hidden_states`` row: ``"embeddings"`` or ``"block i"``."""
        return tuple(residual_label(index) for index in self.hidden_indices)

    @property
    def ffn_layers(self) -> tuple[str, ...]:
        """Label of each ``ffn`` row: ``"block i FFN"``."""
        return tuple(site_label("ffn", block) for block in self.ffn_blocks)

    @property
    def on_disk(self) -> bool:
        """Whether the arrays are in an on-disk store (``collect(store="disk")``)."""
        return isinstance(self.hidden_states, StoredArray) or isinstance(self.ffn, StoredArray)

    def close(self) -> None:
        """Delete the on-disk store now, if the arrays are in one; it goes anyway once they are collected."""
        for array in (self.hidden_states, self.ffn):
            if isinstance(array, StoredArray):
                array.store.close()



def selected_layers(lm: LM, layers) -> tuple[bool, list[int]]:
    """(whether the embedding row is probed, block indices) for ``layers``."""
    if layers is None:
        return True, list(range(lm.n_layers))
    if isinstance(layers, (str, int)):
        layers = [layers]
    allowed = f"a non-empty list of {EMBEDDINGS!r} and block indices 0 to {lm.n_layers - 1}"
    include_embedding, blocks = False, []
    for layer in layers:
        if layer == EMBEDDINGS:
            include_embedding = True
        elif checks.is_whole(layer) and 0 <= layer < lm.n_layers:
            blocks.append(int(layer))
        else:
            raise checks.invalid("layers", layers, allowed)
    blocks = sorted(set(blocks))
    if not include_embedding and not blocks:
        raise checks.invalid("layers", layers, allowed)
    return include_embedding, blocks


def collect(
    lm: LM,
    corpus,
    *,
    n_tokens: int = 10_000,
    layers=None,
    batch_size: int = 32,
    store: str = "auto",
    progress: Progress | None = None,
) -> ProbeData:
    """Run the model over a corpus in padded batches and keep every labelled token's representations.

    Sentences are taken in order until ``n_tokens`` words are labelled; they
    run in batches of similar length, right-padded, with an attention mask.

    Parameters
    ----------
    lm : LM
    corpus : path, bytes, CoNLL-U text, or sequence of Sentence
        A CoNLL-U source is parsed only until ``n_tokens`` words are in.
    n_tokens : int, default 10000
        Labelled words to collect (fewer if the corpus is shorter).
    layers : sequence of int or "embeddings", optional
        Block indices to probe (the block's output and its FFN), and
        ``"embeddings"`` for the embeddings; all of them by default.
    batch_size : int, default 32
        Sentences per forward pass.
    store : {"auto", "disk", "memory"}, default "auto"
        Where the representations go: numpy arrays in memory, or float16
        files of an :class:`~ecco_core.store.ActivationStore` under the model
        cache (deleted with the returned data); ``"auto"`` takes the disk
        when they would pass :data:`IN_MEMORY_BYTES` as float32.
    progress : callable(fraction, message), optional
        Called after every batch; a tqdm bar by default.

    Returns
    -------
    ProbeData
    """
    lm.require_hooks("collect", "it brings back every labelled token's representations, far more than a request "
                     "should; ec.probe_table collects them and trains the probes where the model runs")
    sentences = corpus_sentences(corpus)
    n_tokens = checks.whole("n_tokens", n_tokens, low=1)
    batch_size = checks.whole("batch_size", batch_size, low=1)
    store = checks.choice("store", store, STORES)
    include_embedding, blocks = selected_layers(lm, layers)
    hidden_rows = ([0] if include_embedding else []) + [block + 1 for block in blocks]

    aligned = align_corpus(lm, sentences, n_tokens)
    total = sum(len(item.positions) for item in aligned)

    # Each sentence's labelled tokens go to consecutive rows of the output, in corpus order.
    outputs = allocate(
        {"hidden_states": (len(hidden_rows), total, lm.d_model), "ffn": (len(blocks), total, lm.d_ff)},
        store, in_memory_bytes=IN_MEMORY_BYTES,
    )
    wanted = {
        "hidden_states": {index: row for row, index in enumerate(hidden_rows)},
        "ffn": {block: row for row, block in enumerate(blocks)},
    }
    update, close = progress_bar(progress)
    try:
        record_positions(
            lm, [item.input_ids for item in aligned], [item.positions for item in aligned], outputs, wanted,
            batch_size=batch_size, update=update,
        )
    finally:
        close()

    return ProbeData(
        hidden_states=outputs["hidden_states"],
        ffn=outputs["ffn"],
        hidden_indices=tuple(hidden_rows),
        ffn_blocks=tuple(blocks),
        words=tuple(w for item in aligned for w in item.words),
        tags=tuple(t for item in aligned for t in item.tags),
        model_name=lm.name,
    )


def align_corpus(lm: LM, sentences, n_tokens: int) -> list[AlignedSentence]:
    """The first sentences of ``sentences`` (an iterator of Sentence), aligned to ``lm``'s tokens
    (:func:`~ecco_core.probing.align`), until ``n_tokens`` words are labelled (the last one cut short)."""
    aligned, total = [], 0
    for sentence in sentences:
        item = align(lm.tokenizer, sentence, max_length=lm.context_length)
        keep = min(len(item.positions), n_tokens - total)
        if keep <= 0:
            break
        if keep < len(item.positions):
            item = AlignedSentence(item.input_ids, item.positions[:keep], item.words[:keep], item.tags[:keep])
        aligned.append(item)
        total += keep
        if total >= n_tokens:
            break
    if not total:
        raise ValueError("no word of the corpus could be aligned to a token")
    return aligned


def corpus_sentences(corpus) -> Iterator[Sentence]:
    """The corpus's sentences, a CoNLL-U source read only as far as they are taken."""
    if isinstance(corpus, (list, tuple)) and corpus and all(isinstance(s, Sentence) for s in corpus):
        return iter(corpus)
    return iter_conllu(corpus)
