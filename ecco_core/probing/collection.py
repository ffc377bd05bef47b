"""Running a model over a corpus in batches and keeping every labelled token's representations.

The representations go to memory (numpy arrays) or, for a whole corpus, to
an on-disk :class:`ecco_core.store.ActivationStore` (``store="disk"``;
``"auto"`` picks the disk once they would pass :data:`IN_MEMORY_BYTES`).
Either way each batch's labelled tokens are picked out of every probed
layer as the forward pass produces it, so a batch never holds more than one
layer at full width beyond what is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .. import _checks as checks
from ..capture import Recording, recording
from ..layers import EMBEDDINGS, residual_label, site_label
from ..models import LM
from ..store import ActivationStore, StoredArray
from ._progress import Progress, progress_bar
from .data import AlignedSentence, Sentence, align, iter_conllu

#: With ``store="auto"``, features bigger than this (as float32) go to an on-disk store:
#: the causal default's 10,000 tokens at every layer (2.6 GB) do, the encoder default's (0.5 GB) do not.
IN_MEMORY_BYTES = 1 << 30

STORES = ("auto", "disk", "memory")


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



def _selected_layers(lm: LM, layers) -> tuple[bool, list[int]]:
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


class _LabelledRecording(Recording):
    """Keeps only the labelled tokens of the probed layers, copied out as each layer is computed.

    ``sink(site, out_row, values)`` receives float32 arrays of shape
    (n_labelled, width); ``wanted[site]`` maps a recorded index (the
    ``hidden_states`` index or the FFN's block) to its output row.
    """

    def __init__(self, wanted: dict[str, dict[int, int]], rows: torch.Tensor, columns: torch.Tensor, sink):
        super().__init__()
        self._wanted, self._rows, self._columns, self._sink = wanted, rows, columns, sink
        self._seen = {"hidden_states": 0, "ffn": 0}

    def keep(self, site: str, tensor: torch.Tensor) -> None:
        index = self._seen[site]
        self._seen[site] += 1
        if index in self._wanted[site]:
            values = tensor[self._rows.to(tensor.device), self._columns.to(tensor.device)]
            self._sink(site, self._wanted[site][index], values.float().cpu().numpy())

    def counts(self) -> tuple[int, int]:
        return self._seen["hidden_states"], self._seen["ffn"]


def _put(array, row: int, tokens: np.ndarray, values: np.ndarray) -> None:
    if isinstance(array, StoredArray):
        array.write(row, tokens, values)
    else:
        array[row, tokens] = values


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
    sentences = _sentences(corpus)
    n_tokens = checks.whole("n_tokens", n_tokens, low=1)
    batch_size = checks.whole("batch_size", batch_size, low=1)
    store = checks.choice("store", store, STORES)
    include_embedding, blocks = _selected_layers(lm, layers)
    hidden_rows = ([0] if include_embedding else []) + [block + 1 for block in blocks]

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

    # Each sentence's labelled tokens go to consecutive rows of the output, in corpus order.
    first_row = np.cumsum([0] + [len(item.positions) for item in aligned])
    hidden_shape = (len(hidden_rows), total, lm.d_model)
    ffn_shape = (len(blocks), total, lm.d_ff)
    float32_bytes = 4 * (np.prod(hidden_shape) + np.prod(ffn_shape))
    if store == "disk" or (store == "auto" and float32_bytes > IN_MEMORY_BYTES):
        disk = ActivationStore()
        hidden_states, ffn = disk.array("hidden_states", hidden_shape), disk.array("ffn", ffn_shape)
    else:
        hidden_states = np.empty(hidden_shape, dtype=np.float32)
        ffn = np.empty(ffn_shape, dtype=np.float32)
    outputs = {"hidden_states": hidden_states, "ffn": ffn}
    wanted = {
        "hidden_states": {index: row for row, index in enumerate(hidden_rows)},
        "ffn": {block: row for row, block in enumerate(blocks)},
    }
    order = sorted(range(len(aligned)), key=lambda i: len(aligned[i].input_ids))
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    update, close = progress_bar(progress)
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = [aligned[i] for i in indices]
            width = max(len(item.input_ids) for item in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, item in enumerate(batch):
                input_ids[row, : len(item.input_ids)] = torch.tensor(item.input_ids)
                attention_mask[row, : len(item.input_ids)] = 1
            rows = torch.tensor([row for row, item in enumerate(batch) for _ in item.positions])
            columns = torch.tensor([p for item in batch for p in item.positions])
            destination = np.concatenate([np.arange(first_row[i], first_row[i + 1]) for i in indices])
            record = _LabelledRecording(
                wanted, rows, columns,
                lambda site, row, values: _put(outputs[site], row, destination, values),
            )
            # The blocks are hooked, so the base model suffices; a causal LM head over the
            # whole vocabulary at every position would cost more than the blocks.
            with torch.inference_mode(), recording(lm, record):
                lm.model.base_model(input_ids=input_ids.to(lm.device), attention_mask=attention_mask.to(lm.device))
            update((start + len(batch)) / len(order), f"running {lm.name} over the corpus")
    finally:
        close()

    return ProbeData(
        hidden_states=hidden_states,
        ffn=ffn,
        hidden_indices=tuple(hidden_rows),
        ffn_blocks=tuple(blocks),
        words=tuple(w for item in aligned for w in item.words),
        tags=tuple(t for item in aligned for t in item.tags),
        model_name=lm.name,
    )


def _sentences(corpus) -> Iterator[Sentence]:
    """The corpus's sentences, a CoNLL-U source read only as far as they are taken."""
    if isinstance(corpus, (list, tuple)) and corpus and all(isinstance(s, Sentence) for s in corpus):
        return iter(corpus)
    return iter_conllu(corpus)
