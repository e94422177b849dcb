"""Banned-word filter for danmaku: case- and width-insensitive (NFKC + casefold).

The default list (``banned_words.txt``) holds absolute-claim terms that hosts may not use under
advertising law; operators add more with ``--banned-words``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

DEFAULT_LIST = Path(__file__).with_name("banned_words.txt")


def normalize(text: str) -> str:
    """Fold width (full-width ``ＢＥＳＴ`` → ``best``), compatibility forms and case."""
    return unicodedata.normalize("NFKC", text).casefold()


def default_words() -> list[str]:
    lines = DEFAULT_LIST.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("# ")]


def _pattern(word: str) -> str:
    escaped = re.escape(word)
    if word.isascii():
        # Whole words only for Latin terms: "best" must not hit "asbestos".
        return rf"(?<![0-9a-z]){escaped}(?![0-9a-z])"
    return escaped


class BannedWords:
    """One compiled matcher over the normalized word list."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = sorted({normalize(w) for w in words if w.strip()}, key=len, reverse=True)
        self._regex = re.compile("|".join(_pattern(w) for w in self.words)) if self.words else None

    def find(self, text: str) -> str | None:
        """The first banned word in ``text`` (normalized form), or None."""
        if self._regex is None:
            return None
        match = self._regex.search(normalize(text))
        return match.group(0) if match else None


def build(extra: Iterable[str] = ()) -> BannedWords:
    """The default list plus the operator's extra words."""
    return BannedWords([*default_words(), *extra])
