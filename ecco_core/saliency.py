"""Input saliency: how much each earlier token is responsible for each generated token.

The paper's first view (Ecco, section 2): for every generated token, a score
for every token before it. The default, Gradient x Input, is the L2 norm over
the embedding dimension of (gradient of the target with respect to the input
embedding) * (input embedding), each row divided by its sum; ecco 0.1.2 and
inseq 0.7.1 show the same quantity by default.

Batched: all explained tokens are attributed from one forward pass over the
sequence and vectorised backwards (``torch.autograd.grad(...,
is_grads_batched=True)``), never a pass per token. The backward goes one
block at a time (:mod:`ecco_core.backward`), so memory holds one block's
graph and chunks of explained tokens sized to ``max_chunk_bytes``, whatever
the prompt length. The LM head's backward (vocabulary-wide, the costliest
layer) is taken once per token, outside the vectorised part. Cutting the
forward into KV-cache segments so that each token's backward skips the
positions after it was measured slower on CPU: the many small matrix products
cost more than the zeros they skip.

The trap: the target's softmax. When a generated token is near certain its
probability is close to 1 and the gradient of ``softmax`` cancels in float32
(ecco and inseq lose up to 1e-3 of the scores that way). Here every target is
computed from the logits in float64.

Gradients are taken with ``torch.autograd.grad`` on the input embeddings only;
the model's parameters stay frozen and nothing is stored on the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from . import _checks as checks
from ._heartbeat import batch_heartbeat
from .backward import activation_bytes, input_gradients, items_per_report, items_within
from .capture import DEFAULT_CHUNK_BYTES, Capture, captured_by, check_chunk_bytes
from .models import LM
from .readouts import Selection, reader
from .readouts import check_traced as check_traced_readout
from .tokens import one_token_word, token_strings

#: What is differentiated for each explained token: the readouts that need no foil (``contrast_with`` subtracts
#: the foil's from any of them), read live from :data:`ecco_core.readouts.READOUTS`.
TARGETS = Selection(lambda entry: not entry.needs_foil)

# Integrated gradients converge well before this (the IG paper: 20 to 300 points); more only costs time.
MAX_STEPS = 1000


@dataclass(frozen=True, eq=False)
class Saliency:
    """Attribution of each explained token to every token of the sequence.

    Attributes
    ----------
    scores : ndarray of shape (n_generated, n_tokens)
        Row ``i`` holds how much each token is responsible for explained token
        ``i``: ``|raw|`` divided by its row sum, so each row sums to 1. Tokens
        the explained one cannot see (itself and later ones, in a causal model)
        are 0. For a masked model the rows are the ``[MASK]`` positions.
    raw : ndarray of shape (n_generated, n_tokens)
        The values before normalisation: L2 norms for the gradient methods
        (non-negative), the signed drop of the target for ``erasure``.
    signed : ndarray of shape (n_generated, n_tokens) or None
        Each token's attribution with its direction: the dot product of
        gradient and embedding (``grad_x_input``; Yin & Neubig 2022 with a
        contrast), integrated gradients summed over d_model (these add up to
        target(input) - target(all-zero embeddings)), the drop itself
        (``erasure``). Positive raises the target: evidence for the explained
        token (over the foil, with ``contrast_with``); negative lowers it:
        evidence against it (for the foil). ``None`` for ``gradient``: a
        gradient's norm has no direction. See :meth:`signed_shares`.
    tokens : tuple of str, length n_tokens
        Display text of every token of the sequence.
    positions : ndarray of shape (n_generated,)
        Sequence position of each explained token.
    explained_ids : ndarray of shape (n_generated,)
        The token each row explains: the generated (or given) token in a
        causal model, the top prediction at a ``[MASK]`` in a masked one.
    explained_tokens : tuple of str, length n_generated
    target_values : ndarray of shape (n_generated,)
        The attributed quantity itself (float64): the probability, logit or
        log-probability of the explained token, minus the same for the foil
        when ``contrast_with`` is set.
    n_input : int
        Prompt length of the capture.
    method, target : str
        Keys of :data:`METHODS` and :data:`TARGETS`.
    contrast_with : str or None
        The foil token's text (as it follows the text, e.g. ``" are"``).
    model_name : str
    causal : bool
        Whether rows are cut at their own position (a causal model).
    """

    scores: np.ndarray
    raw: np.ndarray
    signed: np.ndarray | None
    tokens: tuple[str, ...]
    positions: np.ndarray
    explained_ids: np.ndarray
    explained_tokens: tuple[str, ...]
    target_values: np.ndarray
    n_input: int
    method: str
    target: str
    contrast_with: str | None
    model_name: str
    causal: bool

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_explained(self) -> int:
        return len(self.positions)

    @property
    def method_label(self) -> str:
        """The method's short name as pages and views show it (``"IG"``): its :data:`METHODS` label."""
        return METHODS[self.method].label or self.method

    def index_of(self, position: int) -> int:
        """The row of the explained token at sequence ``position`` (an index into :attr:`positions`)."""
        return checks.row_of(self.positions, position)

    def first_word_position(self) -> int:
        """The sequence position of the first explained token with visible text: where a view opens.

        A token that is whitespace alone says little on its own (SmolLM2 writes
        ``" 1564"`` as ``" "``, ``"1"``, ``"5"``, ...: its first token is the
        space); the first explained token when all are whitespace.
        """
        for position, token in zip(self.positions, self.explained_tokens):
            if token.strip():
                return int(position)
        return int(self.positions[0])

    def row(self, position: int) -> np.ndarray:
        """Scores of the explained token at sequence ``position``, shape (n_tokens,)."""
        return self.scores[self.index_of(position)]

    def quantity(self, position: int) -> str:
        """The attributed quantity of the explained token at ``position``, named and valued.

        Tokens are written as the views write them (a newline as ``↵``), in quotes.

        >>> sal.quantity(9)                                    # doctest: +SKIP
        "logit(' 1564') - logit(' 1565') = 2.031"
        """
        from .text import quoted_token

        index = self.index_of(position)
        name = f"{self.target}({quoted_token(self.explained_tokens[index])})"
        if self.contrast_with:
            name += f" - {self.target}({quoted_token(self.contrast_with)})"
        return f"{name} = {float(self.target_values[index]):.4g}"

    def detail_frame(self, position: int) -> pd.DataFrame:
        """What the explained token at ``position`` leans on: one row per token it can see.

        Columns: ``position``, ``token`` (as tables show it: whitespace
        visible, a leading space as ``␣``), ``share`` (percent of the row, they
        add up to 100), ``signed`` (percent, with its direction; only when the
        method has a sign, see :meth:`signed_shares`) and ``raw``.
        """
        from .text import display_token

        index = self.index_of(position)
        kept = np.flatnonzero(self.attributed_mask()[index])
        columns = {
            "position": kept,
            "token": [display_token(self.tokens[column], spaces=True) for column in kept],
            "share": 100.0 * self.scores[index][kept],
        }
        if self.signed is not None:
            columns["signed"] = 100.0 * self.signed_shares()[index][kept]
        return pd.DataFrame({**columns, "raw": self.raw[index][kept]})

    def signed_shares(self) -> np.ndarray:
        """:attr:`signed` divided by each row's sum of magnitudes, shape (n_generated, n_tokens), in [-1, 1].

        The signed counterpart of :attr:`scores`: magnitudes add up to 1 in each row.
        """
        if self.signed is None:
            raise checks.invalid("method", self.method, "a method with a direction (a norm has none), one of "
                                 + ", ".join(repr(name) for name, entry in METHODS.items() if entry.signed))
        totals = np.abs(self.signed).sum(axis=1, keepdims=True)
        return np.divide(self.signed, totals, out=np.zeros_like(self.signed), where=totals > 0)

    def to_html(self, position: int | None = None, *, signed: bool = False) -> str:
        """The paper's Figure 3 as self-contained HTML with an inline script (no server, no CDN).

        Hovering (or tapping) an explained token shades the text by its
        attribution at once; clicking pins it. ``position`` is the explained
        token shown first (default: the first); ``signed`` shades by
        :meth:`signed_shares` on a diverging scale. See
        :func:`ecco_core.plots.saliency_view_html`.
        """
        from .plots import saliency_view_html

        return saliency_view_html(self, position, signed=signed)

    def _repr_html_(self) -> str:
        return self.to_html()

    def show(self, position: int | None = None, *, signed: bool = False) -> None:
        """Display :meth:`to_html` in a notebook (Jupyter, VS Code, Colab); needs IPython."""
        from IPython.display import HTML, display

        display(HTML(self.to_html(position, signed=signed)))

    def to_frame(self) -> pd.DataFrame:
        """One row per (explained token, input token) pair that has an attribution.

        Columns: ``output_position``, ``output_token``, ``input_position``,
        ``input_token``, ``score`` (row-normalised), ``raw``, ``signed`` (when
        the method has a sign), plus the method, target and contrast, so a
        downloaded table says what it holds.
        """
        rows, columns = np.nonzero(self.attributed_mask())
        return pd.DataFrame(
            {
                "output_position": self.positions[rows],
                "output_token": [self.explained_tokens[r] for r in rows],
                "input_position": columns,
                "input_token": [self.tokens[c] for c in columns],
                "score": self.scores[rows, columns],
                "raw": self.raw[rows, columns],
                **({} if self.signed is None else {"signed": self.signed[rows, columns]}),
                "method": self.method,
                "target": self.target,
                "contrast_with": self.contrast_with or "",
            }
        )

    def attributed_mask(self) -> np.ndarray:
        """Where an attribution exists: before the explained token (causal), everywhere (masked)."""
        if not self.causal:
            return np.ones(self.scores.shape, dtype=bool)
        return np.arange(self.n_tokens)[None, :] < self.positions[:, None]


def saliency(
    lm: LM,
    cap: Capture,
    method: str = "grad_x_input",
    *,
    target: str = "prob",
    contrast_with: str | None = None,
    steps: int = 20,
    positions=None,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Callable[[float, str], None] | None = None,
) -> Saliency:
    """Attribute every generated token (or every ``[MASK]`` prediction) to the tokens before it.

    Parameters
    ----------
    lm : LM
        The model that made ``cap`` (causal, or masked with an MLM head).
    cap : Capture
        From :func:`ecco_core.capture`, with generated tokens or a given
        ``answer=`` (causal), or with ``[MASK]`` in the text (masked).
    method : str, default "grad_x_input"
        One of :data:`METHODS`.
    target : str, default "prob"
        One of :data:`TARGETS`: what is differentiated for each explained token
        (the probability by default, as in ecco and inseq).
    contrast_with : str, optional
        A foil token ("why *is* and not *are*"): the target becomes
        ``target(explained) - target(foil)``; with ``target="logit"`` (or
        ``"logprob"``, the same difference) this is the contrastive
        explanation of Yin & Neubig (2022). The word is tokenised as it would
        follow the text (``"are"`` -> ``" are"``, ``","`` stays ``","``) and
        must be one token.
    steps : int, default 20
        Points on the integration path for ``integrated_gradients``, at most
        :data:`MAX_STEPS` (1000).
    positions : sequence of int, optional
        Sequence positions to explain instead of the default (the generated
        tokens, or the ``[MASK]`` positions). In a causal model any position
        from 1 on can be explained from its prefix, prompt tokens included.
    max_chunk_bytes : int, default 64 MiB
        Memory budget of each chunk of the work: the backward goes one block
        at a time, for as many explained tokens (and, for integrated
        gradients, path points; for erasure, erased copies) at once as fit
        the budget, so the peak above the model stays bounded whatever the
        prompt length or ``steps``. The scores do not depend on it.
    progress : callable, optional
        ``progress(fraction, message)`` as the work goes, at least about
        every second or two (:data:`ecco_core.backward.REPORT_MULTIPLY_ADDS`):
        after each forward pass and each group of explained tokens whose
        gradients are pulled back through a segment of blocks (for every chunk
        of path points), after each batch of erased copies; the fraction rises
        to 1. An exception it raises (a Stop button) ends the work. The result
        does not depend on it. :func:`ecco_core.estimates.saliency_seconds`
        says beforehand how long it should take.

    Returns
    -------
    Saliency
        ``scores`` of shape (n_generated, n_tokens), rows summing to 1.

    Examples
    --------
    >>> cap = ec.capture(lm, "William Shakespeare was born in the year", max_new_tokens=5)
    >>> sal = ec.saliency(lm, cap)
    >>> sal.scores.shape
    (5, 12)
    >>> ec.saliency(lm, ec.capture(lm, "The keys to the cabinet", answer=" is"), target="logit",
    ...             contrast_with="are").target_values   # logit(" is") - logit(" are")
    """
    method = checks.choice("method", method, METHODS)
    check_traced(lm, method)
    target = checks.choice("target", target, TARGETS)
    check_traced_readout(lm.backend, "target", target, TARGETS)
    steps = checks.whole("steps", steps, low=1, high=MAX_STEPS)
    max_chunk_bytes = check_chunk_bytes(max_chunk_bytes)
    captured_by(lm, cap)
    lm.require_head()
    explained = explained_positions(lm, cap, positions)
    read_positions = explained - 1 if lm.is_causal else explained
    explained_ids = cap.token_ids[explained] if lm.is_causal else cap.top_ids[explained, 0]
    foil_id, foil_text = (None, None) if contrast_with is None else one_token_word(lm, contrast_with, "contrast_with")
    target_of = reader(target, torch.as_tensor(explained_ids, device=lm.device), foil_id)

    if lm.backend.traced:
        raw, signed, values = _traced(lm, cap, method, read_positions, explained_ids, target, foil_id, steps,
                                      max_chunk_bytes)
    else:
        token_ids = torch.as_tensor(cap.token_ids[None], device=lm.device)
        raw, signed, values = METHODS[method].function(
            lm, token_ids, read_positions, target_of, steps=steps, max_chunk_bytes=max_chunk_bytes, progress=progress
        )
    if (signed is not None) != METHODS[method].signed:
        raise RuntimeError(f"saliency method {method!r} returned signed={signed is not None}, its entry says "
                           f"signed={METHODS[method].signed}")
    if lm.is_causal:
        unseen = np.arange(cap.n_tokens)[None, :] >= explained[:, None]
        for values_of in (raw, signed) if signed is not None else (raw,):
            values_of[unseen] = 0.0
    magnitude = np.abs(raw)
    totals = magnitude.sum(axis=1, keepdims=True)
    scores = np.divide(magnitude, totals, out=np.zeros_like(magnitude), where=totals > 0)
    return Saliency(
        scores=scores,
        raw=raw,
        signed=signed,
        tokens=cap.tokens,
        positions=explained,
        explained_ids=np.asarray(explained_ids),
        explained_tokens=token_strings(lm.tokenizer, explained_ids),
        target_values=values,
        n_input=cap.n_input,
        method=method,
        target=target,
        contrast_with=foil_text,
        model_name=cap.model_name,
        causal=lm.is_causal,
    )


# ------------------------------------------------------------ through nnsight
#: The methods that run through nnsight (``lm.backend.traced``): one session, reduced on the server.
TRACED_METHODS = ("grad_x_input", "gradient", "integrated_gradients", "erasure")


def check_traced(lm: LM, method: str) -> None:
    """Refuse, before any request, a method that does not run through ``lm``'s backend."""
    if lm.backend.traced and method not in TRACED_METHODS:
        raise ValueError(
            f"method {method!r} runs on this machine's hook path only; through {lm.backend.name} the methods are "
            f"{', '.join(map(repr, TRACED_METHODS))} (load the model with backend='hooks' for the others)"
        )


def _traced(lm: LM, cap: Capture, method: str, read_positions, explained_ids, target: str, foil_id, steps: int,
            max_chunk_bytes: int):
    """(raw, signed, values) of a method through nnsight: the gradient methods by
    :func:`ecco_core.backends.sessions.input_gradients`, erasure by :func:`~ecco_core.backends.sessions.erased_values`
    on the text and each of its tokens zeroed in turn."""
    from .backends import sessions

    if method == "erasure":
        masks = np.concatenate([np.zeros((1, cap.n_tokens), dtype=bool), np.eye(cap.n_tokens, dtype=bool)])
        per_batch = erasure_batch(lm, cap.n_tokens, max_chunk_bytes)
        values = sessions.erased_values(lm, cap.token_ids, masks, read_positions, explained_ids, target=target,
                                        foil_id=foil_id, rows_per_batch=per_batch)
        drop = (values[0][None, :] - values[1:]).T
        return drop, drop.copy(), values[0]
    done = sessions.input_gradients(lm, cap.token_ids, read_positions, explained_ids, target=target,
                                    foil_id=foil_id, method=method, steps=steps)
    return done["raw"], done["signed"], done["values"]


# ------------------------------------------------------------ validation
def explained_positions(lm: LM, cap: Capture, positions=None) -> np.ndarray:
    """The sequence positions :func:`saliency` explains, shape (n_generated,): known before any work (for an estimate).

    ``positions`` as there; by default the generated (or given) tokens of a
    causal model, the ``[MASK]`` positions of a masked one. Raises the same
    errors as :func:`saliency` when there is nothing to explain.
    """
    if positions is None:
        if lm.is_causal:
            if not cap.n_generated:
                raise ValueError(
                    "cap has no generated tokens to explain: capture with max_new_tokens > 0 or with a given "
                    "answer= (or pass positions= to explain prompt tokens from their prefix)"
                )
            return np.arange(cap.n_input, cap.n_tokens)
        mask_id = lm.tokenizer.mask_token_id
        found = np.flatnonzero(cap.token_ids == mask_id) if mask_id is not None else np.array([], int)
        if not len(found):
            raise ValueError(
                f"the text has no {lm.tokenizer.mask_token or '[MASK]'} token: a masked model's saliency "
                "explains its prediction at a masked position, so put one in the text"
            )
        return found
    explained = np.asarray(positions, dtype=np.int64).reshape(-1)
    low = 1 if lm.is_causal else 0
    bad = explained[(explained < low) | (explained >= cap.n_tokens)]
    if not len(explained) or len(bad):
        raise ValueError(
            f"positions must be non-empty and within [{low}, {cap.n_tokens - 1}] for this capture; "
            f"got {np.asarray(positions).tolist()}"
        )
    return explained


# ------------------------------------------------------------- the model
# A method takes (lm, token_ids (1, n_tokens), read_positions (n_generated,), target_of, *, steps,
# max_chunk_bytes, progress) and returns raw attributions (n_generated, n_tokens), signed ones (the same shape,
# or None when the method has no sign) and the targets' values (n_generated,).
def _input_gradient(lm: LM, token_ids: torch.Tensor, read_positions: np.ndarray, target_of: Callable,
                    max_chunk_bytes: int, progress):
    """The embeddings (1, n_tokens, d_model), each target's gradient with respect to them, and the targets."""
    embeddings = lm.embeddings(token_ids).detach()
    gradient, values = input_gradients(lm, embeddings, read_positions, target_of, max_chunk_bytes=max_chunk_bytes,
                                       progress=progress)
    return embeddings, gradient, values[0].cpu().numpy()


def _norm_and_sum(per_dimension: torch.Tensor, signed: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """L2 norm and (if ``signed``) signed sum over d_model, in float64: (n_generated, n_tokens, d_model) -> two
    (n_generated, n_tokens). One explained token at a time: a float64 copy of all of them would stand beside the
    float32 ones (255 MB at 64 tokens explained in 576, the causal default)."""
    norms = np.empty(per_dimension.shape[:2])
    sums = np.empty(per_dimension.shape[:2]) if signed else None
    for row, values in enumerate(per_dimension):
        values = values.double()
        norms[row] = torch.linalg.vector_norm(values, dim=-1).cpu().numpy()
        if signed:
            sums[row] = values.sum(dim=-1).cpu().numpy()
    return norms, sums


def _grad_x_input(lm, token_ids, read_positions, target_of, *, steps, max_chunk_bytes, progress=None):
    embeddings, gradient, values = _input_gradient(lm, token_ids, read_positions, target_of, max_chunk_bytes,
                                                   progress)
    return (*_norm_and_sum(gradient.mul_(embeddings[0])), values)  # in place: no second copy of every gradient


def _gradient(lm, token_ids, read_positions, target_of, *, steps, max_chunk_bytes, progress=None):
    _, gradient, values = _input_gradient(lm, token_ids, read_positions, target_of, max_chunk_bytes, progress)
    return _norm_and_sum(gradient, signed=False)[0], None, values


def _integrated_gradients(lm, token_ids, read_positions, target_of, *, steps, max_chunk_bytes, progress=None):
    embeddings = lm.embeddings(token_ids).detach()  # (1, n_tokens, d_model)
    scales = (torch.arange(steps, dtype=embeddings.dtype, device=embeddings.device) + 0.5) / steps
    gradient, _ = input_gradients(
        lm, embeddings, read_positions, target_of, scales=scales, max_chunk_bytes=max_chunk_bytes, progress=progress
    )
    values = target_values(lm, embeddings, read_positions, target_of)[0]
    return (*_norm_and_sum(gradient.mul_(embeddings[0])), values.cpu().numpy())


@torch.inference_mode()
def target_values(lm: LM, embeds: torch.Tensor, read_positions: np.ndarray, target_of: Callable) -> torch.Tensor:
    """Targets of ``embeds`` (batch, n_tokens, d_model) -> (batch, n_generated), float64."""
    hidden = lm.model.base_model(inputs_embeds=embeds).last_hidden_state
    return target_of(lm.apply_head(hidden[:, read_positions]), None)


@torch.inference_mode()
def _erasure(
    lm: LM, token_ids: torch.Tensor, read_positions: np.ndarray, target_of: Callable, *, steps: int,
    max_chunk_bytes: int, progress: Callable[[float, str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop of each target when each token's embedding is zeroed (raw and signed alike), in batches of erased copies."""
    embeddings = lm.embeddings(token_ids)  # (1, n_tokens, d_model)
    n_tokens = embeddings.shape[1]
    full = target_values(lm, embeddings, read_positions, target_of)[0]  # (n_generated,)
    erased = torch.empty((n_tokens, len(read_positions)), dtype=torch.float64, device=embeddings.device)
    per_batch = erasure_batch(lm, n_tokens, max_chunk_bytes, embeddings.element_size())
    for start in range(0, n_tokens, per_batch):
        stop = min(n_tokens, start + per_batch)
        copies = embeddings.repeat(stop - start, 1, 1)
        copies[torch.arange(stop - start), torch.arange(start, stop)] = 0.0
        with batch_heartbeat(progress, start / n_tokens, f"Erasing tokens {start + 1}-{stop} of {n_tokens}"):
            erased[start:stop] = target_values(lm, copies, read_positions, target_of)
        if progress is not None:
            progress(stop / n_tokens, f"Erased {stop} of {n_tokens} tokens")
    drop = (full[None, :] - erased).T.cpu().numpy()
    return drop, drop.copy(), full.cpu().numpy()


def erasure_batch(lm: LM, n_tokens: int, max_chunk_bytes: int, element_size: int = 4) -> int:
    """Erased copies of an ``n_tokens`` text run together within the budget (``element_size``: 4 in float32).

    Also within a progress report's work (:data:`ecco_core.backward.REPORT_MULTIPLY_ADDS`), so progress is
    reported after each batch at least about every second or two.
    """
    return min(
        items_within(max_chunk_bytes, n_tokens * activation_bytes(lm, element_size), n_tokens),
        items_per_report(lm, n_tokens * lm.n_layers, n_tokens),
    )


class SaliencyMethod(NamedTuple):
    """One entry of :data:`METHODS`: a :class:`~ecco_core._registry.Method`'s two fields and what pages and
    estimates need to know of the method.

    ``signed``: the function returns signed attributions (else None, as a norm
    has no direction); :meth:`Saliency.signed_shares` names the signed methods from it.
    ``uses_steps``: it reads ``steps`` (path points; the page's steps box
    applies to it alone). ``erases``: its cost is forward passes of erased
    copies of the text, not gradients
    (:func:`ecco_core.estimates.saliency_seconds`). ``label``: a short name
    for narrow table columns ("" for the name itself).
    """

    function: Callable
    description: str
    signed: bool
    uses_steps: bool = False
    erases: bool = False
    label: str = ""


METHODS = {
    "grad_x_input": SaliencyMethod(
        _grad_x_input, "Gradient x Input: L2 norm over d_model of gradient * embedding (ecco's and inseq's default)",
        signed=True, label="grad×input",
    ),
    "gradient": SaliencyMethod(_gradient, "Gradient: L2 norm over d_model of the gradient alone", signed=False),
    "integrated_gradients": SaliencyMethod(
        _integrated_gradients,
        "Integrated Gradients: gradients averaged along the path from an all-zero embedding to the input "
        "(midpoint rule, `steps` points, batched), times the embedding; L2 norm over d_model",
        signed=True, uses_steps=True, label="IG",
    ),
    "erasure": SaliencyMethod(
        _erasure,
        "Erasure: the drop in the target when one token's embedding is set to zero (Li et al. 2016), "
        "all tokens at once in a batch",
        signed=True, erases=True,
    ),
}
"""Saliency methods by name: ``SaliencyMethod(function, description, signed)``. ``function(lm, token_ids,
read_positions, target_of, *, steps, max_chunk_bytes, progress)`` returns raw attributions (n_generated, n_tokens),
signed ones (None unless ``signed``) and the targets (n_generated,)."""
