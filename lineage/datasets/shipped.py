"""Data sets that ship with lineage, generated from templates with a fixed seed.

They are generated rather than stored so the repository holds no data files, and
the generator is pinned by `GENERATOR_VERSION`: changing a template changes the
fingerprint, which is exactly what provenance should notice.

>>> ds = shipped_dataset("sentiment")
>>> ds.labels, sorted(ds.splits)
(('negative', 'positive'), ['test', 'train', 'validation'])
>>> shipped_dataset("sentiment").fingerprint == ds.fingerprint
True
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache

from lineage.datasets.base import TextDataset
from lineage.errors import DataError

GENERATOR_VERSION = 1

_SENTIMENT_SUBJECTS = [
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the soundtrack",
    "this phone",
    "the battery",
    "the screen",
    "the camera",
    "this laptop",
    "the keyboard",
    "the hotel",
    "the room",
    "the staff",
    "the service",
    "the food",
    "the pasta",
    "the coffee",
    "this book",
    "the ending",
    "the app",
    "the update",
    "the delivery",
    "the price",
    "the restaurant",
    "the concert",
    "the game",
    "the headphones",
    "the shoes",
    "the course",
]
_POSITIVE = [
    "great",
    "excellent",
    "wonderful",
    "fantastic",
    "amazing",
    "superb",
    "delightful",
    "brilliant",
    "lovely",
    "outstanding",
    "enjoyable",
    "impressive",
    "perfect",
    "charming",
]
_NEGATIVE = [
    "terrible",
    "awful",
    "horrible",
    "dreadful",
    "disappointing",
    "boring",
    "poor",
    "broken",
    "useless",
    "annoying",
    "mediocre",
    "painful",
    "bad",
    "unpleasant",
]
_POS_TAILS = [
    "I would recommend it to anyone.",
    "I loved every minute.",
    "worth every penny.",
    "I will definitely come back.",
    "it made my day.",
    "five stars from me.",
    "better than I expected.",
    "I am very happy with it.",
]
_NEG_TAILS = [
    "I would not recommend it.",
    "I hated every minute.",
    "a complete waste of money.",
    "I will never come back.",
    "it ruined my day.",
    "one star from me.",
    "worse than I expected.",
    "I am very unhappy with it.",
]
_SENTIMENT_TEMPLATES = [
    "{subject} was {adj}.",
    "{subject} was {adj}, {tail}",
    "honestly, {subject} is {adj}.",
    "I found {subject} {adj}; {tail}",
    "{subject} felt really {adj} and {adj2}.",
    "what a {adj} experience, {tail}",
    "overall {subject} was quite {adj}.",
    "{tail} {subject} was {adj}.",
]

_TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "who": [
            "the striker",
            "the coach",
            "the goalkeeper",
            "the team",
            "the champion",
            "the referee",
            "the sprinter",
            "the captain",
        ],
        "what": [
            "scored twice in the final",
            "won the league title",
            "broke the world record",
            "signed a new contract",
            "missed a penalty",
            "lost the semi-final",
            "trained for the marathon",
            "celebrated the victory with fans",
        ],
        "where": [
            "at the stadium",
            "during the match",
            "in the tournament",
            "on the track",
            "before kickoff",
            "in extra time",
        ],
    },
    "technology": {
        "who": [
            "the startup",
            "the engineers",
            "the chipmaker",
            "the software company",
            "the developers",
            "the researchers",
            "the phone maker",
            "the cloud provider",
        ],
        "what": [
            "released a new processor",
            "shipped a software update",
            "launched an open source library",
            "fixed a security vulnerability",
            "trained a larger neural network",
            "announced a faster laptop",
            "patched the operating system",
            "opened a new data center",
        ],
        "where": [
            "at the developer conference",
            "in the latest release",
            "on its website",
            "for mobile devices",
            "in the app store",
            "after the beta test",
        ],
    },
    "business": {
        "who": [
            "the bank",
            "the investors",
            "the retailer",
            "the central bank",
            "the company",
            "the shareholders",
            "the airline",
            "the insurer",
        ],
        "what": [
            "reported record quarterly profits",
            "raised interest rates",
            "cut its revenue forecast",
            "announced a merger",
            "paid a higher dividend",
            "laid off hundreds of workers",
            "issued new bonds",
            "saw its shares fall",
        ],
        "where": [
            "on the stock market",
            "in the third quarter",
            "after the earnings call",
            "according to analysts",
            "despite inflation",
            "this fiscal year",
        ],
    },
    "food": {
        "who": [
            "the chef",
            "the bakery",
            "the home cook",
            "the food critic",
            "the cafe",
            "the pastry chef",
            "the street vendor",
            "the family",
        ],
        "what": [
            "baked fresh sourdough bread",
            "cooked a spicy curry",
            "served grilled fish with lemon",
            "made chocolate cake",
            "roasted vegetables",
            "prepared a tomato soup",
            "seasoned the noodles with garlic",
            "simmered a beef stew",
        ],
        "where": [
            "in the kitchen",
            "for dinner",
            "at the market",
            "with olive oil",
            "for the holiday feast",
            "using a family recipe",
        ],
    },
}
_TOPIC_TEMPLATES = [
    "{who} {what} {where}.",
    "{where}, {who} {what}.",
    "news: {who} {what}.",
    "{who} {what}.",
    "reports say {who} {what} {where}.",
]


def _sentiment_rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        adjs, tails = (_POSITIVE, _POS_TAILS) if label == "positive" else (_NEGATIVE, _NEG_TAILS)
        adj, adj2 = rng.sample(adjs, 2)
        text = rng.choice(_SENTIMENT_TEMPLATES).format(
            subject=rng.choice(_SENTIMENT_SUBJECTS), adj=adj, adj2=adj2, tail=rng.choice(tails)
        )
        rows.append((text[0].upper() + text[1:], label))
    return rows


def _topic_rows(rng: random.Random, n: int) -> list[tuple[str, str]]:
    rows = []
    names = sorted(_TOPICS)
    for i in range(n):
        label = names[i % len(names)]
        parts = _TOPICS[label]
        text = rng.choice(_TOPIC_TEMPLATES).format(
            who=rng.choice(parts["who"]),
            what=rng.choice(parts["what"]),
            where=rng.choice(parts["where"]),
        )
        rows.append((text[0].upper() + text[1:], label))
    return rows


_GENERATORS: dict[str, tuple[Callable[[random.Random, int], list[tuple[str, str]]], int, str]] = {
    "sentiment": (_sentiment_rows, 1200, "binary review sentiment (positive/negative)"),
    "topic": (_topic_rows, 1200, "4-way news topic (business/food/sports/technology)"),
}


def list_shipped() -> dict[str, str]:
    """Names of the shipped data sets and a one-line description of each.

    >>> sorted(list_shipped())
    ['sentiment', 'topic']
    """
    return {name: desc for name, (_, _, desc) in _GENERATORS.items()}


@cache
def shipped_dataset(name: str) -> TextDataset:
    """Generate the shipped data set `name` (cached; the result is immutable)."""
    try:
        generate, n, _ = _GENERATORS[name]
    except KeyError:
        known = ", ".join(sorted(_GENERATORS))
        raise DataError(f"unknown data set {name!r} (shipped: {known})") from None
    rng = random.Random(f"lineage-{name}-v{GENERATOR_VERSION}")
    # Duplicates would leak between splits and inflate held-out accuracy.
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    for text, label in generate(rng, n):
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    return TextDataset.from_rows(name, rows, source=f"shipped:{name}@v{GENERATOR_VERSION}")
