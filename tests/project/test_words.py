"""Counted nouns are said in the singular or the plural, never as "propert(ies)" or "area(s)"."""

import re
from pathlib import Path

import pytest

from pfsync_app.words import plural, verb

PACKAGE = Path(__file__).resolve().parents[2] / "pfsync_app"

# A word followed by "(s)", "(es)" or "(ies)": the text a count should have decided.
HEDGED = re.compile(r"[A-Za-z]\((?:s|es|ies)\)")


@pytest.mark.parametrize(
    ("count", "word", "text"),
    [
        (0, "property", "0 properties"),
        (1, "property", "1 property"),
        (2, "property", "2 properties"),
        (1, "location", "1 location"),
        (29, "location", "29 locations"),
        (3, "day", "3 days"),
        (2, "address", "2 addresses"),
        (2, "unlinked area", "2 unlinked areas"),
        (5, "more image", "5 more images"),
    ],
)
def test_a_count_decides_between_singular_and_plural(count, word, text):
    assert plural(count, word) == text


def test_an_irregular_plural_is_given_and_the_verb_agrees():
    assert plural(2, "person", "people") == "2 people"
    assert f"1 location {verb(1, 'has', 'have')}" == "1 location has"
    assert f"2 locations {verb(2, 'has', 'have')}" == "2 locations have"


def test_no_message_in_pfsync_hedges_a_plural():
    hedged = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "words.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if HEDGED.search(line.replace("http(s)", "https"))
    ]
    assert hedged == []
