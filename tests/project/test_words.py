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


# In an f-string, a value followed by a plural noun (with at most one word between):
# "{n} images", "{len(rows)} missing images". Its count may be 1.
COUNTED = re.compile(r"\{([^{}]+?)\} (?:([a-z]+) )?([a-z]+s)\b")
# Words that end in s but are no plural noun: "{name} is", "{n} of", "{x} still missing".
NOT_A_NOUN = frozenset(
    {
        *("is", "was", "has", "does", "needs", "matches", "links", "says", "goes", "stays"),
        *("uses", "exists", "ends", "names", "got", "lost", "not", "still", "of", "to"),
        *("in", "at"),
    }
)
# Commands and jobs print what users read; their counts go through plural().
SAID_TO_USERS = ("management", "jobs")


def counted_without_plural(expression: str, between: str | None, noun: str) -> bool:
    """Whether ``{expression} [between] noun`` is a count that skipped plural()."""
    if noun in NOT_A_NOUN or between in NOT_A_NOUN or "plural(" in expression:
        return False
    name = expression.split("!")[0].strip()
    # A constant limit (MAX_DAYS, max_source_url()) is never 1; a type is not a count.
    return not (
        name.isupper() or name.lower().startswith("max") or name.endswith(("type", "holder"))
    )


def test_the_guard_sees_an_unpluralized_count_and_passes_plural():
    said = [
        m.groups() for m in COUNTED.finditer('f"Found {len(missing)} missing images, {n} files"')
    ]
    assert [counted_without_plural(*groups) for groups in said] == [True, True]
    fine = "f\"{plural(n, 'image')} {name} is {MAX_DAYS} days, {event.event_type} events\""
    assert not any(counted_without_plural(*m.groups()) for m in COUNTED.finditer(fine))


def test_no_count_in_a_command_or_job_skips_plural():
    unpluralized = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {match.group(0)}"
        for folder in SAID_TO_USERS
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if 'f"' in line or "f'" in line
        for match in COUNTED.finditer(line)
        if counted_without_plural(*match.groups())
    ]
    assert unpluralized == []
