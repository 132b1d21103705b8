"""ClipTokenizer: start / end tokens, truncation at max_words, padding and mask."""
from __future__ import annotations

import numpy as np
import pytest
from open_clip.tokenizer import tokenize

from dataloaders.tokenizer import ClipTokenizer


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return ClipTokenizer()


def test_vocab_and_special_ids(tok):
    assert tok.vocab_size == 49408
    assert (tok.start_id, tok.end_id) == (49406, 49407)


def test_short_text_padded_and_masked(tok):
    ids, mask = tok("A  Cat!", max_words=10)
    body = tok.encode("a cat!")
    assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == mask.shape == (10,)
    assert ids.tolist() == [49406, *body, 49407] + [0] * (10 - 2 - len(body))
    assert mask.tolist() == [1] * (len(body) + 2) + [0] * (10 - 2 - len(body))


def test_matches_open_clip_tokenize(tok):
    text = "a man is playing a guitar on stage"
    ids, mask = tok(text, max_words=77)
    assert ids.tolist() == tokenize([text], context_length=77)[0].tolist()
    assert mask.sum() == len(tok.encode(text)) + 2


def test_truncation_keeps_end_token(tok):
    text = "one two three four five six seven eight nine ten eleven twelve"
    ids, mask = tok(text, max_words=8)
    assert ids.tolist() == [49406, *tok.encode(text)[:6], 49407]
    assert mask.tolist() == [1] * 8


def test_exact_fit_and_too_small(tok):
    text = "red circle"
    n = len(tok.encode(text))
    ids, mask = tok(text, max_words=n + 2)
    assert ids[-1] == 49407 and mask.all()
    with pytest.raises(ValueError, match="max_words"):
        tok(text, max_words=1)
