"""Channel patterns: ``*`` (any run without ``/``), ``**`` (any run), ``\\*`` and ``\\\\`` escapes.

Patterns scope keys and tokens (which channels a credential may use) and also serve as wildcard
subscriptions. Matching is anchored at both ends. :func:`covers` decides *exactly* whether every
channel one pattern can match is matched by at least one of a set of allowed patterns, so a
wildcard subscription is authorized by language inclusion rather than by string comparison.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from hubbub.errors import ProtocolError


class PatternError(ProtocolError, ValueError):
    """The pattern text cannot be parsed (a dangling escape)."""


class _Wild(Enum):
    STAR = "*"  # any run of characters except "/"
    DOUBLE_STAR = "**"  # any run of characters, "/" included


_Token = str | _Wild  # a literal character or a wildcard


@dataclass(frozen=True, slots=True)
class ChannelPattern:
    """A parsed pattern. ``text`` is what the user wrote."""

    text: str
    tokens: tuple[_Token, ...]
    regex: re.Pattern[str]

    @property
    def is_wildcard(self) -> bool:
        return any(isinstance(token, _Wild) for token in self.tokens)

    def matches(self, channel: str) -> bool:
        return self.regex.fullmatch(channel) is not None


def has_wildcard(text: str) -> bool:
    """True when ``text`` contains an unescaped ``*`` (so a subscribe to it is a pattern)."""
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "*":
            return True
    return False


def _tokenize(text: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 == len(text):
                raise PatternError(f"pattern {text!r} ends with a lone backslash")
            tokens.append(text[i + 1])
            i += 2
        elif ch == "*":
            run = 1
            while i + run < len(text) and text[i + run] == "*":
                run += 1
            wild = _Wild.DOUBLE_STAR if run >= 2 else _Wild.STAR
            # Adjacent wildcards collapse: "**" absorbs a neighbouring "*".
            if tokens and isinstance(tokens[-1], _Wild):
                if wild is _Wild.DOUBLE_STAR:
                    tokens[-1] = _Wild.DOUBLE_STAR
            else:
                tokens.append(wild)
            i += run
        else:
            tokens.append(ch)
            i += 1
    return tuple(tokens)


@lru_cache(maxsize=4096)
def compile_pattern(text: str) -> ChannelPattern:
    tokens = _tokenize(text)
    parts: list[str] = []
    for token in tokens:
        if token is _Wild.STAR:
            parts.append("[^/]*")
        elif token is _Wild.DOUBLE_STAR:
            parts.append(".*")
        else:
            assert isinstance(token, str)
            parts.append(re.escape(token))
    return ChannelPattern(text, tokens, re.compile("".join(parts), re.DOTALL))


def literal_pattern(channel: str) -> ChannelPattern:
    """A pattern that matches exactly ``channel`` (escaping ``*`` and ``\\``)."""
    return compile_pattern(channel.replace("\\", "\\\\").replace("*", "\\*"))


def matches_any(patterns: Iterable[ChannelPattern], channel: str) -> bool:
    return any(pattern.matches(channel) for pattern in patterns)


# --- language inclusion -------------------------------------------------------------------
#
# Each pattern is an NFA whose states are token positions (0..n, n accepting). A wildcard at
# position i loops on its characters and can be skipped (epsilon to i + 1). The alphabet is
# infinite, but only three kinds of symbol behave differently: "/", each literal character
# that occurs in some pattern, and "any other character". So exploring the product of the
# candidate's NFA with the subset construction of the allowed patterns over those classes is
# exact, and small for patterns of channel-name size.

_OTHER = object()  # stands for every character that occurs in none of the patterns
_Symbol = str | object
_StateSet = frozenset[tuple[int, int]]  # (pattern index, token position)


def _closure(patterns: Sequence[ChannelPattern], states: Iterable[tuple[int, int]]) -> _StateSet:
    result: set[tuple[int, int]] = set()
    stack = list(states)
    while stack:
        state = stack.pop()
        if state in result:
            continue
        result.add(state)
        index, pos = state
        tokens = patterns[index].tokens
        if pos < len(tokens) and isinstance(tokens[pos], _Wild):
            stack.append((index, pos + 1))
    return frozenset(result)


def _step(patterns: Sequence[ChannelPattern], states: _StateSet, symbol: _Symbol) -> _StateSet:
    moved: list[tuple[int, int]] = []
    for index, pos in states:
        tokens = patterns[index].tokens
        if pos == len(tokens):
            continue
        token = tokens[pos]
        if token is _Wild.DOUBLE_STAR or (token is _Wild.STAR and symbol != "/"):
            moved.append((index, pos))
        elif isinstance(token, str) and token == symbol:
            moved.append((index, pos + 1))
    return _closure(patterns, moved)


def _accepts(patterns: Sequence[ChannelPattern], states: _StateSet) -> bool:
    return any(pos == len(patterns[index].tokens) for index, pos in states)


def covers(allowed: Sequence[ChannelPattern], candidate: ChannelPattern) -> bool:
    """True when every channel ``candidate`` matches is matched by some pattern in ``allowed``."""
    if not allowed:
        return False
    if not candidate.is_wildcard:
        literal = "".join(token for token in candidate.tokens if isinstance(token, str))
        return matches_any(allowed, literal)
    symbols: list[_Symbol] = ["/", _OTHER]
    for pattern in (candidate, *allowed):
        symbols.extend(t for t in pattern.tokens if isinstance(t, str) and t != "/")
    alphabet = list(dict.fromkeys(symbols))
    cand = (candidate,)
    start = (_closure(cand, [(0, 0)]), _closure(allowed, [(i, 0) for i in range(len(allowed))]))
    seen = {start}
    frontier = [start]
    while frontier:
        cand_states, allowed_states = frontier.pop()
        if _accepts(cand, cand_states) and not _accepts(allowed, allowed_states):
            return False
        for symbol in alphabet:
            next_cand = _step(cand, cand_states, symbol)
            if not next_cand:
                continue
            pair = (next_cand, _step(allowed, allowed_states, symbol))
            if pair not in seen:
                seen.add(pair)
                frontier.append(pair)
    return True
