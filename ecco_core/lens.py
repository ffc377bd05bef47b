"""Layer predictions (the logit lens): what every layer would output if it were the last.

Each block's output (block ``i``: ``Capture.hidden_states[i + 1]``, taken
*before* any final norm) goes through the model's own
final norm and LM head (:meth:`LM.unembed`), giving a full distribution over
the vocabulary at every layer (nostalgebraist 2020; the Ecco paper's
sections 3.2-3.3, Figures 7 and 8).

The trap: Hugging Face's ``output_hidden_states`` already applies the final
norm to its last entry for causal models, so a lens built on it normalises
the last layer twice and drifts from the model's real output. Here every
layer is treated alike, and every result *measures* its parity: the maximum
absolute difference between its last-layer logits and the logits of a real
forward pass of the model (``Rankings.max_abs_diff_vs_model``).

Memory: the (n_layers, n_columns, vocab_size) logits are never held at
once; rows of (layer, column) are unembedded in chunks of at most
``max_chunk_bytes`` of logits, and only ranks, probabilities and the top-k
survive each chunk.

How far to trust each layer's reading (KL to the model's output, top-1
agreement) is :func:`ecco_core.trust.lens_diagnostics`; the rankings and
those diagnostics from one pass of the lens, as the Layer predictions page
shows them, are :func:`ecco_core.trust.rankings_and_diagnostics`. Both live
on the trust floor, above this module, beside the other views' trust
figures: they read this module's passes, and nothing here reads them.

>>> import ecco_core as ec
>>> lm = ec.load()
>>> cap = ec.capture(lm, "The capital of France is", max_new_tokens=3)
>>> ec.rankings(lm, cap).ranks[-1]                 # greedy: every generated token is rank 1
array([1, 1, 1])
>>> ec.watch(lm, "The keys to the cabinet", ["is", "are"]).to_frame()
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ._checks import invalid, whole
from .capture import DEFAULT_CHUNK_BYTES, Capture, captured_by, check_chunk_bytes
from .hooks import recording
from .layers import block_label
from .models import LM
from .text import quoted_token, quoted_tokens
from .tokens import candidate_ids, read_position, token_strings

KINDS = {
    "generated": "each generated token, ranked at the position before it (what the model was about to write)",
    "next input token": "each prompt token from the second on, ranked at the position before it "
    "(the capture generated nothing)",
    "masked": "the model's final prediction at each mask token, ranked at that position",
    "input token": "each non-special input token, ranked at its own position (a masked model reconstructs "
    "its input; the text has no mask token)",
    "candidate": "each candidate token, ranked at one position (after the text, or at its mask token)",
}


@dataclass(frozen=True, eq=False)
class Rankings:
    """Rank and probability of target tokens at every layer, read through the final norm and LM head.

    A column is one (position, target token) pair: a generated token in
    :func:`rankings`, a candidate in :func:`watch`. What the columns are is
    named by ``kind`` (see :data:`KINDS`).

    Attributes
    ----------
    ranks : ndarray of shape (n_layers, n_columns), int64
        1 = the layer's top prediction. Row ``i`` reads block ``i``'s output
        (``hidden_states[i + 1]``, labelled ``"block i"``, see
        :attr:`layer_labels`); the last row is the model's own output.
        Rank is 1 + the number of tokens with a strictly larger logit.
    probs : ndarray of shape (n_layers, n_columns), float32
        Softmax probability of the target token at each layer.
    top_ids : ndarray of shape (n_layers, n_columns, k), int64
        The layer's k most likely tokens at the column's position.
    top_probs : ndarray of shape (n_layers, n_columns, k), float32
    top_tokens : tuple (n_layers) of tuple (n_columns) of tuple (k) of str
        Display text of ``top_ids``.
    target_ids : ndarray of shape (n_columns,), int64
    targets : tuple of str, length n_columns
        Display text of the target tokens (``" is"``).
    positions : ndarray of shape (n_columns,), int64
        Sequence position whose hidden state is read for each column.
    kind : str
        One of :data:`KINDS`.
    max_abs_diff_vs_model : float
        Max |last-layer lens logits - the model's own logits| over all
        columns, from a real forward pass; about 1e-5 or less in float32.
    model_name : str
    tokens : tuple of str
        The text that was read, one entry per token.
    candidates : tuple of str
        The candidates as given (:func:`watch`), else the targets.
    first_token_only : ndarray of shape (n_columns,), bool
        True where a candidate word is several tokens and only its first
        token is ranked.
    notes : tuple of str
        Plain-language remarks on the result (split words, candidates that
        share their first token, ...).
    """

    ranks: np.ndarray
    probs: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_tokens: tuple
    target_ids: np.ndarray
    targets: tuple[str, ...]
    positions: np.ndarray
    kind: str
    max_abs_diff_vs_model: float
    model_name: str
    tokens: tuple[str, ...]
    candidates: tuple[str, ...]
    first_token_only: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def n_layers(self) -> int:
        return self.ranks.shape[0]

    @property
    def n_columns(self) -> int:
        return self.ranks.shape[1]

    @property
    def k(self) -> int:
        return self.top_ids.shape[2]

    @property
    def target_positions(self) -> np.ndarray:
        """Position of each column's target token in the text; for candidates, the position they would fill."""
        return self.positions + 1 if self.kind in ("generated", "next input token") else self.positions

    @property
    def layer_labels(self) -> tuple[str, ...]:
        """Label of each row: ``"block i"`` (block ``i``'s output, ``hidden_states[i + 1]``)."""
        return tuple(block_label(block) for block in range(self.n_layers))

    def to_frame(self) -> pd.DataFrame:
        """One row per (block, column): rank, probability and the block's top-k there.

        ``layer`` is the row's label (``"block 2"``), ``block`` its index
        (block 2's output is ``hidden_states[3]``).
        """
        blocks, columns = np.meshgrid(np.arange(self.n_layers), np.arange(self.n_columns), indexing="ij")
        blocks, columns = blocks.ravel(), columns.ravel()
        return pd.DataFrame(
            {
                "layer": [self.layer_labels[block] for block in blocks],
                "block": blocks,
                "column": columns,
                "position": self.positions[columns],
                "candidate": [self.candidates[c] for c in columns],
                "token": [self.targets[c] for c in columns],
                "token_id": self.target_ids[columns],
                "first_token_only": self.first_token_only[columns],
                "rank": self.ranks.ravel(),
                "probability": self.probs.ravel(),
                "top_tokens": [list(self.top_tokens[b][c]) for b, c in zip(blocks, columns)],
                "top_probs": [row.tolist() for row in self.top_probs.reshape(-1, self.k)],
            }
        )


def head_device(lm: LM) -> torch.device:
    """Where the final norm and head live (not always the embeddings' device under ``device_map``)."""
    for module in (*lm.final_norm, *lm.head):
        for parameter in module.parameters():
            return parameter.device
    return lm.device


# ------------------------------------------------------------ the lens
@torch.inference_mode()
def unembed_rows(lm: LM, rows: np.ndarray, max_chunk_bytes: int, reducers) -> None:
    """Read ``rows`` (n_rows, d_model) through the final norm and LM head, in chunks of at most ``max_chunk_bytes``.

    Each chunk's float32 logits, rows ``start:stop``, go to every reducer's
    ``add(start, stop, logits)``, in row order; they are dropped before the
    next chunk, so (n_rows, vocab_size) is never held. One pass can feed
    several readings of the same logits (the ranks of :func:`rankings` and
    the lens's divergence of :func:`ecco_core.trust.lens_diagnostics`).
    """
    check_chunk_bytes(max_chunk_bytes)
    device, dtype = head_device(lm), lm.embeddings.weight.dtype
    rows_per_chunk = max(1, max_chunk_bytes // (4 * lm.vocab_size))
    for start in range(0, len(rows), rows_per_chunk):
        stop = min(start + rows_per_chunk, len(rows))
        logits = lm.unembed(torch.as_tensor(rows[start:stop], device=device, dtype=dtype)).float()
        for reducer in reducers:
            reducer.add(start, stop, logits)
        del logits


class RankReducer:
    """Rank, probability and top-k of each kept row's target token, and the last layer's parity, chunk by chunk.

    ``keep`` (n_rows,) marks the rows to rank among those :func:`unembed_rows`
    reads, ``target_ids`` (n_kept,) their targets in order; the last
    ``len(model_logits)`` kept rows are the last layer, compared with
    ``model_logits`` (n_columns, vocab_size), the model's own.
    """

    def __init__(self, lm: LM, keep: np.ndarray, target_ids: np.ndarray, k: int, model_logits: torch.Tensor):
        device = head_device(lm)
        self.keep, self.k = np.asarray(keep, dtype=bool), min(k, lm.vocab_size)
        self.targets = torch.as_tensor(np.asarray(target_ids), device=device)[:, None]
        self.model_logits = model_logits.to(device)
        self.last, self.done, self.max_abs_diff = int(self.keep.sum()) - len(model_logits), 0, 0.0
        self.ranks, self.probs, self.top_ids, self.top_probs = [], [], [], []

    def add(self, start: int, stop: int, logits: torch.Tensor) -> None:
        keep = self.keep[start:stop]
        if not keep.all():
            logits = logits[torch.as_tensor(keep, device=logits.device)]
            if not len(logits):
                return
        first, self.done = self.done, self.done + len(logits)
        target_logit = logits.gather(-1, self.targets[first : self.done])
        log_normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
        top = logits.topk(self.k, dim=-1)
        self.ranks.append(((logits > target_logit).sum(-1, dtype=torch.int32) + 1).cpu())  # int32: ~3x faster
        self.probs.append((target_logit - log_normaliser).exp()[:, 0].cpu())
        self.top_ids.append(top.indices.cpu())
        self.top_probs.append((top.values - log_normaliser).exp().cpu())
        if self.done > self.last:
            since = max(first, self.last)
            difference = logits[since - first :] - self.model_logits[since - self.last : self.done - self.last]
            self.max_abs_diff = max(self.max_abs_diff, float(difference.abs().max()))

    def result(self, n_layers: int, n_columns: int) -> dict:
        """``ranks``, ``probs`` (n_layers, n_columns), ``top_ids``, ``top_probs`` (n_layers, n_columns, k) and
        ``max_abs_diff``."""
        return {
            "ranks": torch.cat(self.ranks).view(n_layers, n_columns).numpy().astype(np.int64),
            "probs": torch.cat(self.probs).view(n_layers, n_columns).numpy(),
            "top_ids": torch.cat(self.top_ids).view(n_layers, n_columns, self.k).numpy().astype(np.int64),
            "top_probs": torch.cat(self.top_probs).view(n_layers, n_columns, self.k).numpy(),
            "max_abs_diff": self.max_abs_diff,
        }


def _lens(lm: LM, hidden: np.ndarray, target_ids: np.ndarray, k: int, max_chunk_bytes: int,
          model_logits: torch.Tensor) -> dict:
    """Ranks, probabilities and top-k of ``target_ids`` for every (layer, column), chunked.

    ``hidden`` has shape (n_layers, n_columns, d_model); returns
    :meth:`RankReducer.result`, whose ``max_abs_diff`` is the largest
    absolute difference between the last layer's logits and ``model_logits``
    (n_columns, vocab_size), taken as the last layer's chunks go by.
    """
    n_layers, n_columns, d_model = hidden.shape
    ranked = RankReducer(lm, np.ones(n_layers * n_columns, dtype=bool), np.tile(target_ids, n_layers), k,
                         model_logits)
    unembed_rows(lm, hidden.reshape(-1, d_model), max_chunk_bytes, [ranked])
    return ranked.result(n_layers, n_columns)


@torch.inference_mode()
def own_logits(lm: LM, token_ids, positions) -> torch.Tensor:
    """The model's own logits at ``positions`` from a real forward pass: (n_positions, vocab_size).

    Asks the model for those positions only where it supports ``logits_to_keep``.
    """
    input_ids = torch.as_tensor(np.asarray(token_ids)[None], device=lm.device)
    keep = torch.as_tensor(np.asarray(positions))  # a CPU index works on tensors of any device
    if "logits_to_keep" in inspect.signature(lm.model.forward).parameters:
        return lm.model(input_ids=input_ids, logits_to_keep=keep).logits[0].float()
    return lm.model(input_ids=input_ids).logits[0, keep].float()


@torch.inference_mode()
def _recorded_forward(lm: LM, token_ids, positions) -> tuple[np.ndarray, torch.Tensor]:
    """One forward pass over ``token_ids``: block outputs at ``positions`` and the model's logits there.

    Returns an array of shape (n_layers, n_positions, d_model) and a tensor of
    shape (n_positions, vocab_size).
    """
    with recording(lm) as record:
        model_logits = own_logits(lm, token_ids, positions)
    keep = torch.as_tensor(np.asarray(positions))
    columns = np.stack([hidden[0, keep].float().cpu().numpy() for hidden in record.hidden_states[1:]])
    return columns, model_logits


def _traced(lm: LM, token_ids, positions, target_ids, *, k, max_chunk_bytes, **labels) -> Rankings:
    """The lens through nnsight (``lm.backend``): one session that reduces on the server, packaged as the hook path's."""
    from .backends import sessions

    check_chunk_bytes(max_chunk_bytes)
    lensed = sessions.lens(lm, token_ids, positions, target_ids, k=k, max_chunk_bytes=max_chunk_bytes)
    return rankings_result(lm, None, token_ids, positions, lensed["target_ids"], None, k=k,
                           max_chunk_bytes=max_chunk_bytes, lensed=lensed, **labels)


def rankings_result(lm, columns, token_ids, positions, target_ids, model_logits, *, kind, k, max_chunk_bytes,
                    candidates=None, first_token_only=None, notes=(), lensed=None) -> Rankings:
    """Run the chunked lens on ``columns`` ((n_layers, n_columns, d_model) block outputs) and package it.

    ``lensed`` holds the lens already run elsewhere (:func:`_traced`), ``columns`` and ``model_logits`` unused.
    """
    positions = np.asarray(positions, dtype=np.int64)
    target_ids = np.asarray(target_ids, dtype=np.int64)
    if lensed is None:
        lensed = _lens(lm, columns, target_ids, k, max_chunk_bytes, model_logits)
    ranks, probs, top_ids, top_probs, max_abs_diff = (
        lensed[name] for name in ("ranks", "probs", "top_ids", "top_probs", "max_abs_diff")
    )
    targets = token_strings(lm.tokenizer, target_ids)
    return Rankings(
        ranks=ranks,
        probs=probs,
        top_ids=top_ids,
        top_probs=top_probs,
        top_tokens=tuple(
            tuple(token_strings(lm.tokenizer, ids) for ids in layer_ids) for layer_ids in top_ids
        ),
        target_ids=target_ids,
        targets=targets,
        positions=positions,
        kind=kind,
        max_abs_diff_vs_model=max_abs_diff,
        model_name=lm.name,
        tokens=token_strings(lm.tokenizer, token_ids),
        candidates=tuple(candidates) if candidates is not None else targets,
        first_token_only=(
            np.asarray(first_token_only, dtype=bool) if first_token_only is not None
            else np.zeros(len(target_ids), dtype=bool)
        ),
        notes=tuple(notes),
    )


# ------------------------------------------------------------ rankings
def rankings(lm: LM, cap: Capture, *, k: int = 5, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Rankings:
    """Rank of each output token at every layer (the paper's Figure 7).

    Which tokens are ranked depends on the capture (``Rankings.kind``):

    - causal, with generated tokens: each generated token, read at the
      position before it ("generated"). Under greedy decoding the last layer
      ranks every one of them 1.
    - causal, nothing generated: each prompt token from the second on, read
      at the position before it ("next input token"): how early the model
      saw the actual text coming.
    - masked, text holding mask tokens: the model's final top prediction at
      each mask, read at the mask ("masked"); the last layer ranks it 1.
    - masked, no mask token: each non-special token, read at its own
      position ("input token").

    Parameters
    ----------
    lm : LM
        The model that made ``cap``; it needs an LM head (causal, or a
        masked checkpoint with its MLM head).
    cap : Capture
        From :func:`ecco_core.capture`; ``hidden_states`` has shape
        (n_layers + 1, n_tokens, d_model).
    k : int, default 5
        How many of each layer's top predictions to keep per column.
    max_chunk_bytes : int, default 64 MiB
        Most logits held at once; (n_layers, n_columns, vocab_size) is never
        materialised.

    Returns
    -------
    Rankings
        ``ranks`` of shape (n_layers, n_generated) in the first case, 1 = top.

    Raises
    ------
    ValueError
        The model has no LM head, the capture comes from another model, or
        there is nothing to rank (a one-token prompt).
    """
    lm.require_head()
    k = whole("k", k, low=1)
    captured_by(lm, cap)
    token_ids = cap.token_ids
    positions, target_ids, kind = ranked_columns(lm, cap)
    if lm.backend.traced:
        return _traced(lm, token_ids, positions, target_ids, kind=kind, k=k, max_chunk_bytes=max_chunk_bytes)
    model_logits = own_logits(lm, token_ids, positions)
    if target_ids is None:
        target_ids = model_logits.argmax(-1).cpu().numpy()
    columns = np.ascontiguousarray(cap.hidden_states[1:, positions], dtype=np.float32)
    return rankings_result(
        lm, columns, token_ids, positions, target_ids, model_logits,
        kind=kind, k=k, max_chunk_bytes=max_chunk_bytes,
    )


def ranked_columns(lm: LM, cap: Capture) -> tuple[np.ndarray, np.ndarray | None, str]:
    """What :func:`rankings` ranks on ``cap``: positions read, their target ids and the kind (:data:`KINDS`).

    The targets are None for a masked model's masks: the model's own top
    prediction there, known after its forward pass.

    Raises
    ------
    ValueError
        There is nothing to rank (a one-token prompt, special tokens only).
    """
    token_ids = cap.token_ids
    if lm.is_causal:
        first = cap.n_input if cap.n_generated else 1
        targets = np.arange(first, cap.n_tokens)
        if not len(targets):
            raise ValueError("the capture holds one token and generated none: there is no next token to rank")
        return targets - 1, token_ids[targets], "generated" if cap.n_generated else "next input token"
    masks = np.flatnonzero(token_ids == lm.tokenizer.mask_token_id)
    if len(masks):
        return masks, None, "masked"
    positions = np.flatnonzero(~cap.special)
    if not len(positions):
        raise ValueError("the capture holds special tokens only: there is nothing to rank")
    return positions, token_ids[positions], "input token"


# ------------------------------------------------------------ watch
def watch(
    lm: LM,
    text: str,
    candidates,
    *,
    k: int = 5,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Rankings:
    """Rank and probability of each candidate token at every layer, at one position (the paper's Figure 8).

    The position is the next token after ``text`` for causal models, the mask
    token in ``text`` for masked ones (``[MASK]`` is accepted for RoBERTa's
    ``<mask>`` too).

    Parameters
    ----------
    lm : LM
        A model with an LM head.
    text : str
        ``"The keys to the cabinet"``; for a masked model, with one ``[MASK]``.
    candidates : sequence of str or int
        Words, tokenised as they would follow the text: a word starting with a
        letter or digit gets a leading space (``"is"`` -> ``" is"``); one that
        starts with a space or punctuation is kept as given. An int is a token
        id taken as is. A word of several tokens is ranked by its first token
        and ``first_token_only`` says so; candidates that share their first
        token (``"1"`` and ``"2"`` after a text that SmolLM2 continues with
        ``" "`` + digits) rank alike, and a note says so.
    k : int, default 5
        How many of each layer's top predictions to keep.
    max_chunk_bytes : int, default 64 MiB
        Most logits held at once.

    Returns
    -------
    Rankings
        ``ranks`` of shape (n_layers, n_candidates), ``kind == "candidate"``.

    Raises
    ------
    ValueError
        No candidates, an empty or unknown candidate, a text that already
        fills the context, a masked text without exactly one mask, a model
        without LM head.
    """
    lm.require_head()
    k = whole("k", k, low=1)
    allowed = "a non-empty list of words or token ids such as ['is', 'are']"
    if isinstance(candidates, (str, int)) or not hasattr(candidates, "__iter__"):
        raise invalid("candidates", candidates, allowed, TypeError)
    candidates = list(candidates)
    if not candidates:
        raise invalid("candidates", candidates, allowed)
    input_ids, position = read_position(lm, text)
    ids_of = [candidate_ids(lm, text, candidate) for candidate in candidates]
    notes = [
        f"{quoted_token(str(candidate))} is {len(ids)} tokens {quoted_tokens(token_strings(lm.tokenizer, ids))}; "
        "its first token is ranked"
        for candidate, ids in zip(candidates, ids_of)
        if len(ids) > 1
    ]
    # Different words ranked by the same first token get the same ranks: say so, or they look alike.
    sharing = {}
    for candidate, ids in zip(candidates, ids_of):
        sharing.setdefault(ids[0], []).append((candidate, len(ids) > 1))
    notes += [
        f"{', '.join(quoted_token(str(candidate)) for candidate, _ in same)} share their first token "
        f"{quoted_token(token_strings(lm.tokenizer, [first])[0])}, so their ranks and probabilities are the same: "
        "this view cannot tell them apart"
        for first, same in sharing.items()
        if len(same) > 1 and any(split for _, split in same)
    ]
    positions = np.full(len(candidates), position)
    labels = dict(
        kind="candidate", k=k, max_chunk_bytes=max_chunk_bytes,
        # a token id is labelled by its text, a word as the user typed it
        candidates=[
            candidate if isinstance(candidate, str) else token_strings(lm.tokenizer, [candidate])[0]
            for candidate in candidates
        ],
        first_token_only=[len(ids) > 1 for ids in ids_of], notes=notes,
    )
    if lm.backend.traced:
        return _traced(lm, input_ids, positions, [ids[0] for ids in ids_of], **labels)
    columns, model_logits = _recorded_forward(lm, input_ids, positions)
    return rankings_result(lm, columns, input_ids, positions, [ids[0] for ids in ids_of], model_logits, **labels)


# ------------------------------------------------------------ suggestions
@dataclass(frozen=True, eq=False)
class Suggestions:
    """Tokens worth watching at one position, best first (:func:`suggest_candidates`).

    Best first: best rank at any block's output, then the number of blocks
    where the token is in the top ``k``, then its rank in the model's output.

    Attributes
    ----------
    tokens : tuple of str, length n_suggestions
    token_ids : ndarray of shape (n_suggestions,), int
        Candidates :func:`watch` takes as they are.
    best_rank : ndarray of shape (n_suggestions,), int
        1 = top, at the block where the token ranked best.
    best_layer : tuple of str, length n_suggestions
        The first block with that rank (``"block 4"``, :mod:`ecco_core.layers`).
    layers_in_top_k : ndarray of shape (n_suggestions,), int
    final_rank : ndarray of shape (n_suggestions,), int
        Rank in the model's own output.
    final_probability : ndarray of shape (n_suggestions,)
    k : int
    """

    tokens: tuple[str, ...]
    token_ids: np.ndarray
    best_rank: np.ndarray
    best_layer: tuple[str, ...]
    layers_in_top_k: np.ndarray
    final_rank: np.ndarray
    final_probability: np.ndarray
    k: int

    def __len__(self) -> int:
        return len(self.tokens)

    def to_frame(self) -> pd.DataFrame:
        """One row per suggestion, best first: token, token_id, best_rank, best_layer, layers_in_top_k,
        final_rank, final_probability."""
        return pd.DataFrame({
            "token": list(self.tokens), "token_id": self.token_ids, "best_rank": self.best_rank,
            "best_layer": list(self.best_layer), "layers_in_top_k": self.layers_in_top_k,
            "final_rank": self.final_rank, "final_probability": self.final_probability,
        })


def suggest_candidates(
    lm: LM,
    text: str,
    *,
    k: int = 3,
    max_candidates: int | None = 12,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Suggestions:
    """Tokens worth watching at the position :func:`watch` reads: those in the top ``k`` at ANY layer.

    Not only the last layer's favourites: a token that leads at layer 12 and
    fades by the output is exactly what a comparison of candidates is for.
    Special tokens are left out.

    Parameters
    ----------
    lm : LM
        A model with an LM head.
    text : str
        As for :func:`watch` (a masked model's text holds one ``[MASK]``).
    k : int, default 3
        A token qualifies when it ranks within the top ``k`` at some layer.
    max_candidates : int or None, default 12
        Keep this many, best first; ``None`` keeps all.
    max_chunk_bytes : int, default 64 MiB
        Most logits held at once.

    Returns
    -------
    Suggestions
        One entry per distinct token, best first (best rank at any layer, then
        the number of layers where it is in the top ``k``, then its rank in
        the model's output); ``.to_frame()`` has a row each. Its
        ``token_ids`` can be passed to :func:`watch` as candidates.
    """
    lm.require_head()
    k = whole("k", k, low=1)
    if max_candidates is not None:
        max_candidates = whole("max_candidates", max_candidates, low=1)
    input_ids, position = read_position(lm, text)
    any_target = np.zeros(1, dtype=np.int64)  # only the top-k of each layer are used here
    if lm.backend.traced:  # one session; the model's own rank and probability of each top token come back with it
        from .backends import sessions

        check_chunk_bytes(max_chunk_bytes)
        lensed = sessions.lens(lm, input_ids, [position], any_target, k=k, max_chunk_bytes=max_chunk_bytes, own=True)
        top_ids = lensed["top_ids"][:, 0, :]  # (n_layers, k)
        own = dict(zip(top_ids.ravel().tolist(), zip(lensed["own_ranks"][:, 0, :].ravel().tolist(),
                                                     lensed["own_probs"][:, 0, :].ravel().tolist())))
    else:
        columns, model_logits = _recorded_forward(lm, input_ids, [position])
        top_ids = _lens(lm, columns, any_target, k, max_chunk_bytes, model_logits)["top_ids"][:, 0, :]
        final_logits = model_logits[0]
        final_probs = torch.softmax(final_logits, -1)
        own = {token_id: (int((final_logits > final_logits[token_id]).sum()) + 1, float(final_probs[token_id]))
               for token_id in set(top_ids.ravel().tolist())}
    special = set(getattr(lm.tokenizer, "all_special_ids", []) or [])
    rows = []
    for token_id in dict.fromkeys(top_ids.ravel().tolist()):
        if token_id in special:
            continue
        layers, ranks = np.nonzero(top_ids == token_id)  # layers: block indices
        best = int(ranks.min())
        rows.append(
            {
                "token": token_strings(lm.tokenizer, [token_id])[0],
                "token_id": token_id,
                "best_rank": best + 1,
                "best_layer": block_label(layers[ranks == best].min()),
                "layers_in_top_k": len(set(layers.tolist())),
                "final_rank": own[token_id][0],
                "final_probability": own[token_id][1],
            }
        )
    frame = pd.DataFrame(rows, columns=[
        "token", "token_id", "best_rank", "best_layer", "layers_in_top_k", "final_rank", "final_probability",
    ])
    frame = frame.sort_values(
        ["best_rank", "layers_in_top_k", "final_rank"], ascending=[True, False, True], kind="stable"
    ).reset_index(drop=True)
    frame = frame if max_candidates is None else frame.head(int(max_candidates))
    return Suggestions(
        tokens=tuple(frame["token"]), token_ids=frame["token_id"].to_numpy(dtype=np.int64),
        best_rank=frame["best_rank"].to_numpy(dtype=np.int64), best_layer=tuple(frame["best_layer"]),
        layers_in_top_k=frame["layers_in_top_k"].to_numpy(dtype=np.int64),
        final_rank=frame["final_rank"].to_numpy(dtype=np.int64),
        final_probability=frame["final_probability"].to_numpy(dtype=np.float64), k=k,
    )
