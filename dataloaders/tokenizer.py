"""CLIP BPE tokenizer producing fixed-length id / mask arrays, as the reference's `_get_text` does."""
from __future__ import annotations

import numpy as np
from open_clip.tokenizer import SimpleTokenizer

from dataloaders.errors import DataError


class ClipTokenizer:
    """Wraps open_clip's SimpleTokenizer (it ships the BPE vocabulary, nothing is downloaded)."""

    def __init__(self) -> None:
        self._bpe = SimpleTokenizer()
        self.start_id = self._bpe.sot_token_id  # 49406
        self.end_id = self._bpe.eot_token_id  # 49407

    @property
    def vocab_size(self) -> int:
        return self._bpe.vocab_size

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` without start/end tokens (lower-cased, whitespace- and ftfy-cleaned)."""
        return self._bpe.encode(text)

    def decode_one(self, token_id: int) -> str:
        """The text of one BPE id (a word or a word piece), for labelling plots."""
        return self._bpe.decode([int(token_id)]).strip()

    def __call__(self, text: str, max_words: int) -> tuple[np.ndarray, np.ndarray]:
        """Return int64 ids (max_words,) = [start, bpe[:max_words-2], end, 0...] and mask (max_words,)."""
        if max_words < 2:
            raise DataError(f"--max_words must be at least 2 (start and end tokens), got {max_words}")
        body = self.encode(text)[: max_words - 2]
        tokens = [self.start_id, *body, self.end_id]
        ids = np.zeros(max_words, dtype=np.int64)
        mask = np.zeros(max_words, dtype=np.int64)
        ids[: len(tokens)] = tokens
        mask[: len(tokens)] = 1
        return ids, mask
