"""Counted nouns in messages: "1 property", "2 properties", never "propert(ies)"."""

from __future__ import annotations

_VOWELS = frozenset("aeiou")


def plural_of(word: str) -> str:
    """The plural of a regular English noun: location -> locations, property -> properties."""
    if word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``count`` and ``word``, plural unless ``count`` is 1 (``many``: an irregular plural)."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {many or plural_of(word)}"


def verb(count: int, one: str, many: str) -> str:
    """The verb that agrees with ``count``: verb(1, "has", "have") -> "has"."""
    return one if count == 1 else many
