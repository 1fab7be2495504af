"""An offline word-level tokenizer for the synthetic FG-CLIP data.

Real FG-CLIP uses CLIP's BPE tokenizer, which would need a download. The
synthetic captions use a closed vocabulary of a few dozen words, so a
word-level tokenizer built locally with the ``tokenizers`` library is enough
and keeps everything offline. It is wrapped as a ``PreTrainedTokenizerFast``
and saved with ``save_pretrained`` so ``AutoTokenizer.from_pretrained(dir)``
loads it like any hub tokenizer.

Layout of the vocabulary (mirrors CLIP where it matters):
    0            <|pad|>          padding (right side)
    1            <|unk|>          unknown word
    2            <|startoftext|>  bos, added by the post-processor
    3 .. V-2     words and punctuation, sorted
    V-1          <|endoftext|>    eos, the HIGHEST id

CLIPTextModel pools the hidden state at the eos position, found either as
``argmax(input_ids)`` (legacy rule) or as the first ``eos_token_id``; making
eos the highest id means both rules pick the same token.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"
# Always present, so commas/full stops in long captions never become <|unk|>.
PUNCTUATION = list(".,;:!?'\"-()")


def _pre_tokenizer():
    # split on whitespace, then isolate every punctuation character
    return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")])


def _normalizer():
    return normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])


def build_word_tokenizer(
    words: Iterable[str], out_dir: str | Path | None = None, model_max_length: int = 77
) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer over ``words`` and (optionally) save it to ``out_dir``.

    ``words`` may be single words or whole captions: each string is normalised
    (NFKC + lower-case) and split on whitespace/punctuation exactly as at
    encode time, and every piece becomes a vocabulary entry. Returns the
    wrapped ``PreTrainedTokenizerFast``; when ``out_dir`` is given it is saved
    there with ``save_pretrained`` (loadable with ``AutoTokenizer``, offline).
    """
    norm, pre = _normalizer(), _pre_tokenizer()
    pieces: set[str] = set(PUNCTUATION)
    for w in words:
        text = norm.normalize_str(w)
        pieces.update(p for p, _ in pre.pre_tokenize_str(text))
    pieces -= {PAD, UNK, BOS, EOS, ""}

    vocab = {PAD: 0, UNK: 1, BOS: 2}
    for p in sorted(pieces):
        vocab[p] = len(vocab)
    vocab[EOS] = len(vocab)  # highest id, like CLIP's 49407
    bos_id, eos_id = vocab[BOS], vocab[EOS]

    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    # bos ... eos around every sequence. HF truncation counts these specials,
    # so truncating to max_length keeps eos as the last real token.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        pair=f"{BOS} $A {EOS} $B {EOS}",
        special_tokens=[(BOS, bos_id), (EOS, eos_id)],
    )

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
    )
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(out_dir))
    return fast
