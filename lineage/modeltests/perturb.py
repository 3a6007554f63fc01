"""Seeded text perturbations for invariance tests (as in MGit's perturbation tests).

Each function maps a text to a perturbed text that a robust classifier should
label the same way; the same seed gives the same perturbations.

>>> import random
>>> casing("Great movie", random.Random(0)) in {"great movie", "GREAT MOVIE", "Great Movie"}
True
>>> word_swap("one two three", random.Random(1)).count(" ")
2
"""

from __future__ import annotations

import random
from collections.abc import Callable


def typos(text: str, rng: random.Random, rate: float = 0.1) -> str:
    """Swap two inner letters, or drop one, in about `rate` of the words longer than 3."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 3 and rng.random() < rate:
            j = rng.randrange(1, len(word) - 2)
            if rng.random() < 0.5:
                word = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
            else:
                word = word[:j] + word[j + 1 :]
            words[i] = word
    return " ".join(words)


def casing(text: str, rng: random.Random, rate: float = 0.0) -> str:
    """All lower, all upper or title case, picked at random."""
    return rng.choice((str.lower, str.upper, str.title))(text)


def word_swap(text: str, rng: random.Random, rate: float = 0.0) -> str:
    """Swap one random pair of adjacent words."""
    words = text.split(" ")
    if len(words) < 2:
        return text
    i = rng.randrange(len(words) - 1)
    words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


PERTURBATIONS: dict[str, Callable[[str, random.Random, float], str]] = {
    "typos": typos,
    "casing": casing,
    "word_swap": word_swap,
}
