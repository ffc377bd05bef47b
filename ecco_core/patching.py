"""Activation patching and causal tracing: which layer and position carries an answer.

Run the model on a *corrupted* input, restore one activation from the *clean*
run, and measure how much of the clean answer comes back (Meng et al. 2022,
"Locating and Editing Factual Associations in GPT", Figure 1; Heimersheim &
Nanda 2024, "How to use and interpret activation patching").

- ``clean`` and ``corrupted`` are two prompts of the same token length,
  compared position by position (the IOI pair "... John gave a drink to" /
  "... Mary gave a drink to"), or ``corrupted=Noise(positions)``: Meng et
  al.'s Gaussian noise on the embeddings of some positions of ``clean``.
- A *site* is where a block writes into the residual stream (:data:`SITES`):
  its output (``"residual"``), its self-attention output or its FFN output,
  each found through the family table (``FamilySpec.blocks``, ``attention``,
  ``ffn_projection``).
- The *effect* of restoring (site, layer, position) is normalised:
  ``(patched - corrupted) / (clean - corrupted)``, 0 = the corrupted run,
  1 = the clean run; the raw metric is kept beside it.

Exact patching is batched: every patch is one row of a batched forward pass
over copies of the corrupted input, with hooks on the real Hugging Face
modules that overwrite the patched rows, in chunks of at most
``max_batch_bytes``. In a causal model a batch starts at its patched position,
after the corrupted run's cached keys and values (the positions before it are
the corrupted run's; one copy, shared by the batch's rows). A patch whose clean and corrupted
activations are equal (in a causal model, every position before the first
corrupted token) cannot change anything and is not run: its value is the
corrupted run's. :func:`work` says how much is left to run before it starts.

Attribution patching (``approximate=True``; Nanda 2023, Syed et al. 2023)
estimates every effect at once to first order: ``(a_clean - a_corrupted) .
d metric / d a`` at the corrupted run, from one forward pass of the clean run
and one forward and backward pass of the corrupted run. The trap: it is a
linear approximation and can be far off where the metric saturates (a
probability near 0 or 1) or where a patch moves the input of a layer norm a
long way; compare it with the exact result (:func:`correlation`).

Gradients are taken with ``torch.autograd.grad`` with respect to activations
only; the shared model's parameters are never touched. Hooks are removed in a
``finally`` and act only on the calling thread's passes.

>>> import ecco_core as ec
>>> lm = ec.load()
>>> result = ec.patch(lm, "When Mary and John went to the store, John gave a drink to",
...                   "When Mary and John went to the store, Mary gave a drink to", "Mary", "John")
>>> result.effects.shape                              # (n_sites, n_layers, n_tokens)
(3, 30, 14)
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ._checks import choice, invalid, is_whole, listing, positive, whole
from ._heartbeat import batch_heartbeat
from .backward import items_per_report
from .hooks import by_token, hooked, on_first
from .layers import site_label
from .models import LM
from .readouts import Selection, check_traced, reader
from .tokens import check_text, encode_prompt, model_text, read_position, token_strings, word_id

#: Where a block writes into the residual stream, by name.
SITES = {
    "residual": "the block's output: the residual stream after the block",
    "attention": "the block's self-attention output, before it is added to the residual stream "
    "(BERT-style encoders: after their add and norm)",
    "ffn": "the block's FFN output (its output projection's output), before it is added to the residual stream",
}

#: What is measured on each run at the answer's position, by name: the readouts of
#: :data:`ecco_core.readouts.READOUTS` that compare between runs (``shift_invariant``), read live; the foil's score
#: is subtracted for one that ``needs_foil``.
METRICS = Selection(lambda entry: entry.shift_invariant)
#: The metric :func:`patch` measures when none is given: with a foil, then without one (Meng et al.'s).
DEFAULT_METRICS = ("logit_diff", "prob")

DEFAULT_BATCH_BYTES = 256 * 2**20
MAX_WINDOW = 64
#: Most noise draws one run averages (Meng et al. use 10).
MAX_SAMPLES = 100


@dataclass(frozen=True)
class Noise:
    """Meng et al.'s corruption: Gaussian noise on the token embeddings of some positions of the clean prompt.

    The noise has standard deviation ``scale`` times the standard deviation of
    the entries of the model's embedding matrix (Meng et al. measure it over
    the embeddings of a body of subjects; the matrix is the offline stand-in)
    and is drawn from a private generator seeded with ``seed``: the same seed
    gives the same corruption. Other positions are left untouched.

    Meng et al. average every run over several draws of the noise (10):
    with ``samples=n``, :func:`patch` runs each of the draws seeded ``seed``
    to ``seed + n - 1`` (:meth:`draws`) and averages the metric of the
    corrupted and of every patched run over them before normalising; each
    draw's own effects are kept (``Patching.draw_effects``), so one lucky
    draw shows as such. One draw costs one exact patching run.

    Parameters
    ----------
    positions : sequence of int
        Token positions to corrupt (0 = the first token, special tokens included).
    scale : float, default 3.0
    seed : int, default 0
    samples : int, default 1
        Noise draws averaged, 1 to :data:`MAX_SAMPLES`.
    """

    positions: tuple[int, ...]
    scale: float = 3.0
    seed: int = 0
    samples: int = 1

    def __post_init__(self):
        positions = (self.positions,) if is_whole(self.positions) else self.positions
        allowed = "one or more distinct token positions (whole numbers >= 0)"
        if isinstance(positions, (str, bytes)) or not hasattr(positions, "__iter__"):
            raise invalid("Noise positions", self.positions, allowed, TypeError)
        positions = tuple(positions)
        if not all(is_whole(p) for p in positions):
            raise invalid("Noise positions", self.positions, allowed, TypeError)
        if not positions or min(positions) < 0 or len(set(positions)) != len(positions):
            raise invalid("Noise positions", self.positions, allowed)
        object.__setattr__(self, "positions", tuple(sorted(int(p) for p in positions)))
        object.__setattr__(self, "scale", positive("Noise scale", self.scale))
        object.__setattr__(self, "seed", whole("Noise seed", self.seed))
        object.__setattr__(self, "samples", whole("Noise samples", self.samples, low=1, high=MAX_SAMPLES))

    def draws(self) -> tuple[Noise, ...]:
        """One single-draw Noise per sample, seeded ``seed``, ``seed + 1``, ...: what :func:`patch` averages."""
        return tuple(Noise(self.positions, self.scale, self.seed + i) for i in range(self.samples))

    def corrupt(self, lm: LM, embeds: torch.Tensor) -> torch.Tensor:
        """A copy of ``embeds`` (1, n_tokens, d_model), token embeddings, with the noise added at ``positions``
        (the first draw's, seeded ``seed``)."""
        weight = lm.embeddings.weight.detach()
        generator = torch.Generator(device="cpu").manual_seed(int(self.seed))
        draw = torch.randn((len(self.positions), embeds.shape[-1]), generator=generator, dtype=torch.float32)
        noise = draw * (self.scale * float(weight.float().std()))
        corrupted = embeds.detach().clone()
        corrupted[0, list(self.positions)] += noise.to(device=embeds.device, dtype=embeds.dtype)
        return corrupted

    def describe(self, tokens) -> str:
        corrupted = ", ".join(f"{p} {tokens[p]!r}" for p in self.positions)
        seeds = (f"seed {self.seed}" if self.samples == 1
                 else f"seeds {self.seed} to {self.seed + self.samples - 1}, averaged")
        return f"Gaussian noise ({self.scale:g} x the embeddings' std, {seeds}) on positions {corrupted}"


@dataclass(frozen=True, eq=False)
class Patching:
    """Effects of restoring clean activations into the corrupted run, at every (site, layer, position).

    Attributes
    ----------
    effects : ndarray of shape (n_sites, n_layers, n_tokens), float64
        ``(values - corrupted_value) / (clean_value - corrupted_value)``:
        0 = the corrupted run, 1 = the clean run.
    values : ndarray of shape (n_sites, n_layers, n_tokens), float64
        The raw metric of each patched run (estimated to first order when
        ``approximate``).
    clean_value, corrupted_value : float
        The metric on the clean and on the corrupted run.
    sites : tuple of str
        Names from :data:`SITES`, in the order of ``effects``' first axis.
    metric : str
        A name from :data:`METRICS`.
    answer, foil : str
        Display text of the answer token and of the foil token (``None`` without foil).
    answer_id, foil_id : int
        Their token ids (``foil_id`` is -1 without foil).
    tokens, corrupted_tokens : tuple of str, length n_tokens
        The clean and the corrupted input (with noise, the clean tokens).
    read_position : int
        Where the answer is read: the last token (causal), the mask (masked).
    window : int
        Layers restored together per patch, centred on the row's layer as in
        ROME: ``max(0, layer - window // 2)`` to ``min(n_layers, layer + ceil(window / 2)) - 1``.
    approximate : bool
        True for attribution patching (first-order estimates).
    corruption : str
        What the corrupted run was, in words.
    corrupted_positions : tuple of int
        The positions whose token differs (prompts) or that got noise.
    top_ids, top_probs : ndarray of shape (n_sites, n_layers, n_tokens, k)
        The patched run's top predictions at ``read_position`` (k = 0 when
        ``approximate``: no patched run exists).
    top_tokens : tuple (n_sites) of tuple (n_layers) of tuple (n_tokens) of tuple (k) of str
    clean_top, corrupted_top : tuple of (str, float)
        The clean and corrupted runs' top predictions with their probabilities.
    patches_run : int
        Patched rows actually computed (the others provably equal the corrupted run).
    model_name : str
    notes : tuple of str
    draw_effects : ndarray of shape (n_samples, n_sites, n_layers, n_tokens) or None
        With ``Noise(samples=n)``, n > 1: each draw's effects alone (as
        ``patch`` with that draw gives them), beside the averaged ``effects``;
        None otherwise. ``values``, ``corrupted_value`` and ``effects`` are then
        the averages over the draws, the top predictions the first draw's.
    """

    effects: np.ndarray
    values: np.ndarray
    clean_value: float
    corrupted_value: float
    sites: tuple[str, ...]
    metric: str
    answer: str
    foil: str | None
    answer_id: int
    foil_id: int
    tokens: tuple[str, ...]
    corrupted_tokens: tuple[str, ...]
    read_position: int
    window: int
    approximate: bool
    corruption: str
    corrupted_positions: tuple[int, ...]
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_tokens: tuple
    clean_top: tuple
    corrupted_top: tuple
    patches_run: int
    model_name: str
    notes: tuple[str, ...] = ()
    draw_effects: np.ndarray | None = None

    @property
    def n_layers(self) -> int:
        return self.effects.shape[1]

    @property
    def n_tokens(self) -> int:
        return self.effects.shape[2]

    @property
    def method(self) -> str:
        return "attribution patching" if self.approximate else "activation patching"

    def site(self, name: str) -> np.ndarray:
        """Effects of one site: shape (n_layers, n_tokens)."""
        return self.effects[self.sites.index(choice("site", name, self.sites))]

    def restored_layers(self, layer: int) -> range:
        """The blocks restored together by the patch of row ``layer`` (see ``window``)."""
        return window_layers(layer, self.window, self.n_layers)

    def restored_label(self, site: str, layer: int) -> str:
        """What the patch of row ``layer`` restores: ``"block 3 FFN"``, ``"block 1 FFN to block 5 FFN"``."""
        blocks = self.restored_layers(layer)
        first, last = site_label(site, blocks[0]), site_label(site, blocks[-1])
        return first if first == last else f"{first} to {last}"

    def predictions_frame(self, site: str, position: int, layer: int) -> pd.DataFrame:
        """The patched run of one cell beside the clean and corrupted runs: their top predictions, rank by rank.

        Columns: ``rank`` (1 = most likely), ``patched run`` and ``p (patched)``
        (restoring ``site`` of row ``layer`` at ``position``), ``clean run``,
        ``corrupted run``; tokens as tables show them (whitespace visible). Empty
        for attribution patching, which runs no patched model.
        """
        from .text import display_token

        index = self.sites.index(choice("site", site, self.sites))
        position = whole("position", position, low=0, high=self.n_tokens - 1)
        layer = whole("layer", layer, low=0, high=self.n_layers - 1)
        k = self.top_ids.shape[-1]
        return pd.DataFrame({
            "rank": range(1, k + 1),
            "patched run": [display_token(token) for token in self.top_tokens[index][layer][position]] if k else [],
            "p (patched)": self.top_probs[index, layer, position],
            "clean run": [display_token(token) for token, _ in self.clean_top[:k]],
            "corrupted run": [display_token(token) for token, _ in self.corrupted_top[:k]],
        })

    def to_frame(self) -> pd.DataFrame:
        """One row per (site, layer, position): effect, raw value, what was restored and the patched run's top token.

        Columns: site, layer (``"block 3 FFN"``), block, restored (the blocks of
        the window), position, token, corrupted_token, effect, value, metric,
        method; with several noise draws effect_draw_std (the spread of the
        draws' own effects) and n_draws; with exact patching top_prediction,
        top_probability, top_predictions (the k most likely tokens).
        """
        sites, layers, positions = np.meshgrid(
            np.arange(len(self.sites)), np.arange(self.n_layers), np.arange(self.n_tokens), indexing="ij"
        )
        sites, layers, positions = sites.ravel(), layers.ravel(), positions.ravel()

        frame = pd.DataFrame(
            {
                "site": [self.sites[s] for s in sites],
                "layer": [site_label(self.sites[s], layer) for s, layer in zip(sites, layers)],
                "block": layers,
                "restored": [self.restored_label(self.sites[s], layer) for s, layer in zip(sites, layers)],
                "position": positions,
                "token": [self.tokens[p] for p in positions],
                "corrupted_token": [self.corrupted_tokens[p] for p in positions],
                "effect": self.effects.ravel(),
                "value": self.values.ravel(),
                "metric": self.metric,
                "method": self.method,
            }
        )
        if self.draw_effects is not None:
            frame["effect_draw_std"] = self.draw_effects.std(axis=0, ddof=1).ravel()
            frame["n_draws"] = len(self.draw_effects)
        if self.top_ids.shape[-1]:
            frame["top_prediction"] = [self.top_tokens[s][l][p][0] for s, l, p in zip(sites, layers, positions)]
            frame["top_probability"] = self.top_probs[..., 0].ravel()
            frame["top_predictions"] = [list(self.top_tokens[s][l][p]) for s, l, p in zip(sites, layers, positions)]
        return frame


def window_layers(layer: int, window: int, n_layers: int) -> range:
    """Blocks restored together around ``layer`` by a window of ``window`` layers (ROME's centring)."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


# ------------------------------------------------------------ inputs
@dataclass(frozen=True, eq=False)
class _Runs:
    """The two inputs, as embeddings (1, n_tokens, d_model), and where and what is read.

    Through nnsight (``lm.backend.traced``) the embeddings are made where the
    model runs, from ``clean_ids`` and ``corrupted_ids`` (None with noise), and
    are None here.
    """

    clean_embeds: torch.Tensor | None
    corrupted_embeds: torch.Tensor | None
    tokens: tuple[str, ...]
    corrupted_tokens: tuple[str, ...]
    corruption: str
    corrupted_positions: tuple[int, ...]
    read_position: int
    answer_id: int
    foil_id: int
    notes: tuple[str, ...]
    clean_ids: tuple[int, ...] = ()
    corrupted_ids: tuple[int, ...] | None = None


def _prepare(lm: LM, clean, corrupted, answer, foil) -> _Runs:
    lm.require_head()
    check_text(clean, "clean")
    clean_ids, read_at = read_position(lm, clean)
    tokens = token_strings(lm.tokenizer, clean_ids)
    embed = lm.embeddings
    here = not lm.backend.traced  # else the embeddings are made where the model runs
    corrupted_ids = None
    with torch.no_grad():
        clean_embeds = embed(torch.tensor([clean_ids], device=lm.device)) if here else None
    if isinstance(corrupted, Noise):
        outside = [p for p in corrupted.positions if p >= len(clean_ids)]
        if outside:
            raise ValueError(
                f"Noise positions {outside} are outside the clean prompt's {len(clean_ids)} tokens "
                f"(positions 0 to {len(clean_ids) - 1}, ending {_excerpt(tokens, len(tokens))})"
            )
        corrupted_embeds = corrupted.corrupt(lm, clean_embeds) if here else None
        corrupted_tokens, corruption = tokens, corrupted.describe(tokens)
        corrupted_positions = corrupted.positions
    elif isinstance(corrupted, str):
        corrupted_ids = encode_prompt(lm, model_text(lm, corrupted), argument="corrupted")
        corrupted_tokens = token_strings(lm.tokenizer, corrupted_ids)
        if len(corrupted_ids) != len(clean_ids):
            first = next((p for p, (a, b) in enumerate(zip(clean_ids, corrupted_ids)) if a != b),
                         min(len(clean_ids), len(corrupted_ids)))
            raise ValueError(
                "the clean and corrupted prompts must have the same number of tokens, to be compared position by "
                f"position; the clean prompt is {len(clean_ids)} tokens, the corrupted prompt "
                f"{len(corrupted_ids)}; they first differ at position {first}: clean {_excerpt(tokens, first)}, "
                f"corrupted {_excerpt(corrupted_tokens, first)}"
            )
        if corrupted_ids == clean_ids:
            raise ValueError("the corrupted prompt is the same text as the clean one: there is nothing to restore")
        if not lm.is_causal and corrupted_ids[read_at] != clean_ids[read_at]:
            raise ValueError(
                f"the corrupted prompt must hold its {lm.tokenizer.mask_token} at the clean prompt's position "
                f"{read_at}; there it has {_excerpt(corrupted_tokens, read_at)}"
            )
        with torch.no_grad():
            corrupted_embeds = embed(torch.tensor([corrupted_ids], device=lm.device)) if here else None
        corruption = f"the corrupted prompt {corrupted!r}"
        corrupted_positions = tuple(p for p, (a, b) in enumerate(zip(clean_ids, corrupted_ids)) if a != b)
    else:
        raise TypeError(
            f"corrupted must be a prompt (str) or ec.Noise(positions), got {type(corrupted).__name__}"
        )
    answer_id, notes = word_id(lm, clean, answer, "answer")
    foil_id = -1
    if foil is not None:
        foil_id, foil_notes = word_id(lm, clean, foil, "foil")
        notes += foil_notes
        if foil_id == answer_id:
            raise ValueError(
                f"answer {answer!r} and foil {foil!r} are the same token "
                f"{token_strings(lm.tokenizer, [answer_id])[0]!r}; the foil must be another word"
            )
    return _Runs(clean_embeds, corrupted_embeds, tokens, corrupted_tokens, corruption, corrupted_positions,
                 read_at, answer_id, foil_id, tuple(notes), tuple(clean_ids),
                 None if corrupted_ids is None else tuple(corrupted_ids))


def _excerpt(tokens, position: int, around: int = 3) -> str:
    """The tokens from ``around`` before ``position`` to ``around`` after it, "…" for the rest: a long
    prompt's error shows where it is wrong, not every token (``[…, ' a', ' drink', ' to', …]``)."""
    start, stop = max(0, position - around), min(len(tokens), position + around + 1)
    return "[" + ", ".join(["…"] * (start > 0) + [repr(token) for token in tokens[start:stop]]
                           + ["…"] * (stop < len(tokens))) + "]"


def _metric_function(metric: str, answer_id: int, foil_id: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits (batch, vocab_size) -> the metric (batch,), float64; the foil counts where the metric needs one."""
    return reader(metric, answer_id, foil_id if METRICS[metric].needs_foil else None)


# ------------------------------------------------------------ hooks
def _site_hooks(lm: LM, hooks: dict[tuple[str, int], Callable]) -> dict:
    """:func:`~ecco_core.hooks.hooked`'s hooks for ``{(site, layer): hook}``, each hook called as
    ``hook(output_tensor)`` on its module's output and free to return a replacement."""
    modules = {site: lm.site_modules(site) for site in {site for site, _ in hooks}}
    return {modules[site][layer]: on_first(hook) for (site, layer), hook in hooks.items()}


def _logits(lm: LM, embeds: torch.Tensor, read_position: int, *, past=None, prefix: int = 0):
    """The model's logits at ``read_position`` for a batch of input embeddings, and its key/value cache.

    Parameters
    ----------
    embeds : Tensor of shape (batch, n_tokens - prefix, d_model)
        The input embeddings from position ``prefix`` on.
    past : transformers Cache, optional
        The keys and values of the first ``prefix`` positions (causal models).

    Returns
    -------
    logits : Tensor of shape (batch, vocab_size)
    cache : transformers Cache or None
        Keys and values of every position (causal models).
    """
    cache_arguments = {"cache": past, "use_cache": True} if lm.is_causal else {}
    output = lm.model.base_model(inputs_embeds=embeds, **cache_arguments)
    logits = lm.apply_head(output.last_hidden_state[:, read_position - prefix]).float()
    return logits, getattr(output, "cache", None)


def _recorded_run(lm: LM, embeds: torch.Tensor, read_position: int, sites,
                  against: dict | None = None) -> tuple[torch.Tensor, dict, object]:
    """One pass of ``embeds`` (1, n_tokens, d_model): logits at the read position (1, vocab_size), the output of
    every (site, layer) as produced (OPT's FFN output is flattened to (n_tokens, d_model)), the key/value cache.

    With ``against`` (another run's record) each (site, layer) keeps instead
    where its output differs from that run's, a bool Tensor of shape
    (n_tokens,): all that exact patching reads of the corrupted run, whose
    outputs would otherwise stay resident beside the clean ones through every
    patched batch (0.1 GB at 512 tokens for the causal default).
    """
    record = {}

    def keep(key):
        def hook(tensor):
            if against is None:
                record[key] = tensor
            else:
                record[key] = (by_token(tensor, 1)[0] != by_token(against[key], 1)[0]).any(-1)
        return hook

    keys = [(site, layer) for site in sites for layer in range(lm.n_layers)]
    with hooked(_site_hooks(lm, {key: keep(key) for key in keys})):
        logits, cache = _logits(lm, embeds, read_position)
    return logits, record, cache


# ------------------------------------------------------------ exact patching
def row_bytes(lm: LM, n_new: int, n_tokens: int) -> int:
    """Rough peak memory of one row of a patched batch of ``n_new`` new positions after a cached prefix:
    a block's activations, attention scores, a copy of the cache, logits. The rows now share one copy of the
    prefix's keys and values (:func:`_shared_prefix`), so this overestimates a row after a long prefix; it is
    kept as it was, so that batches, and so their results, stay the same."""
    width = 4 * lm.d_model + 3 * lm.d_ff + lm.n_heads * n_tokens
    cache = 2 * lm.n_layers * lm.n_kv_heads * lm.head_dim * n_tokens
    return 4 * (n_new * width + cache + 2 * lm.config.vocab_size)


def _chunks(lm: LM, patches, to_run: list[int], n_tokens: int, max_batch_bytes: int) -> list[tuple[int, list[int]]]:
    """Batches of patch indices that share a prefix, each within ``max_batch_bytes``: (prefix, indices).

    In a causal model every position before a patch's first patched position
    is the same as in the corrupted run, so a batch starts there, after the
    corrupted run's cached keys and values (its ``prefix``).
    """
    by_prefix: dict[int, list[int]] = {}
    for index in to_run:
        prefix = min(position for _, _, position in patches[index]) if lm.is_causal else 0
        by_prefix.setdefault(prefix, []).append(index)
    chunks = []
    for prefix, indices in sorted(by_prefix.items()):
        # Within the memory bound and a progress report's work: progress comes after every batch.
        rows = min(max(1, max_batch_bytes // row_bytes(lm, n_tokens - prefix, n_tokens)),
                   items_per_report(lm, (n_tokens - prefix) * lm.n_layers, len(indices)))
        chunks += [(prefix, indices[start : start + rows]) for start in range(0, len(indices), rows)]
    return chunks


def _run_patches(
    lm: LM,
    runs: _Runs,
    clean: dict,
    differs: dict,
    corrupted_logits: torch.Tensor,
    corrupted_cache,
    patches: list[list[tuple[str, int, int]]],
    metric_of: Callable,
    k: int,
    max_batch_bytes: int,
    progress: Callable[[float, str], None] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The metric and top-k predictions of the corrupted run with each patch's clean activations restored.

    Parameters
    ----------
    clean : dict (site, layer) -> Tensor
        The site outputs of the clean run.
    differs : dict (site, layer) -> bool Tensor of shape (n_tokens,)
        Where the corrupted run's site outputs differ from the clean ones
        (:func:`_recorded_run` with ``against``).
    corrupted_logits : Tensor of shape (1, vocab_size)
        The corrupted run's logits at the read position.
    corrupted_cache : transformers Cache or None
        The corrupted run's keys and values (causal models).
    patches : list of list of (site, layer, position)
        One patched run per entry; an empty entry is the corrupted run.

    Returns
    -------
    values : ndarray of shape (n_patches,), float64
    top_ids, top_probs : ndarray of shape (n_patches, k)
    run : int
        Patches computed; the others restore activations equal to the corrupted ones.
    """
    n_tokens = runs.corrupted_embeds.shape[1]

    def changes(patch):
        return any(bool(differs[s, l][p]) for s, l, p in patch)

    to_run = [index for index, patch in enumerate(patches) if changes(patch)]
    done = 0
    with torch.inference_mode():
        corrupted_top = torch.softmax(corrupted_logits, -1).topk(k, dim=-1)
        values = np.full(len(patches), float(metric_of(corrupted_logits)[0]))
        top_ids = np.tile(corrupted_top.indices.cpu().numpy(), (len(patches), 1))
        top_probs = np.tile(corrupted_top.values.cpu().numpy(), (len(patches), 1))
        for prefix, chunk in _chunks(lm, patches, to_run, n_tokens, max_batch_bytes):
            with batch_heartbeat(progress, done / len(to_run), f"{done} of {len(to_run)} patched runs, "
                                 f"{len(chunk)} running"):
                logits = _patched_logits(lm, runs, clean, [patches[i] for i in chunk], prefix, corrupted_cache)
            top = torch.softmax(logits, -1).topk(k, dim=-1)
            values[chunk] = metric_of(logits).cpu().numpy()
            top_ids[chunk] = top.indices.cpu().numpy()
            top_probs[chunk] = top.values.cpu().numpy()
            done += len(chunk)
            if progress is not None:
                progress(done / len(to_run), f"{done} of {len(to_run)} patched runs")
    return values, top_ids, top_probs, len(to_run)


def _patched_logits(
    lm: LM, runs: _Runs, clean: dict, patches: list[list[tuple[str, int, int]]], prefix: int, corrupted_cache
) -> torch.Tensor:
    """One batched pass: row r is the corrupted input with ``patches[r]`` restored. Returns (n_rows, vocab_size).

    The pass starts at position ``prefix`` (no patch touches an earlier one)
    after a copy of the corrupted run's cached keys and values there.
    """
    batch = len(patches)
    targets: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for row, patch in enumerate(patches):
        for site, layer, position in patch:
            rows, positions = targets.setdefault((site, layer), ([], []))
            rows.append(row)
            positions.append(position)

    def restore(key, rows, positions):
        values = by_token(clean[key], 1)[0, positions]
        rows = torch.tensor(rows, device=values.device)
        positions = torch.tensor(positions, device=values.device) - prefix

        def hook(tensor):
            patched = by_token(tensor, batch).clone()
            patched[rows.to(tensor.device), positions.to(tensor.device)] = values.to(tensor.device)
            return patched.view(tensor.shape)
        return hook

    past = _shared_prefix(corrupted_cache, prefix, batch) if prefix else None
    hooks = {key: restore(key, rows, positions) for key, (rows, positions) in targets.items()}
    with hooked(_site_hooks(lm, hooks)):
        embeds = runs.corrupted_embeds[:, prefix:].expand(batch, -1, -1)
        return _logits(lm, embeds, runs.read_position, past=past, prefix=prefix)[0]


def _shared_prefix(cache, prefix: int, batch: int):
    """The first ``prefix`` positions of ``cache`` (the corrupted run's keys and values) for ``batch`` rows that share
    them: one copy, each layer's keys and values broadcast over the rows (no row's own copy).

    Each layer's ``update`` returns what it always does (the prefix and the
    batch's new keys and values, concatenated) but keeps only the prefix, so
    that concatenation is freed once that layer's attention has read it. A
    copy per row, kept by every layer to the end of the pass, was most of a
    batch's memory: 22 MiB a row after 511 tokens for the causal default, its
    batches of 11 rows +250 MiB each, twice over with two sessions' runs at once.
    """
    past = copy.deepcopy(cache)
    past.crop(prefix - past.get_seq_length())  # a negative count: the tokens to drop from the end
    for layer in past.layers:
        if getattr(layer, "keys", None) is not None:
            layer.keys = layer.keys.expand(batch, *layer.keys.shape[1:])
            layer.values = layer.values.expand(batch, *layer.values.shape[1:])

        def update(*args, layer=layer, grown=layer.update, **kwargs):
            kept = dict(vars(layer))
            try:
                return grown(*args, **kwargs)
            finally:
                vars(layer).update(kept)

        layer.update = update
    return past


def _both_runs(lm: LM, runs: _Runs, sites, metric_of: Callable, approximate: bool) -> tuple:
    """The clean and corrupted runs, recorded at ``sites``: clean logits and site outputs, corrupted logits
    (detached), site outputs (when ``approximate``; else where they differ from the clean ones, all that exact
    patching reads of them) and key/value cache, and the corrupted metric (in the autograd graph of the corrupted
    run's embeddings when ``approximate``)."""
    with torch.inference_mode():
        clean_logits, clean_record, _ = _recorded_run(lm, runs.clean_embeds, runs.read_position, sites)
    # Attribution patching differentiates the corrupted run: its embeddings are the graph's only leaf.
    with torch.enable_grad() if approximate else torch.inference_mode():
        embeds = runs.corrupted_embeds.detach().clone().requires_grad_(approximate)
        corrupted_logits, corrupted_record, corrupted_cache = _recorded_run(
            lm, embeds, runs.read_position, sites, against=None if approximate else clean_record)
        corrupted_metric = metric_of(corrupted_logits)[0]
    return clean_logits, clean_record, corrupted_logits.detach(), corrupted_record, corrupted_cache, corrupted_metric


def _every_patch(lm: LM, runs: _Runs, sites, window: int, recorded: tuple, metric_of: Callable, k: int,
                 max_batch_bytes: int, progress) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Exact patching of every (site, layer, position), ``window`` layers at a time.

    ``recorded`` is what :func:`_run_patches` reads of the two runs: the clean
    site outputs, where the corrupted ones differ from them, the corrupted
    logits and key/value cache.
    Returns values of shape (n_sites, n_layers, n_tokens), top ids and
    probabilities of shape (n_sites, n_layers, n_tokens, k), and the patches run.
    """
    n_layers, n_tokens = lm.n_layers, runs.clean_embeds.shape[1]
    patches = _every_window(lm, sites, window, n_tokens)
    values, top_ids, top_probs, patches_run = _run_patches(
        lm, runs, *recorded, patches, metric_of, k, max_batch_bytes, progress
    )
    shape = (len(sites), n_layers, n_tokens)
    return values.reshape(shape), top_ids.reshape(*shape, k), top_probs.reshape(*shape, k), patches_run


# ------------------------------------------------------------ attribution patching
def _attribution(lm: LM, sites, clean: dict, corrupted: dict, corrupted_value: torch.Tensor) -> np.ndarray:
    """First-order estimate of every (site, layer, position) patch: (a_clean - a_corrupted) . d metric / d a.

    ``corrupted`` holds the corrupted run's site outputs, still in the autograd
    graph of ``corrupted_value`` (the metric, a 0-d tensor). Returns the
    estimated change of the metric, shape (n_sites, n_layers, n_tokens).
    """
    keys = [(site, layer) for site in sites for layer in range(lm.n_layers)]
    gradients = torch.autograd.grad(corrupted_value, [corrupted[key] for key in keys], allow_unused=True)
    estimates = np.zeros((len(sites), lm.n_layers, by_token(clean[keys[0]], 1).shape[1]))
    for key, gradient in zip(keys, gradients):
        if gradient is None:  # this activation does not reach the read position
            continue
        delta = by_token(clean[key], 1)[0] - by_token(corrupted[key].detach(), 1)[0]
        estimate = (delta.double() * by_token(gradient, 1)[0].double()).sum(-1)
        estimates[sites.index(key[0]), key[1]] = estimate.cpu().numpy()
    return estimates


# ------------------------------------------------------------ through nnsight
def _traced(lm: LM, runs: _Runs, corrupted, sites, metric: str, patches, k: int, max_batch_bytes: int,
            approximate: bool) -> dict:
    """``patches`` (or attribution patching) through nnsight: one session, see :func:`ecco_core.backends.sessions.patch`."""
    from .backends import sessions

    check_traced(lm.backend, "metric", metric, METRICS)
    n_tokens = len(runs.clean_ids)
    return sessions.patch(
        lm, clean_ids=list(runs.clean_ids), corrupted_ids=None if runs.corrupted_ids is None else list(runs.corrupted_ids),
        noise=(list(corrupted.positions), corrupted.scale, corrupted.seed) if isinstance(corrupted, Noise) else None,
        read_position=runs.read_position, answer_id=runs.answer_id, foil_id=runs.foil_id, metric=metric,
        sites=tuple(sites), patches=patches, rows_per_batch=max(1, max_batch_bytes // row_bytes(lm, n_tokens, n_tokens)),
        k=k, approximate=approximate,
    )


def _every_window(lm: LM, sites, window: int, n_tokens: int) -> list:
    """One patch per (site, layer, position), restoring ``window`` layers around the layer: :func:`patch`'s order."""
    return [
        [(site, block, position) for block in window_layers(layer, window, lm.n_layers)]
        for site in sites for layer in range(lm.n_layers) for position in range(n_tokens)
    ]


# ------------------------------------------------------------ validation
def _check_sites(sites) -> tuple[str, ...]:
    allowed = f"one or more distinct sites, each {listing(SITES)}"
    if isinstance(sites, str):
        sites = (sites,)
    if not hasattr(sites, "__iter__"):
        raise invalid("sites", sites, allowed, TypeError)
    sites = tuple(sites)
    if not sites or any(site not in SITES for site in sites) or len(set(sites)) != len(sites):
        raise invalid("sites", sites, allowed)
    return sites


def default_metric_label() -> str:
    """The metric measured when none is given, in a picker's words: ``"logit difference with a foil, else
    probability"`` (:data:`DEFAULT_METRICS`, by their readouts' labels)."""
    with_foil, without = (METRICS[name].label for name in DEFAULT_METRICS)
    return f"{with_foil} with a foil, else {without}"


def _check_metric(metric, foil) -> str:
    if metric is None:
        return DEFAULT_METRICS[0] if foil is not None else DEFAULT_METRICS[1]
    choice("metric", metric, METRICS)
    if METRICS[metric].needs_foil and foil is None:
        raise ValueError(f"metric {metric!r} needs a foil ({METRICS[metric].description}); give foil=")
    return metric


def _check_options(sites, metric, foil, window, k, max_batch_bytes, approximate) -> tuple:
    """:func:`patch`'s options, checked: (sites, metric, window, k, max_batch_bytes)."""
    sites, metric = _check_sites(sites), _check_metric(metric, foil)
    window = whole("window", window, low=1, high=MAX_WINDOW)
    k = whole("k", k, low=1)
    max_batch_bytes = whole("max_batch_bytes", max_batch_bytes, low=1)
    if approximate and window != 1:
        raise ValueError(
            f"window must be 1 with approximate=True (got {window}): attribution patching estimates one "
            "activation at a time, and summing the estimates of a window would count paths through several "
            "restored layers more than once"
        )
    return sites, metric, window, k, max_batch_bytes


def _check_effect_exists(metric: str, clean_value: float, corrupted_value: float) -> None:
    if abs(clean_value - corrupted_value) <= 1e-9 * max(1.0, abs(clean_value)):
        raise ValueError(
            f"the clean and corrupted runs give the same {METRICS[metric].description} ({clean_value:.6g}): no effect "
            "can be normalised; corrupt a token the answer depends on"
        )


def _decode_top(lm: LM, top_ids: np.ndarray) -> tuple:
    """Display text of an id array of shape (..., k), as nested tuples of the same shape."""
    unique = np.unique(top_ids)
    text = dict(zip(unique.tolist(), token_strings(lm.tokenizer, unique)))

    def nest(ids):
        return tuple(nest(part) for part in ids) if ids.ndim > 1 else tuple(text[i] for i in ids.tolist())
    return nest(top_ids)


def _top_pairs(lm: LM, logits: torch.Tensor, k: int) -> tuple:
    top = torch.softmax(logits[0], -1).topk(k)
    return _pairs(lm, top.indices.cpu().numpy(), top.values.cpu().numpy())


def _pairs(lm: LM, ids: np.ndarray, probs: np.ndarray) -> tuple:
    """((token text, probability), ...) of top-k ids and probabilities."""
    return tuple(zip(token_strings(lm.tokenizer, ids), np.asarray(probs).tolist()))


# ------------------------------------------------------------ public
def restore(
    lm: LM,
    clean: str,
    corrupted,
    answer: str,
    foil: str | None = None,
    *,
    patches,
    metric: str | None = None,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> np.ndarray:
    """The metric of the corrupted run with any set of clean activations restored, one value per patch.

    The building block of :func:`patch`, for experiments it does not cover
    (restoring every position of a layer, several sites at once).

    Parameters
    ----------
    lm, clean, corrupted, answer, foil, metric, max_batch_bytes
        As for :func:`patch`.
    patches : sequence of sequence of (site, layer, position)
        One patched run per entry; an empty entry is the corrupted run.

    Returns
    -------
    ndarray of shape (n_patches,), float64

    Examples
    --------
    >>> every_position = [("residual", 5, p) for p in range(n_tokens)]
    >>> restore(lm, clean, corrupted, "Mary", "John", patches=[every_position, []])  # clean, corrupted
    """
    metric = _check_metric(metric, foil)
    runs = _prepare(lm, clean, corrupted, answer, foil)
    n_tokens = len(runs.clean_ids)
    patches = [list(patch) for patch in patches]
    allowed = (f"(site, block, position) with site {listing(SITES)}, block 0 to {lm.n_layers - 1} and position "
               f"0 to {n_tokens - 1}")
    for patch in patches:
        for entry in patch:
            if not (isinstance(entry, tuple) and len(entry) == 3 and entry[0] in SITES and is_whole(entry[1])
                    and is_whole(entry[2]) and 0 <= entry[1] < lm.n_layers and 0 <= entry[2] < n_tokens):
                raise invalid("each entry of patches", entry, allowed)
    sites = tuple(sorted({site for patch in patches for site, _, _ in patch}))
    if lm.backend.traced:
        return _traced(lm, runs, corrupted, sites, metric, patches, 1, max_batch_bytes, False)["values"]
    with torch.inference_mode():
        _, clean_record, _ = _recorded_run(lm, runs.clean_embeds, runs.read_position, sites)
        corrupted_logits, differs, corrupted_cache = _recorded_run(
            lm, runs.corrupted_embeds, runs.read_position, sites, against=clean_record
        )
    metric_of = _metric_function(metric, runs.answer_id, runs.foil_id)
    values, _, _, _ = _run_patches(lm, runs, clean_record, differs, corrupted_logits, corrupted_cache,
                                   patches, metric_of, 1, max_batch_bytes, None)
    return values


def patch(
    lm: LM,
    clean: str,
    corrupted,
    answer: str,
    foil: str | None = None,
    *,
    sites=tuple(SITES),
    metric: str | None = None,
    window: int = 1,
    approximate: bool = False,
    k: int = 5,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Callable[[float, str], None] | None = None,
) -> Patching:
    """Restore each clean activation into the corrupted run and measure how much of the answer comes back.

    Parameters
    ----------
    lm : LM
        A model with an LM head: causal, or masked with its MLM head (the
        answer is then read at the prompt's one ``[MASK]``).
    clean : str
        The prompt on which the model gives ``answer``.
    corrupted : str or Noise
        A prompt of the same token length (compared position by position), or
        ``Noise(positions)`` for Meng et al.'s causal tracing on ``clean``.
    answer : str
        The word whose return is measured, read as it follows the prompt
        (``"Mary"`` -> ``" Mary"``, the lens's rule); a word of several tokens
        is measured by its first token (``notes`` says so).
    foil : str, optional
        A competing word (``"John"``); the default metric is then the logit
        difference answer - foil.
    sites : sequence of str, default all of :data:`SITES`
    metric : str, optional
        A name from :data:`METRICS`; default ``"logit_diff"`` with a foil,
        ``"prob"`` (Meng et al.'s) without.
    window : int, default 1
        Restore this many consecutive layers per patch, centred on the row's
        layer (ROME's FFN and attention traces use 10). Exact patching only.
    approximate : bool, default False
        Attribution patching: first-order estimates of every effect from one
        forward pass on each run and one backward pass on the corrupted run.
    k : int, default 5
        Top predictions kept for every patched run.
    max_batch_bytes : int, default 256 MiB
        Rough memory bound of one batched pass; patches are chunked to fit.
    progress : callable, optional
        ``progress(fraction, message)`` after every batched pass of exact
        patching (fraction of the patched runs done, in (0, 1]); a pass holds
        at most :data:`ecco_core.backward.REPORT_MULTIPLY_ADDS` of work, so
        reports come at least about every second or two.

    Returns
    -------
    Patching
        ``effects`` of shape (n_sites, n_layers, n_tokens): 0 = corrupted, 1 = clean.

    Raises
    ------
    ValueError
        Prompts of different token lengths (both tokenisations are shown), an
        empty prompt, answer and foil of the same token, a model without LM
        head, a masked prompt without exactly one mask, unknown sites or
        metric, clean and corrupted runs with the same metric value.
    """
    sites, metric, window, k, max_batch_bytes = _check_options(sites, metric, foil, window, k, max_batch_bytes,
                                                               approximate)
    if isinstance(corrupted, Noise) and corrupted.samples > 1:
        options = dict(sites=sites, metric=metric, window=window, approximate=approximate, k=k,
                       max_batch_bytes=max_batch_bytes)
        return _averaged(lm, clean, corrupted, answer, foil, options, progress)
    runs = _prepare(lm, clean, corrupted, answer, foil)
    metric_of = _metric_function(metric, runs.answer_id, runs.foil_id)
    k = min(k, lm.config.vocab_size)
    if lm.backend.traced:
        n_tokens = len(runs.clean_ids)
        done = _traced(lm, runs, corrupted, sites, metric, [] if approximate else _every_window(lm, sites, window, n_tokens),
                       k, max_batch_bytes, approximate)
        clean_value, corrupted_value = done["clean_value"], done["corrupted_value"]
        _check_effect_exists(metric, clean_value, corrupted_value)
        shape = (len(sites), lm.n_layers, n_tokens)
        if approximate:
            values = corrupted_value + done["estimates"]
            top_ids, top_probs = np.zeros((*shape, 0), dtype=np.int64), np.zeros((*shape, 0), dtype=np.float32)
        else:
            values = done["values"].reshape(shape)
            top_ids, top_probs = done["top_ids"].reshape(*shape, k), done["top_probs"].reshape(*shape, k)
        return _result(lm, runs, sites, metric, window, approximate, foil, values, clean_value, corrupted_value,
                       top_ids, top_probs, done["patches_run"],
                       _pairs(lm, *done["clean_top"]), _pairs(lm, *done["corrupted_top"]))
    # corrupted_sites: the corrupted run's site outputs (approximate), else where they differ from the clean ones.
    clean_logits, clean_record, corrupted_logits, corrupted_sites, corrupted_cache, corrupted_metric = (
        _both_runs(lm, runs, sites, metric_of, approximate)
    )
    clean_value, corrupted_value = float(metric_of(clean_logits)[0]), float(corrupted_metric.detach())
    _check_effect_exists(metric, clean_value, corrupted_value)
    if approximate:
        values = corrupted_value + _attribution(lm, sites, clean_record, corrupted_sites, corrupted_metric)
        top_ids = np.zeros((*values.shape, 0), dtype=np.int64)
        top_probs = np.zeros((*values.shape, 0), dtype=np.float32)
        patches_run = 0
    else:
        values, top_ids, top_probs, patches_run = _every_patch(
            lm, runs, sites, window, (clean_record, corrupted_sites, corrupted_logits, corrupted_cache), metric_of,
            k, max_batch_bytes, progress,
        )
    return _result(lm, runs, sites, metric, window, approximate, foil, values, clean_value, corrupted_value,
                   top_ids, top_probs, patches_run, _top_pairs(lm, clean_logits, k), _top_pairs(lm, corrupted_logits, k))


def _result(lm: LM, runs: _Runs, sites, metric, window, approximate, foil, values, clean_value, corrupted_value,
            top_ids, top_probs, patches_run, clean_top, corrupted_top) -> Patching:
    """The :class:`Patching` of one run of :func:`patch`, whichever backend ran it."""
    return Patching(
        effects=(values - corrupted_value) / (clean_value - corrupted_value),
        values=values,
        clean_value=clean_value,
        corrupted_value=corrupted_value,
        sites=sites,
        metric=metric,
        answer=token_strings(lm.tokenizer, [runs.answer_id])[0],
        foil=token_strings(lm.tokenizer, [runs.foil_id])[0] if foil is not None else None,
        answer_id=runs.answer_id,
        foil_id=runs.foil_id,
        tokens=runs.tokens,
        corrupted_tokens=runs.corrupted_tokens,
        read_position=runs.read_position,
        window=window,
        approximate=bool(approximate),
        corruption=runs.corruption,
        corrupted_positions=runs.corrupted_positions,
        top_ids=top_ids,
        top_probs=top_probs,
        top_tokens=_decode_top(lm, top_ids),
        clean_top=clean_top,
        corrupted_top=corrupted_top,
        patches_run=patches_run,
        model_name=lm.name,
        notes=runs.notes,
    )


def _averaged(lm: LM, clean: str, noise: Noise, answer: str, foil, options: dict, progress) -> Patching:
    """:func:`patch` over each of ``noise``'s draws, averaged as Meng et al. do: the metric of the corrupted run
    and of every patched run is averaged over the draws, then normalised; each draw's own effects are kept."""
    draws = noise.draws()
    results = []
    for index, draw in enumerate(draws):
        def report(fraction, message, index=index):
            progress((index + fraction) / len(draws), f"noise draw {index + 1} of {len(draws)}: {message}")
        results.append(patch(lm, clean, draw, answer, foil, progress=None if progress is None else report,
                             **options))
    values = np.mean([result.values for result in results], axis=0)
    clean_value = results[0].clean_value
    corrupted_value = float(np.mean([result.corrupted_value for result in results]))
    _check_effect_exists(options["metric"], clean_value, corrupted_value)
    return dataclasses.replace(
        results[0],
        effects=(values - corrupted_value) / (clean_value - corrupted_value),
        values=values,
        corrupted_value=corrupted_value,
        corruption=noise.describe(results[0].tokens),
        patches_run=sum(result.patches_run for result in results),
        draw_effects=np.stack([result.effects for result in results]),
    )


def draw_effects(
    lm: LM,
    clean: str,
    noise: Noise,
    answer: str,
    foil: str | None = None,
    *,
    site: str,
    layer: int,
    position: int,
    draws: int = 10,
    metric: str | None = None,
    window: int = 1,
    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
) -> np.ndarray:
    """The effect of restoring one cell under each of several noise draws alone: is one draw's map a lucky one?

    Draw ``i`` is ``noise`` seeded ``noise.seed + i`` (the draws
    ``Noise(samples=draws)`` averages); each effect is normalised by its own
    corrupted run, as :func:`patch` with that draw alone shows it. Built on
    :func:`restore` (either backend): three patched rows per draw, the cell,
    none and the clean run's last block at the read position.

    Parameters
    ----------
    lm, clean, answer, foil, metric, window, max_batch_bytes
        As for :func:`patch`.
    noise : Noise
        Its positions, scale and first seed (its ``samples`` is not used).
    site : str
        A name from :data:`SITES`.
    layer, position : int
        The cell: the patch of row ``layer`` (restoring ``window`` blocks) at ``position``.
    draws : int, default 10
        1 to :data:`MAX_SAMPLES`.

    Returns
    -------
    ndarray of shape (draws,), float64
    """
    if not isinstance(noise, Noise):
        raise invalid("noise", noise, "an ec.Noise(positions, scale, seed)", TypeError)
    site = choice("site", site, SITES)
    draws = whole("draws", draws, low=1, high=MAX_SAMPLES)
    metric = _check_metric(metric, foil)
    window = whole("window", window, low=1, high=MAX_WINDOW)
    layer = whole("layer", layer, low=0, high=lm.n_layers - 1)
    _, read_at = read_position(lm, clean)
    cells = [(site, block, position) for block in window_layers(layer, window, lm.n_layers)]
    # Restoring the last block's output where the answer is read gives the clean run's logits there.
    clean_run = [("residual", lm.n_layers - 1, read_at)]
    effects = []
    for seed in range(noise.seed, noise.seed + draws):
        patched, corrupted_value, clean_value = restore(
            lm, clean, Noise(noise.positions, noise.scale, seed), answer, foil, patches=[cells, [], clean_run],
            metric=metric, max_batch_bytes=max_batch_bytes)
        _check_effect_exists(metric, clean_value, corrupted_value)
        effects.append((patched - corrupted_value) / (clean_value - corrupted_value))
    return np.array(effects)


def work(lm: LM, clean: str, corrupted, answer: str, foil: str | None = None, *, sites=tuple(SITES)) -> tuple[int, int]:
    """The size of exact patching's work, known before it starts (for an estimate): (runs, token positions).

    In a causal model only patches at or after the first corrupted position
    change anything, and each runs from its position on; a masked model runs
    every patch over every position. Arguments as for :func:`patch`.

    Returns
    -------
    runs : int
        Patched runs that :func:`patch` will compute (its ``patches_run``), over every noise draw.
    positions : int
        Token positions those runs push through the model, all together.
    """
    sites = _check_sites(sites)
    runs = _prepare(lm, clean, corrupted, answer, foil)
    n_tokens = len(runs.clean_ids)
    starts = range(min(runs.corrupted_positions), n_tokens) if lm.is_causal else [0] * n_tokens
    per_block = len(sites) * lm.n_layers * (corrupted.samples if isinstance(corrupted, Noise) else 1)
    return per_block * len(starts), per_block * sum(n_tokens - start for start in starts)


@dataclass(frozen=True, eq=False)
class Correlation:
    """Pearson correlation of two patching results' effects (exact vs approximate), per site and over all cells.

    Attributes
    ----------
    sites : tuple of str, length n_sites + 1
        The results' sites, then ``"all"`` (every cell of every site).
    pearson_r : ndarray of shape (n_sites + 1,)
        NaN where either side's effects are constant.
    n_cells : ndarray of shape (n_sites + 1,), int
    """

    sites: tuple[str, ...]
    pearson_r: np.ndarray
    n_cells: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """One row per site, then ``"all"``: columns site, pearson_r, n_cells."""
        return pd.DataFrame({"site": list(self.sites), "pearson_r": self.pearson_r, "n_cells": self.n_cells})


def correlation(first: Patching, second: Patching) -> Correlation:
    """Pearson correlation of two results' effects, per site and over all cells (exact vs approximate).

    Returns
    -------
    Correlation
        ``.to_frame()``: columns site (a site name or ``"all"``), pearson_r, n_cells.
    """
    if first.effects.shape != second.effects.shape or first.sites != second.sites:
        raise ValueError(
            f"the two results must cover the same sites and shape; got {first.sites} {first.effects.shape} "
            f"and {second.sites} {second.effects.shape}"
        )
    pairs = [*((s, first.site(s), second.site(s)) for s in first.sites), ("all", first.effects, second.effects)]
    rs = []
    for _, a, b in pairs:
        a, b = a.ravel(), b.ravel()
        rs.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan"))
    return Correlation(sites=tuple(name for name, _, _ in pairs), pearson_r=np.array(rs),
                       n_cells=np.array([a.size for _, a, _ in pairs]))
