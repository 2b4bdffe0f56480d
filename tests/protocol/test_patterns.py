"""Channel patterns: matching, escapes, and the exact inclusion check ``covers``.

The property tests compare against a reference written here from the spec's table (section
8.3), independently of the implementation: a pattern is parsed into literals and wildcards
(a run of two or more unescaped stars is ``**``) and translated to a regex by hand.
"""

from __future__ import annotations

import itertools
import re
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.protocol.patterns import (
    PatternError,
    compile_pattern,
    covers,
    has_wildcard,
    literal_pattern,
    matches_any,
)

# --- examples from the spec and the edge cases ----------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "channel", "expected"),
    [
        ("app_abc/*", "app_abc/room-1", True),
        ("app_abc/*", "app_abc/sub/deep", False),
        ("app_abc/**", "app_abc/room-1", True),
        ("app_abc/**", "app_abc/sub/deep", True),
        ("**", "app_abc/sub/deep", True),
        ("**", "", True),
        ("room-*", "room-42", True),
        ("room-*", "admin-1", False),
        ("room-*", "room-", True),
        ("room-*", "xroom-1", False),  # anchored at the start
        ("room", "room-1", False),  # anchored at the end
        ("*", "a/b", False),
        ("*/*", "a/b", True),
        ("a*b", "ab", True),
        ("a*b", "a-x-b", True),
        ("a*b", "a/b", False),
        ("a**b", "a/x/b", True),
        ("a\\*b", "a*b", True),
        ("a\\*b", "axb", False),
        ("a\\\\b", "a\\b", True),
        ("a\\xb", "axb", True),  # an escaped ordinary character is itself
        ("***", "a/b", True),  # a run of stars is **
        ("*\\*", "x*", True),
        ("room.1", "roomX1", False),  # regex characters are literal
        ("a+b", "a+b", True),
        ("(x)", "(x)", True),
        ("é/*", "é/ü", True),
        ("*", "line\nbreak", True),  # matching does not care about validation
    ],
)
def test_matches(pattern: str, channel: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(channel) is expected


@pytest.mark.parametrize("text", ["\\", "a\\", "room-*\\"])
def test_dangling_escape_is_a_pattern_error(text: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a*", True),
        ("**", True),
        ("a\\*", False),
        ("a\\\\*", True),
        ("plain", False),
        ("\\", False),
    ],
)
def test_has_wildcard(text: str, expected: bool) -> None:
    assert has_wildcard(text) is expected
    if not text.endswith("\\") or text.endswith("\\\\"):
        assert compile_pattern(text).is_wildcard is expected


@pytest.mark.parametrize("channel", ["a*b", "a\\b", "**", "plain", "\\*"])
def test_literal_pattern_matches_only_itself(channel: str) -> None:
    pattern = literal_pattern(channel)
    assert pattern.matches(channel)
    assert not pattern.is_wildcard
    assert not pattern.matches(channel + "x")


def test_matches_any() -> None:
    patterns = [compile_pattern("a/*"), compile_pattern("b")]
    assert matches_any(patterns, "b")
    assert matches_any(patterns, "a/1")
    assert not matches_any(patterns, "c")
    assert not matches_any([], "b")


@pytest.mark.parametrize(
    ("allowed", "candidate", "expected"),
    [
        (["**"], "**", True),
        (["**"], "*", True),
        (["*"], "**", False),
        (["room-*"], "room-*", True),
        (["room-*"], "room-**", False),
        (["room-*"], "room-1*", True),
        (["room-*"], "*", False),
        (["devices/*/events"], "devices/*/events", True),
        (["devices/**"], "devices/*/events", True),
        (["devices/*/events"], "devices/**/events", False),
        (["a/*", "b/*"], "*/x", False),  # c/x escapes
        (["a*", "*a", "b*", "*b", "/*", "*/", ""], "*", False),  # "c" escapes
        (["*", "*/**"], "**", True),  # no slash, or at least one slash: all channels
        (["a\\*"], "a\\*", True),
        (["a*"], "a\\*", True),
        (["a\\*"], "a*", False),
        ([], "x", False),
        (["x"], "x", True),
        (["x"], "y", False),
    ],
)
def test_covers_examples(allowed: list[str], candidate: str, expected: bool) -> None:
    assert covers([compile_pattern(p) for p in allowed], compile_pattern(candidate)) is expected


# --- reference implementation for the property tests -----------------------------------------

STAR, DOUBLE = "STAR", "DOUBLE"


def reference_tokens(text: str) -> list[str]:
    """Literal characters as 1-char strings; wildcards as STAR / DOUBLE."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            tokens.append(text[i + 1])
            i += 2
        elif text[i] == "*":
            j = i
            while j < len(text) and text[j] == "*":
                j += 1
            wild = DOUBLE if j - i >= 2 else STAR
            # a wildcard next to a wildcard: the union is the wider one
            if tokens and tokens[-1] in (STAR, DOUBLE):
                tokens[-1] = DOUBLE if DOUBLE in (wild, tokens[-1]) else STAR
            else:
                tokens.append(wild)
            i = j
        else:
            tokens.append(text[i])
            i += 1
    return tokens


@cache
def reference_regex(text: str) -> re.Pattern[str]:
    parts = []
    for token in reference_tokens(text):
        if token == STAR:
            parts.append("[^/]*")
        elif token == DOUBLE:
            parts.append("(?s:.*)")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def reference_matches(text: str, channel: str) -> bool:
    return reference_regex(text).fullmatch(channel) is not None


# Channel characters: the two letters patterns use, the separator, a literal star, and one
# character no pattern mentions (it stands for every other character).
CHANNEL_ALPHABET = "ab/*c"
PATTERN_PIECES = ["a", "b", "/", "*", "**", "\\*"]

patterns = st.lists(st.sampled_from(PATTERN_PIECES), max_size=4).map("".join)
channels = st.text(alphabet=CHANNEL_ALPHABET, max_size=8)


@settings(max_examples=300, deadline=None)
@given(pattern=patterns, channel=channels)
def test_matching_agrees_with_the_reference(pattern: str, channel: str) -> None:
    assert compile_pattern(pattern).matches(channel) is reference_matches(pattern, channel)


@cache
def expansions(token: str, bound: int) -> tuple[str, ...]:
    """Strings one candidate token can stand for, wildcards up to ``bound`` characters."""
    if token not in (STAR, DOUBLE):
        return (token,)
    alphabet = CHANNEL_ALPHABET if token == DOUBLE else CHANNEL_ALPHABET.replace("/", "")
    return tuple(
        "".join(chars)
        for length in range(bound + 1)
        for chars in itertools.product(alphabet, repeat=length)
    )


def strings_of(candidate: str, bound: int) -> list[str]:
    tokens = reference_tokens(candidate)
    return ["".join(parts) for parts in itertools.product(*(expansions(t, bound) for t in tokens))]


# Each candidate wildcard is expanded to every string of at most WITNESS_BOUND characters when
# looking for an escaping channel. "covers is True" is checked soundly whatever the bound; for
# "covers is False" the bound must reach a witness, which for patterns of at most four pieces
# (so at most four literals per allowed pattern) it comfortably does; a refusal without a
# witness inside the bound fails the test, so a too-small bound could not hide a bug, only
# raise a false alarm.
WITNESS_BOUND = 3


@settings(max_examples=300, deadline=None)
@given(
    allowed=st.lists(patterns, min_size=1, max_size=4),
    candidate=patterns.filter(lambda p: sum(t in (STAR, DOUBLE) for t in reference_tokens(p)) <= 2),
)
def test_covers_is_exact(allowed: list[str], candidate: str) -> None:
    result = covers([compile_pattern(p) for p in allowed], compile_pattern(candidate))
    escaping = next(
        (
            s
            for s in strings_of(candidate, WITNESS_BOUND)
            if not any(reference_matches(p, s) for p in allowed)
        ),
        None,
    )
    if result:
        # Sound direction: nothing the candidate matches escapes the allowed set.
        assert escaping is None, f"{candidate!r} matches {escaping!r}, outside {allowed!r}"
    else:
        # Exact direction: a refusal comes with a channel that really escapes.
        assert escaping is not None, f"covers refused {candidate!r} under {allowed!r}"


@settings(max_examples=200, deadline=None)
@given(pattern=patterns, other=patterns)
def test_covers_is_reflexive_and_monotonic(pattern: str, other: str) -> None:
    p = compile_pattern(pattern)
    assert covers([p], p)
    assert covers([compile_pattern(other), p], p)
    assert covers([compile_pattern("**")], p)


@settings(max_examples=100, deadline=None)
@given(channel=st.text(max_size=20))
def test_a_literal_is_covered_exactly_when_it_matches(channel: str) -> None:
    allowed = [compile_pattern("a*"), compile_pattern("**/b")]
    literal = literal_pattern(channel)
    assert covers(allowed, literal) is matches_any(allowed, channel)


# Allowed sets that cover "everything starting with one of these symbols": only a channel
# starting with a character no pattern mentions can escape some of them, which is what the
# implementation's "any other character" symbol class has to get right.
PREFIX_PATTERNS = ["", "a**", "b**", "/**", "\\***", "*/**", "a", "b*"]


@settings(max_examples=200, deadline=None)
@given(
    allowed=st.lists(st.sampled_from(PREFIX_PATTERNS), min_size=1, max_size=6, unique=True),
    candidate=st.sampled_from(["*", "**", "a*", "*b", "**/", "\\**", "a/**", "*a*"]),
)
def test_covers_with_every_mentioned_symbol_covered(allowed: list[str], candidate: str) -> None:
    result = covers([compile_pattern(p) for p in allowed], compile_pattern(candidate))
    escaping = next(
        (
            s
            for s in strings_of(candidate, WITNESS_BOUND)
            if not any(reference_matches(p, s) for p in allowed)
        ),
        None,
    )
    assert result is (escaping is None), (allowed, candidate, escaping)
