"""What is read at a position of the model's output: one vocabulary for saliency targets and patching metrics.

A saliency method differentiates a number read from the logits at each
explained token; activation patching compares the same kind of number between
runs. Both are one readout of :data:`READOUTS`: a function from the logits to a
score for every token of the vocabulary (the softmax, the log-softmax, the
logits themselves), of which the answer's score is read, minus the foil's
where there is one (as inseq's step-score map serves attribution targets and
step scores alike). Adding a readout is one function and one entry: it is
then a saliency target (when it needs no foil) and a patching metric (when
it is shift-invariant), in the library and in their pages.

The trap: the softmax of a near-certain token is close to 1 and its
gradient cancels in float32, so every readout is computed from the logits in
float64.

>>> read = reader("logit_diff", answer_ids=5, foil_id=7)
>>> read(logits)                  # logits (batch, vocab_size) -> logit[5] - logit[7], shape (batch,), float64
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple

import torch

from ._checks import choice


class Readout(NamedTuple):
    """One entry of :data:`READOUTS`.

    ``function``: float64 logits (..., vocab_size) -> a score of each token
    of the vocabulary, the same shape. ``description``: what is read, in the
    words pages show. ``needs_foil``: the readout is the answer's score minus
    a foil's and means nothing without one (``"logit_diff"``).
    ``shift_invariant``: the value stays the same when every logit of a
    position moves by the same amount, as the softmax does; a logit alone
    does not, so comparing it between two runs (patching) measures that
    arbitrary shift too. ``label``: its short name, where a picker names
    several at once ("logit difference with a foil, else probability").
    """

    function: Callable[[torch.Tensor], torch.Tensor]
    description: str
    needs_foil: bool = False
    shift_invariant: bool = True
    label: str = ""


def _prob(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=-1)


def _logit(logits: torch.Tensor) -> torch.Tensor:
    return logits


def _logprob(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1)


READOUTS = {
    "logit_diff": Readout(_logit, "logit of the answer minus logit of the foil", needs_foil=True,
                          label="logit difference"),
    "prob": Readout(_prob, "probability of the answer", label="probability"),
    "logit": Readout(_logit, "logit of the answer", shift_invariant=False, label="logit"),
    "logprob": Readout(_logprob, "log-probability of the answer", label="log-probability"),
}
"""Readouts by name: ``Readout(function, description, needs_foil, shift_invariant, label)``. Saliency calls the
answer the explained token."""


#: The readouts an nnsight session computes: a session ships as torch source alone (NDIF's server has nothing of
#: this project), so it spells each of them out (:mod:`ecco_core.backends.sessions`).
TRACED = ("logit_diff", "prob", "logit", "logprob")


def check_traced(backend, argument: str, name: str, among: Mapping) -> None:
    """Refuse, before any request, a readout that ``backend`` (an ``lm.backend``) does not compute.

    ``among``: the readouts the analysis offers (its targets, its metrics), named in the message.
    """
    if backend.traced and name not in TRACED:
        raise ValueError(
            f"{argument} {name!r} runs on this machine's hook path only; through {backend.name} the {argument}s are "
            f"{', '.join(repr(other) for other in among if other in TRACED)} (load the model with backend='hooks' "
            "for the others)"
        )


class Selection(Mapping):
    """The entries of :data:`READOUTS` that ``keep`` accepts, read live: an entry added later is in it too."""

    def __init__(self, keep: Callable[[Readout], bool]):
        self._keep = keep

    def __getitem__(self, name: str) -> Readout:
        entry = READOUTS[name]
        if not self._keep(entry):
            raise KeyError(name)
        return entry

    def __iter__(self) -> Iterator[str]:
        return (name for name, entry in list(READOUTS.items()) if self._keep(entry))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Selection({list(self)})"


def reader(name: str, answer_ids, foil_id: int | None = None) -> Callable:
    """``read(logits, rows=None)``: the readout ``name`` of the answer, minus the foil's when ``foil_id`` is given.

    Parameters
    ----------
    name : str
        A key of :data:`READOUTS`.
    answer_ids : int or tensor of shape (n_answers,)
        The token read; one per row of the logits' second-last axis when a
        tensor of several.
    foil_id : int, optional
        A competing token whose score is subtracted (required when the
        readout ``needs_foil``).

    Returns
    -------
    callable
        ``read(logits, rows)``: logits of shape (..., vocab_size), or
        (batch, len(rows), vocab_size) with ``rows`` picking answers from
        ``answer_ids`` (``None``: all of them) -> values of shape (...),
        float64.
    """
    entry = READOUTS[choice("readout", name, READOUTS)]
    if entry.needs_foil and foil_id is None:
        raise ValueError(f"the readout {name!r} needs a foil ({entry.description}); give a foil")
    answer_ids = torch.as_tensor(answer_ids)

    def read(logits: torch.Tensor, rows=None) -> torch.Tensor:
        ids = answer_ids if rows is None else answer_ids[torch.as_tensor(rows)]
        scores = entry.function(logits.double())
        value = scores.gather(-1, ids.to(scores.device).expand(*scores.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        if foil_id is not None:
            value = value - scores[..., foil_id]
        return value

    return read
