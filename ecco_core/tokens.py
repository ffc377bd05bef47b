"""The one place for tokenisation rules: prompts, answers, following words, ``[MASK]``, special tokens.

- A prompt is read with the model's special tokens (BOS, ``[CLS]`` ...), an
  answer as it continues a prompt, without them (:func:`encode_prompt`,
  :func:`encode_answer`).
- A word is spelled as it would follow earlier text (:func:`as_following_word`:
  ``"is"`` -> ``" is"``): byte-BPE vocabularies hold the spaced and the bare
  word as different tokens, and the spaced one is what follows a word.
- ``[MASK]`` in a masked model's text is its mask token whatever the family
  spells it (RoBERTa's ``<mask>``, :func:`model_text`).
- A token is shown as its id decoded on its own (:func:`token_strings`); a
  prompt's tokens as the analyses count its positions (:func:`prompt_tokens`).

>>> ids, position = read_position(lm, "The keys to the cabinet")  # where the next token is predicted
>>> candidate_ids(lm, "The keys to the cabinet", "is")              # the ids of " is", as it follows the text
"""

from __future__ import annotations

import codecs
import functools
import re

import numpy as np

from . import _checks as checks
from .models import LM
from .text import quoted_token, quoted_tokens


def check_text(text, argument: str = "text") -> str:
    """``text`` when it is a string with something besides whitespace; else an error naming ``argument``."""
    allowed = "a string of text to analyse (not empty or whitespace only)"
    if not isinstance(text, str):
        raise checks.invalid(argument, text, allowed, TypeError)
    if not text.strip():
        raise checks.invalid(argument, text, allowed)
    return text


@functools.cache
def _byte_of() -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's ``bytes_to_unicode``, as transformers ships it) read backwards: each
    character -> its byte. Imported on the first piece of a UTF-8 character only."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


_BYTE_FALLBACK = re.compile(r"<0x[0-9A-F]{2}>")
codecs.register_error("ecco_token_bytes", lambda error: (
    "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end))


def _token_string(tokenizer, token_id: int) -> str:
    """One id decoded on its own; a piece of a UTF-8 character (``"\ufffd"`` alone) shows its bytes: ``"<0xE2>"``.

    As byte-fallback vocabularies name their byte tokens; the bytes are read from a byte-level BPE token's
    characters, whatever whole characters the token holds stay text (``" <0xE2><0x80>"``).
    """
    decoded = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
    if "\ufffd" not in decoded:
        return decoded
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if isinstance(piece, str) and _BYTE_FALLBACK.fullmatch(piece):
        return piece
    if isinstance(piece, str) and piece and all(char in _byte_of() for char in piece):
        return bytes(_byte_of()[char] for char in piece).decode("utf-8", errors="ecco_token_bytes")
    return decoded


# Punctuation that closes what comes before it: a WordPiece token of these is written without a space before it.
_CLOSING = frozenset(".,!?;:)]}%")


def _word_piece_prefix(tokenizer) -> str | None:
    """The prefix that marks a word-internal piece (``"##"``) when ``tokenizer`` is WordPiece (BERT's), else None."""
    from tokenizers.models import WordPiece

    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    if isinstance(model, WordPiece):
        return model.continuing_subword_prefix
    return "##" if hasattr(tokenizer, "wordpiece_tokenizer") else None


def _as_spaced(tokenizer, strings: tuple[str, ...]) -> tuple[str, ...]:
    """WordPiece tokens spelled as byte-level BPE spells them, so that joined they read as words.

    WordPiece marks a piece inside a word (``"##bel"``) and leaves a word's
    first piece bare (``"un"``); BPE marks the word's start with a space
    instead (``" un"``, ``"bel"``), the convention every view reads. A word
    gets a leading space; closing punctuation (``"."``, ``","``) and the
    structural special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``) do not;
    ``[MASK]`` and ``[UNK]`` stand for a word and do.
    """
    prefix = _word_piece_prefix(tokenizer)
    if not prefix:
        return strings
    words = {getattr(tokenizer, "mask_token", None), getattr(tokenizer, "unk_token", None)}
    structural = set(getattr(tokenizer, "all_special_tokens", []) or []) - words
    return tuple(
        token[len(prefix):] if token.startswith(prefix) and len(token) > len(prefix)
        else token if token in structural or not token or token[0] in _CLOSING
        else " " + token
        for token in strings
    )


def token_strings(tokenizer, token_ids) -> tuple[str, ...]:
    """Display text of each token id: the id decoded on its own (``" Paris"``), a piece of a UTF-8 character as
    its bytes (``"<0xE2>"``, the byte-fallback tokens' names) rather than ``"\ufffd"``.

    A word's first token starts with a space in every family, a piece inside a word does not: a WordPiece
    (BERT) model's ``"un"``, ``"##bel"`` are written ``" un"``, ``"bel"``, as byte-level BPE writes them.
    """
    return _as_spaced(tokenizer, tuple(_token_string(tokenizer, int(i)) for i in token_ids))


def special_mask(tokenizer, token_ids) -> np.ndarray:
    """True for each id that is one of the tokenizer's special tokens (BOS, [CLS], [SEP], ...): shape (n_tokens,)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return np.array([int(i) in special for i in token_ids], dtype=bool)


def as_following_word(word: str, text: str = "") -> str:
    """``word`` spelled as it follows earlier text: ``"is"`` -> ``" is"``.

    A word gets a leading space unless it already has one, starts with
    punctuation (``","`` stays ``","``) or ``text`` ends with whitespace.
    Byte-BPE vocabularies hold the spaced and the bare word as different tokens.
    """
    if word[:1].isspace() or not word[:1].isalnum() or text[-1:].isspace():
        return word
    return " " + word


def model_text(lm: LM, text: str) -> str:
    """``text`` with ``[MASK]`` spelled as a masked model's mask token (RoBERTa's ``<mask>``); else unchanged."""
    mask = getattr(lm.tokenizer, "mask_token", None)
    return text.replace("[MASK]", mask) if not lm.is_causal and mask else text


def encode_prompt(lm: LM, text: str, *, argument: str = "text") -> list[int]:
    """Token ids of ``text`` as the model reads a prompt (with its special tokens); ``argument`` names it in errors."""
    check_text(text, argument)
    return lm.tokenizer(text, add_special_tokens=True)["input_ids"]


def prompt_tokens(lm: LM, text: str, *, argument: str = "text") -> tuple[str, ...]:
    """Display strings of ``text``'s tokens as an analysis reads the prompt: special tokens in, ``[MASK]``
    spelled as a masked model's mask token (:func:`model_text`). Its positions are the ones that
    :func:`read_position` and ``ec.Noise(positions)`` count; ``argument`` names ``text`` in errors."""
    return token_strings(lm.tokenizer, encode_prompt(lm, model_text(lm, text), argument=argument))


def encode_answer(lm: LM, answer: str) -> list[int]:
    """Token ids of a given answer as it continues a prompt (no special tokens)."""
    check_text(answer, "answer")
    return lm.tokenizer(answer, add_special_tokens=False)["input_ids"]


def read_position(lm: LM, text: str) -> tuple[list[int], int]:
    """Token ids of ``text`` (``[MASK]`` as the model's mask token) and the position whose prediction is read.

    A causal model's next token is read after the last position; a masked
    model's at its one mask token. Raises a ValueError when the text fills
    the context (causal), exceeds it, or (masked) holds no mask or several.
    """
    input_ids = encode_prompt(lm, model_text(lm, text))
    limit = lm.context_length
    if lm.is_causal:
        if len(input_ids) >= limit:
            raise ValueError(
                f"text is {len(input_ids)} tokens and fills the model's context of {limit} tokens: there is "
                "no next position to predict; shorten it"
            )
        return input_ids, len(input_ids) - 1
    if len(input_ids) > limit:
        raise ValueError(f"text is {len(input_ids)} tokens, more than the model's context of {limit} tokens")
    masks = [i for i, token_id in enumerate(input_ids) if token_id == lm.tokenizer.mask_token_id]
    if len(masks) != 1:
        raise ValueError(
            f"text must hold exactly one {lm.tokenizer.mask_token} for the masked model {lm.name!r} (where the "
            f"candidates go), found {len(masks)}"
        )
    return input_ids, masks[0]


def one_token_word(lm: LM, word, argument: str) -> tuple[int, str]:
    """The one token id and text of ``word`` as it follows a text (a contrast, a foil); ``argument`` names it in
    errors, so a page can say it in the words of its own control. The word is spelled as
    :func:`as_following_word` gives it ("Paris" -> " Paris").
    """
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"{argument} must be a non-empty word, got {word!r}")
    ids = lm.tokenizer(as_following_word(word), add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = token_strings(lm.tokenizer, ids)
        raise ValueError(
            f"{argument} {quoted_token(word)} is {len(ids)} tokens for this model {quoted_tokens(pieces)}; give a "
            "word that is one token as it follows the text"
        )
    return ids[0], token_strings(lm.tokenizer, ids)[0]


def word_id(lm: LM, text: str, word, argument: str) -> tuple[int, list[str]]:
    """The first token id of ``word`` read as it follows ``text`` (:func:`candidate_ids`), and a note when the
    word is several tokens; ``argument`` names it in errors and notes."""
    if not isinstance(word, str):
        raise TypeError(f"{argument} must be a word (str), got {type(word).__name__}")
    if not word.strip():
        raise ValueError(f"{argument} is empty; give the word the model should (or should not) say, e.g. 'Mary'")
    try:
        ids = candidate_ids(lm, text if lm.is_causal else "", word)
    except ValueError as error:
        raise ValueError(f"{argument}: {error}") from None
    notes = []
    if len(ids) > 1:
        notes.append(
            f"{argument} {quoted_token(word)} is {len(ids)} tokens {quoted_tokens(token_strings(lm.tokenizer, ids))}; "
            "its first token is measured"
        )
    return ids[0], notes


def candidate_ids(lm: LM, text: str, candidate) -> list[int]:
    """Token ids of one candidate (a word, or a token id taken as is) as it would follow ``text`` (or fill its mask).

    A causal model's word is tokenised after the text, then the text's own
    tokens are cut off; where the two merge across the boundary, the spaced
    word is tokenised alone.
    """
    tokenizer = lm.tokenizer
    vocab_size = lm.vocab_size
    if checks.is_whole(candidate):
        if not 0 <= candidate < vocab_size:
            raise checks.invalid("each candidate token id", candidate, f"in the vocabulary, 0 to {vocab_size - 1}")
        return [int(candidate)]
    if not isinstance(candidate, str) or not candidate.strip():
        error = ValueError if isinstance(candidate, str) else TypeError
        raise checks.invalid("each candidate", candidate, "a word such as 'is' or a token id (int)", error)
    spaced = as_following_word(candidate, text if lm.is_causal else "")
    ids = []
    if lm.is_causal:
        alone = tokenizer(text, add_special_tokens=False)["input_ids"]
        joined = tokenizer(text + spaced, add_special_tokens=False)["input_ids"]
        if joined[: len(alone)] == alone:
            ids = joined[len(alone) :]
    ids = ids or tokenizer(spaced, add_special_tokens=False)["input_ids"]
    if not ids or (tokenizer.unk_token_id is not None and ids[0] == tokenizer.unk_token_id):
        raise ValueError(
            f"candidate {candidate!r} is not in the vocabulary of {lm.name!r}: it tokenises to "
            f"{token_strings(tokenizer, ids) or 'nothing'}"
        )
    return ids
