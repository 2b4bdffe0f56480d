"""What a conversation does: user input to actions, actions to effects, stage jumps, start and
end. Effects run in priority order (``EFFECT_PRIORITY``): tools first, so that variables and
responses can use their results; stage jumps and the end last.

The :class:`ActionRunner` works on the conversation's data and journal, and asks the
conversation it runs in (an :class:`ActionHost`) for everything that changes its state: to
speak, to wait for input, to finish. It never moves the state itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from hubbub.conversation.project.schema import (
    EFFECT_PRIORITY,
    Action,
    CallToolEffect,
    Effect,
    EndConversationEffect,
    GenerateResponseEffect,
    GoToStageEffect,
    ModifyVariablesEffect,
    Tool,
)
from hubbub.conversation.project.templates import TemplateError
from hubbub.conversation.protocol import errors
from hubbub.conversation.runtime.data import ConversationData
from hubbub.conversation.runtime.functions import (
    DEFAULT_TOOL_ROUNDS,
    Function,
    function_rounds,
    offered_functions,
)
from hubbub.conversation.runtime.journal import Journal
from hubbub.conversation.runtime.responder import (
    ActionMatch,
    classify_with_llm,
    llm_messages,
    match_actions,
    prescripted_stream,
)
from hubbub.conversation.runtime.scope import system_prompt, template_scope
from hubbub.conversation.runtime.services import EngineServices
from hubbub.conversation.runtime.tools import ToolError, content_parts
from hubbub.conversation.runtime.variables import VariableTypeError, apply_changes, render_values
from hubbub.conversation.voice.providers.base import ChatMessage, LlmProvider

log = logging.getLogger(__name__)

# Variable watches may change variables that other watches follow; this bounds the chain.
MAX_WATCH_DEPTH = 3


class ActionHost(Protocol):
    """What actions need from the conversation they run in, which owns its state."""

    @property
    def terminal(self) -> bool:
        """The conversation has ended (finished, aborted or failed): do nothing more."""
        ...

    @property
    def awaiting_answer(self) -> bool:
        """The user's input is being processed and nothing has answered it yet."""
        ...

    async def speak(
        self, stream: AsyncIterator[str], *, origin: float | None = None, llm: bool = False
    ) -> str:
        """One AI turn; returns its text."""
        ...

    def await_input(self) -> None:
        """A conversation that has just started entered its stage without a word: it waits for
        the user now."""

    def input_handled(self) -> None:
        """The user's input has been handled without an AI turn."""

    def finish(self, reason: str) -> None:
        """The end: the conversation is finished (``conversation_end``)."""


class ActionRunner:
    def __init__(
        self,
        host: ActionHost,
        data: ConversationData,
        journal: Journal,
        services: EngineServices,
    ) -> None:
        self._host = host
        self._data = data
        self._journal = journal
        self._services = services
        self._ending = False

    # --- context ---------------------------------------------------------------------------

    @property
    def llm(self) -> LlmProvider | None:
        return self._services.llm_for(self._data.project.id)

    @property
    def stage_variables(self) -> dict[str, Any]:
        return self._data.stage_variables

    def scope(self, **extra: Any) -> dict[str, Any]:
        return template_scope(self._data, self._services, **extra)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, initial_variables: dict[str, Any]) -> None:
        data = self._data
        data.init_stage_variables(data.stage_id)
        data.stage_variables.update(initial_variables)
        self._journal.save_stage_variables()
        self._journal.event(
            "conversation_start",
            {"stageId": data.stage_id, "initialVariables": dict(data.stage_variables)},
        )
        await self.lifecycle("__conversation_start")
        await self.enter_stage()

    def enters_silently(self) -> bool:
        """Whether starting runs nothing (no lifecycle action, no generated greeting): then the
        conversation awaits input at once, and input sent right after the start reply is taken."""
        data = self._data
        if any(
            data.project.find_action(data.stage_id, name) is not None
            for name in ("__conversation_start", "__on_enter")
        ):
            return False
        return not (data.stage.on_enter == "generate_response" and self.llm is not None)

    async def enter_stage(self) -> None:
        spoke = await self.lifecycle("__on_enter")
        if self._host.terminal:
            return
        if self._data.stage.on_enter == "generate_response" and not spoke and self.llm is not None:
            await self.speak_llm("")
        else:
            self._host.await_input()

    async def go_to_stage(self, stage_id: str, switched: asyncio.Future[Any] | None = None) -> None:
        data = self._data
        previous = data.stage_id
        await self.lifecycle("__on_leave", stage_only=True)
        if self._host.terminal:
            return
        data.record.stage_id = stage_id
        data.init_stage_variables(stage_id)
        self._journal.save_stage_variables()
        self._journal.event("jump_to_stage", {"fromStageId": previous, "toStageId": stage_id})
        self._journal.persist()
        if switched is not None and not switched.done():
            switched.set_result(None)
        await self.enter_stage()

    async def end(self, reason: str) -> None:
        if self._ending or self._host.terminal:
            return
        self._ending = True
        await self.lifecycle("__conversation_end")
        self._host.finish(reason)

    async def lifecycle(self, name: str, *, stage_only: bool = False) -> bool:
        """Run a lifecycle action if the stage (or, unless ``stage_only``, the project) has one.
        Returns whether it produced an AI turn."""
        project = self._data.project
        action = next((a for a in self._data.stage.actions if a.name == name), None)
        if action is None and not stage_only:
            action = next((a for a in project.project.actions if a.name == name), None)
        if action is None:
            return False
        spoke, _ = await self.run(action, {}, ActionMatch(action))
        return spoke

    # --- user input ------------------------------------------------------------------------

    async def handle_user_text(
        self, turn_id: str, text: str, received: float, *, asr_ms: float | None = None
    ) -> None:
        data, host = self._data, self._host
        data.history.append(ChatMessage("user", text))
        matched = next(
            (
                candidate
                for candidate in match_actions(data.project, data.stage_id, text)
                if self.condition_holds(candidate.action, candidate, {})
            ),
            None,
        )
        llm = self.llm
        if matched is None and llm is not None:
            matched = await classify_with_llm(llm, data.project, data.stage_id, text)
        self._journal.event(
            "message",
            {
                "role": "user",
                "text": text,
                "asrDurationMs": asr_ms,
                "processingDurationMs": round((self._services.monotonic() - received) * 1000, 3),
            },
            input_turn_id=turn_id,
        )
        spoke = False
        if matched is not None:
            spoke, _ = await self.run(matched.action, {}, matched, origin=received)
        else:
            fallback = data.project.find_action(data.stage_id, "__on_fallback")
            if fallback is not None:
                spoke, _ = await self.run(fallback, {}, ActionMatch(fallback), origin=received)
            elif llm is not None:
                await self.speak_llm("", origin=received)
                spoke = True
            else:
                text_out = data.project.project.rule_responder.fallback_text
                await self.speak_text(text_out, origin=received)
                spoke = True
        if not spoke and llm is not None and host.awaiting_answer:
            await self.speak_llm("", origin=received)
        host.input_handled()

    # --- speaking --------------------------------------------------------------------------

    def _delay_s(self) -> float:
        return self._data.project.project.rule_responder.chunk_delay_ms / 1000

    async def speak_text(self, text: str, *, origin: float | None = None) -> None:
        await self._host.speak(prescripted_stream(text, self._delay_s()), origin=origin)

    async def speak_llm(self, instructions: str, *, origin: float | None = None) -> None:
        """One LLM-generated turn. With functions offered, the model's calls run (their
        effects included) and their results go back to it, for at most ``maxToolRounds``
        rounds; stage jumps and the end that called actions ask for happen after the answer."""
        llm = self.llm
        if llm is None:
            return
        messages = llm_messages(
            system_prompt(self._data, self._services), self._data.history, instructions
        )
        temperature = None
        config = self._data.project.project.providers.llm
        if config is not None:
            temperature = config.temperature
        functions: dict[str, Function] = {}
        if llm.calls_functions and (config is None or config.tool_calling):
            functions = offered_functions(self._data.project, self._data.stage_id)
        if not functions:
            stream = llm.stream_chat(messages, temperature=temperature)
            await self._host.speak(stream, origin=origin, llm=True)
            return
        rounds = config.max_tool_rounds if config is not None else DEFAULT_TOOL_ROUNDS
        moves: list[Effect] = []
        turn = function_rounds(self, llm, messages, functions, rounds, temperature, moves)
        await self._host.speak(turn, origin=origin, llm=True)
        for effect in moves:
            if self._host.terminal:
                break
            if isinstance(effect, GoToStageEffect):
                await self.go_to_stage(effect.stage_id)
            elif isinstance(effect, EndConversationEffect):
                await self.end(effect.reason)

    # --- actions and effects ---------------------------------------------------------------

    async def run(
        self,
        action: Action,
        parameters: dict[str, Any],
        matched: ActionMatch,
        *,
        origin: float | None = None,
        depth: int = 0,
        moves: list[Effect] | None = None,
    ) -> tuple[bool, list[dict[str, Any]]]:
        """Run ``action`` if its condition holds; returns (spoke, content parts of tool
        results). With ``moves`` (the LLM called it, mid-answer) it does not speak, and its
        stage jump and end are added there for after the answer: (ran, parts)."""
        renderer = self._services.renderer
        params = {**action.parameters, **parameters}
        if not self.condition_holds(action, matched, params):
            return False, []
        self._journal.event("action", {"name": action.name, "parameters": params})
        spoke = moves is not None
        parts: list[dict[str, Any]] = []
        for effect in sorted(action.effects, key=lambda e: EFFECT_PRIORITY[type(e)]):
            if self._host.terminal:
                break
            scope = self.scope(match=matched.captures, parameters=params)
            try:
                if isinstance(effect, CallToolEffect):
                    tool = self._data.project.tools[effect.tool_id]
                    arguments = render_values(renderer, effect.parameters, scope)
                    result = await self.call_tool(tool, arguments)
                    parts.extend(content_parts(result))
                    if effect.result_variable:
                        await self.set_variables(
                            {effect.result_variable: result}, depth, moves=moves
                        )
                elif isinstance(effect, ModifyVariablesEffect):
                    changes = render_values(renderer, effect.set, scope)
                    await self.set_variables(changes, depth, unset=effect.unset, moves=moves)
                elif moves is not None:
                    if isinstance(effect, GoToStageEffect | EndConversationEffect):
                        moves.append(effect)
                elif isinstance(effect, GenerateResponseEffect):
                    if effect.mode == "llm" and self.llm is not None:
                        instructions = renderer.render(effect.instructions, scope)
                        await self.speak_llm(instructions, origin=origin)
                    else:
                        await self.speak_text(renderer.render(effect.text, scope), origin=origin)
                    spoke = True
                elif isinstance(effect, GoToStageEffect):
                    await self.go_to_stage(effect.stage_id)
                    spoke = True  # the new stage decides what is said next
                elif isinstance(effect, EndConversationEffect):
                    await self.end(effect.reason)
            except (TemplateError, VariableTypeError, errors.CommandError) as exc:
                log.warning(
                    "action %s: effect %s skipped: %s", action.name, type(effect).__name__, exc
                )
        return spoke, parts

    def condition_holds(
        self, action: Action, matched: ActionMatch, parameters: dict[str, Any]
    ) -> bool:
        if action.condition is None:
            return True
        scope = self.scope(match=matched.captures, parameters={**action.parameters, **parameters})
        try:
            return self._services.renderer.evaluate(action.condition, scope)
        except TemplateError as exc:
            log.warning("action %s: condition failed: %s", action.name, exc)
            return False

    async def call_tool(self, tool: Tool, parameters: dict[str, Any]) -> Any:
        data = self._data
        try:
            result = await self._services.tools.run(tool, parameters, self.scope(), self.llm)
        except ToolError as exc:
            failure = {"ok": False, "error": str(exc)}
            data.tool_results[tool.id] = failure
            self._journal.event(
                "tool_call", {"toolId": tool.id, "parameters": parameters, "result": failure}
            )
            raise errors.CommandError(errors.TOOL_FAILED.format(reason=exc)) from None
        data.tool_results[tool.id] = result
        self._journal.event(
            "tool_call", {"toolId": tool.id, "parameters": parameters, "result": result}
        )
        return result

    async def set_variables(
        self,
        changes: dict[str, Any],
        depth: int = 0,
        *,
        unset: list[str] | None = None,
        moves: list[Effect] | None = None,
    ) -> None:
        changed = self.apply_variables(changes, unset=unset)
        if changed:
            await self.run_watches(changed, depth, moves=moves)

    def apply_variables(
        self, changes: dict[str, Any], *, unset: list[str] | None = None
    ) -> dict[str, Any]:
        """Change the current stage's variables now; returns what actually changed."""
        data = self._data
        descriptors = {d.name: d for d in data.stage.variables}
        changed = apply_changes(data.stage_variables, descriptors, changes, unset)
        if changed:
            self._journal.save_stage_variables()
            self._journal.event("variables_changed", {"stageId": data.stage_id, "changes": changed})
        return changed

    async def run_watches(
        self, changed: dict[str, Any], depth: int = 0, *, moves: list[Effect] | None = None
    ) -> None:
        """The watches of ``changed``; with ``moves`` (mid-answer, see :meth:`run`) they do
        not speak either."""
        if depth >= MAX_WATCH_DEPTH:
            return
        data = self._data
        for action in list(data.project.actions_for(data.stage_id)):
            if self._host.terminal:
                return
            if set(action.trigger.variable_changed) & changed.keys():
                await self.run(action, {}, ActionMatch(action), depth=depth + 1, moves=moves)
