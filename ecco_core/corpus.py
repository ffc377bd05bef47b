"""Running a model over many texts in padded batches, keeping chosen token positions of chosen layers.

Probing keeps the labelled words of a corpus (:func:`ecco_core.probing.collect`),
similarity every non-special token of many sentences
(:func:`ecco_core.similarity.corpus_similarity`); both run through
:func:`record_positions`. Each batch's kept positions are copied out of
every wanted layer as the forward pass produces it, so a batch never holds
more than one layer at full width beyond what is kept, and the kept values
go to numpy arrays or, for a whole corpus, to an on-disk
:class:`~ecco_core.store.ActivationStore` (:func:`allocate`).
"""

from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from ._heartbeat import heartbeat
from .hooks import Recording, recording, without_cache
from .models import LM
from .store import ActivationStore, StoredArray

#: With ``store="auto"``, kept representations bigger than this (as float32) go to an on-disk store:
#: the causal default's 10,000 tokens at every layer (2.6 GB) do, the encoder default's (0.5 GB) do not.
IN_MEMORY_BYTES = 1 << 30

#: Where kept representations go: ``"memory"`` (numpy), ``"disk"`` (an ActivationStore), or ``"auto"``.
STORES = ("auto", "disk", "memory")


def allocate(
    shapes: dict[str, tuple[int, int, int]],
    store: str,
    *,
    dtype: str = "float16",
    in_memory_bytes: int = IN_MEMORY_BYTES,
) -> dict:
    """Empty outputs of the given shapes: float32 arrays in memory, or arrays of one new ActivationStore.

    ``store`` is one of :data:`STORES` (checked by the caller); ``"auto"``
    takes the disk when the shapes together pass ``in_memory_bytes`` as
    float32. ``dtype`` is how the disk keeps values. Returns a dict of the
    same keys: ndarray or :class:`~ecco_core.store.StoredArray` of each shape.
    """
    float32_bytes = 4 * sum(int(np.prod(shape)) for shape in shapes.values())
    if store == "disk" or (store == "auto" and float32_bytes > in_memory_bytes):
        disk = ActivationStore(dtype=dtype)
        return {name: disk.array(name, shape) for name, shape in shapes.items()}
    return {name: np.empty(shape, dtype=np.float32) for name, shape in shapes.items()}


def close_store(outputs: dict) -> None:
    """Delete the on-disk store of ``allocate``'s outputs now, if they are in one."""
    for array in outputs.values():
        if isinstance(array, StoredArray):
            array.store.close()


class _PositionRecording(Recording):
    """Keeps only the chosen positions of the wanted layers, copied out as each layer is computed.

    ``sink(site, out_row, values)`` receives float32 arrays of shape
    (n_kept, width); ``wanted[site]`` maps a recorded index (the
    ``hidden_states`` index or the FFN's block) to its output row.
    """

    def __init__(self, wanted: dict[str, dict[int, int]], rows: torch.Tensor, columns: torch.Tensor, sink):
        super().__init__()
        self._wanted, self._rows, self._columns, self._sink = wanted, rows, columns, sink
        self._seen = {"hidden_states": 0, "ffn": 0}

    def keep(self, site: str, tensor: torch.Tensor) -> None:
        index = self._seen[site]
        self._seen[site] += 1
        if index in self._wanted.get(site, {}):
            values = tensor[self._rows.to(tensor.device), self._columns.to(tensor.device)]
            self._sink(site, self._wanted[site][index], values.float().cpu().numpy())

    def counts(self) -> tuple[int, int]:
        return self._seen["hidden_states"], self._seen["ffn"]


def _put(array, row: int, tokens: np.ndarray, values: np.ndarray) -> None:
    if isinstance(array, StoredArray):
        array.write(row, tokens, values)
    else:
        array[row, tokens] = values


class PaddedBatch(NamedTuple):
    """One padded batch of :func:`padded_batches`.

    ``ids`` and ``attention_mask`` (n_sequences, width), int64, right-padded;
    the kept tokens at (``rows``, ``columns``), int64 (n_kept,), go to token
    rows ``destination`` (n_kept,) of the outputs; ``start`` and ``done``
    count the sequences run before and with it.
    """

    ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: torch.Tensor
    columns: torch.Tensor
    destination: torch.Tensor
    start: int
    done: int


def _run_order(input_ids, positions) -> list[int]:
    """The sequences that keep a position, shortest first."""
    # A sequence with nothing to keep is not run (and would give the disk store an empty first batch to scale by).
    return sorted((i for i in range(len(input_ids)) if len(positions[i])), key=lambda i: len(input_ids[i]))


def padded_batches(lm: LM, input_ids: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], *,
                   batch_size: int) -> Iterator[PaddedBatch]:
    """The batches :func:`record_positions` runs (its arguments' meanings): sequences of similar length,
    ``batch_size`` at a time, right-padded with the tokenizer's pad id (else 0), with an attention mask.

    The nnsight path runs the same batches (a probing session on NDIF), so that
    its representations are the hook path's.
    """
    first_row = np.cumsum([0] + [len(kept) for kept in positions])
    order = _run_order(input_ids, positions)
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        width = max(len(input_ids[i]) for i in indices)
        batch_ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            batch_ids[row, : len(input_ids[i])] = torch.tensor(list(input_ids[i]))
            attention_mask[row, : len(input_ids[i])] = 1
        yield PaddedBatch(
            ids=batch_ids, attention_mask=attention_mask,
            rows=torch.tensor([row for row, i in enumerate(indices) for _ in positions[i]], dtype=torch.long),
            columns=torch.tensor([int(p) for i in indices for p in positions[i]], dtype=torch.long),
            destination=torch.from_numpy(np.concatenate([np.arange(first_row[i], first_row[i + 1]) for i in indices])),
            start=start, done=start + len(indices),
        )


def record_positions(
    lm: LM,
    input_ids: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    outputs: dict,
    wanted: dict[str, dict[int, int]],
    *,
    batch_size: int,
    update: Callable[[float, str], None],
) -> None:
    """Run ``lm`` over token sequences in padded batches and write the kept positions' representations.

    Sequences run in batches of ``batch_size`` of similar length,
    right-padded, with an attention mask.

    Parameters
    ----------
    lm : LM
    input_ids : sequence of n_sequences sequences of int
        Each sequence's token ids, as the model reads it (special tokens included).
    positions : sequence of n_sequences sequences of int
        The positions to keep of each sequence. Sequence ``i``'s go, in
        order, to consecutive token rows of every output, after those of
        sequences ``0 .. i - 1``; n_kept is their total.
    outputs : dict of site -> ndarray or StoredArray of shape (n_rows, n_kept, width)
        ``"hidden_states"`` and/or ``"ffn"`` (from :func:`allocate`).
    wanted : dict of site -> dict of recorded index -> output row
        The recorded index is the ``hidden_states`` index (0 = the
        embeddings, ``i + 1`` = block ``i``'s output) or the FFN's block.
    batch_size : int
    update : callable(fraction, message)
        Called after every batch, and every second while a batch runs
        (:func:`ecco_core._heartbeat.heartbeat`).
    """
    order = _run_order(input_ids, positions)
    for batch in padded_batches(lm, input_ids, positions, batch_size=batch_size):
        rows, columns, destination = batch.rows, batch.columns, batch.destination.numpy()
        record = _PositionRecording(
            wanted, rows, columns, lambda site, row, values: _put(outputs[site], row, destination, values)
        )
        # The blocks are hooked, so the base model suffices; a causal LM head over the
        # whole vocabulary at every position would cost more than the blocks.
        base = lm.model.base_model
        message = f"running {lm.name} over the corpus"
        # One batch can take a minute under load: the pass reports while it runs (at the fraction done before it).
        with torch.inference_mode(), recording(lm, record), heartbeat(update, batch.start / len(order), message):
            base(input_ids=batch.ids.to(lm.device), attention_mask=batch.attention_mask.to(lm.device),
                 **without_cache(base))
        update(batch.done / len(order), message)
