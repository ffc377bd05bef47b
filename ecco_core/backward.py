"""Gradients of many targets with respect to the input embeddings, one block at a time, within a memory budget.

Backpropagating through a whole forward graph holds every block's saved
activations at once: about 1.1 GB for SmolLM2-135M on a 1,024-token text,
more than the model. When the graph would exceed ``max_chunk_bytes``, the
forward runs without one (each block's call, as the model itself makes it, is
recorded by a pre-hook: its input hidden state and keyword arguments), and the
backward walks segments of blocks from the last to the first, re-running one
segment with a graph at a time and pulling the cotangents of all targets
through it with vectorised ``torch.autograd.grad(..., is_grads_batched=True)``
calls. The blocks are the real Hugging Face modules called with the model's own
arguments; nothing is re-implemented. The cost is one more forward pass; the
peak holds one segment's graph. A short text keeps the one whole graph.

Chunked to ``max_chunk_bytes`` (estimates of the float tensors each needs;
at least one item per chunk whatever the budget):

- the points of a path (integrated gradients): every block's input is kept for
  each point, so points go through in batches;
- the blocks re-run with a graph at once (a segment);
- the targets in one vectorised backward (each needs one block's backward of
  the whole text);
- the targets whose vocabulary-wide logits (float64) are differentiated at once.

Results do not depend on the chunking beyond float summation order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ._heartbeat import heartbeat
from .hooks import Before, StopForward, first, hooked, without_cache
from .models import LM


class _BlockCall:
    """One call of a block as the model made it: its input hidden state and the other arguments."""

    def __init__(self, args: tuple, kwargs: dict):
        self.args, self.kwargs = args, kwargs

    @property
    def hidden(self) -> torch.Tensor:
        return self.args[0] if self.args else self.kwargs["hidden_states"]

    def with_hidden(self, hidden: torch.Tensor) -> "_BlockCall":
        """The same call with ``hidden`` as its input hidden state."""
        if self.args:
            return _BlockCall((hidden, *self.args[1:]), self.kwargs)
        return _BlockCall(self.args, {**self.kwargs, "hidden_states": hidden})

    def __call__(self, block: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """The block's output hidden state for ``hidden`` in place of the recorded input."""
        call = self.with_hidden(hidden)
        return first(block(*call.args, **call.kwargs))


def _forward(
    lm: LM, embeds: torch.Tensor, keep_graph: bool
) -> tuple[torch.Tensor, list[_BlockCall], torch.Tensor]:
    """One forward pass from ``embeds`` (batch, n_tokens, d_model) through the blocks, recording each block's call.

    Without ``keep_graph`` the graph stops at block 0's input (position
    embeddings, an embedding norm): the blocks see a detached input and build
    none. Returns block 0's input (attached to ``embeds``' graph), every
    block's call, and the last block's output of shape (batch, n_tokens,
    d_model), attached to the graph only with ``keep_graph``.
    """
    blocks = lm.blocks
    first_input, calls, last_output = [], [], []

    def detach_first_input(module, args, kwargs):
        call = _BlockCall(args, kwargs)
        first_input.append(call.hidden)
        if not keep_graph:
            # Frozen parameters and a detached input: the blocks build no graph from here on.
            call = call.with_hidden(call.hidden.detach())
        calls.append(call)
        return call.args, call.kwargs

    def record_call(module, args, kwargs):
        calls.append(_BlockCall(args, kwargs))

    def record_last_output(module, args, output):
        last_output.append(first(output))
        raise StopForward  # the final norm and head are applied per target

    hooks = {block: [Before(record_call)] for block in blocks}
    hooks[blocks[0]] = [Before(detach_first_input)]
    hooks[blocks[-1]].append(record_last_output)
    base = lm.model.base_model
    with hooked(hooks), torch.enable_grad():
        base(inputs_embeds=embeds, **without_cache(base))
    if len(calls) != len(blocks) or len(first_input) != 1 or len(last_output) != 1:
        raise RuntimeError(
            f"expected one call of each of the {len(blocks)} blocks in one forward pass, saw {len(calls)}: "
            "the family table is wrong for this model"
        )
    return first_input[0], calls, last_output[0]


def _chunks(count: int, per_chunk: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + per_chunk, count)) for start in range(0, count, per_chunk)]


def items_within(max_chunk_bytes: int, bytes_each: int, count: int) -> int:
    """How many items of ``bytes_each`` fit the budget: from 1 (always) to ``count``."""
    return int(min(count, max(1, max_chunk_bytes // max(1, bytes_each))))


#: Multiply-adds of work at most between two progress reports of a long pass (about a second on the development
#: machine's 2 shared CPU cores): batches of erased copies, of patched runs, of targets pulled back are cut to it.
REPORT_MULTIPLY_ADDS = 1e10


def items_per_report(lm: LM, token_blocks_each: int, count: int) -> int:
    """How many items fit one progress report when each pushes ``token_blocks_each`` (tokens x blocks) forward.

    From 1 (always) to ``count``: see :data:`REPORT_MULTIPLY_ADDS`.
    """
    per_token_block = sum(parameter.numel() for parameter in lm.blocks.parameters()) / lm.n_layers
    return int(min(count, max(1, REPORT_MULTIPLY_ADDS // max(1.0, token_blocks_each * per_token_block))))


def activation_bytes(lm: LM, element_size: int = 4) -> int:
    """Bytes one token's activations take in one block, estimated as 8 x (d_model + d_ff) values.

    ``element_size``: bytes of one value (4 in float32).
    """
    return 8 * (lm.d_model + lm.d_ff) * element_size


def input_gradients(
    lm: LM,
    embeddings: torch.Tensor,
    read_positions: np.ndarray,
    target_of: Callable,
    *,
    scales: torch.Tensor | None = None,
    max_chunk_bytes: int,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of every target with respect to the input embeddings, averaged over the points of a path.

    Parameters
    ----------
    embeddings : Tensor of shape (1, n_tokens, d_model)
        The input embeddings (no gradient needed).
    read_positions : ndarray of shape (n_targets,)
        Where each target's logits are read (the position before the token in
        a causal model). In a causal model the pass stops after the last one.
    target_of : callable
        ``target_of(logits, rows)``: logits of shape (n_points, len(rows),
        vocab_size) -> targets of shape (n_points, len(rows)), one per row
        (a target reads the logits of its own row only).
    scales : Tensor of shape (n_points,), optional
        The points ``scale * embeddings`` where gradients are taken (an
        integration path); by default the input itself.
    max_chunk_bytes : int
        Memory budget of each chunk (see the module's docstring).
    progress : callable, optional
        ``progress(fraction, message)`` after each chunk's forward pass and
        after each group of targets is pulled back through a segment of
        blocks (groups are cut to :data:`REPORT_MULTIPLY_ADDS`, so a report
        comes at least about every second or two); the fraction counts those
        steps over all chunks of points, rising to 1. An exception it raises
        (a Stop) ends the work.

    Returns
    -------
    gradients : Tensor of shape (n_targets, n_tokens, d_model)
        Averaged over the points; zero after the last read position (causal).
    values : Tensor of shape (n_points, n_targets), float64
        The targets at each point.
    """
    _, n_tokens, d_model = embeddings.shape
    scales = torch.ones(1, dtype=embeddings.dtype, device=embeddings.device) if scales is None else scales
    n_points, n_targets = len(scales), len(read_positions)
    length = int(read_positions.max()) + 1 if lm.is_causal else n_tokens
    chunks = plan(lm, length, n_points, n_targets, max_chunk_bytes, embeddings.element_size())
    steps_done = 0
    n_steps = sum(1 + len(chunk.segments) * len(_chunks(n_targets, chunk.targets_per_backward)) for chunk in chunks)
    gradients = None  # made after the first chunk's backward: it would stand beside every cotangent there
    values = torch.zeros((n_points, n_targets), dtype=torch.float64, device=embeddings.device)

    def path_of(points: np.ndarray) -> str:
        return f", {_counted('path point', points)} of {n_points}" if n_points > 1 else ""

    def step_done(message: str, points: np.ndarray) -> None:
        nonlocal steps_done
        steps_done += 1
        if progress is not None:
            progress(steps_done / n_steps, f"{message}{path_of(points)}")

    def pulled_back_to(reached: str, points: np.ndarray) -> Callable[[np.ndarray], None]:
        def done(rows: np.ndarray) -> None:
            step_done(f"Gradients of {_counted('target', rows)} of {n_targets} back to {reached}", points)
        return done

    for chunk in chunks:
        points = chunk.points
        path = scales[torch.as_tensor(points, device=scales.device), None, None] * embeddings[:, :length]
        leaf = path.detach().requires_grad_(True)
        # A chunk's forward pass runs every one of its path points at once (15 s without a report for 8 points of
        # 60 tokens at load 20): the heartbeat reports while it runs.
        with heartbeat(progress, steps_done / n_steps, f"Forward pass{path_of(points)}"):
            first_input, calls, last_output = _forward(lm, leaf, keep_graph=chunk.whole_graph)
        step_done("Forward pass", points)
        cotangents, values[points] = _head_cotangents(lm, last_output, read_positions, target_of, max_chunk_bytes)
        if chunk.whole_graph:
            cotangents = _pull_back(last_output, leaf, cotangents, chunk.targets_per_backward,
                                    pulled_back_to("the embeddings", points))
        else:
            blocks = lm.blocks
            for segment in reversed(chunk.segments):
                hidden = calls[segment[0]].hidden.detach().requires_grad_(True)
                with torch.enable_grad():
                    output = hidden
                    for index in segment:
                        output = calls[index](blocks[int(index)], output)
                cotangents = _pull_back(output, hidden, cotangents, chunk.targets_per_backward,
                                        pulled_back_to(f"block {int(segment[0])}", points))
            cotangents = _pull_back(first_input, leaf, cotangents, chunk.targets_per_backward)
        del first_input, calls, last_output  # the chunk's graph and block inputs, before the sum stands beside it
        if gradients is None:
            gradients = embeddings.new_zeros((n_targets, n_tokens, d_model))
        # One point's cotangents are its sum: a view, no copy beside them.
        gradients[:, :length] += (cotangents[:, 0] if len(points) == 1 else cotangents.sum(dim=1)).to(gradients.device)
        del cotangents
    return gradients.div_(n_points), values


def _counted(noun: str, indices: np.ndarray) -> str:
    """Consecutive ``indices`` named from 1 for a progress message: ``"target 2"``, ``"targets 2-4"``."""
    first, last = int(indices[0]) + 1, int(indices[-1]) + 1
    return f"{noun} {first}" if first == last else f"{noun}s {first}-{last}"


class Chunk(NamedTuple):
    """One chunk of path points in :func:`input_gradients`, as :func:`plan` lays it out.

    ``points``: indices of its path points; ``segments``: the block indices
    re-run together in the backward (one segment of every block when
    ``whole_graph``: a short text keeps one graph, no second forward);
    ``targets_per_backward``: targets pulled back at once (within the memory
    budget and :data:`REPORT_MULTIPLY_ADDS`, a progress report's work).
    """

    points: np.ndarray
    segments: list[np.ndarray]
    targets_per_backward: int
    whole_graph: bool


def plan(
    lm: LM, length: int, n_points: int, n_targets: int, max_chunk_bytes: int, element_size: int = 4
) -> list[Chunk]:
    """How :func:`input_gradients` cuts its work to the budget, known from the sizes alone (for an estimate).

    ``length``: the positions run (up to the last read position, in a causal
    model); ``element_size``: bytes of one activation value (4 in float32).
    """
    block_activations = activation_bytes(lm, element_size)
    # Per token of a point: every block's input, kept for the backward, and one block's activations.
    kept_inputs = (lm.n_layers + 1) * lm.d_model * element_size
    points_per_chunk = items_within(max_chunk_bytes, length * (kept_inputs + block_activations), n_points)
    chunks = []
    for points in _chunks(n_points, points_per_chunk):
        one_block = len(points) * length * block_activations
        blocks_per_segment = items_within(max_chunk_bytes, one_block, lm.n_layers)
        chunks.append(Chunk(
            points=points,
            segments=_chunks(lm.n_layers, blocks_per_segment),
            targets_per_backward=min(
                items_within(max_chunk_bytes, one_block, n_targets),
                # a backward through a block costs about two forwards
                items_per_report(lm, 2 * len(points) * length * blocks_per_segment, n_targets),
            ),
            whole_graph=blocks_per_segment == lm.n_layers,
        ))
    return chunks


def _head_cotangents(
    lm: LM, last_output: torch.Tensor, read_positions: np.ndarray, target_of: Callable, max_chunk_bytes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each target's gradient with respect to the last block's output, and the targets.

    ``last_output`` has shape (n_points, length, d_model); returns cotangents
    of shape (n_targets, n_points, length, d_model), each zero but at its read
    position, and values of shape (n_points, n_targets), float64.
    """
    n_points = last_output.shape[0]
    n_targets = len(read_positions)
    cotangents = last_output.new_zeros((n_targets, *last_output.shape))
    values = torch.zeros((n_points, n_targets), dtype=torch.float64, device=last_output.device)
    # float64 logits, their softmax and its gradient: about 3 vocabulary-wide float64 rows per (point, target)
    per_chunk = items_within(max_chunk_bytes, n_points * 3 * 8 * lm.vocab_size, n_targets)
    for rows in _chunks(n_targets, per_chunk):
        read = torch.as_tensor(read_positions[rows], device=last_output.device)
        last = last_output[:, read].detach().requires_grad_(True)
        with torch.enable_grad():
            chunk_values = target_of(lm.unembed(last), rows)
            # Each target reads its own row only, so the gradient of their sum is each one's own gradient.
            (head_gradient,) = torch.autograd.grad(chunk_values.sum(), last)
        cotangents[torch.as_tensor(rows, device=read.device), :, read] = head_gradient.transpose(0, 1)
        values[:, rows] = chunk_values.detach().to(values.device)
    return cotangents, values


def _pull_back(
    output: torch.Tensor, hidden: torch.Tensor, cotangents: torch.Tensor, per_backward: int,
    done: Callable[[np.ndarray], None] | None = None,
) -> torch.Tensor:
    """Cotangents of ``output`` (n_targets, *output.shape) -> those of ``hidden``, ``per_backward`` targets at once.

    Written over ``cotangents`` where the shapes agree (a group's rows are
    read before they are overwritten), so that a second tensor of every
    target's cotangents is never held: at 576 tokens, 64 targets of the
    causal default, 85 MB. ``done(rows)`` is called after each group of
    targets (their indices).
    """
    same = (cotangents.shape[1:] == hidden.shape and cotangents.dtype == hidden.dtype
            and cotangents.device == hidden.device)
    pulled = cotangents if same else hidden.new_empty((len(cotangents), *hidden.shape))
    groups = _chunks(len(cotangents), per_backward)
    for index, group in enumerate(groups):
        rows = torch.as_tensor(group, device=cotangents.device)
        (pulled[rows],) = torch.autograd.grad(
            output, hidden, cotangents[rows].to(output.device), is_grads_batched=True,
            retain_graph=index < len(groups) - 1,
        )
        if done is not None:
            done(group)
    return pulled
