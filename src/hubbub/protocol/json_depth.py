"""A bound on how deeply a client's JSON may nest, checked before it is decoded.

Decoders recurse per nesting level: ~1,000 levels of ``[`` (2 KB) exhaust Python's recursion
limit and raise :class:`RecursionError` instead of a decode error. No legitimate frame, body or
message comes near :data:`MAX_JSON_DEPTH`, so every decoder a client can reach (realtime
frames, REST bodies, conversation messages, WebRTC offers) calls :func:`exceeds_json_depth`
first and answers its own "malformed" error when it returns True.

Sans-I/O and cheap on ordinary input: when the text holds no more brackets than the bound,
it cannot nest deeper, so only bracket-heavy input is scanned (brackets inside strings do not
count).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

MAX_JSON_DEPTH: Final = 128

TOO_DEEP_MESSAGE: Final = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"

# A whole JSON string (escapes included, unrolled so long strings do not backtrack) or one
# bracket. Scanning matches skips string contents in C; only brackets reach Python.
_TEXT_TOKENS: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def exceeds_json_depth(document: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """True when ``document`` opens more than ``max_depth`` arrays/objects inside each other.

    Malformed input is judged by its brackets alone (an unterminated string counts what
    follows it); its decoder refuses it either way.
    """
    if len(document) <= max_depth:
        return False  # too short to open more than max_depth brackets
    if isinstance(document, str):
        if document.count("[") + document.count("{") <= max_depth:
            return False
        text = document
    else:
        if document.count(b"[") + document.count(b"{") <= max_depth:
            return False
        text = document.decode("latin-1")  # one char per byte: brackets and quotes stay put
    depth = 0
    for match in _TEXT_TOKENS.finditer(text):
        char = match.group()[0]
        if char == "[" or char == "{":
            depth += 1
            if depth > max_depth:
                return True
        elif char == "]" or char == "}":
            depth -= 1
    return False


def decode_bounded_json(document: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Decode untyped JSON (like ``json.loads``) with the nesting bound; ValueError for JSON
    that is invalid or nested too deeply, so callers need one ``except``."""
    if exceeds_json_depth(document, max_depth):
        raise ValueError(TOO_DEEP_MESSAGE)
    try:
        return msgspec.json.decode(document)
    except msgspec.DecodeError as exc:
        raise ValueError(str(exc)) from None
