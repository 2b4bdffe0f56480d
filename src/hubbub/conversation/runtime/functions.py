"""The project's tools and actions as functions an LLM may call (OpenAI-style function calling).

Offered in a stage, when the project's LLM has ``toolCalling`` on (the default):

* every tool of the project, as ``tool_<id>``, described by its ``description`` and taking
  the parameters its ``parametersSchema`` describes (none when absent);
* every action of the stage and of the project that has a ``description`` (the model needs
  one to know when to call it), lifecycle actions excepted, as ``action_<name>``.

Names keep only the characters the API allows (letters, digits, ``_``, ``-``; at most 64);
the prefixes keep a tool and an action of the same name apart. What a call does and what the
model is told back is :func:`run_function`; :func:`function_rounds` is one AI turn's exchange
with the model, bounded by the project's ``maxToolRounds``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import (
    LIFECYCLE_ACTIONS,
    Action,
    Effect,
    GoToStageEffect,
    Tool,
)
from hubbub.conversation.protocol.errors import CommandError
from hubbub.conversation.runtime.responder import ActionMatch
from hubbub.conversation.voice.providers.base import (
    ChatMessage,
    FunctionSpec,
    LlmProvider,
    ToolCall,
)

TOOL_PREFIX: Final = "tool_"
ACTION_PREFIX: Final = "action_"
MAX_NAME_CHARS: Final = 64
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]")
NO_PARAMETERS: Final[dict[str, Any]] = {"type": "object", "properties": {}}
# Rounds of function calls per AI turn when the project's LLM does not say (maxToolRounds).
DEFAULT_TOOL_ROUNDS: Final = 3


@dataclass(frozen=True, slots=True)
class Function:
    """One offered function and what it runs: a tool or an action."""

    spec: FunctionSpec
    target: Tool | Action


def function_name(prefix: str, name: str) -> str:
    return (prefix + _NOT_ALLOWED.sub("_", name))[:MAX_NAME_CHARS]


def offered_functions(project: LoadedProject, stage_id: str) -> dict[str, Function]:
    """The functions offered in ``stage_id``, by name (the first of a clashing name wins)."""
    offered: dict[str, Function] = {}
    for tool in project.project.tools:
        name = function_name(TOOL_PREFIX, tool.id)
        spec = FunctionSpec(
            name, tool.description or f"the {tool.id} tool", tool.parameters_schema or NO_PARAMETERS
        )
        offered.setdefault(name, Function(spec, tool))
    for action in project.actions_for(stage_id):
        if action.name in LIFECYCLE_ACTIONS or not action.description:
            continue
        name = function_name(ACTION_PREFIX, action.name)
        spec = FunctionSpec(name, action.description, action.parameters_schema or NO_PARAMETERS)
        offered.setdefault(name, Function(spec, action))
    return offered


def parse_arguments(text: str) -> dict[str, Any] | None:
    """A call's arguments as an object (empty text is no arguments); None when they are not
    a JSON object."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def result_text(result: Any) -> str:
    """What a ``tool`` message carries back to the model: JSON, text as it is."""
    if isinstance(result, str):
        return result
    return json.dumps(result, separators=(",", ":"), default=str)


class FunctionHost(Protocol):
    """What calls run on (the :class:`~hubbub.conversation.runtime.actions.ActionRunner`)."""

    @property
    def stage_variables(self) -> dict[str, Any]: ...

    async def run(
        self,
        action: Action,
        parameters: dict[str, Any],
        matched: ActionMatch,
        *,
        origin: float | None = None,
        depth: int = 0,
        moves: list[Effect] | None = None,
    ) -> tuple[bool, list[dict[str, Any]]]: ...

    async def call_tool(self, tool: Tool, parameters: dict[str, Any]) -> Any:
        """The tool's result; raises CommandError when it failed."""
        ...


async def function_rounds(
    host: FunctionHost,
    llm: LlmProvider,
    messages: list[ChatMessage],
    functions: dict[str, Function],
    rounds: int,
    temperature: float | None,
    moves: list[Effect],
) -> AsyncIterator[str]:
    """The text of one AI turn: the model answers, its calls run and their results go back,
    until it answers without calls or ``rounds`` rounds have called (then it is asked for text
    only). Closing the iterator (barge-in) closes the model's stream at once."""
    specs = [f.spec for f in functions.values()]
    for round_number in range(rounds + 1):
        allow_calls = round_number < rounds  # the last round must answer in words
        calls: list[ToolCall] = []
        text: list[str] = []
        turn = llm.stream_turn(
            messages, functions=specs, allow_calls=allow_calls, temperature=temperature
        )
        try:
            async for item in turn:
                if isinstance(item, ToolCall):
                    calls.append(item)
                else:
                    text.append(item)
                    yield item
        finally:
            close = getattr(turn, "aclose", None)
            if close is not None:
                await close()
        if not calls or not allow_calls:
            return
        messages.append(ChatMessage("assistant", "".join(text), tool_calls=tuple(calls)))
        for call in calls:
            result = await run_function(host, functions, call, moves)
            messages.append(ChatMessage("tool", result_text(result), tool_call_id=call.id))


async def run_function(
    host: FunctionHost, functions: dict[str, Function], call: ToolCall, moves: list[Effect]
) -> dict[str, Any]:
    """Run one call of the model: a tool (its result), or an action (its effects, but its
    stage jump or end are added to ``moves`` and its response is left to the model). Every
    failure is a result the model reads, ``{"ok": false, "error": ...}``."""
    function = functions.get(call.name)
    if function is None:
        return {"ok": False, "error": f"unknown function {call.name!r}"}
    arguments = parse_arguments(call.arguments)
    if arguments is None:
        return {"ok": False, "error": "the arguments must be a JSON object"}
    target = function.target
    if isinstance(target, Action):
        ran, parts = await host.run(target, arguments, ActionMatch(target), moves=moves)
        if not ran:
            return {"ok": False, "error": "the action does not apply now"}
        return {
            "ok": True,
            "variables": dict(host.stage_variables),
            "toolResults": parts,
            "then": [_describe(effect) for effect in moves],
        }
    try:
        return {"ok": True, "result": await host.call_tool(target, arguments)}
    except CommandError as exc:
        return {"ok": False, "error": exc.message}


def _describe(effect: Effect) -> str:
    if isinstance(effect, GoToStageEffect):
        return f"after this answer the conversation moves to stage {effect.stage_id}"
    return "after this answer the conversation ends"
