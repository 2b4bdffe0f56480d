"""The offline classifier, chunking and ids (no network)."""

from __future__ import annotations

import re

from hubbub.conversation.project.loader import parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.protocol.ids import new_id
from hubbub.conversation.runtime.responder import match_actions, prescripted_stream, split_chunks

PROJECT = """
id: p
startingStageId: s
stages:
  - id: s
    actions:
      - {name: by_pattern, trigger: {patterns: ['order (?P<n>\\d+)']}}
      - {name: by_keyword, trigger: {keywords: [refund, "money back"]}}
      - {name: by_example, trigger: {examples: ["my parcel never arrived"]}}
      - {name: __on_fallback}
actions:
  - {name: global_bye, trigger: {keywords: [bye]}}
"""


def names(text: str) -> list[str]:
    project = parse_project(PROJECT, "p.yaml", TemplateRenderer())
    return [m.action.name for m in match_actions(project, "s", text)]


def test_patterns_then_keywords_then_examples() -> None:
    assert names("refund for order 12") == ["by_pattern", "by_keyword"]
    assert names("I want my MONEY BACK") == ["by_keyword"]
    assert names("the parcel never arrived!") == ["by_example"]
    assert names("refunds") == []  # keywords are whole words
    assert names("ok bye") == ["global_bye"]
    assert names("nothing relevant") == []


def test_pattern_captures() -> None:
    project = parse_project(PROJECT, "p.yaml", TemplateRenderer())
    [first] = list(match_actions(project, "s", "Order 1234 please"))
    assert first.captures == {"n": "1234"}


def test_chunks_add_up_exactly() -> None:
    text = "  Hello there,   this is a fairly long answer that spans several chunks. \\n Bye. "
    chunks = split_chunks(text, max_chars=16)
    assert "".join(chunks) == text
    assert all(len(c) <= 16 or " " not in c.strip() for c in chunks)
    assert split_chunks("") == []
    assert split_chunks("x" * 100, max_chars=10) == ["x" * 100]


async def test_paced_streams_go_word_by_word() -> None:
    words = [c async for c in prescripted_stream("one two three", 0.001)]
    assert words == ["one ", "two ", "three"]
    phrases = [c async for c in prescripted_stream("one two three", 0)]
    assert phrases == ["one two three"]


def test_ids_are_prefixed_unique_and_time_ordered() -> None:
    ids = [new_id("conv_") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"conv_[0-9a-f]{32}", i) for i in ids)
    assert all(i[5 + 12] == "7" for i in ids)  # the UUID version nibble
    assert [i[:17] for i in ids] == sorted(i[:17] for i in ids)  # millisecond prefix ordered
