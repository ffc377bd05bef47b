"""Circuits: which attention heads and MLPs write the answer, checked by ablating them.

Direct logit attribution (DLA; Elhage et al. 2021, "A Mathematical Framework
for Transformer Circuits"; TransformerLens' ``decompose_resid`` and
``stack_head_results``). In a pre-norm Transformer the last block's output at
the read position is a sum: the embeddings, plus every block's attention
output, plus every block's FFN (MLP) output. A block's attention output is in
turn a sum over its heads, head ``h`` writing its output ``z_h`` through its
own slice of the output projection, ``z_h @ W_O^h``, plus the projection's
bias (owned by no head: its own part, ``"block 9 attention bias"``). And
``z_h`` is a sum over source tokens, ``sum_j alpha_hj v_h(x_j)``, so a head's
part splits by the earlier token it reads from.

The trap is the final norm: it divides the residual stream by its own size
(``1 / sqrt(var + eps)`` for LayerNorm, ``1 / sqrt(mean(x^2) + eps)`` for
RMSNorm), which is not linear. Here that scale is **frozen at the real run's
value** at the read position (``Circuits.final_scale``); with it fixed, the
norm (centring included, for LayerNorm) and the LM head are linear, the norm's
bias and the head's bias become one constant part (``"final norm and head
bias"``), and the parts sum exactly to the model's own logit (or logit
difference answer - foil). A part's number is therefore "what it adds to the
logit given this run's norm scale", not what the logit would be without it:
removing a part would also change the scale (and everything downstream).

Verification (:func:`verify`): the top-k heads and MLPs by ``|DLA|`` are
ablated (their output replaced by its mean over the positions of the same
run, or by their output on a corrupted prompt of the same length) in
batched forward passes, and the result reports the metric with only them
ablated, with only them kept, and, from one batched row per component, each
component's exact ablation effect and the recall of the exact top-k among
DLA's top-k. DLA measures a direct effect; ablation measures the total effect
(through every later block), so the two can disagree, and that disagreement
is the point of checking.

Information flow routes (``routes=True``; Ferrando & Voita 2024): every
residual sum of every block and token split exactly into its parts (a
block's input, each head's move from each source token, the FFN output),
each part weighed by its proximity to the sum; :meth:`Circuits.routes_frame`
prunes the graph at a threshold from the prediction back to the input tokens.

Attention weights come from the eager attention implementation (a private
twin of the shared model, see :func:`ecco_core.attention.eager_twin`);
everything else is read with hooks on the real Hugging Face modules. Only
causal models: a masked model's head is not linear.

DLA itself needs no attention weight: a head's output ``z_h`` is a slice of
its block's attention output projection's input. So through nnsight (a
model loaded with ``backend="nnsight"`` or ``"ndif"``) the decomposition is
one session that reads those inputs and the FFN outputs at the read position
of the served model's own run (its fused attention) and sends back the parts
and each component's top tokens, not activations. What needs the weights,
the split of a head by source token (``head_sources``) and the routes, runs
on the hook path only: ``routes=True`` is refused there before any request.

>>> import ecco_core as ec
>>> lm = ec.load()
>>> result = ec.circuits(lm, "When Mary and John went to the store, John gave a drink to", "Mary", "John")
>>> result.top(3)                                     # the heads and MLPs with the largest |DLA|
>>> checked = ec.circuits.verify(lm, result, k=10)
>>> checked.recall, checked.kept_share
>>> ec.circuits(lm, "When Mary and John went to the store, John gave a drink to", routes=True,
...             answer="Mary").routes_frame(threshold=0.04)         # the information-flow graph's edges
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import _checks as checks
from ._heartbeat import batch_heartbeat
from .attention import eager_twin, head_output_matrices, head_values
from .backends.served import (ablated_ffn, ablated_heads, answer_metric, component_logits, component_tops, frozen_scale,
                              logit_parts, metric_direction)
from .capture import DEFAULT_CHUNK_BYTES, Capture, captured_by
from .hooks import Before, by_token, first, hooked, replace_first, without_cache
from .layers import EMBEDDINGS, FINAL_BIAS, after_attention_label, bias_label, head_label, residual_label, site_label
from .models import LM
from .patching import DEFAULT_BATCH_BYTES, row_bytes
from .tokens import encode_prompt, token_strings, word_id

#: What is decomposed at the read position, by name.
METRICS = {
    "logit": "logit of the answer",
    "logit_diff": "logit of the answer minus logit of the foil",
}

#: What replaces an ablated component's output, by name.
ABLATIONS = {
    "mean": "its mean over the positions of the same run",
    "corrupted": "its output on a corrupted prompt of the same token length, position by position",
}

#: The kinds of part, in the order of :meth:`Circuits.to_frame`.
KINDS = ("embeddings", "head", "attention bias", "FFN", "final bias")

#: Through nnsight, the tokens each head and FFN pushes up and down most come back with the decomposition, this
#: many each way (:func:`top_tokens`' default): the components' outputs stay where the model runs.
TRACED_TOP_K = 5

# What the parts that split a head by source token need, which a served model does not give.
_NEEDS_WEIGHTS = ("they need every head's attention weights, from the eager attention implementation, which a served "
                  "model's fused attention does not give; direct logit attribution itself runs there")

#: Importance below which :meth:`Circuits.routes_frame` prunes an edge (Ferrando & Voita 2024 use a few percent).
DEFAULT_THRESHOLD = 0.04

# Parts must sum to the residual stream and the logit to this relative error, else the table is wrong for the model.
_SUM_TOLERANCE = 1e-3

# Multiply-adds of one batched ablation pass, at most: about 50 rows of one component each on the IOI default, a
# progress report every few seconds. Passes of that size kept the batch wide from the first blocks on and ran
# fastest: verification of all 304 rows took 37-41 s in 6 passes, 52-60 s in 23 passes of 13 rows, 49-50 s in
# one pass of 304 (one thread, load average 23-31, round-robin, 2026-12-07).
_PASS_MULTIPLY_ADDS = 4e10


@dataclass(frozen=True, eq=False)
class Circuits:
    """The answer's logit (difference) at the read position, decomposed into what wrote it.

    Every value is in logits: what the part adds to ``value`` through the
    final norm (its scale frozen at this run's, ``final_scale``) and the LM
    head. ``embeddings + heads.sum() + attention_bias.sum() + ffn.sum() +
    final_bias == value`` up to float rounding (:attr:`total`).

    Attributes
    ----------
    embeddings : float
        The input embeddings (token and position embeddings, as block 0 reads them).
    heads : ndarray of shape (n_layers, n_heads), float64
        ``heads[l, h]``: head ``h`` of block ``l`` ("block l head h"), its
        output ``z_h`` through its slice of the attention output projection.
    head_sources : ndarray of shape (n_layers, n_heads, n_tokens), float64, or None
        ``heads`` split by source token: ``alpha_hj v_h(x_j) @ W_O^h``;
        sums over the last axis to ``heads``. None through nnsight (a served
        model gives no attention weights).
    attention_bias : ndarray of shape (n_layers,), float64
        The bias of each block's attention output projection (0 without one).
    ffn : ndarray of shape (n_layers,), float64
        Each block's FFN (MLP) output ("block l FFN").
    final_bias : float
        The final norm's bias and the LM head's bias, a constant.
    value : float
        The model's own metric at the read position in the decomposed run
        (eager attention on the hook path, the served kernel through nnsight;
        equal up to float rounding).
    metric : str
        A key of :data:`METRICS`.
    answer, foil : str
        Display text of the answer and foil tokens (``foil`` None without one).
    answer_id, foil_id : int
        Their token ids (``foil_id`` -1 without foil).
    tokens : tuple of str, length n_tokens
        The run's tokens; the last one is the read position (the answer is
        predicted after it).
    token_ids : ndarray of shape (n_tokens,), int64
    final_scale : float
        The final norm's frozen scale at the read position: ``1 / sqrt(var + eps)``
        (LayerNorm) or ``1 / sqrt(mean(x^2) + eps)`` (RMSNorm).
    head_outputs : ndarray of shape (n_layers, n_heads, d_model), float32, or None
        What each head writes into the residual stream at the read position
        (None through nnsight: it stays where the model runs).
    ffn_outputs : ndarray of shape (n_layers, d_model), float32, or None
        What each FFN writes there (see :func:`top_tokens`; None through nnsight).
    model_name : str
    notes : tuple of str
    top_ids : ndarray of shape (n_components, 2, TRACED_TOP_K), int64, or None
        Through nnsight: the tokens each of :attr:`components` raises most
        (``[:, 0]``) and lowers most (``[:, 1]``), as :func:`top_tokens`
        lists them, read where the outputs are (None on the hook path).
    top_logits : ndarray of shape (n_components, 2, TRACED_TOP_K), float32, or None
        Their logits from each component (the lowered ones negative).
    ablation : str
        What replaced ablated components in :func:`verify`, in words; empty
        before verification.
    k : int
        How many top components by ``|DLA|`` were verified (0 before).
    all_ablated_value, top_ablated_value, top_kept_value : float
        The metric with every head and FFN ablated, with DLA's top ``k``
        ablated, and with all but DLA's top ``k`` ablated (NaN before).
    exact_heads : ndarray of shape (n_layers, n_heads), float64, or None
        Exact ablation effect of each head alone: the unablated metric minus
        the metric with that head ablated (None unless computed).
    exact_ffn : ndarray of shape (n_layers,), float64, or None
        The same for each block's FFN.
    route_heads : ndarray of shape (n_layers, n_heads, n_tokens, n_tokens), float32, or None
        With ``routes=True`` (information flow routes, see :func:`circuits`):
        ``route_heads[l, h, i, j]``, the importance of what head ``h`` of block
        ``l`` moves from token ``j`` into token ``i``'s residual stream.
    route_attention_residual, route_attention_bias : ndarray of shape (n_layers, n_tokens), float32, or None
        The importance of token ``i``'s own residual stream (block ``l``'s
        input) and of the attention output projection's bias in the same sum.
        With ``route_heads`` summed over heads and sources they add up to 1.
    route_ffn, route_ffn_residual : ndarray of shape (n_layers, n_tokens), float32, or None
        The importance of block ``l``'s FFN output and of the residual stream
        after attention in block ``l``'s output at token ``i``; they add up to 1.
    route_threshold : float
        With routes, the threshold of the graph whose ranking of the parts
        (:meth:`route_values`) :func:`verify` checked beside DLA's (NaN before).
    route_top_ablated_value, route_top_kept_value : float
        The metric with the graph's top ``k`` ablated, and with all but them
        ablated (NaN unless checked).
    """

    embeddings: float
    heads: np.ndarray
    head_sources: np.ndarray | None
    attention_bias: np.ndarray
    ffn: np.ndarray
    final_bias: float
    value: float
    metric: str
    answer: str
    foil: str | None
    answer_id: int
    foil_id: int
    tokens: tuple[str, ...]
    token_ids: np.ndarray
    final_scale: float
    head_outputs: np.ndarray | None
    ffn_outputs: np.ndarray | None
    model_name: str
    notes: tuple[str, ...] = ()
    top_ids: np.ndarray | None = None
    top_logits: np.ndarray | None = None
    ablation: str = ""
    k: int = 0
    all_ablated_value: float = math.nan
    top_ablated_value: float = math.nan
    top_kept_value: float = math.nan
    exact_heads: np.ndarray | None = None
    exact_ffn: np.ndarray | None = None
    route_heads: np.ndarray | None = None
    route_attention_residual: np.ndarray | None = None
    route_attention_bias: np.ndarray | None = None
    route_ffn: np.ndarray | None = None
    route_ffn_residual: np.ndarray | None = None
    route_threshold: float = math.nan
    route_top_ablated_value: float = math.nan
    route_top_kept_value: float = math.nan

    @property
    def n_layers(self) -> int:
        return self.heads.shape[0]

    @property
    def n_heads(self) -> int:
        return self.heads.shape[1]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def read_position(self) -> int:
        """Where the answer is read: the last token of the run."""
        return self.n_tokens - 1

    @property
    def total(self) -> float:
        """The sum of every part: equals ``value`` up to float rounding."""
        return float(
            self.embeddings + self.heads.sum() + self.attention_bias.sum() + self.ffn.sum() + self.final_bias
        )

    # ------------------------------------------------------------ components
    @property
    def components(self) -> tuple[str, ...]:
        """Labels of the ablatable components, every head (block by block) then every FFN."""
        heads = (head_label(l, h) for l in range(self.n_layers) for h in range(self.n_heads))
        return (*heads, *(site_label("ffn", l) for l in range(self.n_layers)))

    @property
    def component_values(self) -> np.ndarray:
        """DLA of each of :attr:`components`: shape (n_layers * n_heads + n_layers,)."""
        return np.concatenate([self.heads.ravel(), self.ffn])

    def top(self, k: int = 10) -> tuple[str, ...]:
        """The ``k`` components (heads and FFNs) with the largest ``|DLA|``, largest first."""
        k = checks.whole("k", k, low=1, high=len(self.components))
        return tuple(self.components[i] for i in _top_indices(self.component_values, k))

    def route_values(self, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        """The routes graph's ranking of :attr:`components`: what each carries of the graph pruned at ``threshold``.

        The sum of the importances of its kept edges (:meth:`routes_frame`): a
        head's moves from any source token into any kept node, an FFN's part
        of any kept block output. Shape (n_layers * n_heads + n_layers,); 0 for
        a part off the graph. The graph follows the prediction at the read
        position whatever the answer, so this ranks what carries information
        to it, not what favours the answer (DLA's sign and foil play no part).
        """
        frame = self.routes_frame(threshold)
        values = np.zeros(len(self.components))
        heads = frame[frame["part"] == "head"]
        np.add.at(values, heads["block"].to_numpy(int) * self.n_heads + heads["head"].to_numpy(int),
                  heads["importance"].to_numpy(float))
        ffn = frame[frame["part"] == "FFN"]
        np.add.at(values, self.n_layers * self.n_heads + ffn["block"].to_numpy(int), ffn["importance"].to_numpy(float))
        return values

    def route_top(self, k: int = 10, threshold: float = DEFAULT_THRESHOLD) -> tuple[str, ...]:
        """The ``k`` components that carry most of the routes graph pruned at ``threshold`` (:meth:`route_values`)."""
        k = checks.whole("k", k, low=1, high=len(self.components))
        return tuple(self.components[i] for i in _top_indices(self.route_values(threshold), k))

    @property
    def route_checked(self) -> bool:
        """Whether :func:`verify` also checked the routes graph's ranking (a result with routes)."""
        return self.k > 0 and math.isfinite(self.route_threshold)

    @property
    def route_recall(self) -> float:
        """Share of the exact top ``k`` that the routes graph's top ``k`` finds (NaN unless both were computed)."""
        if self.exact_heads is None or not self.route_checked:
            return math.nan
        return len(set(self.exact_top) & set(self.route_top(self.k, self.route_threshold))) / self.k

    @property
    def route_kept_share(self) -> float:
        """:attr:`kept_share` for the routes graph's top ``k``."""
        return _share(self.route_top_kept_value - self.all_ablated_value, self.effect)

    @property
    def route_ablated_share(self) -> float:
        """:attr:`ablated_share` for the routes graph's top ``k``."""
        return _share(self.value - self.route_top_ablated_value, self.effect)

    @property
    def verified(self) -> bool:
        return self.k > 0

    @property
    def exact_values(self) -> np.ndarray | None:
        """Exact ablation effect of each of :attr:`components` (None unless computed)."""
        if self.exact_heads is None:
            return None
        return np.concatenate([self.exact_heads.ravel(), self.exact_ffn])

    @property
    def exact_top(self) -> tuple[str, ...]:
        """The ``k`` components whose own ablation changes the metric most (empty unless computed)."""
        if self.exact_heads is None:
            return ()
        return tuple(self.components[i] for i in _top_indices(self.exact_values, self.k))

    @property
    def recall(self) -> float:
        """Share of the exact top ``k`` (by ``|exact effect|``) that DLA's top ``k`` finds (NaN unless computed)."""
        if self.exact_heads is None:
            return math.nan
        return len(set(self.exact_top) & set(self.top(self.k))) / self.k

    @property
    def effect(self) -> float:
        """``value - all_ablated_value``: how much ablating every head and FFN moves the metric."""
        return self.value - self.all_ablated_value

    @property
    def kept_share(self) -> float:
        """``(top_kept_value - all_ablated_value) / effect``: 1 = DLA's top k alone carry the whole effect."""
        return _share(self.top_kept_value - self.all_ablated_value, self.effect)

    @property
    def ablated_share(self) -> float:
        """``(value - top_ablated_value) / effect``: how much of the effect ablating DLA's top k removes."""
        return _share(self.value - self.top_ablated_value, self.effect)

    # ------------------------------------------------------------ tables
    def to_frame(self) -> pd.DataFrame:
        """One row per part, in the order of :data:`KINDS` then block and head.

        Columns: ``part`` (``"embeddings"``, ``"block 9 head 3"``, ``"block 9
        attention bias"``, ``"block 9 FFN"``, ``"final norm and head bias"``),
        ``kind`` (from :data:`KINDS`), ``block`` and ``head`` (nullable
        integers), ``value`` (logits), ``share`` (``value`` divided by the
        model's value), ``rank`` (1 = the largest ``|value|`` among heads and
        FFNs, empty for other parts), and after :func:`verify` with exact
        effects ``exact_effect`` and ``exact_rank``. The ``value`` column sums
        to :attr:`value`.
        """
        n_layers, n_heads = self.heads.shape
        layers = np.arange(n_layers)
        blocks = [pd.NA, *np.repeat(layers, n_heads), *layers, *layers, pd.NA]
        heads = [pd.NA, *np.tile(np.arange(n_heads), n_layers), *[pd.NA] * (2 * n_layers), pd.NA]
        parts = [
            EMBEDDINGS,
            *self.components[: n_layers * n_heads],
            *(bias_label("attention", l) for l in layers),
            *self.components[n_layers * n_heads :],
            FINAL_BIAS,
        ]
        kinds = ["embeddings", *["head"] * (n_layers * n_heads), *["attention bias"] * n_layers,
                 *["FFN"] * n_layers, "final bias"]
        values = np.concatenate([[self.embeddings], self.heads.ravel(), self.attention_bias, self.ffn,
                                 [self.final_bias]])
        frame = pd.DataFrame({
            "part": parts,
            "kind": kinds,
            "block": pd.array(blocks, dtype="Int64"),
            "head": pd.array(heads, dtype="Int64"),
            "value": values,
            "share": values / self.value if self.value else np.nan,
        })
        is_component = frame["kind"].isin(["head", "FFN"]).to_numpy()
        frame["rank"] = pd.array([pd.NA] * len(frame), dtype="Int64")
        frame.loc[is_component, "rank"] = _ranks(values[is_component])
        if self.exact_heads is not None:
            exact = np.full(len(frame), np.nan)
            exact[is_component] = np.concatenate([self.exact_heads.ravel(), self.exact_ffn])
            frame["exact_effect"] = exact
            frame["exact_rank"] = pd.array([pd.NA] * len(frame), dtype="Int64")
            frame.loc[is_component, "exact_rank"] = _ranks(exact[is_component])
        return frame

    def sources_frame(self) -> pd.DataFrame:
        """One row per (block, head, source token): where each head's part comes from.

        Columns: ``part`` (``"block 9 head 3"``), ``block``, ``head``,
        ``source_position``, ``source_token``, ``value`` (logits; a head's rows
        sum to its ``value`` in :meth:`to_frame`). A result made through nnsight has none.
        """
        if self.head_sources is None:
            raise ValueError(f"this result has no split by source token: it was computed through nnsight, and "
                             f"{_NEEDS_WEIGHTS.split(';')[0]}; compute it with a model loaded with backend='hooks'")
        n_layers, n_heads, n_tokens = self.head_sources.shape
        blocks = np.repeat(np.arange(n_layers), n_heads * n_tokens)
        heads = np.tile(np.repeat(np.arange(n_heads), n_tokens), n_layers)
        positions = np.tile(np.arange(n_tokens), n_layers * n_heads)
        return pd.DataFrame({
            "part": [head_label(l, h) for l, h in zip(blocks, heads)],
            "block": blocks,
            "head": heads,
            "source_position": positions,
            "source_token": [self.tokens[p] for p in positions],
            "value": self.head_sources.ravel(),
        })


    def routes_frame(self, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
        """The information-flow graph pruned at ``threshold``, from the prediction back to the input tokens.

        Starting at the last block's output at the read position, every edge
        into a kept node whose importance is at least ``threshold`` is kept,
        and its source node with it (Ferrando & Voita 2024, Algorithm 1).
        Nodes are residual streams: a block's output (``"block 9"``, or
        ``"embeddings"`` for block 0's input) and the stream inside a block
        after its attention (``"block 9 after attention"``), each at a token.

        One row per kept edge. Columns: ``block``, ``part`` (``"head"``,
        ``"attention residual"``, ``"FFN"``, ``"FFN residual"``), ``head``
        (nullable), ``source``, ``source_position``, ``source_token``,
        ``target``, ``target_position``, ``target_token``, ``importance``.
        """
        if self.route_heads is None:
            raise ValueError("this result has no routes; compute them with circuits(..., routes=True)")
        threshold = checks.positive("threshold", threshold)
        if threshold > 1:
            raise checks.invalid("threshold", threshold, "a number in (0, 1]: an importance")
        rows, kept, frontier = [], set(), [("out", self.n_layers - 1, self.read_position)]

        def edge(block, part, head, source, importance):
            rows.append((block, part, head, *source, *target, float(importance)))
            if source not in kept:
                kept.add(source)
                frontier.append(source)

        while frontier:
            target = frontier.pop()
            kind, block, position = target
            if kind == "out" and block >= 0:
                for part, importance in (("FFN", self.route_ffn), ("FFN residual", self.route_ffn_residual)):
                    if importance[block, position] >= threshold:
                        edge(block, part, pd.NA, ("mid", block, position), importance[block, position])
            elif kind == "mid":
                for head, source in zip(*np.nonzero(self.route_heads[block, :, position] >= threshold)):
                    edge(block, "head", int(head), ("out", block - 1, int(source)),
                         self.route_heads[block, head, position, source])
                if self.route_attention_residual[block, position] >= threshold:
                    edge(block, "attention residual", pd.NA, ("out", block - 1, position),
                         self.route_attention_residual[block, position])
        frame = pd.DataFrame(rows, columns=["block", "part", "head", "source_kind", "source_block", "source_position",
                                            "target_kind", "target_block", "target_position", "importance"])
        frame["head"] = pd.array(frame["head"], dtype="Int64")
        for end in ("source", "target"):
            frame[end] = [_node_label(kind, block) for kind, block in zip(frame[f"{end}_kind"], frame[f"{end}_block"])]
            frame[f"{end}_token"] = [self.tokens[p] for p in frame[f"{end}_position"]]
        columns = ["block", "part", "head", "source", "source_position", "source_token", "target", "target_position",
                   "target_token", "importance"]
        # From the prediction down: by block, a block's output before the stream after its attention, then by token.
        frame["stage"] = (frame["target_kind"] == "mid").astype(int)
        order = frame.sort_values(["block", "stage", "target_position", "importance"],
                                  ascending=[False, True, True, False]).index
        return frame.loc[order, columns].reset_index(drop=True)


def _node_label(kind: str, block: int) -> str:
    """A node of the routes graph: ``"block 9 after attention"``, ``"block 9"`` (its output), ``"embeddings"``."""
    return after_attention_label(block) if kind == "mid" else residual_label(block + 1)


def _top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``|values|``, largest first (ties: the earlier component first)."""
    return np.argsort(-np.abs(values), kind="stable")[:k]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each value by ``|value|``, 1 = the largest."""
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[_top_indices(values, len(values))] = np.arange(1, len(values) + 1)
    return ranks


def _share(part: float, whole_effect: float) -> float:
    return part / whole_effect if whole_effect and math.isfinite(whole_effect) else math.nan


# ------------------------------------------------------------ the final norm, frozen
def _norm_eps(lm: LM) -> float:
    """The final norm's epsilon: LayerNorm's ``eps``, RMSNorm's ``variance_epsilon``."""
    norm = lm.final_norm[0]
    return float(norm.eps if lm.spec.norm == "layer" else norm.variance_epsilon)


def _frozen(lm: LM, scale: float) -> dict:
    """The final norm, its scale fixed at ``scale``, as :func:`served.frozen_tail` applies it (the same code a
    session runs where the model is served): an affine map of (..., d_model)."""
    norm, *after = lm.final_norm
    kind = lm.spec.norm  # a key of models.NORM_KINDS
    return {"kind": kind, "scale": scale, "weight": getattr(norm, "weight", None),
            "bias": getattr(norm, "bias", None) if kind == "layer" else None, "after": after}


def _logit_direction(lm: LM, x: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, float, float]:
    """The map from the residual stream at the read position to the metric, with the final norm's scale frozen.

    Parameters
    ----------
    x : Tensor of shape (d_model,)
        The real residual stream at the read position (the last block's output).
    ids : list of int
        The answer's token id, then the foil's if any.

    Returns
    -------
    direction : Tensor of shape (d_model,), float64
        ``metric(p) = direction . p + constant`` for any part ``p``.
    constant : float
        The metric of a zero residual stream: the final norm's and the head's biases.
    scale : float
        The frozen scale.
    """
    scale = frozen_scale(lm.spec.norm, x, _norm_eps(lm))
    head = lm.head[0]
    head_bias = head.bias[ids] if getattr(head, "bias", None) is not None else 0.0
    direction, constant = metric_direction(_frozen(lm, scale), head.weight[ids], head_bias, x)
    return direction, constant, scale


# ------------------------------------------------------------ inputs
def _token_id(lm: LM, prefix: str, word, argument: str) -> tuple[int, list[str]]:
    """A token id given as such, or the first token of ``word`` read as it follows ``prefix``, and notes."""
    if checks.is_whole(word):
        return checks.whole(argument, word, low=0, high=lm.vocab_size - 1), []
    return word_id(lm, prefix, word, argument)


def _inputs(lm: LM, text, answer, foil, position) -> tuple[list[int], int, int, tuple[str, ...]]:
    """Token ids up to the read position, the answer's and foil's ids (-1 without foil), and notes."""
    if not lm.is_causal:
        raise ValueError(
            f"circuits need a causal model; {lm.name!r} is masked, and its prediction head is not linear "
            "(a dense layer, an activation and a norm before the vocabulary), so no logit splits into parts"
        )
    lm.require_head()
    if isinstance(text, Capture):
        cap = captured_by(lm, text, "text")
        default = max(cap.n_input - 1, 0)
        read = default if position is None else checks.whole("position", position, low=0, high=cap.n_tokens - 1)
        ids = [int(i) for i in cap.token_ids[: read + 1]]
        prefix = "".join(cap.tokens[: read + 1])
        if answer is None:
            if read + 1 >= cap.n_tokens:
                raise ValueError(
                    f"answer is needed: the capture has no token after position {read} to read as the answer; "
                    "give answer= (a word), or a position before the capture's last token"
                )
            answer_id, notes = int(cap.token_ids[read + 1]), []
        else:
            answer_id, notes = _token_id(lm, prefix, answer, "answer")
    else:
        if position is not None:
            raise ValueError("position is for a Capture; a text is read at its last token (give position=None)")
        ids = encode_prompt(lm, text)
        if len(ids) >= lm.context_length:
            raise ValueError(
                f"text is {len(ids)} tokens and fills the model's context of {lm.context_length} tokens: there is "
                "no next position to predict; shorten it"
            )
        prefix = text
        if answer is None:
            raise ValueError("answer is needed with a text: the word whose logit is decomposed, e.g. 'Mary'")
        answer_id, notes = _token_id(lm, prefix, answer, "answer")
    foil_id = -1
    if foil is not None:
        foil_id, foil_notes = _token_id(lm, prefix, foil, "foil")
        notes += foil_notes
        if foil_id == answer_id:
            raise ValueError(
                f"answer and foil are the same token {token_strings(lm.tokenizer, [answer_id])[0]!r}; "
                "the foil must be another word"
            )
    if not lm.final_norm:
        raise ValueError(
            f"{lm.name!r} has no final norm before its head (its blocks normalise after the residual add), "
            "so its residual stream is not a sum of parts"
        )
    if len(lm.head) != 1 or not hasattr(lm.head[0], "weight"):
        raise ValueError(f"{lm.name!r} has no single linear LM head; its logits do not split into parts")
    return ids, answer_id, foil_id, tuple(notes)


# ------------------------------------------------------------ direct logit attribution
def circuits(
    lm: LM,
    text,
    answer: str | int | None = None,
    foil: str | int | None = None,
    *,
    position: int | None = None,
    routes: bool = False,
) -> Circuits:
    """Direct logit attribution: the answer's logit (difference) split into embeddings, heads, MLPs and biases.

    Parameters
    ----------
    lm : LM
        A causal model with an LM head.
    text : str or Capture
        A prompt (read at its last token), or a capture of ``lm``.
    answer : str or int, optional
        The word whose logit is decomposed, read as it follows the text
        (``"Mary"`` -> ``" Mary"``; a word of several tokens by its first
        token, ``notes`` says so), or a token id. Needed with a text; with a
        capture it defaults to the token after the read position (the first
        generated or given answer token).
    foil : str or int, optional
        A competing word or token id: the metric is then the logit difference
        answer - foil.
    position : int, optional
        With a capture, the read position (default: the prompt's last token).
    routes : bool, default False
        Also compute the information flow routes (Ferrando & Voita 2024,
        "Information Flow Routes: Automatically Interpreting Language Models at
        Scale"), the ``route_*`` fields, for every block and token: from the
        same eager pass as DLA (every query's attention weights kept), and
        ``n_layers * n_heads * n_tokens**2`` importances. Each
        residual sum is split exactly into its parts (block ``l``'s input
        ``x_i``, every ``alpha_hij f_h(x_j)``, the attention output bias; then
        the stream after attention and the FFN output), and each part ``z`` of
        a sum ``y`` weighs ``max(0, ||y||_1 - ||y - z||_1)`` (the paper's
        proximity, from ALTI), normalised over the sum's parts. Unlike DLA
        nothing is frozen: the routes need no final norm. See
        :meth:`Circuits.routes_frame` for the pruned graph. On the hook path
        only: through nnsight it is refused before any request.

    Returns
    -------
    Circuits
        ``heads`` (n_layers, n_heads), ``head_sources`` (n_layers, n_heads,
        n_tokens; None through nnsight), ``ffn`` (n_layers,), ..., summing to
        ``value``.

    Raises
    ------
    ValueError
        A masked model or one without a final norm or a linear head, a missing
        answer, answer and foil of the same token, a bad position; the residual
        stream not summing to its parts (a family whose blocks are not pre-norm);
        ``routes=True`` through nnsight.
    """
    if routes:
        lm.require_hooks("circuits' information-flow routes (routes=True)", _NEEDS_WEIGHTS)
    ids, answer_id, foil_id, notes = _inputs(lm, text, answer, foil, position)
    metric_ids = [answer_id] + [foil_id] * (foil_id >= 0)
    if lm.backend.traced:
        fields = _traced(lm, ids, metric_ids)
    else:
        twin = eager_twin(lm)
        seen = _eager_run(twin, ids, every_query=routes)
        fields = _decomposition(lm, seen, metric_ids)
    result = Circuits(
        **fields,
        metric="logit_diff" if foil_id >= 0 else "logit",
        answer=token_strings(lm.tokenizer, [answer_id])[0],
        foil=token_strings(lm.tokenizer, [foil_id])[0] if foil_id >= 0 else None,
        answer_id=answer_id,
        foil_id=foil_id,
        tokens=token_strings(lm.tokenizer, ids),
        token_ids=np.array(ids, dtype=np.int64),
        model_name=lm.name,
        notes=notes,
    )
    if abs(result.total - result.value) > _SUM_TOLERANCE * max(1.0, abs(result.value)):
        raise RuntimeError(
            f"the parts sum to {result.total:.6g}, the model's {METRICS[result.metric]} is {result.value:.6g}: the "
            f"final norm of {lm.name!r} is not the {lm.spec.norm!r} norm its family row says"
        )
    return dataclasses.replace(result, **_routes(twin, seen)) if routes else result


def _traced(lm: LM, ids: list[int], metric_ids: list[int]) -> dict:
    """The DLA fields of :class:`Circuits` through nnsight: one session, reduced where the model runs.

    Every head's output is read as its block's output projection's input, so
    the served model's own attention kernel runs (no attention weights: no
    split by source token); the components' outputs stay there, and their
    :data:`TRACED_TOP_K` top tokens each way come back instead.
    """
    from .backends import sessions

    done = sessions.circuits(lm, ids, metric_ids, k=TRACED_TOP_K, max_chunk_bytes=DEFAULT_CHUNK_BYTES)
    _check_sum(lm, done.pop("off"))
    return {**done, "head_sources": None, "head_outputs": None, "ffn_outputs": None}


def _eager_run(twin: LM, ids: list[int], every_query: bool) -> dict:
    """One pass of the eager twin over ``ids``, recording what DLA and the routes read, block by block.

    Returns a dict of dicts by block: ``inputs`` (n_tokens, d_model), each
    block's input, and at key ``n_layers`` the final norm's (the last block's
    output); ``values`` (n_tokens, width), the value projection's output;
    ``weights`` (n_heads, n_tokens, n_tokens) with ``every_query``, else
    (n_heads, n_tokens), the read position's row; ``z`` (n_heads * head_dim,),
    every head's output side by side at the read position (the output
    projection's input); ``ffn`` (n_tokens, d_model), the FFN's output. And
    ``normed`` (d_model,), the final norm's output at the read position.
    Without ``every_query``, ``inputs`` and ``ffn`` keep the read position's
    row alone, (1, d_model).

    A row is kept as a copy: a view would keep its whole tensor alive (a
    512-token prompt's attention weights of every block, 283 MB for the
    causal default, where the rows are 0.6 MB).
    """
    seen: dict = {"inputs": {}, "values": {}, "weights": {}, "z": {}, "ffn": {}}
    rows = slice(None) if every_query else slice(-1, None)

    def keep(kind, layer, read):
        def hook(module, args, output):
            seen[kind][layer] = read(output)
        return hook

    def before(kind, layer, read):
        def hook(module, args, kwargs):
            seen[kind][layer] = read(args[0] if args else kwargs["hidden_states"])
        return Before(hook)

    hooks = {twin.final_norm[0]: before("inputs", twin.n_layers, lambda hidden: first(hidden)[0, rows].clone())}
    for layer in range(twin.n_layers):
        hooks[twin.blocks[layer]] = before("inputs", layer, lambda hidden: first(hidden)[0, rows].clone())
        hooks[twin.value_projections[layer]] = keep("values", layer, lambda out: out[0])
        hooks[twin.attention_modules[layer]] = keep(
            "weights", layer, (lambda out: out[1][0]) if every_query else (lambda out: out[1][0, :, -1].clone()))
        hooks[twin.ffn_projections[layer]] = keep("ffn", layer, lambda out: by_token(first(out), 1)[0, rows].clone())
        hooks[twin.output_projections[layer]] = before("z", layer, lambda z: by_token(z, 1)[0, -1].clone())
    with torch.inference_mode(), hooked(hooks):
        output = twin.model.base_model(input_ids=torch.tensor([ids], device=twin.device),
                                       **without_cache(twin.model.base_model))
    seen["normed"] = output.last_hidden_state[0, -1]
    return seen


def _decomposition(lm: LM, seen: dict, metric_ids: list[int]) -> dict:
    """The DLA fields of :class:`Circuits` from :func:`_eager_run`'s record, the metric's token ids given.

    Weights stay float32 (one product with the metric's direction per
    block, no float64 copy of a matrix); the per-head numbers that must sum
    exactly are formed in float64 from those products.
    """
    n_layers, n_heads, head_dim = lm.n_layers, lm.n_heads, lm.head_dim
    read = [seen["inputs"][0][-1], seen["inputs"][n_layers][-1]]  # the embeddings, the last block's output
    direction, constant, scale = _logit_direction(lm, read[1].clone(), metric_ids)
    z = torch.stack([seen["z"][layer] for layer in range(n_layers)]).view(n_layers, n_heads, head_dim)
    # Each head's slice of its block's output projection: (n_heads, head_dim, d_model) per block.
    matrices = [head_output_matrices(lm, layer) for layer in range(n_layers)]
    ffn_out = torch.stack([seen["ffn"][layer][-1] for layer in range(n_layers)])
    biases = [getattr(projection, "bias", None) for projection in lm.output_projections]
    bias = torch.stack([b if b is not None else torch.zeros_like(read[1]) for b in biases])  # (n_layers, d_model)
    parts = logit_parts(read[0], z, ffn_out, read[1], matrices, bias, direction)
    _check_sum(lm, parts["off"])
    values = torch.stack([head_values(lm, seen["values"][layer]) for layer in range(n_layers)])  # (L, T, H, hd)
    weights = torch.stack([seen["weights"][layer] for layer in range(n_layers)])
    weights = weights if weights.dim() == 3 else weights[..., -1, :]  # (n_layers, n_heads, n_tokens)
    sources = weights.double() * torch.einsum("lthk,lhk->lht", values.double(), parts["per_head"])
    rows = lm.head[0].weight[metric_ids]
    logits = rows @ seen["normed"] + (lm.head[0].bias[metric_ids] if getattr(lm.head[0], "bias", None) is not None
                                      else 0.0)
    return {
        "embeddings": parts["embeddings"],
        "heads": parts["heads"].cpu().numpy(),
        "head_sources": sources.cpu().numpy(),
        "attention_bias": parts["attention_bias"].cpu().numpy(),
        "ffn": parts["ffn"].cpu().numpy(),
        "final_bias": constant,
        "value": float(logits[0] - logits[1]) if len(metric_ids) > 1 else float(logits[0]),
        "final_scale": scale,
        "head_outputs": parts["written"].float().cpu().numpy(),
        "ffn_outputs": ffn_out.float().cpu().numpy(),
    }


def _check_sum(lm: LM, off: float) -> None:
    """Refuse a model whose residual stream at the read position is off the sum of its parts by ``off`` of its size."""
    if off > _SUM_TOLERANCE:
        raise ValueError(
            f"the residual stream of {lm.name!r} is not the sum of its embeddings and its blocks' attention and "
            f"FFN outputs (off by {off:.2g} of its size): its blocks are not pre-norm residual blocks, so direct "
            "logit attribution does not apply"
        )


# ------------------------------------------------------------ what each component writes
def _check_result(lm: LM, result) -> None:
    if not isinstance(result, Circuits):
        raise checks.invalid("result", type(result), "a Circuits result from ecco_core.circuits", TypeError)
    if result.model_name != lm.name or result.heads.shape != (lm.n_layers, lm.n_heads):
        raise checks.invalid("result", checks.words(f"one made by {result.model_name!r}"),
                             f"a result of this model, {lm.name!r}")


def _component_logits(lm: LM, result: Circuits, indices) -> torch.Tensor:
    """What components ``indices`` (of ``result.components``) add to every logit: shape (len(indices), vocab_size).

    Each one's output at the read position through the final norm (its scale
    frozen at ``result.final_scale``, its bias left out) and the LM head's
    weight (:func:`served.component_logits`): the same linear map as DLA, so
    ``[:, answer_id] - [:, foil_id]`` is each one's DLA.
    """
    vectors = np.concatenate([result.head_outputs.reshape(-1, result.head_outputs.shape[-1]), result.ffn_outputs])
    weight = lm.head[0].weight
    with torch.inference_mode():
        return component_logits(_frozen(lm, result.final_scale),
                                torch.as_tensor(vectors[np.asarray(indices, dtype=int)], device=weight.device), weight)


def top_tokens(lm: LM, result: Circuits, k: int = 5, *, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> pd.DataFrame:
    """The tokens each head and FFN pushes up and down most at the read position (its direct effect on every logit).

    Parameters
    ----------
    lm : LM
        The model that made ``result``.
    result : Circuits
    k : int, default 5
        Tokens to list each way; for a result made through nnsight, at most
        :data:`TRACED_TOP_K` (they came back with it).
    max_chunk_bytes : int, default 64 MiB
        Vocabulary-wide logits are made for this many bytes of components at a time.

    Returns
    -------
    pandas.DataFrame
        One row per component (:attr:`Circuits.components`): ``part``,
        ``promoted`` and ``promoted_logits`` (the ``k`` tokens whose logit it
        raises most, and by how much), ``suppressed`` and ``suppressed_logits``
        (lowers most). Through the final norm with its scale frozen, as DLA.
    """
    _check_result(lm, result)
    if result.head_outputs is None:  # made through nnsight: the top tokens came back with it
        k = checks.whole("k", k, low=1, high=result.top_ids.shape[-1])
        ids, logits = result.top_ids[..., :k], result.top_logits[..., :k]
    else:
        k = checks.whole("k", k, low=1, high=lm.vocab_size)
        max_chunk_bytes = checks.whole("max_chunk_bytes", max_chunk_bytes, low=1)
        weight = lm.head[0].weight
        vectors = np.concatenate([result.head_outputs.reshape(-1, result.head_outputs.shape[-1]),
                                  result.ffn_outputs])
        with torch.inference_mode():
            ids, logits = (tensor.numpy() for tensor in component_tops(
                _frozen(lm, result.final_scale), torch.as_tensor(vectors, device=weight.device), weight, k,
                max(1, max_chunk_bytes // (4 * lm.vocab_size))))
    columns = {}
    for side, name in enumerate(("promoted", "suppressed")):
        columns[name] = [list(token_strings(lm.tokenizer, row)) for row in ids[:, side]]
        columns[f"{name}_logits"] = [list(row) for row in logits[:, side].astype(float)]
    return pd.DataFrame({"part": list(result.components), **columns})


# ------------------------------------------------------------ information flow routes
def _proximity(parts: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``max(0, ||total||_1 - ||total - part||_1)`` for each part (..., d_model) of ``total`` (broadcast)."""
    return (total.abs().sum(-1) - (total - parts).abs().sum(-1)).clamp(min=0)


def _routes(twin: LM, seen: dict, max_chunk_bytes: int = 64 * 2**20) -> dict[str, np.ndarray]:
    """Importance of every part of every residual sum, per block and token (the fields ``route_*`` of Circuits).

    ``seen`` is :func:`_eager_run`'s record with every query's weights. Block
    ``l``'s attention makes ``mid_i = x_i + sum_h sum_j alpha_hij f_h(x_j) +
    b_O`` from its input ``x``; its FFN makes ``out_i = mid_i + m_i``. Each
    part ``z`` of a sum ``y`` gets ``proximity(z, y) = max(0, ||y||_1 - ||y -
    z||_1)``, divided by the sum of its sum's proximities (all 0 where the parts
    cancel, which happens: an FFN output that nearly removes the stream it
    reads). Every head, query and source of a block in one tensor operation
    (queries in chunks of ``max_chunk_bytes``), in float32; a causal model's
    sources after the query (attention weight 0) are skipped.
    """
    n_layers, n_heads, n_tokens = twin.n_layers, twin.n_heads, seen["inputs"][0].shape[0]
    # Query tokens per chunk: within the memory bound, and at most a quarter of them, so that the sources after
    # a chunk's last query (attention weight 0 in a causal model: proximity 0) are mostly left out.
    rows = max(1, min(max_chunk_bytes // (4 * n_heads * n_tokens * twin.d_model), -(-n_tokens // 4)))
    parts = {name: [] for name in ("route_heads", "route_attention_residual", "route_attention_bias",
                                   "route_ffn", "route_ffn_residual")}
    with torch.inference_mode():
        for layer in range(n_layers):
            x, weights = seen["inputs"][layer].float(), seen["weights"][layer].float()  # weights (n_heads, T, T)
            # f_h(x_j), what head h moves from token j per unit of attention: (n_heads, n_tokens, d_model)
            moved = torch.einsum("thk,hkd->htd", head_values(twin, seen["values"][layer]).float(),
                                 head_output_matrices(twin, layer).float())
            projection = twin.output_projections[layer]
            bias = projection.bias.float() if getattr(projection, "bias", None) is not None else torch.zeros_like(x[0])
            mid = x + torch.einsum("hij,hjd->id", weights, moved) + bias
            out = mid + seen["ffn"][layer].float()
            off = float((out - seen["inputs"][layer + 1].float()).norm() / out.norm())
            if off > _SUM_TOLERANCE:
                raise ValueError(
                    f"block {layer}'s output is not its input plus its attention and FFN outputs (off by {off:.2g} "
                    "of its size): its blocks are not pre-norm residual blocks, so the routes do not apply"
                )
            heads = torch.zeros((n_heads, n_tokens, n_tokens))  # query i, source j
            size = mid.abs().sum(-1)
            for start in range(0, n_tokens, rows):
                stop = min(n_tokens, start + rows)
                # mid_i - alpha_hij f_h(x_j) for every head, query of the chunk and source up to its last query
                rest = torch.addcmul(mid[None, start:stop, None], weights[:, start:stop, :stop, None],
                                     moved[:, None, :stop], value=-1)
                heads[:, start:stop, :stop] = (size[start:stop, None] - rest.abs_().sum(-1)).clamp(min=0)
            residual, from_bias = _proximity(x, mid), _proximity(bias, mid)
            total = heads.sum((0, 2)) + residual + from_bias
            total = torch.where(total > 0, total, 1.0)
            kept, added = _proximity(mid, out), _proximity(out - mid, out)
            both = torch.where(kept + added > 0, kept + added, 1.0)
            for name, value in (("route_heads", heads / total[None, :, None]),
                                ("route_attention_residual", residual / total),
                                ("route_attention_bias", from_bias / total),
                                ("route_ffn", added / both), ("route_ffn_residual", kept / both)):
                parts[name].append(value)
    return {name: torch.stack(values).cpu().numpy().astype(np.float32) for name, values in parts.items()}


# ------------------------------------------------------------ verification by ablation
class _Run(NamedTuple):
    """One recorded run, every position: each block's input (n_tokens, d_model), its heads' outputs (the
    attention output projection's input, (n_tokens, n_heads * head_dim)) and its FFN output (n_tokens, d_model)."""

    inputs: list[torch.Tensor]
    heads: list[torch.Tensor]
    ffn: list[torch.Tensor]


def _recorded_run(lm: LM, ids: list[int]) -> _Run:
    """Every block's input and its heads' and FFN's outputs in the unablated run of ``ids`` (see :class:`_Run`)."""
    run = _Run([None] * lm.n_layers, [None] * lm.n_layers, [None] * lm.n_layers)

    def keep(kept, layer):
        def hook(module, args, kwargs):
            kept[layer] = by_token(args[0] if args else kwargs["hidden_states"], 1)[0]
        return Before(hook)

    def keep_ffn(layer):
        def hook(module, args, output):
            run.ffn[layer] = by_token(first(output), 1)[0]
        return hook

    hooks = {block: keep(run.inputs, layer) for layer, block in enumerate(lm.blocks)}
    hooks.update({projection: keep(run.heads, layer) for layer, projection in enumerate(lm.output_projections)})
    hooks.update({projection: keep_ffn(layer) for layer, projection in enumerate(lm.ffn_projections)})
    with torch.inference_mode(), hooked(hooks):
        lm.model.base_model(input_ids=torch.tensor([ids], device=lm.device), **without_cache(lm.model.base_model))
    return run


def _ablated_metrics(
    lm: LM,
    ids: list[int],
    replacements: tuple[list[torch.Tensor], list[torch.Tensor]],
    head_masks: torch.Tensor,
    ffn_masks: torch.Tensor,
    metric_of: Callable[[torch.Tensor], torch.Tensor],
    max_batch_bytes: int,
    progress: Callable[[float, str], None] | None,
    inputs: list[torch.Tensor] | None,
) -> np.ndarray:
    """The metric of each row of ablations, in batched passes of at most ``max_batch_bytes``.

    Before a row's first ablated block its run is the unablated one, so a row
    joins its pass there, as a copy of the unablated run's input to that block
    (``inputs``; see :func:`_ablated_pass`): for one component per row, about
    half the work of every row through every block. A pass takes every
    ``n_passes``-th row in the order of their first ablated block, so that
    every pass starts its rows from the first blocks on and no pass runs many
    blocks as a small batch; passes are cut to the memory bound and to about
    ``_PASS_MULTIPLY_ADDS`` of work, with a progress report after each.

    Parameters
    ----------
    replacements : (list of n_layers Tensors, list of n_layers Tensors)
        What an ablated head block's projection input and FFN output become,
        of shape (1 or n_tokens, n_heads * head_dim) and (1 or n_tokens, d_model).
    head_masks : bool Tensor of shape (n_rows, n_layers, n_heads)
    ffn_masks : bool Tensor of shape (n_rows, n_layers)
        True where the row ablates that head or FFN.
    metric_of : callable
        The final norm's output at the read position (n, d_model) -> the metric (n,).
    inputs : list of n_layers Tensors of shape (n_tokens, d_model), or None
        The unablated run's input to every block (:class:`_Run`). None runs
        every row through every block at every position: the plain loop that
        ``bench/circuits.py`` compares against.

    Returns
    -------
    ndarray of shape (n_rows,), float64
    """
    n_rows, n_tokens = head_masks.shape[0], len(ids)
    starts = _first_ablated(lm.n_layers, torch.cat([head_masks.reshape(n_rows, -1), ffn_masks], dim=-1))
    if inputs is None:
        starts = torch.zeros_like(starts)
    order = torch.argsort(starts, stable=True)
    per_token_block = sum(parameter.numel() for parameter in lm.blocks.parameters()) / lm.n_layers
    work = float((lm.n_layers - starts).sum()) * n_tokens * per_token_block  # multiply-adds, about
    n_passes = max(math.ceil(n_rows / max(1, max_batch_bytes // row_bytes(lm, n_tokens, n_tokens))),
                   math.ceil(work / _PASS_MULTIPLY_ADDS))
    values, done = np.empty(n_rows), 0
    with torch.inference_mode():
        for first_pass in range(min(n_passes, n_rows)):
            rows = order[first_pass::n_passes]
            index = rows.to(head_masks.device)
            with batch_heartbeat(progress, done / n_rows, f"{done} of {n_rows} ablated runs, {len(rows)} running"):
                values[rows.numpy()] = _ablated_pass(lm, ids, replacements, inputs, head_masks[index],
                                                     ffn_masks[index], starts[rows].tolist(), metric_of)
            done += len(rows)
            if progress is not None:
                progress(done / n_rows, f"{done} of {n_rows} ablated runs")
    return values


def _ablated_values(lm: LM, result: Circuits, masks: torch.Tensor, ablation: str, corrupted: str | None,
                    max_batch_bytes: int, progress) -> tuple[np.ndarray, str]:
    """The metric of each row of :func:`_verify_rows`' ``masks`` (n_rows,), float64, and the ablation in words.

    On the hook path, :func:`_ablated_metrics` (each row from its first
    ablated block on). Through nnsight, one session
    (:func:`ecco_core.backends.sessions.ablations`): the corrupted prompt is
    checked here before any request, and every row runs every block where the
    model is served; only the metrics come back.
    """
    ids = [int(i) for i in result.token_ids]
    n_layers, n_heads = lm.n_layers, lm.n_heads
    corrupted_ids, described = _corrupted_ids(lm, result, ablation, corrupted)  # checked before the model runs
    if lm.backend.traced:
        from .backends import sessions

        metric_ids = [result.answer_id] + [result.foil_id] * (result.foil_id >= 0)
        values = sessions.ablations(lm, ids, corrupted_ids, masks[:, : n_layers * n_heads].view(-1, n_layers, n_heads),
                                    masks[:, n_layers * n_heads :], metric_ids,
                                    rows_per_batch=max(1, max_batch_bytes // row_bytes(lm, len(ids), len(ids))))
        if progress is not None:
            progress(1.0, f"{len(masks)} of {len(masks)} ablated runs")
        return values, described
    run = _recorded_run(lm, ids)
    replacements = _replacements_of(lm, run, corrupted_ids)
    masks = masks.to(lm.device)
    head_masks = masks[:, : n_layers * n_heads].view(-1, n_layers, n_heads)
    values = _ablated_metrics(lm, ids, replacements, head_masks, masks[:, n_layers * n_heads :], _metric_of(lm, result),
                              max_batch_bytes, progress, run.inputs)
    return values, described


def _read_only(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A pre-hook's arguments with the module's input cut to the read position (the last token)."""
    if args:
        return (args[0][:, -1:], *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": kwargs["hidden_states"][:, -1:]}


def _last_block_hooks(lm: LM) -> dict:
    """Hooks that run the last block's attention output projection and FFN at the read position only.

    Every block before the last one must run at every position (the last
    block's attention reads them all), but the metric reads the last block's
    output at the read position alone. With these hooks the projection and
    the FFN module return (batch, 1, d_model), which the block's residual add
    broadcasts over the tokens: its output is right at the read position only,
    and only that position is read. A family whose FFN is no module of its own
    (OPT: ``fc1`` and ``fc2`` in the block, around a reshape) keeps its FFN
    at every position.
    """
    block = lm.blocks[-1]
    hooks = {lm.output_projections[-1]: Before(_read_only)}
    ffn_path = lm.spec.ffn_projection.rpartition(".")[0]
    if ffn_path:
        hooks[block.get_submodule(ffn_path)] = Before(_read_only)
    return hooks


def _ablated_pass(lm, ids, replacements, inputs, head_masks, ffn_masks, starts: list[int], metric_of) -> np.ndarray:
    """One batched pass of :func:`_ablated_metrics`: rows sorted by ``starts``, their first ablated blocks.

    The pass begins as a batch of one, the unablated run. At a block where
    rows start, copies of that block's input in the unablated run (``inputs``;
    the batch of one itself without them) join the batch as those rows, and
    the batch of one goes: at block ``l`` the batch is the rows started by
    then, in order. With ``inputs`` the last block also runs its output
    projection and FFN at the read position only (:func:`_last_block_hooks`).
    """
    n_layers, n_rows = lm.n_layers, len(starts)
    n_heads = lm.n_heads
    head_replacements, ffn_replacements = replacements
    started = [bisect.bisect_right(starts, layer) for layer in range(n_layers)]  # rows started by block l

    def widen(layer):
        before = started[layer - 1] if layer else 0

        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            source = hidden[-1:] if inputs is None else inputs[layer][None]
            # A new tensor, not a view: a block may add to its input in place.
            hidden = torch.cat([hidden[:before], source.expand(started[layer] - before, -1, -1)])
            return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})
        return Before(hook)

    def ablate_heads(layer, masks):
        def hook(module, args, kwargs):
            return (ablated_heads(args[0], masks, head_replacements[layer], n_heads), *args[1:]), kwargs
        return Before(hook)

    def ablate_ffn(layer, masks):
        def hook(module, args, output):
            return replace_first(output, ablated_ffn(first(output), masks, ffn_replacements[layer]))
        return hook

    hooks = collections.defaultdict(list)
    for layer in sorted(set(starts)):
        hooks[lm.blocks[layer]].append(widen(layer))
    for module, hook in (_last_block_hooks(lm) if inputs is not None else {}).items():
        hooks[module].append(hook)
    for layer in range(starts[0], n_layers):
        heads, ffn = head_masks[: started[layer], layer], ffn_masks[: started[layer], layer]
        if heads.any():
            hooks[lm.output_projections[layer]].append(ablate_heads(layer, heads))
        if ffn.any():
            hooks[lm.ffn_projections[layer]].append(ablate_ffn(layer, ffn))
    with hooked(hooks):
        output = lm.model.base_model(input_ids=torch.tensor([ids], device=lm.device),
                                     **without_cache(lm.model.base_model))
    return metric_of(output.last_hidden_state[:, -1]).cpu().numpy()


def _replacements_of(lm: LM, run: _Run, corrupted_ids: list[int] | None) -> tuple:
    """What ablated heads and FFNs become: their means over ``run``'s positions, or their outputs in the run of
    ``corrupted_ids`` (see :func:`_ablated_metrics`)."""
    if corrupted_ids is None:
        return [z.mean(0, keepdim=True) for z in run.heads], [out.mean(0, keepdim=True) for out in run.ffn]
    run = _recorded_run(lm, corrupted_ids)
    return run.heads, run.ffn


def _corrupted_ids(lm: LM, result: Circuits, ablation: str, corrupted: str | None) -> tuple[list[int] | None, str]:
    """The corrupted prompt's token ids (None for mean ablation), checked against ``result``'s run, and the
    ablation in words."""
    ids = [int(i) for i in result.token_ids]
    if ablation == "mean":
        if corrupted is not None:
            raise ValueError("corrupted= is for ablation='corrupted'; mean ablation reads the same run")
        return None, ABLATIONS["mean"]
    if corrupted is None:
        raise ValueError("ablation 'corrupted' needs corrupted= (a prompt of the same token length)")
    corrupted_ids = encode_prompt(lm, corrupted, argument="corrupted")
    if len(corrupted_ids) != len(ids):
        raise ValueError(
            "corrupted must have as many tokens as the decomposed run, to replace outputs position by "
            f"position; the run is {len(ids)} tokens {list(result.tokens)}, corrupted is {len(corrupted_ids)} "
            f"tokens {list(token_strings(lm.tokenizer, corrupted_ids))}"
        )
    return corrupted_ids, f"{ABLATIONS['corrupted']}: {corrupted!r}"


def _metric_of(lm: LM, result: Circuits) -> Callable[[torch.Tensor], torch.Tensor]:
    """The final norm's output (batch, d_model) -> ``result``'s metric (batch,), float64.

    Only the answer's (and foil's) rows of the LM head: a metric needs two logits, not the vocabulary.
    """
    head = lm.head[0]
    ids = [result.answer_id] + [result.foil_id] * (result.foil_id >= 0)
    rows = head.weight[ids]
    bias = head.bias[ids] if getattr(head, "bias", None) is not None else 0.0
    return lambda normed: answer_metric(normed, rows, bias)


def _verify_rows(result: Circuits, k: int, exact: bool, threshold: float) -> torch.Tensor:
    """The rows :func:`verify` ablates, True where a row ablates a component: bool Tensor of shape
    (n_rows, n_components), in this order: with ``exact`` the unablated row; every component, DLA's top ``k``,
    all but them; with routes the graph's top ``k`` and all but them; with ``exact`` one row per component."""
    n_components = len(result.components)
    top = torch.zeros(n_components, dtype=torch.bool)
    top[torch.as_tensor(_top_indices(result.component_values, k))] = True
    rows = [torch.ones(n_components, dtype=torch.bool), top, ~top]
    if result.route_heads is not None:
        by_routes = torch.zeros(n_components, dtype=torch.bool)
        by_routes[torch.as_tensor(_top_indices(result.route_values(threshold), k))] = True
        rows += [by_routes, ~by_routes]
    if exact:
        rows = [torch.zeros(n_components, dtype=torch.bool), *rows, *torch.eye(n_components, dtype=torch.bool)]
    return torch.stack(rows)


def _first_ablated(n_layers: int, masks: torch.Tensor) -> torch.Tensor:
    """Each row's first ablated block (0 for a row that ablates nothing): shape (n_rows,), on the CPU.

    ``masks`` as :func:`_verify_rows` gives them: every head block by block, then every FFN.
    """
    n_rows = masks.shape[0]
    heads = masks[:, : masks.shape[1] - n_layers].reshape(n_rows, n_layers, -1).any(-1)
    ablated = (heads | masks[:, masks.shape[1] - n_layers :]).cpu()
    return torch.where(ablated.any(-1), ablated.float().argmax(-1), 0)


def work(lm: LM, result: Circuits, *, k: int = 10, ablation: str = "mean", exact: bool = True,
         threshold: float = DEFAULT_THRESHOLD) -> int:
    """The size of :func:`verify`'s work, known before it starts (for an estimate), in token-blocks.

    Each ablated row runs the blocks from its first ablated one on at every
    position, the last block at the read position alone (its output
    projection and FFN; counted as one position); each recorded run (the
    unablated one, and the corrupted one with ``ablation="corrupted"``) every
    block at every position. Through nnsight every row runs every block at
    every position. Arguments as for :func:`verify`.
    """
    _check_result(lm, result)
    k = checks.whole("k", k, low=1, high=len(result.components))
    checks.choice("ablation", ablation, ABLATIONS)
    threshold = checks.positive("threshold", threshold)
    starts = _first_ablated(lm.n_layers, _verify_rows(result, k, exact, threshold))
    n_tokens, n_layers = result.n_tokens, lm.n_layers
    if lm.backend.traced:
        rows = len(starts) * n_layers * n_tokens
    else:
        rows = int((n_layers - 1 - starts).sum()) * n_tokens + len(starts)
    return rows + (1 + (ablation == "corrupted")) * n_layers * n_tokens


def verify(
    lm: LM,
    result: Circuits,
    *,
    k: int = 10,
    ablation: str = "mean",
    corrupted: str | None = None,
    exact: bool = True,
    threshold: float = DEFAULT_THRESHOLD,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Callable[[float, str], None] | None = None,
) -> Circuits:
    """Check DLA's top components by ablating them: how much of the effect do they carry?

    A component (a head, or a block's FFN) is ablated by replacing its output
    at every position (see :data:`ABLATIONS`): a head's output ``z_h`` before
    the output projection, an FFN's output after its own projection. All rows
    run in batched forward passes of the shared model: every head and FFN
    ablated, DLA's top ``k`` (by ``|DLA|``) ablated, all but them ablated,
    and with ``exact`` one row per component ablated alone. A result with
    routes has its graph's top ``k`` (:meth:`Circuits.route_values`) checked
    the same way, in two more rows. Through nnsight (a result made there) all
    of it is one session where the model runs, every row a full pass; only
    the metrics come back.

    Parameters
    ----------
    lm : LM
        The model that made ``result``.
    result : Circuits
        From :func:`circuits`.
    k : int, default 10
        How many of DLA's top components to ablate or keep.
    ablation : str, default "mean"
        A key of :data:`ABLATIONS`.
    corrupted : str, optional
        With ``ablation="corrupted"``, the prompt whose run supplies the
        replacements: the same number of tokens as ``result.tokens``
        (compared position by position).
    exact : bool, default True
        Also ablate each component alone (``n_layers * (n_heads + 1)`` rows)
        for its exact effect and the recall of the exact top ``k``.
    threshold : float, default 0.04
        With routes, where their graph is pruned before it ranks the parts.
    max_batch_bytes : int, default 256 MiB
        Rough memory bound of one batched pass; rows are chunked to fit.
    progress : callable, optional
        ``progress(fraction, message)`` after every batched pass.

    Returns
    -------
    Circuits
        ``result`` with ``ablation``, ``k``, ``all_ablated_value``,
        ``top_ablated_value``, ``top_kept_value`` and (with ``exact``)
        ``exact_heads``, ``exact_ffn`` filled; see ``recall``, ``kept_share``
        and ``ablated_share``; with routes also ``route_threshold``,
        ``route_top_ablated_value`` and ``route_top_kept_value`` (see
        ``route_recall``, ``route_kept_share``, ``route_ablated_share``).
    """
    _check_result(lm, result)
    n_components = len(result.components)
    k = checks.whole("k", k, low=1, high=n_components)
    checks.choice("ablation", ablation, ABLATIONS)
    max_batch_bytes = checks.whole("max_batch_bytes", max_batch_bytes, low=1)
    n_layers, n_heads = lm.n_layers, lm.n_heads
    routes = result.route_heads is not None
    if routes:
        threshold = checks.positive("threshold", threshold)
    masks = _verify_rows(result, k, exact, threshold)
    values, described = _ablated_values(lm, result, masks, ablation, corrupted, max_batch_bytes, progress)
    # A result verified before keeps nothing of its earlier settings.
    fields = {"exact_heads": None, "exact_ffn": None, "route_threshold": math.nan,
              "route_top_ablated_value": math.nan, "route_top_kept_value": math.nan}
    if routes:
        fields.update(route_threshold=threshold, route_top_ablated_value=float(values[3 + exact]),
                      route_top_kept_value=float(values[4 + exact]))
    if exact:
        unablated, values = values[0], values[1:]
        effects = unablated - values[5 if routes else 3:]
        fields.update(exact_heads=effects[: n_layers * n_heads].reshape(n_layers, n_heads),
                      exact_ffn=effects[n_layers * n_heads :])
    return dataclasses.replace(
        result, ablation=described, k=k, all_ablated_value=float(values[0]), top_ablated_value=float(values[1]),
        top_kept_value=float(values[2]), **fields,
    )
