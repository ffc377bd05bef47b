"""One forward pass over a whole text, recorded into a plain, picklable :class:`Capture`.

``capture`` first generates (greedy by default, with the KV cache), then runs
ONE forward pass over prompt + generation with hooks on the real Hugging Face
modules, and keeps, as float32 numpy arrays on the CPU:

- ``hidden_states``: the input of block 0 (the embedding output) and every
  block's output, before any final norm: shape (n_layers + 1, n_tokens, d_model).
  Hugging Face's ``output_hidden_states`` applies the final norm to its last
  entry for causal models; this does not, so the logit lens treats every layer
  alike.
- ``ffn``: the input of every block's FFN output projection, the widest
  post-nonlinearity layer (GPT-2's GELU outputs, Llama's act(gate) * up):
  shape (n_layers, n_tokens, d_ff).

Layers have one name in every view (:mod:`ecco_core.layers`):
``hidden_states[0]`` is "embeddings", ``hidden_states[i + 1]`` is "block i"
(block i's output in the residual stream), ``ffn[i]`` is "block i FFN".
Results, table columns, CSVs, axes and pages all use these labels, so the
tables of different views join on them.

Nothing is stored on the model, and the hooks are removed in a ``finally``.

Through nnsight (``backend="nnsight"`` or ``"ndif"``) the capture's request
brings back only what its own view shows (tokens, generation, top
predictions); ``hidden_states`` and ``ffn`` stay where the model ran until
something reads them. The first read fetches them (one request of at most
:data:`FETCH_BYTES` per group of layers, the layers asked for only when read
through :meth:`Capture.rows`), once for every thread that shares the capture;
afterwards they are plain arrays like the hook path's. Saving or pickling a
capture fetches what is still missing first. A fetch is sent through the LM
that made the capture (under its NDIF key), or the one given to
:meth:`Capture.bound_to`, which shares the rows with the capture it came from.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import _checks as checks
from . import capture_file
from .backends.served import next_token
from .capture_file import MAX_CAPTURE_BYTES
from .hooks import ArrayRecording, recording, without_cache
from .models import LM
from .tokens import check_text, encode_answer, encode_prompt, special_mask, token_strings

MAX_NEW_TOKENS_LIMIT = 1024
# Vocabulary-wide logits are made this many bytes at a time (capture's top-k, the lens, saliency's backward).
DEFAULT_CHUNK_BYTES = 64 * 2**20
#: The most bytes of activations one fetch of a capture made through nnsight brings back (a group of layers).
FETCH_BYTES = 960 * 2**10
#: The arrays of a capture that a capture made through nnsight fetches when they are first read.
FETCHED = ("hidden_states", "ffn")


class _Rows:
    """What every :class:`Deferred` bound to one capture's array shares: what was fetched so far, and its lock.

    ``array[r, t]`` holds row ``r`` at position ``t`` where ``here[r, t]``;
    ``positive[r, t]`` its positive part and ``negatives[r, t]`` how many of
    its entries are below 0 where ``positive_here[r, t]`` (a clipped fetch).
    """

    def __init__(self, token_ids, name: str, shape: tuple[int, int, int], fetch_bytes: int):
        self.token_ids = [int(i) for i in token_ids]
        self.name, self.shape, self.fetch_bytes = name, tuple(shape), fetch_bytes
        self.dtype = np.dtype(np.float32)
        self.array = self.positive = None  # allocated on the first fetch of each
        self.here = np.zeros(self.shape[:2], dtype=bool)
        self.positive_here = np.zeros(self.shape[:2], dtype=bool)
        self.negatives = np.zeros(self.shape[:2], dtype=np.int64)
        self.lock = threading.Lock()


def _wanted(here: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> tuple[list[int], list[int]]:
    """The rows of ``rows`` missing some of ``positions`` (``here`` False), and the positions any of them misses."""
    missing = ~here[np.ix_(rows, positions)]
    rows = sorted({int(row) for row in rows[missing.any(axis=1)]})
    if not rows:
        return [], []
    return rows, sorted({int(position) for position in positions[~here[np.ix_(rows, positions)].all(axis=0)]})


def _clipped(signed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``signed`` (..., width) with its entries below 0 set to 0, and how many were (...,): a clipped read."""
    negative = signed < 0
    return np.where(negative, 0, signed), negative.sum(axis=-1)


class Deferred:
    """Rows of a capture's array still where the model ran (nnsight, NDIF): fetched when read, each entry once.

    Stands in for ``hidden_states`` or ``ffn`` inside a :class:`Capture`; the
    capture's attribute gives the fetched ndarray, never this. Its ``shape``,
    ``dtype`` and ``nbytes`` are known before anything is fetched. Missing rows
    (at the positions asked for: all by default) are fetched in groups of at
    most ``fetch_bytes``, one request each
    (:func:`ecco_core.backends.sessions.activations`) sent through ``lm`` (so
    under its NDIF key), under a lock, so threads sharing a capture fetch each
    row once. :meth:`clipped` fetches only the positive part (exact, about half
    the bytes of a signed FFN), in one request. :meth:`bound_to` gives the same
    rows fetched through another LM.
    """

    def __init__(self, lm: LM, token_ids, name: str, shape: tuple[int, int, int], fetch_bytes: int = FETCH_BYTES,
                 *, rows: _Rows | None = None):
        self.lm = lm
        self._rows = rows if rows is not None else _Rows(token_ids, name, shape, fetch_bytes)

    def bound_to(self, lm: LM) -> "Deferred":
        """The same rows (those fetched, and those fetched later by either) fetched through ``lm``."""
        return Deferred(lm, None, self.name, self.shape, rows=self._rows)

    token_ids = property(lambda self: self._rows.token_ids)
    name = property(lambda self: self._rows.name)
    shape = property(lambda self: self._rows.shape)
    dtype = property(lambda self: self._rows.dtype)
    fetch_bytes = property(lambda self: self._rows.fetch_bytes)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def missing(self) -> list[int]:
        """Rows not all fetched yet."""
        return np.flatnonzero(~self._rows.here.all(axis=1)).tolist()

    def __repr__(self) -> str:
        here = int(self._rows.here.all(axis=1).sum())
        return (f"<pending {self.name}: shape {self.shape}, {self.dtype}; {here} of {self.shape[0]} rows here, "
                "the rest where the model ran, fetched when read>")

    def rows(self, rows, positions=None) -> np.ndarray:
        """The array's rows ``rows`` at ``positions`` (all by default), fetching what is not here yet:
        shape (len(rows), len(positions), ...)."""
        rows, positions = self._indices(rows, positions)
        with self._rows.lock:
            self._fetch(rows, positions)
            return self._rows.array[np.ix_(rows, positions)]

    def fetch(self, rows, positions=None, *, clipped: bool = False) -> None:
        """Fetch the rows ``rows`` (a sequence of int) at ``positions`` (all by default) not here yet; ``clipped``:
        only what :meth:`clipped` reads."""
        with self._rows.lock:
            (self._fetch_clipped if clipped else self._fetch)(*self._indices(rows, positions))

    def full(self) -> np.ndarray:
        """The whole array, every row fetched."""
        with self._rows.lock:
            self._fetch(*self._indices(self.missing, None))
            return self._rows.array

    def clipped(self, rows, positions=None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rows` with every entry below 0 set to 0, and how many were, for each row at each position.

        What is not here (signed or clipped) comes in one request that brings
        back only the entries above 0 and where they go
        (:func:`ecco_core.backends.sessions.positive_activations`): exact,
        about half the bytes when half the entries are below 0.
        Returns (values (len(rows), len(positions), ...), negatives
        (len(rows), len(positions)), int64).
        """
        rows, positions = self._indices(rows, positions)
        shared = self._rows
        with shared.lock:
            self._fetch_clipped(rows, positions)
            here = shared.here[np.ix_(rows, positions)]
            values = np.zeros((len(rows), len(positions), self.shape[2]), dtype=self.dtype)
            negatives = np.zeros((len(rows), len(positions)), dtype=np.int64)
            if shared.array is not None and here.any():
                values[here], negatives[here] = _clipped(shared.array[np.ix_(rows, positions)][here])
            if not here.all():
                values[~here] = shared.positive[np.ix_(rows, positions)][~here]
                negatives[~here] = shared.negatives[np.ix_(rows, positions)][~here]
            return values, negatives

    def here(self, rows, positions=None, *, clipped: bool = False) -> bool:
        """Whether the rows ``rows`` at ``positions`` (all by default) are all here: reading them (or, ``clipped``,
        their clipped values) makes no request."""
        rows, positions = self._indices(rows, positions)
        shared = self._rows
        with shared.lock:
            present = shared.here | shared.positive_here if clipped else shared.here
            return bool(present[np.ix_(rows, positions)].all())

    def keep(self, rows, values: np.ndarray) -> None:
        """Keep rows ``rows`` at every position, ``values`` of shape (len(rows), n_tokens, ...), as if fetched."""
        rows = self._indices(rows, None)[0]
        shared = self._rows
        with shared.lock:
            if shared.array is None:
                shared.array = np.zeros(self.shape, dtype=self.dtype)
            shared.array[rows] = values
            shared.here[rows] = True

    def _indices(self, rows, positions) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(self.shape[0])[np.asarray(rows, dtype=np.int64).reshape(-1)]
        positions = np.arange(self.shape[1]) if positions is None else (
            np.arange(self.shape[1])[np.asarray(positions, dtype=np.int64).reshape(-1)])
        return rows, positions

    def _fetch_clipped(self, rows: np.ndarray, positions: np.ndarray) -> None:
        from .backends import sessions

        shared = self._rows
        rows, at = _wanted(shared.here | shared.positive_here, rows, positions)
        if not rows:
            return
        if shared.positive is None:
            shared.positive = np.zeros(self.shape, dtype=self.dtype)
        values, negatives = sessions.positive_activations(self.lm, self.token_ids, self.name, rows, at)
        shared.positive[np.ix_(rows, at)] = values
        shared.negatives[np.ix_(rows, at)] = negatives
        shared.positive_here[np.ix_(rows, at)] = True

    def _fetch(self, rows: np.ndarray, positions: np.ndarray) -> None:
        from .backends import sessions

        shared = self._rows
        rows, at = _wanted(shared.here, rows, positions)
        if not rows:
            return
        if shared.array is None:
            shared.array = np.zeros(self.shape, dtype=self.dtype)
        per_request = max(1, self.fetch_bytes // (len(at) * self.shape[2] * self.dtype.itemsize))
        every = len(at) == self.shape[1]
        for start in range(0, len(rows), per_request):
            group = rows[start:start + per_request]
            shared.array[np.ix_(group, at)] = sessions.activations(
                self.lm, self.token_ids, self.name, group, None if every else at)
            shared.here[np.ix_(group, at)] = True


class _Fetched:
    """A :class:`Capture` field that may hold a :class:`Deferred`: reading it fetches, then keeps, the array."""

    def __set_name__(self, owner, name: str):
        self.name = name

    def __get__(self, cap, owner=None):
        if cap is None:
            raise AttributeError(self.name)  # no class-level default: a required dataclass field
        value = cap.__dict__[self.name]
        if isinstance(value, Deferred):
            value = cap.__dict__[self.name] = value.full()
        return value

    def __set__(self, cap, value):
        cap.__dict__[self.name] = value  # the dataclass's __init__ only: the capture is frozen


@dataclass(frozen=True)
class CaptureSettings:
    """Everything given to :func:`capture` that decides what it records: the app's cache key.

    ``max_answer_tokens`` and ``max_chunk_bytes`` are left out: they bound
    the work, never change a result. Two captures of one model with equal
    settings hold the same arrays (sampling included: ``seed`` fixes it).
    """

    text: str = ""
    max_new_tokens: int = 0
    answer: str | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0
    stop_at_eos: bool = True
    k: int = 10

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CaptureSettings":
        """The record of a saved capture; keys it lacks (files from older versions) take their defaults."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise checks.invalid("settings", unknown, f"keys among {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True, eq=False)
class Capture:
    """Everything one forward pass over a text recorded.

    Attributes
    ----------
    tokens : tuple of str, length n_tokens
        Display text of each token (its decoded string, e.g. ``" Paris"``).
    token_ids : ndarray of shape (n_tokens,), int64
    n_input : int
        Number of prompt tokens; positions ``n_input:`` were generated (or
        given as an answer).
    hidden_states : ndarray of shape (n_layers + 1, n_tokens, d_model), float32
        Row 0 is the embedding output ("embeddings"), row ``i + 1`` block
        ``i``'s output ("block i").
    ffn : ndarray of shape (n_layers, n_tokens, d_ff), float32
        FFN activations ("neurons") of every block; row ``i`` is "block i FFN".
        Both are fetched on their first read when the capture was made
        through nnsight (see the module's docstring); :meth:`rows` reads
        some rows, fetching only those.
    top_ids, top_probs : ndarray of shape (n_tokens, k)
        The model's own top-k predictions at each position (for the next
        token in causal models, for the token itself in masked models);
        ``k`` is 0 for an encoder without a head.
    top_tokens : tuple of tuple of str
        Display text of ``top_ids``.
    model_name : str
    causal : bool
    special : ndarray of shape (n_tokens,), bool
        True for the tokenizer's special tokens (BOS, [CLS], [SEP], ...).
    settings : CaptureSettings
        The arguments of :func:`capture` that made it (with ``model_name``, a complete cache key).
    """

    tokens: tuple[str, ...]
    token_ids: np.ndarray
    n_input: int
    hidden_states: np.ndarray = _Fetched()
    ffn: np.ndarray = _Fetched()
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_tokens: tuple[tuple[str, ...], ...]
    model_name: str
    causal: bool
    special: np.ndarray
    settings: CaptureSettings = field(default_factory=CaptureSettings)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_generated(self) -> int:
        return self.n_tokens - self.n_input

    @property
    def n_layers(self) -> int:
        return self.__dict__["ffn"].shape[0]

    @property
    def d_model(self) -> int:
        return self.__dict__["hidden_states"].shape[2]

    @property
    def d_ff(self) -> int:
        return self.__dict__["ffn"].shape[2]

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays, those still to be fetched included."""
        return sum(int(self.__dict__[name].nbytes) if name in FETCHED else getattr(self, name).nbytes
                   for name in ("token_ids", *FETCHED, "top_ids", "top_probs", "special"))

    @property
    def pending(self) -> tuple[str, ...]:
        """Names of the arrays (``"hidden_states"``, ``"ffn"``) not all here yet: read on the model's backend when used."""
        return tuple(name for name in FETCHED
                     if isinstance(self.__dict__[name], Deferred) and self.__dict__[name].missing)

    def rows(self, name: str, rows, positions=None) -> np.ndarray:
        """``getattr(self, name)[rows][:, positions]`` for ``name`` "hidden_states" or "ffn", fetching only those
        if pending.

        ``rows`` is a sequence of row indices (``hidden_states[0]`` the
        embeddings, ``ffn[i]`` block ``i``'s FFN), ``positions`` of token
        positions (all by default). A view that reads a few layers of a
        capture made on NDIF asks for these alone this way. Returns shape
        (len(rows), len(positions), d_model or d_ff).
        """
        name = checks.choice("name", name, FETCHED)
        value = self.__dict__[name]
        if isinstance(value, Deferred):
            return value.rows(rows, positions)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        return value[rows] if positions is None else value[np.ix_(rows, np.asarray(positions, np.int64).reshape(-1))]

    def clipped(self, name: str, rows, positions=None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`rows` with every entry below 0 set to 0, and how many were: NMF's input when it clips.

        Exactly what clipping :meth:`rows` here gives; if pending, only the
        entries above 0 and a bit per entry saying where they go are fetched
        (one request, about half the bytes of a signed FFN), unless the
        signed values are here already. Returns (values (len(rows),
        len(positions), d_model or d_ff), float32; negatives (len(rows),
        len(positions)), int64: the entries below 0 of each row at each position).
        """
        name = checks.choice("name", name, FETCHED)
        value = self.__dict__[name]
        if isinstance(value, Deferred):
            return value.clipped(rows, positions)
        return _clipped(self.rows(name, rows, positions))

    def fetched_through(self, name: str) -> LM | None:
        """The LM through which ``name`` ("hidden_states" or "ffn") is fetched, or None when it is all here.

        Not None for a capture made through nnsight or NDIF until the array is
        read whole: a view may then reduce the rows where the model ran, in
        that LM's session, instead of fetching them
        (:func:`ecco_core.factors.factors` fits NMF there); :meth:`here` says
        which rows are here already.
        """
        value = self.__dict__[checks.choice("name", name, FETCHED)]
        return value.lm if isinstance(value, Deferred) else None

    def here(self, name: str, rows, positions=None, *, clipped: bool = False) -> bool:
        """Whether rows ``rows`` of ``name`` at ``positions`` (all by default) are here: reading them (or,
        ``clipped``, their clipped values: :meth:`clipped`) makes no request."""
        value = self.__dict__[checks.choice("name", name, FETCHED)]
        return not isinstance(value, Deferred) or value.here(rows, positions, clipped=clipped)

    def keep(self, name: str, rows, values: np.ndarray) -> None:
        """Keep rows ``rows`` of ``name`` at every position that a view brought back from where the model ran
        (``values`` of shape (len(rows), n_tokens, d_model or d_ff)): reading them later makes no request. Nothing
        changes when ``name`` is here already."""
        value = self.__dict__[checks.choice("name", name, FETCHED)]
        if isinstance(value, Deferred):
            value.keep(rows, values)

    def fetch(self, name: str | None = None, rows=None, positions=None, *, clipped: bool = False) -> "Capture":
        """Bring pending arrays here: all of them by default, or rows ``rows`` of ``name`` (at ``positions``, all
        by default); returns the capture.

        One request per group of at most :data:`FETCH_BYTES`; what is here already is not fetched again.
        ``clipped``: only what :meth:`clipped` reads of them, in one request.
        """
        if name is None:
            for pending in self.pending:
                getattr(self, pending)
            return self
        name = checks.choice("name", name, FETCHED)
        value = self.__dict__[name]
        if isinstance(value, Deferred):
            value.fetch(value.missing if rows is None else rows, positions, clipped=clipped)
        return self

    def bound_to(self, lm: LM) -> "Capture":
        """This capture with its pending arrays fetched through ``lm`` (e.g. under another NDIF key).

        The rows stay shared: those fetched by either capture are here for
        both, each fetched once. A capture with nothing pending is returned as it is.
        """
        pending = {name: value.bound_to(lm) for name in FETCHED
                   if isinstance(value := self.__dict__[name], Deferred)}
        if not pending:
            return self
        bound = object.__new__(Capture)  # not copy.copy: that pickles, and pickling fetches
        bound.__dict__.update(self.__dict__, **pending)
        return bound

    def __repr__(self) -> str:
        """The dataclass's repr, except that an array still where the model ran says so instead of being fetched."""
        shown = ", ".join(f"{item.name}={self.__dict__[item.name]!r}" for item in fields(self))
        return f"{type(self).__name__}({shown})"

    def __getstate__(self) -> dict:
        """Pickled whole: what was still on the server is fetched first."""
        self.fetch()
        return dict(self.__dict__)

    @property
    def prompt_text(self) -> str:
        return "".join(self.tokens[: self.n_input])

    @property
    def generated_text(self) -> str:
        return "".join(self.tokens[self.n_input :])

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    def to_frame(self) -> pd.DataFrame:
        """One row per token: position, text, id, whether generated, the model's top prediction."""
        frame = pd.DataFrame(
            {
                "position": np.arange(self.n_tokens),
                "token": list(self.tokens),
                "token_id": self.token_ids,
                "generated": np.arange(self.n_tokens) >= self.n_input,
                "special": self.special,
            }
        )
        if self.top_ids.shape[1]:
            label = "next_token_prediction" if self.causal else "prediction"
            frame[label] = [row[0] for row in self.top_tokens]
            frame[label + "_prob"] = self.top_probs[:, 0]
        return frame

    def predictions_frame(self, k: int | None = None) -> pd.DataFrame:
        """The model's top ``k`` predictions at every position (all kept ones by default), one row each.

        Columns: position, token (the text at that position), rank (1 = most
        likely), prediction, prediction_id, probability. After a causal model's
        token the prediction is for the next one; a masked model predicts its own.
        """
        kept = self.top_ids.shape[1]
        k = kept if k is None else checks.whole("k", k, low=1, high=kept)
        return pd.DataFrame(
            {
                "position": np.repeat(np.arange(self.n_tokens), k),
                "token": np.repeat(np.array(self.tokens, dtype=object), k),
                "rank": np.tile(np.arange(1, k + 1), self.n_tokens),
                "prediction": [candidate for row in self.top_tokens for candidate in row[:k]],
                "prediction_id": self.top_ids[:, :k].reshape(-1),
                "probability": self.top_probs[:, :k].reshape(-1),
            }
        )

    # ----------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write to a compressed ``.npz`` file (no pickle inside); a pending array is fetched first."""
        self.fetch()
        meta = {
            "n_input": self.n_input,
            "model_name": self.model_name,
            "causal": self.causal,
            "tokens": list(self.tokens),
            "top_tokens": [list(row) for row in self.top_tokens],
            "settings": self.settings.to_dict(),
        }
        np.savez_compressed(
            path,
            meta=np.array(json.dumps(meta)),
            token_ids=self.token_ids,
            hidden_states=self.hidden_states,
            ffn=self.ffn,
            top_ids=self.top_ids,
            top_probs=self.top_probs,
            special=self.special,
        )

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int = MAX_CAPTURE_BYTES) -> "Capture":
        """Read a file written by :meth:`save`.

        Declared shapes are checked for consistency, and their total against
        ``max_bytes`` (1 GiB by default), before anything is decompressed; any
        damaged or crafted file raises one ``ValueError`` saying what is wrong.
        """
        meta, arrays = capture_file.read(path, max_bytes)
        return cls(
            tokens=tuple(meta["tokens"]),
            n_input=meta["n_input"],
            top_tokens=tuple(tuple(row) for row in meta["top_tokens"]),
            model_name=meta["model_name"],
            causal=meta["causal"],
            settings=CaptureSettings.from_dict(meta["settings"]),
            **arrays,
        )


def captured_by(lm, cap, name: str = "cap"):
    """``cap`` when it is a :class:`Capture` made by ``lm``, else the template's error.

    Every analysis that reads a capture with its model checks this first: a
    capture of another model would fail later, far from the cause (or, worse,
    give numbers for the wrong model). Made by ``lm`` means the same model
    name, the same kind (causal or masked) and arrays of its sizes (``n_layers
    + 1`` hidden states of ``d_model``).
    """
    if not isinstance(lm, LM):
        raise checks.invalid("lm", type(lm), "an LM from ecco_core.load", TypeError)
    if not isinstance(cap, Capture):
        raise checks.invalid(name, type(cap), "a Capture from ecco_core.capture", TypeError)
    same = (
        cap.model_name == lm.name and cap.causal == lm.is_causal
        and cap.n_layers == lm.n_layers and cap.d_model == lm.d_model
    )
    if not same:
        raise checks.invalid(
            name, checks.words(f"one made by {cap.model_name!r} ({cap.n_layers} layers, d_model {cap.d_model})"),
            f"a capture made by this model, {lm.name!r} ({lm.n_layers} layers, d_model {lm.d_model}); "
            "capture the text with it",
        )
    return cap


# ------------------------------------------------------------ budgets
def check_chunk_bytes(max_chunk_bytes) -> int:
    """``max_chunk_bytes`` as an int when it is a whole number of bytes >= 1 (see :mod:`ecco_core._checks`)."""
    return checks.whole("max_chunk_bytes", max_chunk_bytes, low=1)


# ------------------------------------------------------------- generation
@torch.inference_mode()
def generate(
    lm: LM,
    input_ids: list[int],
    max_new_tokens: int,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_at_eos: bool = True,
) -> list[int]:
    """Continue ``input_ids`` by up to ``max_new_tokens`` tokens with the KV cache.

    Greedy by default. Sampling draws from a private ``torch.Generator``
    seeded with ``seed``, so concurrent callers never disturb each other's
    randomness. Stops after the end-of-sequence token when ``stop_at_eos``.
    Returns the new ids only.
    """
    if max_new_tokens == 0:
        return []
    model = lm.model
    generator = torch.Generator(device="cpu").manual_seed(seed)
    eos_ids = _eos_ids(lm)
    new_ids: list[int] = []
    step_input = torch.tensor([input_ids], device=lm.device)
    cache = None
    for _ in range(max_new_tokens):
        output = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
        cache = output.cache
        logits = output.logits[0, -1].float().cpu()
        next_id = next_token(logits, do_sample=do_sample, temperature=temperature, top_k=top_k, generator=generator)
        new_ids.append(next_id)
        if stop_at_eos and next_id in eos_ids:
            break
        step_input = torch.tensor([[next_id]], device=lm.device)
    return new_ids


def _eos_ids(lm: LM) -> set[int]:
    ids = set()
    for source in (lm.tokenizer.eos_token_id, getattr(lm.model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(source)
    return ids


# ---------------------------------------------------------------- capture
def _top_predictions(lm: LM, last_hidden: torch.Tensor, k: int, max_chunk_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's top ``k`` token ids and probabilities at every position, from the logits in chunks.

    ``last_hidden`` is the base model's output of shape (n_tokens, d_model);
    returns arrays of shape (n_tokens, k), int64 and float32 (k is 0 without a head).
    """
    n_tokens = last_hidden.shape[0]
    if not lm.has_head:
        return np.zeros((n_tokens, 0), dtype=np.int64), np.zeros((n_tokens, 0), dtype=np.float32)
    k = min(k, lm.vocab_size)
    rows_per_chunk = max(1, max_chunk_bytes // (4 * lm.vocab_size))
    top_ids = np.empty((n_tokens, k), dtype=np.int64)
    top_probs = np.empty((n_tokens, k), dtype=np.float32)
    for start in range(0, n_tokens, rows_per_chunk):
        log_probs = torch.log_softmax(lm.apply_head(last_hidden[start : start + rows_per_chunk]).float(), dim=-1)
        top = torch.topk(log_probs, k, dim=-1)
        top_ids[start : start + rows_per_chunk] = top.indices.cpu().numpy()
        top_probs[start : start + rows_per_chunk] = top.values.exp().cpu().numpy()
    return top_ids, top_probs


def capture(
    lm: LM,
    text: str,
    *,
    max_new_tokens: int = 0,
    answer: str | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int = 0,
    stop_at_eos: bool = True,
    k: int = 10,
    max_answer_tokens: int | None = None,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Capture:
    """Generate from ``text`` (causal models), then record one forward pass over everything.

    Parameters
    ----------
    lm : LM
        From :func:`ecco_core.load`.
    text : str
        The prompt (causal) or the input text (masked, may hold ``[MASK]``).
    max_new_tokens : int, default 0
        Tokens to generate after ``text``; must be 0 for masked models and
        when ``answer`` is given.
    answer : str, optional
        A continuation to analyse instead of generating one ("given answer").
        It is tokenised as it follows the prompt, so ``" Paris"`` continues
        ``"The capital of France is"``.
    do_sample, temperature, top_k, seed
        Sampling instead of greedy decoding; reproducible for a given seed.
        ``top_k`` (a positive int, or None for the whole vocabulary) keeps
        the k most likely tokens.
    stop_at_eos : bool, default True
        Stop generating after the end-of-sequence token.
    k : int, default 10
        How many of the model's own top predictions to keep per position.
    max_answer_tokens : int, optional
        Refuse a given ``answer`` longer than this many tokens, as generation
        is bounded by ``max_new_tokens`` (a shared deployment passes its limit).
    max_chunk_bytes : int, default 64 MiB
        The top-k predictions are read from the logits of this many bytes of
        positions at a time (float32, vocabulary-wide), so the logits of the
        whole text are never held at once and the peak stays near the size of
        the returned arrays.

    Returns
    -------
    Capture

    Examples
    --------
    >>> cap = capture(lm, "The capital of France is", max_new_tokens=3)
    >>> cap.generated_text
    ' Paris.\\n'
    """
    check_text(text)
    max_new_tokens = checks.whole("max_new_tokens", max_new_tokens, low=0, high=MAX_NEW_TOKENS_LIMIT)
    if max_new_tokens and not lm.is_causal:
        raise ValueError(
            f"max_new_tokens must be 0 for the masked model {lm.name!r}: it does not generate; "
            "put [MASK] in the text to see its predictions"
        )
    if answer is not None and max_new_tokens:
        raise ValueError("give either answer= or max_new_tokens > 0, not both")
    if do_sample:
        temperature = checks.positive("temperature", temperature)
    if top_k is not None:
        top_k = checks.whole("top_k", top_k, low=1)
    if max_answer_tokens is not None:
        max_answer_tokens = checks.whole("max_answer_tokens", max_answer_tokens, low=1)
    k = checks.whole("k", k, low=1)
    check_chunk_bytes(max_chunk_bytes)

    input_ids = encode_prompt(lm, text)
    answer_ids = [] if answer is None else _answer_ids(lm, answer, max_answer_tokens)
    limit = lm.context_length
    if len(input_ids) + len(answer_ids) + max_new_tokens > limit:
        raise ValueError(
            f"text is {len(input_ids) + len(answer_ids)} tokens and max_new_tokens is {max_new_tokens}: "
            f"together more than the model's context of {limit} tokens"
        )
    settings = CaptureSettings(
        text=text, max_new_tokens=max_new_tokens, answer=answer, do_sample=bool(do_sample),
        temperature=temperature, top_k=top_k, seed=seed, stop_at_eos=bool(stop_at_eos), k=k,
    )
    if lm.backend.traced:
        return _traced(lm, input_ids, answer_ids if answer is not None else None, settings)
    new_ids = answer_ids or generate(
        lm, input_ids, max_new_tokens, do_sample=do_sample, temperature=temperature,
        top_k=top_k, seed=seed, stop_at_eos=stop_at_eos,
    )
    return _recorded(lm, input_ids, new_ids, settings, max_chunk_bytes)


def _answer_ids(lm: LM, answer: str, max_answer_tokens: int | None) -> list[int]:
    """Token ids of a given answer, refused for a masked model or beyond ``max_answer_tokens``."""
    check_text(answer, "answer")
    if not lm.is_causal:
        raise ValueError(f"answer= needs a causal model; {lm.name!r} is masked")
    answer_ids = encode_answer(lm, answer)
    if max_answer_tokens is not None and len(answer_ids) > max_answer_tokens:
        raise ValueError(f"answer is {len(answer_ids)} tokens; max_answer_tokens allows at most {max_answer_tokens}")
    return answer_ids


def _recorded(lm: LM, input_ids: list[int], new_ids: list[int], settings: CaptureSettings,
              max_chunk_bytes: int) -> Capture:
    """The :class:`Capture` of one recorded forward pass over prompt + continuation."""
    token_ids = np.array(input_ids + new_ids, dtype=np.int64)
    record = ArrayRecording(lm.n_layers, len(token_ids), lm.d_model, lm.d_ff)
    base = lm.model.base_model
    with torch.inference_mode():
        with recording(lm, record):
            output = base(input_ids=torch.tensor(token_ids[None], device=lm.device), **without_cache(base))
        top_ids, top_probs = _top_predictions(lm, output.last_hidden_state[0], settings.k, max_chunk_bytes)
    return _made(lm, input_ids, new_ids, settings, record.hidden_states, record.ffn, top_ids, top_probs)


def _traced(lm: LM, input_ids: list[int], answer_ids: list[int] | None, settings: CaptureSettings) -> Capture:
    """The :class:`Capture` made by one nnsight session (generation and top predictions), its activations pending."""
    from .backends import sessions

    eos_ids = sorted(_eos_ids(lm)) if settings.stop_at_eos and settings.max_new_tokens else []
    arrays = sessions.capture(
        lm, input_ids, answer_ids, max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
        temperature=settings.temperature, top_k=settings.top_k, seed=settings.seed, eos_ids=eos_ids, k=settings.k,
    )
    token_ids = list(input_ids) + arrays["new_ids"]
    n_tokens = len(token_ids)
    hidden_states = Deferred(lm, token_ids, "hidden_states", (lm.n_layers + 1, n_tokens, lm.d_model))
    ffn = Deferred(lm, token_ids, "ffn", (lm.n_layers, n_tokens, lm.d_ff))
    return _made(lm, input_ids, arrays["new_ids"], settings, hidden_states, ffn, arrays["top_ids"], arrays["top_probs"])


def _made(lm: LM, input_ids: list[int], new_ids: list[int], settings: CaptureSettings, hidden_states: np.ndarray,
          ffn: np.ndarray, top_ids: np.ndarray, top_probs: np.ndarray) -> Capture:
    """A :class:`Capture` of prompt + continuation from the arrays a pass recorded."""
    token_ids = np.array(input_ids + new_ids, dtype=np.int64)
    return Capture(
        tokens=token_strings(lm.tokenizer, token_ids),
        token_ids=token_ids,
        n_input=len(input_ids),
        hidden_states=hidden_states,
        ffn=ffn,
        top_ids=top_ids,
        top_probs=top_probs,
        top_tokens=tuple(token_strings(lm.tokenizer, row) for row in top_ids),
        model_name=lm.name,
        causal=lm.is_causal,
        special=special_mask(lm.tokenizer, token_ids),
        settings=settings,
    )
