"""Choosing what the agent does with user input, and producing the text of its answers.

* :func:`match_actions` is the offline classifier: regular expressions, keywords, then examples,
  over the stage's actions and then the global ones. Deterministic and network-free.
* :func:`classify_with_llm` asks the configured LLM to pick an action by name when the offline
  classifier found none.
* :func:`prescripted_stream` streams a rendered response as chunks that add up to it exactly;
  :func:`llm_messages` builds the chat for an LLM-generated answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import LIFECYCLE_ACTIONS, Action
from hubbub.conversation.voice.providers.base import ChatMessage, LlmProvider, ProviderError

_WORD = re.compile(r"[a-z0-9']+")
_CHUNK = re.compile(r"\S+\s*|\s+")
# An example matches when this share of its words appear in the input.
EXAMPLE_OVERLAP = 0.75


@dataclass(frozen=True, slots=True)
class ActionMatch:
    action: Action
    captures: dict[str, Any] = field(default_factory=dict)


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _triggerable(actions: Iterable[Action]) -> list[Action]:
    return [a for a in actions if a.name not in LIFECYCLE_ACTIONS]


def match_actions(project: LoadedProject, stage_id: str, text: str) -> Iterator[ActionMatch]:
    """Every action the input triggers, best first: patterns, then keywords, then examples
    (the caller takes the first whose condition holds)."""
    actions = _triggerable(project.actions_for(stage_id))
    for action in actions:
        for pattern in action.trigger.patterns:
            found = project.patterns[pattern].search(text)
            if found:
                captures = {k: v for k, v in found.groupdict().items() if v is not None}
                yield ActionMatch(action, captures)
                break
    lowered = text.lower()
    words = _words(text)
    for action in actions:
        for keyword in action.trigger.keywords:
            key = keyword.lower()
            if (" " in key and key in lowered) or key in words:
                yield ActionMatch(action)
                break
    for action in actions:
        for example in action.trigger.examples:
            wanted = _words(example)
            if wanted and len(wanted & words) / len(wanted) >= EXAMPLE_OVERLAP:
                yield ActionMatch(action)
                break


async def classify_with_llm(
    llm: LlmProvider, project: LoadedProject, stage_id: str, text: str
) -> ActionMatch | None:
    candidates = [a for a in _triggerable(project.actions_for(stage_id)) if a.trigger.examples]
    if not candidates:
        return None
    lines = []
    for action in candidates:
        examples = "; ".join(action.trigger.examples[:5])
        lines.append(f"- {action.name}: {action.description} (e.g. {examples})")
    system = (
        "Classify the user's message as one of these actions, or none.\n"
        + "\n".join(lines)
        + "\nAnswer with the action name only, or 'none'."
    )
    try:
        answer = await llm.complete(
            [ChatMessage("system", system), ChatMessage("user", text)], temperature=0.0
        )
    except ProviderError:
        return None
    chosen = answer.strip().strip("`'\".").lower()
    return next((ActionMatch(a) for a in candidates if a.name.lower() == chosen), None)


# Prescripted text streams in phrase-sized chunks: small enough to show progress, few enough
# that a turn is a handful of messages rather than one per word.
CHUNK_CHARS = 48


def split_chunks(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """Pieces of at most ``max_chars`` (or one long word), split after whitespace, whose
    concatenation is exactly ``text``."""
    chunks: list[str] = []
    current = ""
    for word in _CHUNK.findall(text):
        if current and len(current) + len(word) > max_chars:
            chunks.append(current)
            current = ""
        current += word
    if current:
        chunks.append(current)
    return chunks


async def prescripted_stream(text: str, chunk_delay_s: float) -> AsyncIterator[str]:
    """Paced streams (``chunk_delay_s`` > 0) mimic speech word by word; others go in phrases."""
    chunks = _CHUNK.findall(text) if chunk_delay_s > 0 else split_chunks(text)
    for i, chunk in enumerate(chunks):
        if i and chunk_delay_s > 0:
            await asyncio.sleep(chunk_delay_s)
        yield chunk


def llm_messages(
    system_prompt: str, history: Sequence[ChatMessage], instructions: str = ""
) -> list[ChatMessage]:
    system = system_prompt if not instructions else f"{system_prompt}\n\n{instructions}".strip()
    messages = [ChatMessage("system", system)] if system else []
    messages.extend(history)
    return messages
