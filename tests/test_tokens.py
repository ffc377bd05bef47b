"""ecco_core.tokens: the tokenisation rules every analysis shares."""

import copy
import re
from html import unescape

import pytest

import ecco_core as ec
from ecco_core.plots import token_html
from ecco_core.tokens import (
    candidate_ids, encode_answer, encode_prompt, model_text, prompt_tokens, read_position, token_strings,
)
from families import tiny_lm


@pytest.fixture(scope="module")
def angle_mask(lm, encoder):
    """A masked model whose tokenizer spells its mask ``<mask>`` (as RoBERTa's does), on a real vocabulary."""
    tokenizer = copy.deepcopy(lm.tokenizer)
    tokenizer.add_special_tokens({"mask_token": "<mask>"})
    return tiny_lm("roberta", causal_tokenizer=lm.tokenizer, masked_tokenizer=tokenizer)


def test_mask_is_spelled_as_the_models_own_mask_token(lm, encoder, angle_mask):
    text = "The keys [MASK] here."
    assert model_text(angle_mask, text) == "The keys <mask> here."
    assert model_text(encoder, text) == text  # BERT's own spelling
    assert model_text(lm, text) == text  # a causal model has no mask: the text is the text
    ids, position = read_position(angle_mask, text)
    assert ids == encode_prompt(angle_mask, "The keys <mask> here.")
    assert ids[position] == angle_mask.tokenizer.mask_token_id
    # watch and patch read the same position through the same rule
    assert ec.watch(angle_mask, text, ["is"]).positions.tolist() == [position]
    assert ec.patch(angle_mask, text, "The door [MASK] here.", "is", sites="residual").read_position == position


def test_prompt_tokens_count_the_positions_the_analyses_read(lm, angle_mask):
    """What the Causal tracing page offers to corrupt: ec.Noise's positions, [MASK] as the model's mask token."""
    text = "The keys [MASK] here."
    ids, position = read_position(angle_mask, text)
    tokens = prompt_tokens(angle_mask, text)
    assert tokens == token_strings(angle_mask.tokenizer, ids) and tokens[position] == "<mask>"
    assert len(encode_prompt(angle_mask, text)) != len(tokens)  # the bare text spells [MASK] as several tokens
    assert prompt_tokens(lm, "The keys") == token_strings(lm.tokenizer, encode_prompt(lm, "The keys"))
    with pytest.raises(ValueError, match="clean must be a string of text to analyse"):
        prompt_tokens(lm, " ", argument="clean")


def test_read_position_is_after_the_prompt_for_a_causal_model(lm):
    ids, position = read_position(lm, "The keys to the cabinet")
    assert ids == encode_prompt(lm, "The keys to the cabinet") and position == len(ids) - 1


def test_a_candidate_is_tokenised_as_it_follows_the_text(lm):
    text = "The keys to the cabinet"
    prompt = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    joined = lm.tokenizer(text + " is", add_special_tokens=False)["input_ids"]
    assert candidate_ids(lm, text, "is") == joined[len(prompt) :]
    assert token_strings(lm.tokenizer, candidate_ids(lm, text, "is")) == (" is",)
    assert token_strings(lm.tokenizer, candidate_ids(lm, text + " ", "is")) == ("is",)
    assert candidate_ids(lm, text, 42) == [42]
    with pytest.raises(TypeError, match="each candidate must be a word such as 'is' or a token id"):
        candidate_ids(lm, text, 1.5)


def test_prompt_and_answer_name_their_argument(lm):
    assert encode_answer(lm, " Paris") == lm.tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match=r"texts\[2\] must be a string of text to analyse"):
        encode_prompt(lm, "  ", argument="texts[2]")
    with pytest.raises(TypeError, match="answer must be a string of text to analyse"):
        encode_answer(lm, None)


def test_a_piece_of_a_utf8_character_shows_its_bytes_not_a_replacement_mark(lm):
    """Byte-level BPE splits 日 (E6 97 A5) into tokens that each decode alone to "\ufffd": each shows its bytes as
    the byte-fallback vocabularies name them ("<0xE6>"); whole characters stay text, and the bytes spell the text."""
    import re

    ids = lm.tokenizer.encode("The 日本 keys", add_special_tokens=False)
    assert any(lm.tokenizer.decode([i]) == "\ufffd" for i in ids)  # the case: a token that is part of 日 alone
    shown = token_strings(lm.tokenizer, ids)
    assert not any("\ufffd" in token for token in shown), shown
    lone = [token for i, token in zip(ids, shown) if lm.tokenizer.decode([i]) == "\ufffd"]
    assert all(re.fullmatch(r"(<0x[0-9A-F]{2}>)+", token) for token in lone), lone
    spelled = re.sub(rb"<0x([0-9A-F]{2})>", lambda m: bytes.fromhex(m[1].decode()), "".join(shown).encode())
    assert spelled.decode("utf-8") == "The 日本 keys"
    assert token_strings(lm.tokenizer, lm.tokenizer.encode(" Paris", add_special_tokens=False)) == (" Paris",)


def test_an_encoders_tokens_read_as_words(encoder):
    """#31 readability: WordPiece marks a piece inside a word ("##bel") and leaves a word bare, so the token views
    ran words together ("cabinetare onthe"). Its tokens are spelled as BPE's are (a word starts with a space), so
    joined they read as the tokenizer's own decoding, in the text views too."""
    text = "The keys to the [MASK] are on the table. Unbelievably, Rome owes nothing."
    ids = encode_prompt(encoder, text)
    tokens = prompt_tokens(encoder, text)
    assert tokens[:3] == ("[CLS]", " the", " keys") and " un" in tokens and "bel" in tokens
    assert tokens[-1] == "[SEP]" and " [MASK]" in tokens
    assert "".join(tokens[1:-1]).strip() == encoder.tokenizer.decode(ids[1:-1])
    shown = unescape(re.sub(r"<[^>]+>", "", token_html(tokens)))
    assert shown == "[CLS] the keys to the [MASK] are on the table. unbelievably, rome owes nothing.[SEP]"
    assert token_strings(encoder.tokenizer, ids[1:2]) == (" the",)  # a word alone, as it is in the text
