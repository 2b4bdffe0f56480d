"""The project's tools and actions as functions an LLM may call (OpenAI-style function calling).

Offered in a stage, when the project's LLM has ``toolCalling`` on (the default):

* every tool of the project, as ``tool_<id>``, described by its ``description`` and taking
  the parameters its ``parametersSchema`` describes (none when absent);
* every action of the stage and of the project that has a ``description`` (the model needs
  one to know when to call it), lifecycle actions excepted, as ``action_<name>``.

Names keep only the characters the API allows (letters, digits, ``_``, ``-``; at most 64);
the prefixes keep a tool and an action of the same name apart. What a call does and what the
model is told back is in :meth:`~hubbub.conversation.runtime.actions.ActionRunner.run_function`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

from hubbub.conversation.project.loader import LoadedProject
from hubbub.conversation.project.schema import LIFECYCLE_ACTIONS, Action, Tool
from hubbub.conversation.voice.providers.base import FunctionSpec

TOOL_PREFIX: Final = "tool_"
ACTION_PREFIX: Final = "action_"
MAX_NAME_CHARS: Final = 64
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9_-]")
NO_PARAMETERS: Final[dict[str, Any]] = {"type": "object", "properties": {}}


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
