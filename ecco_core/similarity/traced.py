"""Similarity over texts through nnsight, here or on NDIF: the layers kept and compared where the model runs.

The layers of a corpus are far more than a request should bring back (40 UD
sentences of SmolLM2-135M, 1,145 positions, every hidden state and FFN: 293
MB float32; even the two layers of one cell: 9.7 MB). So a request (one
nnsight session: :func:`ecco_core.backends.sessions.layer_similarity`) sends
the texts' tokens in the hook path's own padded batches
(:func:`ecco_core.corpus.padded_batches`), keeps the compared positions of the
layers asked for in the server's memory (float32, as the hook path's store
keeps them), and runs the hook path's own numpy functions there
(:func:`~ecco_core.similarity.matrix_values`,
:func:`~ecco_core.similarity.shuffled_scores`: NDIF's server has numpy, and
this package's metrics travel with the request). Only the matrix, and the
scores of a tested cell, come back: 9 KB for 31 x 30 layers.
"""

from __future__ import annotations

from typing import Callable

from ..corpus import padded_batches
from ..models import LM
from ..probing.traced import pass_reads
from .metrics import METHODS, Options

#: Each representation's stack: 0 holds hidden states (``hidden_states`` indices), 1 FFN activations (blocks).
_STACKS = {"hidden": 0, "ffn": 1}


def served_layers(lm: LM, input_ids: list, positions: list, *, rows: str, columns: str, row_indices: list[int],
                  column_indices: list[int], method: str, options: Options, whole: bool, cell, n_permutations: int,
                  seed: int, batch_size: int, progress: Callable[[float, str], None] | None = None) -> dict:
    """One request over the texts (``input_ids``, the compared ``positions`` of each, checked) that keeps the layers
    ``row_indices`` of ``rows`` and ``column_indices`` of ``columns`` and compares them on the server.

    ``whole``: the matrix of all of them; ``cell`` (indices into the two lists, or ``"median"``) the pair whose
    shuffled scores come back too (``n_permutations`` of them, from ``seed``). Returns the session's dict
    (:func:`ecco_core.backends.sessions.layer_similarity`).
    """
    from ..backends import sessions  # nnsight is needed only here

    report = progress or (lambda fraction, message: None)
    n_kept = sum(len(kept) for kept in positions)
    needed: list[list[int]] = [[], []]  # the hidden_states indices, the FFN blocks
    for representation, indices in ((rows, row_indices), (columns, column_indices)):
        needed[_STACKS[representation]] = sorted(set(needed[_STACKS[representation]]) | set(indices))
    hidden_rows, blocks = needed
    reads = pass_reads(hidden_rows, blocks, [list(range(len(hidden_rows))), list(range(len(blocks)))])
    stacks = [stack for stack in (0, 1) if needed[stack]]
    widths = (lm.d_model, lm.d_ff)
    shapes = [(len(needed[stack]), widths[stack]) for stack in stacks]

    def refs(representation: str, indices: list[int]) -> list[tuple[int, int]]:
        stack = _STACKS[representation]
        return [(stacks.index(stack), needed[stack].index(index)) for index in indices]

    batches = [tuple(batch[:5]) for batch in padded_batches(lm, input_ids, positions, batch_size=batch_size)]
    report(0.0, f"comparing layers on {lm.backend.where}: the texts through the model, then "
                f"{'the matrix' if whole else 'one pair of layers'} there")
    found = sessions.layer_similarity(
        lm, batches, reads, shapes, n_kept, row_layers=refs(rows, row_indices),
        column_layers=refs(columns, column_indices), entry=METHODS[method], options=options, whole=whole,
        cell=cell, n_permutations=n_permutations, seed=seed,
    )
    report(1.0, f"comparing layers on {lm.backend.where}: done")
    return found
