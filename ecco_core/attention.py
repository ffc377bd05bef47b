"""Attention: what every head of every block looks at, and how much it moves.

Three views of block ``l``'s self-attention, for every family of the table:

- ``"raw"``: the weights ``alpha_ij`` of each head (query token ``i`` is the
  row, key token ``j`` the column; each row sums to 1). Under grouped-query
  attention (Llama, Qwen2) each *query* head has its own map, as the model's
  own ``output_attentions`` gives them.
- ``"value_weighted"``: ``||alpha_ij f_h(x_j)||`` (Kobayashi et al. 2020),
  with ``f_h(x) = (x W_V^h + b_V^h) W_O^h`` the value vector of head ``h``
  pushed through that head's slice of the output projection. A weight on a
  token whose transformed vector is small moves little: the classic trap is
  the large raw weight heads put on the first token or ``[SEP]`` as a no-op.
  Not normalised (units of the residual stream); see
  :meth:`Attention.normalised` for rows that sum to 1.
- ``"rollout"`` (Abnar & Zuidema 2020): heads averaged, the residual path
  added as ``0.5 A + 0.5 I``, then multiplied from block 0 upwards, so row
  ``i`` at block ``l`` says how much of token ``i``'s state after block ``l``
  traces back to each input token. One map per block (the head axis has one
  entry).

The weights come from the eager attention implementation: fused kernels
(SDPA, flash) never form them. The loaded model usually runs SDPA and is
shared by every session of the app, so it is never switched (see
:func:`eager_twin`). The pass keeps only the blocks asked for, one block's
``(n_heads, n_tokens, n_tokens)`` at a time, and stops after the last of them.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import _checks as checks
from .capture import Capture, captured_by
from .hooks import StopForward, hooked
from .layers import block_label, site_label
from .models import LM

# Largest result ec.attention builds (n_layers_kept x n_heads x n_tokens^2 float32) unless told otherwise:
# the default model's 30 x 9 heads fit up to about 700 tokens.
DEFAULT_MAX_BYTES = 512 * 2**20


@dataclass(frozen=True, eq=False)
class Attention:
    """Attention of some blocks of a model over one captured text.

    Attributes
    ----------
    scores : ndarray of shape (n_layers_kept, n_heads, n_tokens, n_tokens), float32
        ``scores[k, h, i, j]``: how much query token ``i`` takes from key token
        ``j`` in head ``h`` of block ``layers[k]`` (see :data:`METHODS`). For
        ``"rollout"`` the head axis has length 1. In a causal model entries
        with ``j > i`` are 0.
    layers : tuple of int, length n_layers_kept
        Block index (0 .. n_layers - 1) of each entry of ``scores``.
    heads : tuple of str, length n_heads
        Labels of the head axis: ``"head 0"`` ... or ``"mean of heads"`` (rollout).
    tokens : tuple of str, length n_tokens
    n_input : int
        Prompt length of the capture.
    method : str
        A key of :data:`METHODS`.
    model_name : str
    causal : bool
    """

    scores: np.ndarray
    layers: tuple[int, ...]
    heads: tuple[str, ...]
    tokens: tuple[str, ...]
    n_input: int
    method: str
    model_name: str
    causal: bool

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_heads(self) -> int:
        return len(self.heads)

    @property
    def method_entry(self) -> "AttentionMethod":
        """The :data:`METHODS` entry of ``method``: how figures name its scores and whether its rows sum to 1."""
        return METHODS[self.method]

    def map(self, layer: int, head: int = 0) -> np.ndarray:
        """The (n_tokens, n_tokens) map of block ``layer``, head ``head`` (rows = query tokens)."""
        if not (checks.is_whole(layer) and layer in self.layers):
            raise checks.invalid("layer", layer, "a computed block, " + checks.listing(self.layers))
        head = checks.whole("head", head, low=0, high=self.n_heads - 1)
        return self.scores[self.layers.index(layer), head]

    def normalised(self) -> np.ndarray:
        """``scores`` with each row divided by its sum (unchanged for raw and rollout, whose rows sum to 1)."""
        sums = self.scores.sum(axis=-1, keepdims=True)
        return np.divide(self.scores, sums, out=np.zeros_like(self.scores), where=sums > 0)

    def to_frame(self, layers=None) -> pd.DataFrame:
        """One row per (block, head, query token, key token) the query can see.

        Columns: ``layer`` (the block's attention, ``"block 2 attention"``,
        as patching names it), ``block``, ``head``, ``query_position``,
        ``query_token``, ``key_position``, ``key_token``, ``score``,
        ``normalised``. ``layers``
        (a block index or a list of them, all computed) keeps those blocks only:
        a long prompt's table has ``n_heads * n_tokens**2`` rows per block.
        """
        if layers is not None:
            return self._blocks(layers).to_frame()
        n_kept, n_heads, n_tokens, _ = self.scores.shape
        visible = np.tril(np.ones((n_tokens, n_tokens), bool)) if self.causal else np.ones((n_tokens, n_tokens), bool)
        queries, keys = np.nonzero(visible)
        n_pairs = len(queries)
        tokens = np.array(self.tokens, dtype=object)
        return pd.DataFrame(
            {
                "layer": np.repeat(self._layer_labels(), n_heads * n_pairs),
                "block": np.repeat(np.array(self.layers), n_heads * n_pairs),
                "head": np.tile(np.repeat(np.array(self.heads, dtype=object), n_pairs), n_kept),
                "query_position": np.tile(queries, n_kept * n_heads),
                "query_token": np.tile(tokens[queries], n_kept * n_heads),
                "key_position": np.tile(keys, n_kept * n_heads),
                "key_token": np.tile(tokens[keys], n_kept * n_heads),
                "score": self.scores[:, :, queries, keys].reshape(-1),
                "normalised": self.normalised()[:, :, queries, keys].reshape(-1),
            }
        )

    def head_summary(self) -> pd.DataFrame:
        """Where each head looks, on average over its query tokens: the classic head types at a glance.

        One row per (block, head); columns ``layer`` (``"block 2 attention"``),
        ``block``, ``head``, ``first_token``
        (mean share of a query's row on position 0: a BOS or ``[CLS]`` sink),
        ``previous_token`` (on position ``i - 1``, over queries 1 ..),
        ``same_token`` (on itself). Shares are of :meth:`normalised` rows.
        """
        shares = self.normalised()
        n_kept, n_heads, n_tokens, _ = shares.shape
        diagonal = np.diagonal(shares, axis1=-2, axis2=-1)
        previous = np.diagonal(shares, offset=-1, axis1=-2, axis2=-1)
        return pd.DataFrame(
            {
                "layer": np.repeat(self._layer_labels(), n_heads),
                "block": np.repeat(np.array(self.layers), n_heads),
                "head": np.tile(np.array(self.heads, dtype=object), n_kept),
                "first_token": shares[..., 0].mean(-1).reshape(-1),
                "previous_token": (previous.mean(-1) if n_tokens > 1 else np.zeros((n_kept, n_heads))).reshape(-1),
                "same_token": diagonal.mean(-1).reshape(-1),
            }
        )

    def _layer_labels(self) -> np.ndarray:
        """The label of each computed block's attention, in the layer vocabulary (``"block 2 attention"``)."""
        return np.array([site_label("attention", layer) for layer in self.layers], dtype=object)

    def thumbnails(self, size: int = 32) -> np.ndarray:
        """:meth:`normalised` maps max-pooled to at most ``size`` x ``size``, each scaled to its own peak.

        Returns
        -------
        ndarray of shape (n_layers_kept, n_heads, n_pixels, n_pixels), float32 in [0, 1]
            ``n_pixels = ceil(n_tokens / factor)`` with ``factor = ceil(n_tokens / size)``
            tokens per pixel; max-pooling keeps a thin diagonal visible at any length.
        """
        size = checks.whole("size", size, low=1)
        shares = self.normalised()
        factor = -(-self.n_tokens // size)
        n_pixels = -(-self.n_tokens // factor)
        pad = n_pixels * factor - self.n_tokens
        padded = np.pad(shares, [(0, 0), (0, 0), (0, pad), (0, pad)])
        pooled = padded.reshape(*shares.shape[:2], n_pixels, factor, n_pixels, factor).max(axis=(3, 5))
        peaks = pooled.max(axis=(2, 3), keepdims=True)
        return np.divide(pooled, peaks, out=np.zeros_like(pooled), where=peaks > 0)

    def to_html(self, layer: int | None = None) -> str:
        """The head view of block ``layer`` (the first computed by default) as self-contained HTML.

        Tokens in two columns joined by one line per head and pair, as strong
        as the attention (:meth:`normalised` rows); hovering a token shows its
        lines alone, clicking a head's swatch hides or shows it (see
        :func:`ecco_core.plots.attention_head_view_html`). Works offline: the
        script is inline. In a notebook the result displays itself.
        """
        from .plots import attention_head_view_html

        layer = self.layers[0] if layer is None else layer
        self.map(layer)  # names a block that was not computed
        k = self.layers.index(layer)
        return attention_head_view_html(
            self.normalised()[k], self.tokens, heads=self.heads, n_input=self.n_input,
            title=f"{block_label(layer)}, {self.method_entry.title}",
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def _blocks(self, layers) -> "Attention":
        """The same result for some of its blocks only."""
        chosen = [layers] if isinstance(layers, (int, np.integer)) else list(layers)
        for layer in chosen:
            self.map(layer)
        indices = [self.layers.index(layer) for layer in chosen]
        return dataclasses.replace(self, scores=self.scores[indices], layers=tuple(int(l) for l in chosen))


def attention(
    lm: LM,
    cap: Capture,
    method: str = "raw",
    *,
    layers=None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Attention:
    """Attention maps of ``cap``'s text in the blocks ``layers``, by ``method``.

    Parameters
    ----------
    lm : LM
        The model that made ``cap``.
    cap : Capture
    method : str, default "raw"
        A key of :data:`METHODS`: ``"raw"``, ``"value_weighted"`` or ``"rollout"``.
    layers : int, range, slice or sequence of int, optional
        Blocks to keep (0 .. n_layers - 1); all by default. The pass stops after
        the last one, so ``layers=[0]`` runs block 0 only: for long prompts ask
        for the blocks you look at.
    max_bytes : int, default :data:`DEFAULT_MAX_BYTES`
        Refuse (ValueError) to build a result larger than this.

    Returns
    -------
    Attention
        ``scores`` of shape (n_layers_kept, n_heads, n_tokens, n_tokens); one
        head entry for rollout.

    Examples
    --------
    >>> att = attention(lm, cap, layers=[0, 5])
    >>> att.map(5, head=2).sum(axis=-1)          # every row sums to 1
    """
    captured_by(lm, cap)
    lm.require_hooks("attention", "its weights need the eager attention implementation on the model's own "
                                  "modules; a served model computes attention with fused kernels that return none")
    entry = METHODS[checks.choice("method", method, METHODS)]
    kept = sorted(int(layer) for layer in checks.indices("layers", layers, lm.n_layers, "block"))
    max_bytes = checks.whole("max_bytes", max_bytes, low=1)
    n_heads = 1 if entry.one_map else lm.n_heads
    needed = len(kept) * block_bytes(lm, cap.n_tokens, method)
    if needed > max_bytes:
        raise checks.invalid(
            "max_bytes", max_bytes,
            f"at least {needed} ({needed / 2**20:.0f} MiB) for attention of {len(kept)} block(s) x {n_heads} "
            f"head(s) over {cap.n_tokens} tokens, or ask for fewer blocks with layers= (e.g. layers=[0])",
        )

    scores = np.zeros((len(kept), n_heads, cap.n_tokens, cap.n_tokens), np.float32)
    twin = eager_twin(lm)
    with hooked(_pass_hooks(twin, entry, kept, scores)), torch.inference_mode():
        twin.model(input_ids=torch.tensor(cap.token_ids[None], device=lm.device))
    return Attention(
        scores=scores,
        layers=tuple(kept),
        heads=("mean of heads",) if entry.one_map else tuple(f"head {h}" for h in range(n_heads)),
        tokens=cap.tokens,
        n_input=cap.n_input,
        method=method,
        model_name=lm.name,
        causal=lm.is_causal,
    )


def block_bytes(lm: LM, n_tokens: int, method: str = "raw") -> int:
    """Bytes that one block takes in an :class:`Attention` of ``method`` over ``n_tokens`` tokens: its
    ``(n_heads, n_tokens, n_tokens)`` float32 maps (one map for a method that averages the heads)."""
    entry = METHODS[checks.choice("method", method, METHODS)]
    n_tokens = checks.whole("n_tokens", n_tokens, low=1)
    return (1 if entry.one_map else lm.n_heads) * n_tokens**2 * 4


def blocks_that_fit(lm: LM, n_tokens: int, method: str = "raw", max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """How many blocks' maps :func:`attention` builds within ``max_bytes``: a window of blocks to ask for.

    Between 1 and ``lm.n_layers``: all blocks when they fit. When even one
    block is over ``max_bytes``, 1, which :func:`attention` then refuses with
    the size it needs.

    >>> blocks_that_fit(lm, 450, "raw", max_bytes=64 * 2**20)   # 30 blocks x 9 heads: 9 at a time
    9
    """
    max_bytes = checks.whole("max_bytes", max_bytes, low=1)
    return int(min(lm.n_layers, max(1, max_bytes // block_bytes(lm, n_tokens, method))))


def _pass_hooks(twin: LM, entry: "AttentionMethod", kept: list[int], scores: np.ndarray) -> dict:
    """The hooks of :func:`attention`'s pass: each block's attention (and value projection, when the method
    reads values) up to the last kept block, writing ``scores`` in place; the pass stops after that block."""
    slot = {layer: k for k, layer in enumerate(kept)}
    last = kept[-1]
    value_norms: dict[int, torch.Tensor] = {}
    previous: list[torch.Tensor] = []  # a chained method's result at the latest block only

    def on_values(layer):
        def hook(module, args, output):
            value_norms[layer] = _value_norms(twin, output[0], layer)
        return hook

    def on_attention(layer):
        def hook(module, args, output):
            if entry.chained or layer in slot:
                weights = output[1][0].float()  # (n_heads, n_tokens, n_tokens)
                result = entry.function(weights, value_norms.pop(layer, None), previous[0] if previous else None)
                previous[:] = [result] if entry.chained else []
                if layer in slot:
                    scores[slot[layer]] = result.float().cpu().numpy()
            if layer == last:
                raise StopForward  # the blocks above the last kept one are not needed
        return hook

    hooks = {}
    for layer, attention_module, values in zip(range(last + 1), twin.attention_modules, twin.value_projections):
        hooks[attention_module] = on_attention(layer)
        if entry.reads_values and (entry.chained or layer in slot):
            hooks[values] = on_values(layer)
    return hooks


def eager_twin(lm: LM) -> LM:
    """``lm`` over a private twin of ``lm.model`` that shares every weight but runs eager attention, with no hooks.

    Why a twin: only the eager implementation forms the weights, and which one
    runs is read from ``config._attn_implementation`` at every forward, by each
    attention module and by the mask builder (SDPA's causal mask may be None,
    eager's is a full additive mask). transformers 5.24 has no per-call switch,
    and switching the shared model (``set_attn_implementation``) would change
    what every other session's concurrent pass runs. Recomputing the weights
    from hooked queries and keys would re-implement each family's rotary
    embeddings, scaling and local windows (a second forward that can drift
    from Hugging Face's). The twin is a deep copy of the module tree whose
    memo maps every parameter and buffer to itself (no tensor is copied: about
    30 ms for the default model) and every hook dictionary to a fresh empty
    one: other sessions' hooks on the shared model never run here, and their
    registering or removing hooks meanwhile cannot race the copy. Its configs
    are copies, set to eager; the shared model is never written to.
    """
    model = lm.model
    memo = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    for module in model.modules():
        for name, value in vars(module).items():
            if name.endswith(("hooks", "hooks_with_kwargs", "hooks_always_called")) and isinstance(value, dict):
                memo[id(value)] = type(value)()
    view = copy.deepcopy(model, memo)
    configs = {id(c): c for c in (getattr(m, "config", None) for m in view.modules()) if c is not None}
    for config in configs.values():
        config._attn_implementation = "eager"
    return dataclasses.replace(lm, model=view)


def _value_norms(lm: LM, values_output: torch.Tensor, layer: int) -> torch.Tensor:
    """``||f_h(x_j)||`` for every query head ``h`` and token ``j``: shape (n_heads, n_tokens).

    ``values_output`` (n_tokens, width) is block ``layer``'s value projection's
    output for one sequence. The output projection's bias is added once to
    the sum of heads, so no head owns it and it is left out.
    """
    values = head_values(lm, values_output)
    moved = torch.einsum("thk,hkd->htd", values.float(), head_output_matrices(lm, layer).float())
    return moved.norm(dim=-1)


def head_values(lm: LM, values_output: torch.Tensor) -> torch.Tensor:
    """The value vector of every query head at every token: shape (n_tokens, n_heads, head_dim).

    ``values_output`` (n_tokens, width) is the value projection's output for
    one sequence; the values are cut out of it as the family's ``qkv_layout``
    says. Query head ``h`` reads key/value head ``h // (n_heads / n_kv_heads)``
    (Hugging Face's ``repeat_kv``).
    """
    n_heads, n_kv, head_dim = lm.n_heads, lm.n_kv_heads, lm.head_dim
    n_tokens = values_output.shape[0]
    layout = lm.spec.qkv_layout
    if layout == "fused":
        values = values_output[:, 2 * n_heads * head_dim :]
    elif layout == "fused_per_head":
        values = values_output.view(n_tokens, n_heads, 3 * head_dim)[..., 2 * head_dim :]
    else:
        values = values_output
    return values.reshape(n_tokens, n_kv, head_dim).repeat_interleave(n_heads // n_kv, dim=1)


def head_output_matrices(lm: LM, layer: int) -> torch.Tensor:
    """Each head's slice of block ``layer``'s attention output projection: shape (n_heads, head_dim, d_model).

    Head ``h``'s output ``z_h`` (head_dim,) enters the residual stream as
    ``z_h @ matrices[h]``; the projection's bias is not in it.
    """
    output = lm.output_projections[layer]
    # (n_heads * head_dim, d_model), the matrix x @ W applies: nn.Linear keeps it transposed, GPT-2's Conv1D not.
    matrix = output.weight.T if isinstance(output, nn.Linear) else output.weight
    return matrix.view(lm.n_heads, lm.head_dim, -1)


# ------------------------------------------------------------- the methods
class AttentionMethod(NamedTuple):
    """One entry of :data:`METHODS`: a :class:`~ecco_core._registry.Method`'s two fields, then what the pass needs.

    ``function(weights, value_norms, previous)`` turns one block's weights
    (n_heads, n_tokens, n_tokens), float32 tensor, into that block's scores
    (n_heads, n_tokens, n_tokens), or (1, n_tokens, n_tokens) when ``one_map``.
    ``value_norms`` is ``||f_h(x_j)||`` of shape (n_heads, n_tokens) when
    ``reads_values``, else None; ``previous`` is the function's own result at
    the block below when ``chained`` (None at block 0; a chained method runs
    at every block up to the last kept one), else None.
    """

    function: Callable
    description: str
    title: str  # short name, for titles and pickers
    score_name: str  # what a score is, for a colour bar and a tooltip
    reads_values: bool = False
    chained: bool = False
    one_map: bool = False  # one map per block (the head axis has one entry, "mean of heads")
    rows_sum_to_one: bool = True


def _raw(weights, value_norms, previous):
    return weights


def _value_weighted(weights, value_norms, previous):
    return weights * value_norms[:, None, :]


def _rollout(weights, value_norms, previous):
    n_tokens = weights.shape[-1]
    mixed = 0.5 * weights.double().mean(0) + 0.5 * torch.eye(n_tokens, dtype=torch.float64, device=weights.device)
    mixed = mixed / mixed.sum(-1, keepdim=True)
    return (mixed if previous is None else mixed @ previous[0])[None]


METHODS = {
    "raw": AttentionMethod(
        _raw, "attention weights alpha_ij of every head; each row sums to 1", "raw weights", "weight",
    ),
    "value_weighted": AttentionMethod(
        _value_weighted,
        "||alpha_ij f_h(x_j)|| (Kobayashi et al. 2020): the size of the vector head h moves from token j to "
        "token i, f_h = value projection then head h's slice of the output projection",
        "value-weighted", "\u2016\u03b1 f(x)\u2016", reads_values=True, rows_sum_to_one=False,
    ),
    "rollout": AttentionMethod(
        _rollout,
        "attention rollout (Abnar & Zuidema 2020): heads averaged, 0.5 A + 0.5 I for the residual, "
        "multiplied from block 0 up to each block; rows sum to 1",
        "rollout", "share", chained=True, one_map=True,
    ),
}
"""Attention methods by name: :class:`AttentionMethod` entries; adding one is a function and an entry."""
