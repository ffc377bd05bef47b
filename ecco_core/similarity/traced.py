"""Similarity over texts through nnsight, here or on NDIF: the layers kept and compared where the model runs.

The layers of a corpus are far more than a request should bring back (40 UD
sentences of SmolLM2-135M, 1,145 positions, every hidden state and FFN: 293
MB float32; even the two layers of one cell: 9.7 MB). So a request (one
nnsight session: :func:`ecco_core.similarity.traced._session`) sends
the texts' tokens in the hook path's own padded batches
(:func:`ecco_core.corpus.padded_batches`), keeps the compared positions of the
layers asked for in the server's memory (float32, as the hook path's store
keeps them), and runs the hook path's own numpy functions there
(:func:`~ecco_core.similarity.matrix_values`,
:func:`~ecco_core.similarity.shuffled_scores`: NDIF's server has numpy, and
this package's metrics travel with the request, by value). Only the matrix,
and the scores of a tested cell, come back: 9 KB for 31 x 30 layers.
"""

from __future__ import annotations

from typing import Callable

import nnsight
import torch

from .. import _checks
from ..backends.served import by_token, output_tensor
from ..corpus import padded_batches
from ..models import LM
from ..probing.traced import pass_reads
from . import matrix, metrics
from .matrix import matrix_values, median_cell, one_blas_thread_anywhere, shuffled_scores
from .metrics import METHODS, Options

# The metrics run on the server as they run here: numpy, which NDIF's server has (nnsight's remote="local" keeps
# torch, numpy, transformers, accelerate, diffusers, einops, peft and nnsight), and these three modules, by value.
nnsight.register(_checks)
nnsight.register(metrics)
nnsight.register(matrix)

#: Each representation's stack: 0 holds hidden states (``hidden_states`` indices), 1 FFN activations (blocks).
_STACKS = {"hidden": 0, "ffn": 1}


def served_layers(lm: LM, input_ids: list, positions: list, *, rows: str, columns: str, row_indices: list[int],
                  column_indices: list[int], method: str, options: Options, whole: bool, cell, n_permutations: int,
                  seed: int, batch_size: int, progress: Callable[[float, str], None] | None = None) -> dict:
    """One request over the texts (``input_ids``, the compared ``positions`` of each, checked) that keeps the layers
    ``row_indices`` of ``rows`` and ``column_indices`` of ``columns`` and compares them on the server.

    ``whole``: the matrix of all of them; ``cell`` (indices into the two lists, or ``"median"``) the pair whose
    shuffled scores come back too (``n_permutations`` of them, from ``seed``). Returns the session's dict
    (:func:`_session`).
    """
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
    found = _session(
        lm, batches, reads, shapes, n_kept, row_layers=refs(rows, row_indices),
        column_layers=refs(columns, column_indices), entry=METHODS[method], options=options, whole=whole,
        cell=cell, n_permutations=n_permutations, seed=seed,
    )
    report(1.0, f"comparing layers on {lm.backend.where}: done")
    return found


def _session(lm: LM, batches: list, reads: list, shapes: list, n_kept: int, *, row_layers: list,
             column_layers: list, entry, options, whole: bool, cell, n_permutations: int, seed: int) -> dict:
    """Layers of a corpus collected and compared where the model runs: one session.

    Mirrors :func:`ecco_core.similarity.corpus_similarity`'s hook path: the
    model runs over ``batches`` (:func:`ecco_core.corpus.padded_batches`, the
    hook path's own), keeping the compared positions' representations that
    ``reads`` names, as :func:`ecco_core.backends.sessions.probe_counts`
    does, into stacks of ``shapes`` ((n_rows, width) each, float32, ``n_kept`` positions). ``row_layers`` and
    ``column_layers`` pick the compared layers, ``(stack, row)`` each. With
    ``whole``, the matrix of every row layer against every column layer, by
    the hook path's own function (:func:`ecco_core.similarity.matrix_values`,
    numpy, with the method's ``entry`` and ``options``; one list when both
    pick the same layers). With ``cell`` (``(row, column)`` into those lists,
    or ``"median"``: the matrix's median cell), that pair's score and its
    ``n_permutations`` shuffled scores
    (:func:`ecco_core.similarity.shuffled_scores`, drawn from ``seed``).

    Only the numbers come back: a dict of ``values`` (n_rows, n_columns) float64
    or None, ``max_dimensions`` (int), ``cell`` ((row, column) or None),
    ``score`` (float) and ``null`` (n_permutations,) float64.
    """
    runner = lm.backend
    model = runner.envoy
    blocks = runner.envoys(lm.blocks)
    projections = runner.envoys(lm.ffn_projections)
    reads = [(str(kind), int(index), int(stack), int(row)) for kind, index, stack, row in reads]
    shapes = [(int(n_rows), int(width)) for n_rows, width in shapes]
    row_layers = [(int(stack), int(row)) for stack, row in row_layers]
    same = [tuple(pair) for pair in column_layers] == row_layers
    column_layers = [(int(stack), int(row)) for stack, row in column_layers]
    cell = cell if cell is None or cell == "median" else (int(cell[0]), int(cell[1]))
    with runner.lock, runner.errors():
        with model.session(backend=runner.request()):
            device = model.device
            kept = [torch.zeros((n_rows, n_kept, width), device=device) for n_rows, width in shapes]
            with torch.no_grad():
                for ids, attention_mask, rows, columns, destination in batches:
                    with model.trace(input_ids=ids.to(device), attention_mask=attention_mask.to(device), use_cache=False) as tracer:
                        for kind, index, stack, row in reads:
                            if kind == "embeddings":
                                args, kwargs = blocks[0].inputs
                                value = args[0] if args else kwargs["hidden_states"]
                            elif kind == "ffn":
                                value = by_token(projections[index].input, len(ids))
                            else:
                                value = output_tensor(blocks[index].output)
                            kept[stack][row, destination.to(device)] = value[rows.to(value.device), columns.to(value.device)].float().to(device)
                        tracer.stop()
            stacks = [stack.cpu().numpy() for stack in kept]
            del kept
            row_stack = [stacks[stack][row] for stack, row in row_layers]
            column_stack = row_stack if same else [stacks[stack][row] for stack, row in column_layers]
            widths = ([len(layer[0]) for layer in row_stack], [len(layer[0]) for layer in column_stack])
            with one_blas_thread_anywhere():
                values, max_dimensions = matrix_values(row_stack, column_stack, entry, options, widths=widths, n_samples=n_kept, symmetric=same) if whole else (None, 0)
                tested = median_cell(values) if cell == "median" else cell
                score, null = 0.0, torch.zeros(0, dtype=torch.float64)
                if tested is not None:
                    pair = (row_stack[tested[0]], column_stack[tested[1]])
                    score = float(matrix_values([pair[0]], [pair[1]], entry, options, widths=([len(pair[0][0])], [len(pair[1][0])]), n_samples=n_kept)[0][0, 0])
                    null = torch.from_numpy(shuffled_scores(pair[0], pair[1], entry, options, n_permutations=n_permutations, seed=seed))
            result = nnsight.save({"values": None if values is None else torch.from_numpy(values), "max_dimensions": int(max_dimensions), "cell": tested, "score": score, "null": null})
    runner.received(result)
    return {"values": None if result["values"] is None else result["values"].numpy(),
            "max_dimensions": int(result["max_dimensions"]),
            "cell": None if result["cell"] is None else tuple(int(i) for i in result["cell"]),
            "score": float(result["score"]), "null": result["null"].numpy()}
