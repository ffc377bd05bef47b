"""The one way to hook a model: thread-scoped hooks, removed in a ``finally``.

The loaded model is shared by every session of the app, so while one thread's
hooks are on a module, other threads run forward passes through that same
module. :func:`hooked` therefore wraps every hook so it acts on the passes of
the thread that installed it only, and removes them all on exit, also when the
pass raises. A hook ends a pass early by raising :class:`StopForward`
(``hooked`` swallows it: the ``with`` block ends there).

Hugging Face modules return a tensor or a tuple whose first element is the
tensor that matters (a block's hidden state, an attention output);
:func:`first` and :func:`replace_first` read and swap it, and
:func:`on_first` makes a hook of a function of that tensor alone.

:func:`recording` is the hooked pass every capture is made of: hidden states
and FFN activations of every block, into a :class:`Recording`.

>>> with hooked({lm.blocks[3]: on_first(lambda hidden: hidden * 0)}):
...     lm.model(input_ids)                     # block 3's output zeroed, for this thread only
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .models import LM


class StopForward(Exception):
    """Raised by a hook to end a forward pass once what it needs has been seen; :func:`hooked` swallows it."""


@dataclass(frozen=True)
class Before:
    """A hook run before its module: ``function(module, args, kwargs)``.

    It returns None, or ``(args, kwargs)`` to call the module with instead.
    A plain callable given to :func:`hooked` runs after its module instead:
    ``function(module, args, output)``, returning None or a replacement output.
    """

    function: Callable


def first(output) -> torch.Tensor:
    """The first tensor of a module's output: the output itself, or element 0 of a tuple or list."""
    return output[0] if isinstance(output, (tuple, list)) else output


def replace_first(output, tensor: torch.Tensor):
    """``output`` with its first tensor (see :func:`first`) replaced by ``tensor``, same container type."""
    if isinstance(output, tuple):
        return (tensor, *output[1:])
    if isinstance(output, list):
        return [tensor, *output[1:]]
    return tensor


def by_token(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    """A module's tensor as (batch, n_tokens, width): OPT flattens batch and tokens around its FFN."""
    return tensor.view(batch, -1, tensor.shape[-1]) if tensor.dim() == 2 else tensor


def on_first(function: Callable[[torch.Tensor], torch.Tensor | None]) -> Callable:
    """A hook run after its module that calls ``function(first(output))``; what it returns (if not None)
    replaces that first tensor."""

    def hook(module, args, output):
        replacement = function(first(output))
        return None if replacement is None else replace_first(output, replacement)
    return hook


def _this_thread_only(hook: Callable, owner: int) -> Callable:
    # ``*rest``, not one third argument: torch registers a hook with kwargs in two steps, so another thread's pass
    # in between calls it without the kwargs (a TypeError in that thread, seen with two concurrent captures).
    def scoped(module, args, *rest):
        if threading.get_ident() != owner:
            return None
        return hook(module, args, *rest)
    return scoped


@contextmanager
def hooked(hooks: Mapping[nn.Module, Callable | Before | Sequence[Callable | Before]]) -> Iterator[None]:
    """Hooks on modules for the passes this thread makes inside the block; all removed on exit.

    Parameters
    ----------
    hooks : mapping of module -> hook, or a sequence of hooks
        A plain callable runs after the module (``hook(module, args,
        output)``, may return a replacement output), a :class:`Before` before
        it. Several hooks on one module run in the order given.

    A hook that raises :class:`StopForward` ends the pass and the ``with``
    block quietly; any other exception propagates, and the hooks are removed
    either way. Other threads' passes through the same modules are untouched.
    """
    owner = threading.get_ident()
    handles = []
    try:
        for module, entries in hooks.items():
            for entry in entries if isinstance(entries, (list, tuple)) else (entries,):
                if isinstance(entry, Before):
                    scoped = _this_thread_only(entry.function, owner)
                    handles.append(module.register_forward_pre_hook(scoped, with_kwargs=True))
                else:
                    handles.append(module.register_forward_hook(_this_thread_only(entry, owner)))
        yield
    except StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def without_cache(module: nn.Module) -> dict:
    """Keyword arguments that stop a one-off forward of ``module`` from building a KV cache it would return.

    Causal models make one by default (on a 1,024-token text it more than
    doubles the pass's transient memory); encoders take no such argument.
    """
    return {"use_cache": False} if "use_cache" in inspect.signature(module.forward).parameters else {}


# ------------------------------------------------------------ recordings
@dataclass
class Recording:
    """Tensors seen by the hooks of :func:`recording` during one forward pass.

    ``hidden_states[0]`` is block 0's input, ``hidden_states[l + 1]`` block
    ``l``'s output, ``ffn[l]`` the input of block ``l``'s FFN output
    projection; each of shape (batch, n_tokens, width), still on the model's
    device and attached to the autograd graph if the pass had one.
    """

    hidden_states: list = field(default_factory=list)
    ffn: list = field(default_factory=list)

    def keep(self, site: str, tensor: torch.Tensor) -> None:
        """Keep one tensor the hooks saw; ``site`` is ``"hidden_states"`` or ``"ffn"``."""
        getattr(self, site).append(tensor)

    def counts(self) -> tuple[int, int]:
        """How many hidden states and FFN activations were recorded."""
        return len(self.hidden_states), len(self.ffn)


class ArrayRecording(Recording):
    """A recording that copies each tensor at once into float32 numpy arrays, batch row 0 only.

    Holding the tensors until the pass ends (as :class:`Recording` does) keeps
    every layer alive at the model's width and dtype beside the arrays made
    from them; copying as the pass goes keeps one layer at a time beyond the
    arrays, wherever the model runs.

    Attributes
    ----------
    hidden_states : ndarray of shape (n_layers + 1, n_tokens, d_model), float32
    ffn : ndarray of shape (n_layers, n_tokens, d_ff), float32
    """

    def __init__(self, n_layers: int, n_tokens: int, d_model: int, d_ff: int):
        super().__init__(
            hidden_states=np.empty((n_layers + 1, n_tokens, d_model), dtype=np.float32),
            ffn=np.empty((n_layers, n_tokens, d_ff), dtype=np.float32),
        )
        self._filled = {"hidden_states": 0, "ffn": 0}

    def keep(self, site: str, tensor: torch.Tensor) -> None:
        index = self._filled[site]
        self._filled[site] += 1
        if index < len(getattr(self, site)):
            getattr(self, site)[index] = tensor[0].detach().float().cpu().numpy()

    def counts(self) -> tuple[int, int]:
        return self._filled["hidden_states"], self._filled["ffn"]


def _recording_hooks(lm: LM, record: Recording) -> dict:
    """The hooks of :func:`recording`: block 0's input, every block's output, every FFN projection's input."""
    batch_and_tokens = []  # of the last hidden state: OPT's FFN sees them flattened

    def keep_hidden(hidden):
        batch_and_tokens[:] = hidden.shape[:2]
        record.keep("hidden_states", hidden)

    def block_input(module, args, kwargs):
        keep_hidden(first(args[0] if args else kwargs["hidden_states"]))

    def block_output(module, args, output):
        keep_hidden(first(output))

    def ffn_input(module, args, kwargs):
        activations = args[0]
        if activations.dim() == 2:  # OPT flattens (batch, n_tokens) before its FFN
            activations = activations.view(*batch_and_tokens, -1)
        record.keep("ffn", activations)

    hooks = {block: [block_output] for block in lm.blocks}
    hooks[lm.blocks[0]].insert(0, Before(block_input))
    hooks.update({projection: Before(ffn_input) for projection in lm.ffn_projections})
    return hooks


@contextmanager
def recording(lm: LM, record: Recording | None = None) -> Iterator[Recording]:
    """Record hidden states and FFN activations of the forward passes this thread makes inside the block.

    Works for padded batches too (probing uses it); the hooks are removed on
    exit, also when the forward raises. ``record`` says where the tensors go
    (an :class:`ArrayRecording` copies them to numpy as they come); a new
    :class:`Recording` keeps them by default. Usage::

        with recording(lm) as rec:
            lm.model(input_ids)
        rec.hidden_states  # list of n_layers + 1 tensors (batch, n_tokens, d_model)
    """
    record = Recording() if record is None else record
    with hooked(_recording_hooks(lm, record)):
        yield record
    n_layers = lm.n_layers
    n_hidden, n_ffn = record.counts()
    if n_ffn and (n_hidden != n_layers + 1 or n_ffn != n_layers):
        raise RuntimeError(
            f"expected {n_layers + 1} hidden states and {n_layers} FFN activations from one forward pass, "
            f"recorded {n_hidden} and {n_ffn}: the hooks saw more than one pass "
            "or the family table is wrong for this model"
        )
