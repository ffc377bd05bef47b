"""Probing through nnsight, here or on NDIF: the features collected and the probes trained where the model runs.

A treebank's features are far more than a request should bring back (the
quick preset's 2,000 words at 9 layers of SmolLM2-135M: 140 MB; the paper's
protocol on a 70B model: over 100 GB). So :func:`probe_counts` sends the
words' tokens, each trial's split and tasks (drawn here, from the seed, as
the hook path draws them: :func:`~ecco_core.probing.training.plan_training`)
and the training's settings; the server runs the model over the corpus in the
hook path's own padded batches (:func:`ecco_core.corpus.padded_batches`),
keeps the labelled tokens' features in its memory (float32) and trains the
probes with the hook path's own function
(:func:`ecco_core.backends.probes.train_counts`: the same draws, the same
Adam). Only each probe's count of test tokens tagged right comes back.

One request (an nnsight session: :func:`ecco_core.backends.sessions.probe_counts`)
per group of layers whose features fit :data:`SERVED_GROUP_BYTES`; each
request runs the whole corpus, keeping its group's layers. Progress is
reported between requests, NDIF's own status (queued, running) within one.
"""

from __future__ import annotations

import numpy as np
import torch

from ..corpus import padded_batches
from ..models import LM
from ._progress import Progress
from .collection import selected_layers
from .data import AlignedSentence
from .training import TrainingPlan, group_rows

#: Bytes of float32 features a probing request keeps on the server (its memory, beside the model): the
#: layers are split into groups this size, one request each. The quick preset on SmolLM2-135M (140 MB) is
#: one request, the paper's protocol on it (2.6 GB) two.
SERVED_GROUP_BYTES = 2 << 30


def request_groups(lm: LM, hidden_rows: list[int], blocks: list[int], n_kept: int) -> tuple[list[int], list]:
    """(the stacks with rows, their rows in groups) of a run: :func:`~ecco_core.probing.training.group_rows` of
    the float32 features at most :data:`SERVED_GROUP_BYTES` a request, over the stacks that have rows."""
    shapes = [(len(hidden_rows), n_kept, lm.d_model), (len(blocks), n_kept, lm.d_ff)]
    stacks = [stack for stack, shape in enumerate(shapes) if shape[0]]  # an empty stack trains nothing
    return stacks, group_rows([shapes[stack] for stack in stacks], SERVED_GROUP_BYTES, 4)


def n_requests(lm: LM, n_tokens: int, layers=None) -> int:
    """The requests of a probing run of ``n_tokens`` words at ``layers`` (as
    :func:`~ecco_core.probe_table` takes them) through nnsight: each runs the whole corpus."""
    include_embedding, blocks = selected_layers(lm, layers)
    return len(request_groups(lm, [0] * include_embedding + [block + 1 for block in blocks], blocks, n_tokens)[1])


def pass_reads(hidden_rows: list[int], blocks: list[int], keep: list[list[int]]) -> list[tuple]:
    """What a request reads in each pass, in the pass's order: (kind, module index, stack, row), the stack
    counted among the stacks with rows kept (:func:`ecco_core.backends.sessions.probe_counts`)."""
    found = []
    stacks = [stack for stack in range(len(keep)) if keep[stack]]
    for stack, rows in enumerate(keep):
        for row, index in enumerate(rows):
            if stack == 0 and hidden_rows[index] == 0:
                found.append(((-1, 0), ("embeddings", 0, stacks.index(stack), row)))
            elif stack == 0:
                found.append(((hidden_rows[index] - 1, 1), ("block", hidden_rows[index] - 1, stacks.index(stack), row)))
            else:
                found.append(((blocks[index], 0), ("ffn", blocks[index], stacks.index(stack), row)))
    return [read for _, read in sorted(found)]


def probe_counts(lm: LM, aligned: list[AlignedSentence], hidden_rows: list[int], blocks: list[int],
                 plan: TrainingPlan, *, precision: str, update: Progress, batch_size: int = 32) -> np.ndarray:
    """Each probe's test tokens tagged right, collected and trained through ``lm``'s nnsight backend.

    ``hidden_rows`` (``hidden_states`` indices) and ``blocks`` (FFN blocks)
    are the rows of the two stacks, as :func:`~ecco_core.probing.collect`
    keeps them; ``batch_size`` sentences per pass, its default. Returns an
    int64 array (n_representations, n_rates, trials, 2), the hidden rows then
    the FFN rows, for :meth:`TrainingPlan.scores`.
    """
    from ..backends import sessions  # nnsight is needed only here

    n_kept = sum(len(item.positions) for item in aligned)
    all_shapes = [(len(hidden_rows), n_kept, lm.d_model), (len(blocks), n_kept, lm.d_ff)]
    batches = [tuple(batch[:5]) for batch in padded_batches(
        lm, [item.input_ids for item in aligned], [item.positions for item in aligned], batch_size=batch_size)]
    stacks, groups = request_groups(lm, hidden_rows, blocks, n_kept)
    counts = np.zeros((len(hidden_rows) + len(blocks), len(plan.rates), plan.trials, 2), dtype=np.int64)
    first_row = [0, len(hidden_rows)]
    where = lm.backend.where
    for number, group in enumerate(groups):
        keep = [[], []]
        for position, rows in group:
            keep[stacks[position]] = rows
        update(number / len(groups), f"probing on {where}, request {number + 1} of {len(groups)}: the corpus "
                                     f"through the model, then {len(keep[0]) + len(keep[1])} layers' probes")
        trained = [stack for stack in (0, 1) if keep[stack]]
        found = sessions.probe_counts(
            lm, batches, pass_reads(hidden_rows, blocks, keep), [all_shapes[stack][2] for stack in trained], n_kept,
            shapes=[all_shapes[stack][::2] for stack in stacks], keep=[keep[stack] for stack in stacks],
            rates=plan.rates, train_mask=torch.from_numpy(plan.train_mask), targets=torch.from_numpy(plan.targets),
            n_classes=len(plan.classes), epochs=plan.epochs, seed=plan.seed, batch_size=plan.batch_size,
            precision=precision,
        )
        for stack, values in zip(trained, found):
            counts[first_row[stack] + np.asarray(keep[stack])] = values
    update(1.0, f"probing on {where}: done")
    return counts
