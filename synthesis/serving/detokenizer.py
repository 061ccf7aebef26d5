"""A stream's text, token by token, without decoding the whole answer again at each token.

Decoding a token alone is wrong for most tokenizers: a byte-level BPE token may hold half of a
multi-byte character, and SentencePiece drops a word's leading space at the start of a decode.
So each step decodes a short look-back window (the tokens of the previous piece, plus the new
ones) twice, without and with the new tokens, and gives out the difference; text that ends inside
a multi-byte character ("\\ufffd") is held back until the character is complete. The cost per
token is the window's, not the answer's (the idea of vLLM's detokenize_incrementally).
"""
from collections.abc import Iterable

REPLACEMENT = "\ufffd"  # what a decode shows for an incomplete UTF-8 sequence


class IncrementalDetokenizer:
    """push() each generated token, send what it returns; finish() returns what was held back.
    The pieces concatenated are tokenizer.decode(tokens, skip_special_tokens=True) of the tokens
    pushed (`skip_ids`, such as end-of-sequence ids, are dropped)."""

    def __init__(self, tokenizer, *, skip_ids: Iterable[int] = ()):
        self.tokenizer = tokenizer
        self.skip_ids = frozenset(skip_ids)
        self.tokens: list[int] = []
        self.window_start = 0  # first token of the look-back window
        self.read_until = 0  # tokens whose text was given out

    def push(self, token: int) -> str:
        if token in self.skip_ids:
            return ""
        self.tokens.append(token)
        return self._new_text(final=False)

    def finish(self) -> str:
        """The text still held back (an answer may end inside a character: it is sent as decoded)."""
        return self._new_text(final=True)

    def _new_text(self, *, final: bool) -> str:
        known = self._decode(self.tokens[self.window_start:self.read_until])
        text = self._decode(self.tokens[self.window_start:])
        if len(text) <= len(known) or (text.endswith(REPLACEMENT) and not final):
            return ""
        self.window_start, self.read_until = self.read_until, len(self.tokens)
        return text[len(known):]

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True) if tokens else ""
