"""fgclip.tokenizer: offline word-level tokenizer loadable with AutoTokenizer."""

import pytest
from transformers import AutoTokenizer

from fgclip.tokenizer import build_word_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    build_word_tokenizer(["a photo of", "small red circle at the top left", "Large BLUE square."], d)
    return d


def test_round_trip_load(tok_dir):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|startoftext|>", "<|endoftext|>", "<|pad|>")
    assert tok.pad_token_id == 0 and tok.unk_token_id == 1
    assert tok.model_max_length == 77
    ids = tok("A photo of a small RED circle, at the top-left!").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids  # lower-cased; punctuation split off and known
    words = tok.convert_ids_to_tokens(ids[1:-1])
    assert words == ["a", "photo", "of", "a", "small", "red", "circle", ",", "at", "the", "top", "-", "left", "!"]
    assert tok("zebra").input_ids[1] == tok.unk_token_id


def test_eos_is_highest_id(tok_dir):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert tok.eos_token_id == max(tok.get_vocab().values()) == len(tok) - 1


def test_truncation_keeps_eos_and_pads_right(tok_dir):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    texts = ["small red circle at the top left " * 5, "red", ""]
    ids = tok(texts, max_length=8, padding="max_length", truncation=True, return_tensors="pt").input_ids
    assert ids.shape == (3, 8)
    assert ids[0, 0] == tok.bos_token_id and ids[0, -1] == tok.eos_token_id  # truncated, eos kept
    assert ids[1].tolist()[:3] == [tok.bos_token_id, tok.convert_tokens_to_ids("red"), tok.eos_token_id]
    assert ids[1, 3:].eq(0).all()  # right padding with id 0
    assert ids[2].tolist()[:2] == [tok.bos_token_id, tok.eos_token_id] and ids[2, 2:].eq(0).all()
    # both CLIP pooling rules (argmax id / first eos) find the same position
    for row in ids:
        assert row.argmax().item() == row.tolist().index(tok.eos_token_id)
