"""Reading UPOS-tagged CoNLL-U corpora, and putting each word's tag on its first sub-token.

The one CoNLL-U reader of the library: probing reads words and tags with it,
and :func:`ud_sentences` reads the sentences' text (similarity's corpus).

Trap: a word's tag goes on its **first** sub-token only, and the words are
tokenised as the running text ``" ".join(words)`` that a model reads. Feeding
a byte-level BPE tokenizer (GPT-2, SmolLM) the words one by one
(``is_split_into_words=True``) drops the leading space (``"Jennifer"`` becomes
``J enn ifer`` instead of ``ĠJennifer``), so the model would be probed on
text it never sees; aligning through character offsets avoids that for every
fast tokenizer.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import conllu
import numpy as np

from .. import _checks as checks

# Universal Dependencies English EWT, dev split, shipped with the package (CC BY-SA 4.0).
UD_ENGLISH_EWT_DEV = Path(__file__).resolve().parent.parent / "data" / "ud-english-ewt" / "en_ewt-ud-dev.conllu"

UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)

_ID = re.compile(r"^(\d+|\d+-\d+|\d+\.\d+)$")


@dataclass(frozen=True)
class Sentence:
    """One sentence's syntactic words and their UPOS tags (multiword ranges and empty nodes left out).

    ``text`` is the sentence's ``# text =`` line when the corpus has one
    (the raw text, with its original spacing), else None; it takes no part
    in comparisons.
    """

    words: tuple[str, ...]
    tags: tuple[str, ...]
    text: str | None = field(default=None, compare=False)


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

    A caller that stops early (:func:`ecco_core.probing.collect` once it has
    ``n_tokens`` words) never parses the rest: 10,000 words of a 50 MB
    treebank cost its first few hundred kilobytes, and a malformed line after
    them is never reached.
    """
    found = False
    for block in _sentence_blocks(_conllu_text(source)):
        for token_list in conllu.parse(block):
            words = [token for token in token_list if isinstance(token["id"], int)]
            if words:
                found = True
                yield Sentence(
                    tuple(token["form"] for token in words), tuple(token["upos"] for token in words),
                    token_list.metadata.get("text"),
                )
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


def ud_sentences(n: int = 50, *, path: str | Path | None = None, min_words: int = 5) -> list[str]:
    """The first ``n`` sentences of a CoNLL-U file (default: the bundled UD English EWT dev split), as raw text.

    Parameters
    ----------
    n : int
        How many sentences (those shorter than ``min_words`` words are skipped).
    path : str or Path, optional
        A ``.conllu`` file; its sentences need a ``# text =`` line. It is
        read and checked by :func:`iter_conllu`.

    Returns
    -------
    list of str, length <= n
    """
    n = checks.whole("n", n, low=1)
    path = Path(UD_ENGLISH_EWT_DEV if path is None else path)
    if not path.is_file():
        raise checks.invalid("path", str(path), "a CoNLL-U file that exists")
    sentences = []
    # Read lazily: parsing stops at the n-th sentence.
    for sentence in iter_conllu(path):
        text = (sentence.text or "").strip()
        if len(text.split()) >= min_words:
            sentences.append(text)
            if len(sentences) == n:
                break
    return sentences
