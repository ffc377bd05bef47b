"""Part-of-speech probes with control tasks: the Ecco paper's Table 1 (sections 4.1 and 5).

A linear softmax probe is trained to predict each word's universal
part-of-speech tag (UPOS) from one representation of the model, named in the
layer vocabulary of :mod:`ecco_core.layers`: the embeddings or a block's
output (``hidden``: "embeddings", "block 2" = ``hidden_states[3]``) or a
block's FFN activations (``ffn``: "block 2 FFN" = ``ffn[2]``). High accuracy alone does not show that a representation *encodes*
part of speech: a rich enough probe can memorise word identities. Hewitt and
Liang (2019) therefore train a second probe on a **control task**, where each
word type gets a fixed random tag, and report **selectivity** = accuracy on
the real tags minus accuracy on the control tags. Non-contextual embeddings
reach high accuracy with low selectivity; contextual layers are more
selective.

The protocol follows the paper: 10,000 tokens of UD English, a 67/33
train/test split drawn anew for every trial, 50 epochs of Adam (learning
rate 1e-3), 5 trials, mean and standard deviation. Every probe of every
layer, both representations, both label sets and all trials is one batched
model: a stacked weight tensor per feature width, multiplied with
``torch.bmm``, so one Adam step updates them all.

Trap: a word's tag goes on its **first** sub-token only, and the words are
tokenised as the running text ``" ".join(words)`` that a model reads. Feeding
a byte-level BPE tokenizer (GPT-2, SmolLM) the words one by one
(``is_split_into_words=True``) drops the leading space (``"Jennifer"`` becomes
``J enn ifer`` instead of ``ĠJennifer``), so the model would be probed on
text it never sees; aligning through character offsets avoids that for every
fast tokenizer.

>>> import ecco_core as ec
>>> enc = ec.load(ec.DEFAULT_ENCODER)
>>> table = ec.probe_table(enc, "en_ewt-ud-dev.conllu")   # Table 1 layout, one row per probed array
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import conllu
import numpy as np
import pandas as pd
import torch

from . import _checks as checks
from .capture import recording
from .layers import EMBEDDINGS, block_label, residual_label, site_label
from .models import LM

# Universal Dependencies English EWT, dev split, shipped with the package (CC BY-SA 4.0).
UD_ENGLISH_EWT_DEV = Path(__file__).resolve().parent / "data" / "ud-english-ewt" / "en_ewt-ud-dev.conllu"

UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)
LEARNING_RATES = (0.1, 1e-3, 1e-5)
TEST_FRACTION = 0.33
# Fewer test tokens per trial than this give accuracies too coarse to compare (a warning says so).
MIN_TEST_TOKENS = 100

Progress = Callable[[float, str], None]

_ID = re.compile(r"^(\d+|\d+-\d+|\d+\.\d+)$")


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class Sentence:
    """One sentence's syntactic words and their UPOS tags (multiword ranges and empty nodes left out)."""

    words: tuple[str, ...]
    tags: tuple[str, ...]


def _conllu_text(source) -> str:
    if isinstance(source, (bytes, bytearray)):
        try:
            return bytes(source).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"the CoNLL-U data is not UTF-8 (byte {error.start} cannot be decoded); "
                "CoNLL-U files must be UTF-8 encoded"
            ) from None
    if isinstance(source, str) and ("\n" in source or "\t" in source):
        return source
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise checks.invalid("source", str(source), "a CoNLL-U file that exists (or CoNLL-U text or bytes)")
        return _conllu_text(path.read_bytes())
    raise checks.invalid("source", type(source), "a path, CoNLL-U text or the bytes of a CoNLL-U file", TypeError)


def _check_line(number: int, line: str) -> None:
    """Raise a ValueError naming line ``number`` if it is malformed (``conllu`` itself accepts short lines)."""
    if line.startswith("#"):
        return
    fields = line.split("\t")
    if len(fields) != 10:
        raise ValueError(
            f"CoNLL-U line {number} has {len(fields)} tab-separated fields, expected 10: {line[:80]!r}"
        )
    if not _ID.match(fields[0]):
        raise ValueError(f"CoNLL-U line {number} has the invalid ID {fields[0]!r}: {line[:80]!r}")
    if fields[0].isdigit() and fields[3] not in UPOS_TAGS:
        raise ValueError(
            f"CoNLL-U line {number} has the UPOS tag {fields[3]!r}; allowed: {', '.join(UPOS_TAGS)}"
        )


def _sentence_blocks(text: str) -> Iterator[str]:
    """Each sentence's lines (blank lines separate sentences), checked only as they are reached."""
    block = []
    for number, line in enumerate(io.StringIO(text), start=1):
        if line.strip():
            _check_line(number, line.rstrip("\r\n"))
            block.append(line)
        elif block:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


def iter_conllu(source) -> Iterator[Sentence]:
    """The sentences of :func:`read_conllu`, each read and checked only when asked for.

    A caller that stops early (:func:`collect` once it has ``n_tokens`` words)
    never parses the rest: 10,000 words of a 50 MB treebank cost its first
    few hundred kilobytes, and a malformed line after them is never reached.
    """
    found = False
    for block in _sentence_blocks(_conllu_text(source)):
        for token_list in conllu.parse(block):
            words = [token for token in token_list if isinstance(token["id"], int)]
            if words:
                found = True
                yield Sentence(tuple(token["form"] for token in words), tuple(token["upos"] for token in words))
    if not found:
        raise ValueError("the CoNLL-U data holds no sentence with words")


def read_conllu(source) -> list[Sentence]:
    """Read the words and UPOS tags of a CoNLL-U corpus.

    Parameters
    ----------
    source : str, pathlib.Path or bytes
        A file path, the bytes of a file (an upload), or CoNLL-U text (a
        string holding a newline or a tab).

    Returns
    -------
    list of Sentence
        Syntactic words only: multiword-token ranges (``1-2 don't``) and
        empty nodes (``3.1``) are skipped, so ``don't`` gives ``do`` + ``n't``.

    Raises
    ------
    ValueError
        For a missing file, text that is not UTF-8, or a malformed line (its
        number is in the message), or data holding no sentence.
    """
    return list(iter_conllu(source))


# ------------------------------------------------------------- alignment
@dataclass(frozen=True)
class AlignedSentence:
    """A sentence as the model reads it, and which of its tokens carry a tag.

    Attributes
    ----------
    input_ids : tuple of int
        Token ids of ``" ".join(words)`` with the tokenizer's special tokens.
    positions : tuple of int
        For each labelled word, the position of its first sub-token.
    words, tags : tuple of str
        The labelled words and their UPOS tags, aligned with ``positions``.
    """

    input_ids: tuple[int, ...]
    positions: tuple[int, ...]
    words: tuple[str, ...]
    tags: tuple[str, ...]


def align(tokenizer, sentence: Sentence, *, max_length: int | None = None) -> AlignedSentence:
    """Tokenise a sentence as running text and put each word's tag on its first sub-token.

    Parameters
    ----------
    tokenizer : a fast Hugging Face tokenizer (it must return offsets)
    sentence : Sentence
    max_length : int, optional
        Truncate to this many tokens (the model's context); words whose first
        sub-token is cut off are not labelled.

    Returns
    -------
    AlignedSentence
        Later sub-tokens of a word carry no label, so a word split into
        several tokens is counted once.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise checks.invalid(
            "tokenizer", type(tokenizer), "a fast tokenizer (one that returns character offsets)", TypeError
        )
    starts, position = [], 0
    for word in sentence.words:
        starts.append(position)
        position += len(word) + 1
    text = " ".join(sentence.words)
    encoding = tokenizer(
        text, return_offsets_mapping=True, add_special_tokens=True,
        truncation=max_length is not None, max_length=max_length,
    )
    word_starts = np.array(starts)
    positions, labelled = [], set()
    for token_position, (begin, end) in enumerate(encoding["offset_mapping"]):
        # Byte-level BPE offsets include the leading space (" cat" starts at the space).
        while begin < end and text[begin] == " ":
            begin += 1
        if begin >= end:
            continue  # a special token, or a token of spaces only
        word = int(np.searchsorted(word_starts, begin, side="right")) - 1
        if word not in labelled:
            labelled.add(word)
            positions.append((token_position, word))
    return AlignedSentence(
        input_ids=tuple(encoding["input_ids"]),
        positions=tuple(p for p, _ in positions),
        words=tuple(sentence.words[w] for _, w in positions),
        tags=tuple(sentence.tags[w] for _, w in positions),
    )


# ---------------------------------------------------------------- capture
@dataclass(frozen=True, eq=False)
class ProbeData:
    """Representations of every labelled token of a corpus, ready for probing.

    Attributes
    ----------
    hidden_states : ndarray of shape (n_hidden, n_tokens, d_model), float32
        The selected rows of a capture's ``hidden_states`` (the embeddings
        and block outputs), at the labelled tokens.
    ffn : ndarray of shape (n_ffn, n_tokens, d_ff), float32
        The selected blocks' FFN activations.
    hidden_indices : tuple of int, length n_hidden
        The ``hidden_states`` index of each row: 0 = the embeddings, ``i + 1``
        = block ``i``'s output.
    ffn_blocks : tuple of int, length n_ffn
        The block of each ``ffn`` row.
    words : tuple of str, length n_tokens
    tags : tuple of str, length n_tokens
    model_name : str
    """

    hidden_states: np.ndarray
    ffn: np.ndarray
    hidden_indices: tuple[int, ...]
    ffn_blocks: tuple[int, ...]
    words: tuple[str, ...]
    tags: tuple[str, ...]
    model_name: str

    @property
    def n_tokens(self) -> int:
        return len(self.words)

    @property
    def hidden_layers(self) -> tuple[str, ...]:
        """Label of each ``hidden_states`` row: ``"embeddings"`` or ``"block i"``."""
        return tuple(residual_label(index) for index in self.hidden_indices)

    @property
    def ffn_layers(self) -> tuple[str, ...]:
        """Label of each ``ffn`` row: ``"block i FFN"``."""
        return tuple(site_label("ffn", block) for block in self.ffn_blocks)


def _selected_layers(lm: LM, layers) -> tuple[bool, list[int]]:
    """(whether the embedding row is probed, block indices) for ``layers``."""
    if layers is None:
        return True, list(range(lm.n_layers))
    if isinstance(layers, (str, int)):
        layers = [layers]
    allowed = f"a non-empty list of {EMBEDDINGS!r} and block indices 0 to {lm.n_layers - 1}"
    include_embedding, blocks = False, []
    for layer in layers:
        if layer == EMBEDDINGS:
            include_embedding = True
        elif checks.is_whole(layer) and 0 <= layer < lm.n_layers:
            blocks.append(int(layer))
        else:
            raise checks.invalid("layers", layers, allowed)
    blocks = sorted(set(blocks))
    if not include_embedding and not blocks:
        raise checks.invalid("layers", layers, allowed)
    return include_embedding, blocks


def _progress_bar(progress: Progress | None) -> tuple[Progress, Callable[[], None]]:
    """The caller's callback, or a tqdm bar by default; returns (update, close)."""
    if progress is not None:
        return progress, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=1000, desc="probing", leave=False)

    def update(fraction: float, message: str) -> None:
        bar.set_description(message, refresh=False)
        bar.update(int(round(fraction * 1000)) - bar.n)

    return update, bar.close


def collect(
    lm: LM,
    corpus,
    *,
    n_tokens: int = 10_000,
    layers=None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> ProbeData:
    """Run the model over a corpus in padded batches and keep every labelled token's representations.

    Sentences are taken in order until ``n_tokens`` words are labelled; they
    run in batches of similar length, right-padded, with an attention mask.

    Parameters
    ----------
    lm : LM
    corpus : path, bytes, CoNLL-U text, or sequence of Sentence
        A CoNLL-U source is parsed only until ``n_tokens`` words are in.
    n_tokens : int, default 10000
        Labelled words to collect (fewer if the corpus is shorter).
    layers : sequence of int or "embeddings", optional
        Block indices to probe (the block's output and its FFN), and
        ``"embeddings"`` for the embeddings; all of them by default.
    batch_size : int, default 32
        Sentences per forward pass.
    progress : callable(fraction, message), optional
        Called after every batch; a tqdm bar by default.

    Returns
    -------
    ProbeData
    """
    sentences = _sentences(corpus)
    n_tokens = checks.whole("n_tokens", n_tokens, low=1)
    batch_size = checks.whole("batch_size", batch_size, low=1)
    include_embedding, blocks = _selected_layers(lm, layers)
    hidden_rows = ([0] if include_embedding else []) + [block + 1 for block in blocks]

    aligned, total = [], 0
    for sentence in sentences:
        item = align(lm.tokenizer, sentence, max_length=lm.context_length)
        keep = min(len(item.positions), n_tokens - total)
        if keep <= 0:
            break
        if keep < len(item.positions):
            item = AlignedSentence(item.input_ids, item.positions[:keep], item.words[:keep], item.tags[:keep])
        aligned.append(item)
        total += keep
        if total >= n_tokens:
            break
    if not total:
        raise ValueError("no word of the corpus could be aligned to a token")

    # Each sentence's labelled tokens go to consecutive rows of the output, in corpus order.
    first_row = np.cumsum([0] + [len(item.positions) for item in aligned])
    hidden_states = np.empty((len(hidden_rows), total, lm.d_model), dtype=np.float32)
    ffn = np.empty((len(blocks), total, lm.d_ff), dtype=np.float32)
    order = sorted(range(len(aligned)), key=lambda i: len(aligned[i].input_ids))
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    update, close = _progress_bar(progress)
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = [aligned[i] for i in indices]
            width = max(len(item.input_ids) for item in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, item in enumerate(batch):
                input_ids[row, : len(item.input_ids)] = torch.tensor(item.input_ids)
                attention_mask[row, : len(item.input_ids)] = 1
            rows = torch.tensor([row for row, item in enumerate(batch) for _ in item.positions])
            columns = torch.tensor([p for item in batch for p in item.positions])
            destination = np.concatenate([np.arange(first_row[i], first_row[i + 1]) for i in indices])
            # The blocks are hooked, so the base model suffices; a causal LM head over the
            # whole vocabulary at every position would cost more than the blocks.
            with torch.inference_mode(), recording(lm) as record:
                lm.model.base_model(input_ids=input_ids.to(lm.device), attention_mask=attention_mask.to(lm.device))
            for out_row, row in enumerate(hidden_rows):
                hidden_states[out_row, destination] = record.hidden_states[row][rows, columns].float().cpu().numpy()
            for out_row, block in enumerate(blocks):
                ffn[out_row, destination] = record.ffn[block][rows, columns].float().cpu().numpy()
            update((start + len(batch)) / len(order), f"running {lm.name} over the corpus")
    finally:
        close()

    return ProbeData(
        hidden_states=hidden_states,
        ffn=ffn,
        hidden_indices=tuple(hidden_rows),
        ffn_blocks=tuple(blocks),
        words=tuple(w for item in aligned for w in item.words),
        tags=tuple(t for item in aligned for t in item.tags),
        model_name=lm.name,
    )


def _sentences(corpus) -> Iterator[Sentence]:
    """The corpus's sentences, a CoNLL-U source read only as far as they are taken."""
    if isinstance(corpus, (list, tuple)) and corpus and all(isinstance(s, Sentence) for s in corpus):
        return iter(corpus)
    return iter_conllu(corpus)


# --------------------------------------------------------------- training
@dataclass(frozen=True, eq=False)
class ProbeScores:
    """Test accuracies of every probe in every trial.

    Attributes
    ----------
    accuracy : ndarray of shape (n_probes, trials)
        Probes trained on the real tags.
    control_accuracy : ndarray of shape (n_probes, trials)
        Probes trained on the control task (a fixed random tag per word type).
    majority_accuracy : ndarray of shape (trials,)
        Always answering the most frequent training tag: the floor a probe
        that learnt nothing reaches.
    lr : float
        The learning rate used (the best one when several were tried).
    """

    accuracy: np.ndarray
    control_accuracy: np.ndarray
    majority_accuracy: np.ndarray
    lr: float

    @property
    def selectivity(self) -> np.ndarray:
        """``accuracy - control_accuracy``, shape (n_probes, trials)."""
        return self.accuracy - self.control_accuracy

    def to_frame(self) -> pd.DataFrame:
        """One row per probe: mean and standard deviation (over trials, ddof=0) of accuracy and selectivity."""
        return pd.DataFrame(
            {
                "probe": np.arange(len(self.accuracy)),
                "accuracy": self.accuracy.mean(1),
                "accuracy_std": self.accuracy.std(1),
                "selectivity": self.selectivity.mean(1),
                "selectivity_std": self.selectivity.std(1),
                "control_accuracy": self.control_accuracy.mean(1),
            }
        )


def control_tags(words: Sequence[str], tags: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Hewitt and Liang's control task: one fixed random tag per word type.

    Each word type (its exact form) draws a tag from the empirical tag
    distribution of ``tags``; every occurrence of the type gets that tag.

    Returns
    -------
    ndarray of shape (n_tokens,), int64
    """
    types, inverse = np.unique(np.asarray(words, dtype=object).astype(str), return_inverse=True)
    frequencies = np.bincount(tags, minlength=n_classes) / len(tags)
    return rng.choice(n_classes, size=len(types), p=frequencies)[inverse].astype(np.int64)


def _as_stack(features, argument: str, n_tokens: int) -> torch.Tensor:
    array = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    if array.ndim != 3 or array.shape[1] != n_tokens:
        raise checks.invalid(f"{argument}.shape", tuple(array.shape), f"(n_representations, n_tokens={n_tokens}, width)")
    return array


def _standardised(features: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Each dimension scaled to mean 0 and standard deviation 1 over all tokens (no labels used)."""
    out = torch.empty(features.shape, dtype=dtype, device=device)
    for row in range(features.shape[0]):
        x = features[row].to(device=device, dtype=torch.float32)
        variance, mean = torch.var_mean(x, dim=0)
        out[row] = ((x - mean) / variance.sqrt().clamp_min(1e-6)).to(dtype)
    return out


def _fast_bfloat16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _n_test(n_tokens: int) -> int:
    """Tokens in each trial's test split."""
    return max(1, int(round(TEST_FRACTION * n_tokens)))


def small_corpus_warning(n_tokens: int) -> str | None:
    """What to tell a user probing ``n_tokens`` tokens, too few for accuracies worth comparing; else None.

    :func:`train_probes` warns with it; a table from :func:`probe_table` keeps
    its token count in ``frame.attrs["n_tokens"]`` so that a page can say it too.
    """
    n_test = _n_test(n_tokens)
    if n_test >= MIN_TEST_TOKENS:
        return None
    return (
        f"each trial tests its probes on only {n_test} of the {n_tokens} tokens, so an accuracy moves in "
        f"steps of {1 / n_test:.0%} and 1.0 or 0.0 may be chance; probe "
        f"{math.ceil((MIN_TEST_TOKENS - 0.5) / TEST_FRACTION)} tokens or more for accuracies worth comparing"
    )


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def train_probes(
    stacks: Sequence[np.ndarray],
    tags: Sequence[str],
    words: Sequence[str],
    *,
    trials: int = 5,
    epochs: int = 50,
    lr: float | Sequence[float] = 1e-3,
    seed: int = 0,
    batch_size: int | None = None,
    precision: str = "auto",
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> ProbeScores:
    """Train linear softmax probes for real tags and control tags, all at once.

    Every representation (a row of a stack), label set (real, control) and
    trial has its own probe: a ``(width, n_classes)`` weight matrix and a
    bias. The probes of one stack form one tensor of shape
    ``(n_representations, width, trials * 2 * n_classes)``, so a minibatch
    costs one ``torch.bmm`` per stack and one Adam step updates every probe
    (their losses are summed, so each probe's gradient is its own).

    Each trial draws its own 67/33 token split and its own control task;
    tokens outside a trial's training split carry zero weight in its loss.
    Features are standardised per dimension (mean and standard deviation
    over all tokens; no labels are used), which lets one learning rate fit
    representations whose scales differ by orders of magnitude (Llama-style
    hidden states have a few huge dimensions).

    Parameters
    ----------
    stacks : sequence of array of shape (n_representations, n_tokens, width)
        Features; the widths of different stacks may differ.
    tags : sequence of str, length n_tokens
    words : sequence of str, length n_tokens
        The word of each token, for the control task.
    trials : int, default 5
    epochs : int, default 50
    lr : float or sequence of float, default 1e-3
        Adam's learning rate. Given several (the paper tried
        ``LEARNING_RATES`` = 0.1, 1e-3 and 1e-5), all are trained together and
        the one with the best mean real-tag test accuracy is kept, as in the
        paper (choosing on the test split flatters the result slightly).
    seed : int, default 0
    batch_size : int, optional
        Tokens per Adam step; by default ``n_tokens // 32`` clipped to 16..256,
        so that small corpora still get at least 32 steps per epoch.
    precision : {"auto", "float32", "bfloat16"}, default "auto"
        Precision of the feature-times-weight products; parameters, softmax
        and Adam stay float32. ``"auto"`` takes bfloat16 where the hardware
        multiplies it natively (about twice as fast on such CPUs; the
        standardised features keep 3 significant digits), else float32.
    device : str or torch.device, default "cpu"
        Where to train, e.g. ``"cuda"``.
    progress : callable(fraction, message), optional
        Called after every epoch; a tqdm bar by default.

    Returns
    -------
    ProbeScores
        Rows follow the stacks' rows, stack after stack.
    """
    n_tokens = len(tags)
    if len(words) != n_tokens:
        raise checks.invalid("len(words)", len(words), f"{n_tokens}, one word per tag")
    if n_tokens < 3:
        raise checks.invalid("len(tags)", n_tokens, "at least 3 tokens (to split into train and test)")
    trials = checks.whole("trials", trials, low=1)
    epochs = checks.whole("epochs", epochs, low=1)
    if batch_size is None:
        batch_size = int(np.clip(n_tokens // 32, 16, 256))
    batch_size = checks.whole("batch_size", batch_size, low=1)
    rates = [lr] if np.isscalar(lr) else list(lr)
    if not rates:
        raise checks.invalid("lr", lr, f"a positive number or a sequence of them (e.g. {LEARNING_RATES})")
    rates = [checks.positive("lr", rate) for rate in rates]
    device = torch.device(device)
    precision = checks.choice("precision", precision, ["auto", *PRECISIONS])
    dtype = (torch.bfloat16 if _fast_bfloat16(device) else torch.float32) if precision == "auto" else PRECISIONS[precision]
    stacks = [_as_stack(stack, f"stacks[{i}]", n_tokens) for i, stack in enumerate(stacks)]
    stacks = [stack for stack in stacks if stack.shape[0]]
    if not stacks:
        raise checks.invalid("stacks", "no representation", "at least one stack of features")

    classes, real = np.unique(np.asarray(tags, dtype=object).astype(str), return_inverse=True)
    n_classes = len(classes)
    rng = np.random.default_rng(seed)
    n_test = _n_test(n_tokens)
    if (coarse := small_corpus_warning(n_tokens)) is not None:
        warnings.warn(coarse, stacklevel=2)
    train_mask = np.ones((n_tokens, trials), dtype=bool)
    targets = np.empty((n_tokens, trials, 2), dtype=np.int64)
    for trial in range(trials):
        train_mask[rng.permutation(n_tokens)[:n_test], trial] = False
        targets[:, trial, 0] = real
        targets[:, trial, 1] = control_tags(words, real, n_classes, rng)
    majority = np.array([
        np.mean(real[~train_mask[:, t]] == np.bincount(real[train_mask[:, t]], minlength=n_classes).argmax())
        for t in range(trials)
    ])

    features = [_standardised(stack, dtype, device) for stack in stacks]
    generator = torch.Generator().manual_seed(seed)
    n_outputs = trials * 2 * n_classes
    # weights[rate][stack]: one tensor per learning rate and feature width, one Adam group per rate.
    weights = [
        [((torch.rand(x.shape[0], x.shape[2], n_outputs, generator=generator) * 2 - 1) / np.sqrt(x.shape[2]))
         .to(device).requires_grad_() for x in features]
        for _ in rates
    ]
    biases = [[torch.zeros(x.shape[0], 1, n_outputs, device=device, requires_grad=True) for x in features]
              for _ in rates]
    optimizer = torch.optim.Adam(
        [{"params": weights[i] + biases[i], "lr": float(rate)} for i, rate in enumerate(rates)]
    )
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    targets_t = torch.from_numpy(targets).to(device)
    train_t = torch.from_numpy(train_mask).float().to(device)

    def logits(stack: int, index: torch.Tensor) -> torch.Tensor:
        """Shape (n_representations, batch, n_rates, trials, 2, n_classes)."""
        weight = torch.cat([w[stack] for w in weights], dim=2) if len(rates) > 1 else weights[0][stack]
        bias = torch.cat([b[stack] for b in biases], dim=2) if len(rates) > 1 else biases[0][stack]
        x = features[stack].index_select(1, index)
        out = torch.bmm(x, weight.to(dtype)).float() + bias
        return out.view(x.shape[0], len(index), len(rates), trials, 2, n_classes)

    update, close = _progress_bar(progress)
    try:
        for epoch in range(epochs):
            for index in torch.randperm(n_tokens, generator=generator).split(batch_size):
                index = index.to(device)
                in_train = train_t[index]  # (batch, trials)
                weight = (in_train / in_train.sum(0).clamp_min(1))[None, :, None, :, None]
                target = targets_t[index][None, :, None, :, :, None]
                loss = 0
                for stack in range(len(features)):
                    log_probs = torch.log_softmax(logits(stack, index), dim=-1)
                    picked = log_probs.gather(-1, target.expand(*log_probs.shape[:-1], 1))[..., 0]
                    loss = loss - (picked * weight).sum()
                for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters)):
                    parameter.grad = gradient
                optimizer.step()
            update((epoch + 1) / epochs, f"training probes, epoch {epoch + 1} of {epochs}")
    finally:
        close()

    test = ~train_mask
    correct = []
    with torch.no_grad():
        for stack in range(len(features)):
            hits = []
            for index in torch.arange(n_tokens, device=device).split(4096):
                predicted = logits(stack, index).argmax(-1)  # (n_representations, batch, n_rates, trials, 2)
                hits.append((predicted == targets_t[index][None, :, None]).cpu().numpy())
            correct.append(np.concatenate(hits, axis=1))
    correct = np.concatenate(correct, axis=0)  # (n_probes, n_tokens, n_rates, trials, 2)
    accuracy = (correct * test[None, :, None, :, None]).sum(1) / test.sum(0)[None, None, :, None]
    best = int(np.argmax(accuracy[..., 0].mean(axis=(0, 2))))
    return ProbeScores(
        accuracy=accuracy[:, best, :, 0],
        control_accuracy=accuracy[:, best, :, 1],
        majority_accuracy=majority,
        lr=float(rates[best]),
    )


# ------------------------------------------------------------------ table
def probe_table(
    lm: LM,
    corpus,
    *,
    n_tokens: int = 10_000,
    trials: int = 5,
    epochs: int = 50,
    lr: float | Sequence[float] = 1e-3,
    seed: int = 0,
    layers=None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """The paper's Table 1: part-of-speech probes with control tasks at every layer.

    Parameters
    ----------
    lm : LM
    corpus : path, bytes, CoNLL-U text, or sequence of Sentence
        UPOS-tagged sentences, e.g. Universal Dependencies English EWT.
    n_tokens : int, default 10000
        Labelled words (a word's first sub-token) to probe.
    trials : int, default 5
        Each trial draws its own 67/33 split, control task and initialisation.
    epochs : int, default 50
    lr : float or sequence of float, default 1e-3
        Adam's learning rate; give ``LEARNING_RATES`` to try the paper's
        three and keep the best.
    seed : int, default 0
    layers : sequence of int or "embeddings", optional
        Block indices (and ``"embeddings"``) to probe; all by default.
    progress : callable(fraction, message), optional
        Progress of the whole run (capture, then training); tqdm by default.
        The probes train on the model's device.

    Returns
    -------
    pandas.DataFrame
        One row per probed array, in depth order: columns ``layer`` (its
        label, :mod:`ecco_core.layers`: ``"embeddings"``, ``"block 0"`` =
        block 0's output, ``"block 0 FFN"``, ...), ``representation``
        (``"hidden"`` = the embeddings or a block's output, ``"ffn"`` = a
        block's FFN activations), ``block`` (the block index; missing for
        the embeddings), ``accuracy``, ``accuracy_std``,
        ``selectivity``, ``selectivity_std`` (fractions; mean and ddof=0
        standard deviation over trials), ``control_accuracy``,
        ``majority_accuracy`` (the most-frequent-tag baseline) and ``lr``.

    Examples
    --------
    >>> table = probe_table(ec.load(ec.DEFAULT_ENCODER), "en_ewt-ud-dev.conllu")
    >>> table[table.representation == "hidden"][["layer", "accuracy", "selectivity"]]
    """
    update, close = _progress_bar(progress)
    try:
        data = collect(
            lm, corpus, n_tokens=n_tokens, layers=layers,
            progress=lambda fraction, message: update(0.2 * fraction, message),
        )
        scores = train_probes(
            [data.hidden_states, data.ffn], data.tags, data.words, trials=trials, epochs=epochs, lr=lr,
            seed=seed, device=lm.device,
            progress=lambda fraction, message: update(0.2 + 0.8 * fraction, message),
        )
    finally:
        close()
    return scores_table(data, scores)


def scores_table(data: ProbeData, scores: ProbeScores) -> pd.DataFrame:
    """Table 1 rows from :func:`train_probes` run on ``[data.hidden_states, data.ffn]``."""
    frame = scores.to_frame().drop(columns="probe")
    blocks = [index - 1 if index else None for index in data.hidden_indices] + list(data.ffn_blocks)
    frame.insert(0, "block", pd.array(blocks, dtype="Int64"))
    frame.insert(0, "representation", ["hidden"] * len(data.hidden_indices) + ["ffn"] * len(data.ffn_blocks))
    frame.insert(0, "layer", list(data.hidden_layers) + list(data.ffn_layers))
    frame["majority_accuracy"] = scores.majority_accuracy.mean()
    frame["lr"] = scores.lr
    # Each block's output, then its FFN; the embeddings first.
    frame["_order"] = frame["block"].fillna(-1).astype(int) * 2 + (frame["representation"] == "ffn")
    frame = frame.sort_values("_order").drop(columns="_order").reset_index(drop=True)
    frame.attrs["n_tokens"] = len(data.tags)
    return frame


def depth_labels(frame: pd.DataFrame) -> list[str]:
    """Where in the stack each row of a :func:`probe_table` frame sits: "embeddings" or "block i".

    A block's output and its FFN share their block's label, so the two
    representations line up on one axis.
    """
    return [EMBEDDINGS if pd.isna(block) else block_label(block) for block in frame["block"]]


def table1_markdown(frame: pd.DataFrame) -> str:
    """A :func:`probe_table` frame laid out like the paper's Table 1, in percent, as Markdown.

    One line per block (and one for the embeddings), its FFN and its output side by side.
    """
    lines = [
        "| layer | FFN accuracy | FFN selectivity | hidden accuracy | hidden selectivity |",
        "|---|---:|---:|---:|---:|",
    ]
    for layer, rows in frame.groupby(depth_labels(frame), sort=False):
        cells = []
        for representation in ("ffn", "hidden"):
            row = rows[rows["representation"] == representation]
            for column in ("accuracy", "selectivity"):
                cells.append(
                    f"{100 * row[column].iloc[0]:.1f} (±{100 * row[column + '_std'].iloc[0]:.1f})" if len(row) else "-"
                )
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The paper's Table 1 (Alammar 2021, BERT-base, UD English, percent: mean, std over 5 trials),
# as reference data for comparisons: (block, None for the embeddings; ffn accuracy, std,
# ffn selectivity, std, hidden accuracy, std, hidden selectivity, std); None where the
# paper has no FFN. The paper's "layer 0" is block 0 (its output and its FFN).
_PAPER_TABLE1 = (
    (None, None, None, None, None, 87.6, 0.5, 6.1, 1.1),
    (0, 90.5, 0.4, 9.1, 0.7, 92.2, 0.3, 13.6, 0.8),
    (1, 93.3, 0.5, 14.8, 0.8, 93.6, 0.4, 17.9, 1.0),
    (2, 87.3, 0.5, 35.9, 0.5, 94.2, 0.3, 20.9, 0.8),
    (3, 84.7, 0.5, 34.6, 0.3, 94.7, 0.3, 23.9, 0.7),
    (4, 94.2, 0.3, 18.9, 0.6, 94.9, 0.2, 27.5, 0.6),
    (5, 94.6, 0.3, 22.2, 0.6, 94.8, 0.3, 31.5, 0.7),
    (6, 93.6, 0.5, 27.1, 1.1, 94.1, 0.4, 34.3, 0.8),
    (7, 92.8, 0.6, 31.5, 0.5, 93.7, 0.6, 36.0, 0.4),
    (8, 91.9, 0.6, 34.4, 1.1, 92.4, 0.7, 37.1, 0.5),
    (9, 90.5, 0.4, 35.2, 0.4, 91.6, 0.6, 37.3, 0.7),
    (10, 88.8, 0.5, 36.4, 0.6, 90.6, 0.5, 37.3, 0.9),
    (11, 87.9, 0.5, 36.5, 0.8, 89.0, 0.7, 36.7, 1.1),
)


def paper_table1() -> pd.DataFrame:
    """The Ecco paper's Table 1 (BERT-base) in :func:`probe_table`'s layout, as fractions."""
    rows = []
    for block, *values in _PAPER_TABLE1:
        for representation, (accuracy, accuracy_std, selectivity, selectivity_std) in (
            ("hidden", values[4:]), ("ffn", values[:4]),
        ):
            if accuracy is not None:
                label = site_label("ffn", block) if representation == "ffn" else (
                    residual_label(0 if block is None else block + 1)
                )
                rows.append({
                    "layer": label, "representation": representation, "block": block,
                    "accuracy": accuracy / 100, "accuracy_std": accuracy_std / 100,
                    "selectivity": selectivity / 100, "selectivity_std": selectivity_std / 100,
                })
    frame = pd.DataFrame(rows)
    frame["block"] = frame["block"].astype("Int64")
    return frame
