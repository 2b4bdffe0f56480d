"""What a conversation does: user input to actions, actions to effects, stage jumps, start and
end. Effects run in priority order (``EFFECT_PRIORITY``): tools first, so that variables and
responses can use their results; stage jumps and the end last.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hubbub.conversation.project.schema import (
    EFFECT_PRIORITY,
    Action,
    CallToolEffect,
    EndConversationEffect,
    GenerateResponseEffect,
    GoToStageEffect,
    ModifyVariablesEffect,
    Tool,
)
from hubbub.conversation.project.templates import TemplateError
from hubbub.conversation.protocol import errors
from hubbub.conversation.runtime.context import VariableTypeError, coerce, local_time, render_values
from hubbub.conversation.runtime.responder import (
    ActionMatch,
    classify_with_llm,
    llm_messages,
    match_actions,
    prescripted_stream,
)
from hubbub.conversation.runtime.states import TERMINAL, Event, State
from hubbub.conversation.runtime.tools import ToolError, content_parts
from hubbub.conversation.voice.providers.base import ChatMessage, LlmProvider

if TYPE_CHECKING:
    import asyncio

    from hubbub.conversation.runtime.engine import Conversation

log = logging.getLogger(__name__)

# Variable watches may change variables that other watches follow; this bounds the chain.
MAX_WATCH_DEPTH = 3


class ActionRunner:
    def __init__(self, conversation: Conversation) -> None:
        self.conv = conversation
        self._ending = False

    # --- context ---------------------------------------------------------------------------

    @property
    def llm(self) -> LlmProvider | None:
        return self.conv.services.llm_for(self.conv.project.id)

    def scope(self, **extra: Any) -> dict[str, Any]:
        conv = self.conv
        merged: dict[str, Any] = {}
        for stage_id, values in conv.variables.items():
            if stage_id != conv.stage_id:
                merged.update(values)
        merged.update(conv.stage_variables)
        return {
            "vars": merged,
            "stageVars": dict(conv.stage_variables),
            "constants": conv.project.project.constants,
            "userProfile": {"userId": conv.record.user_id},
            "history": [{"role": m.role, "text": m.content} for m in conv.history],
            "time": local_time(conv.record.timezone, conv.services.clock()),
            "tools": conv.tool_results,
            "conversation": {"id": conv.id, "stageId": conv.stage_id},
            "hubbub": {"baseUrl": conv.services.base_url},
            "match": {},
            "parameters": {},
            **extra,
        }

    def system_prompt(self) -> str:
        conv = self.conv
        stage = conv.project.stages[conv.stage_id]
        render = conv.services.renderer.render
        scope = self.scope()
        persona = ""
        if stage.agent_id is not None:
            persona = conv.project.agents[stage.agent_id].persona
        parts = [render(text, scope) for text in (persona, stage.prompt) if text]
        return "\n\n".join(parts)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, initial_variables: dict[str, Any]) -> None:
        conv = self.conv
        self._init_stage_variables(conv.stage_id)
        conv.stage_variables.update(initial_variables)
        conv.save_stage_variables()
        conv.event(
            "conversation_start",
            {"stageId": conv.stage_id, "initialVariables": dict(conv.stage_variables)},
        )
        await self.lifecycle("__conversation_start")
        await self.enter_stage()

    def enters_silently(self) -> bool:
        """Whether starting runs nothing (no lifecycle action, no generated greeting): then the
        conversation awaits input at once, and input sent right after the start reply is taken."""
        conv = self.conv
        stage = conv.project.stages[conv.stage_id]
        if any(
            conv.project.find_action(conv.stage_id, name) is not None
            for name in ("__conversation_start", "__on_enter")
        ):
            return False
        return not (stage.on_enter == "generate_response" and self.llm is not None)

    async def enter_stage(self) -> None:
        conv = self.conv
        spoke = await self.lifecycle("__on_enter")
        if conv.state in TERMINAL:
            return
        stage = conv.project.stages[conv.stage_id]
        if stage.on_enter == "generate_response" and not spoke and self.llm is not None:
            await self.speak_llm("")
        elif conv.state is State.INITIALIZED:
            conv.move(Event.AWAIT_INPUT)

    async def go_to_stage(self, stage_id: str, switched: asyncio.Future[Any] | None = None) -> None:
        conv = self.conv
        previous = conv.stage_id
        await self.lifecycle("__on_leave", stage_only=True)
        if conv.state in TERMINAL:
            return
        conv.record.stage_id = stage_id
        self._init_stage_variables(stage_id)
        conv.save_stage_variables()
        conv.event("jump_to_stage", {"fromStageId": previous, "toStageId": stage_id})
        conv.persist()
        if switched is not None and not switched.done():
            switched.set_result(None)
        await self.enter_stage()

    async def end(self, reason: str) -> None:
        if self._ending or self.conv.state in TERMINAL:
            return
        self._ending = True
        await self.lifecycle("__conversation_end")
        self.conv.terminate(Event.FINISH, "conversation_end", reason)

    async def lifecycle(self, name: str, *, stage_only: bool = False) -> bool:
        """Run a lifecycle action if the stage (or, unless ``stage_only``, the project) has one.
        Returns whether it produced an AI turn."""
        conv = self.conv
        stage = conv.project.stages[conv.stage_id]
        action = next((a for a in stage.actions if a.name == name), None)
        if action is None and not stage_only:
            action = next((a for a in conv.project.project.actions if a.name == name), None)
        if action is None:
            return False
        spoke, _ = await self.run(action, {}, ActionMatch(action))
        return spoke

    def _init_stage_variables(self, stage_id: str) -> None:
        values = self.conv.variables.setdefault(stage_id, {})
        for descriptor in self.conv.project.stages[stage_id].variables:
            values.setdefault(descriptor.name, descriptor.default)

    # --- user input ------------------------------------------------------------------------

    async def handle_user_text(
        self, turn_id: str, text: str, received: float, *, asr_ms: float | None = None
    ) -> None:
        conv = self.conv
        services = conv.services
        conv.history.append(ChatMessage("user", text))
        matched = next(
            (
                candidate
                for candidate in match_actions(conv.project, conv.stage_id, text)
                if self.condition_holds(candidate.action, candidate, {})
            ),
            None,
        )
        llm = self.llm
        if matched is None and llm is not None:
            matched = await classify_with_llm(llm, conv.project, conv.stage_id, text)
        conv.event(
            "message",
            {
                "role": "user",
                "text": text,
                "asrDurationMs": asr_ms,
                "processingDurationMs": round((services.monotonic() - received) * 1000, 3),
            },
            input_turn_id=turn_id,
        )
        spoke = False
        if matched is not None:
            spoke, _ = await self.run(matched.action, {}, matched, origin=received)
        else:
            fallback = conv.project.find_action(conv.stage_id, "__on_fallback")
            if fallback is not None:
                spoke, _ = await self.run(fallback, {}, ActionMatch(fallback), origin=received)
            elif llm is not None:
                await self.speak_llm("", origin=received)
                spoke = True
            else:
                text_out = conv.project.project.rule_responder.fallback_text
                await self.speak_text(text_out, origin=received)
                spoke = True
        if not spoke and llm is not None and conv.state is State.PROCESSING_USER_INPUT:
            await self.speak_llm("", origin=received)
        if conv.state is State.PROCESSING_USER_INPUT:
            conv.move(Event.INPUT_HANDLED)

    # --- speaking --------------------------------------------------------------------------

    def _delay_s(self) -> float:
        return self.conv.project.project.rule_responder.chunk_delay_ms / 1000

    async def speak_text(self, text: str, *, origin: float | None = None) -> None:
        await self.conv.speak(prescripted_stream(text, self._delay_s()), origin=origin)

    async def speak_llm(self, instructions: str, *, origin: float | None = None) -> None:
        llm = self.llm
        if llm is None:
            return
        messages = llm_messages(self.system_prompt(), self.conv.history, instructions)
        temperature = None
        config = self.conv.project.project.providers.llm
        if config is not None:
            temperature = config.temperature
        stream = llm.stream_chat(messages, temperature=temperature)
        await self.conv.speak(stream, origin=origin, llm=True)

    # --- actions and effects ---------------------------------------------------------------

    async def run(
        self,
        action: Action,
        parameters: dict[str, Any],
        matched: ActionMatch,
        *,
        origin: float | None = None,
        depth: int = 0,
    ) -> tuple[bool, list[dict[str, Any]]]:
        """Run ``action`` if its condition holds; returns (spoke, content parts of tool results)."""
        conv = self.conv
        renderer = conv.services.renderer
        params = {**action.parameters, **parameters}
        if not self.condition_holds(action, matched, params):
            return False, []
        conv.event("action", {"name": action.name, "parameters": params})
        spoke = False
        parts: list[dict[str, Any]] = []
        for effect in sorted(action.effects, key=lambda e: EFFECT_PRIORITY[type(e)]):
            if conv.state in TERMINAL:
                break
            scope = self.scope(match=matched.captures, parameters=params)
            try:
                if isinstance(effect, CallToolEffect):
                    tool = conv.project.tools[effect.tool_id]
                    arguments = render_values(renderer, effect.parameters, scope)
                    result = await self.call_tool(tool, arguments)
                    parts.extend(content_parts(result))
                    if effect.result_variable:
                        await self.set_variables({effect.result_variable: result}, depth)
                elif isinstance(effect, ModifyVariablesEffect):
                    changes = render_values(renderer, effect.set, scope)
                    await self.set_variables(changes, depth, unset=effect.unset)
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
            return self.conv.services.renderer.evaluate(action.condition, scope)
        except TemplateError as exc:
            log.warning("action %s: condition failed: %s", action.name, exc)
            return False

    async def call_tool(self, tool: Tool, parameters: dict[str, Any]) -> Any:
        conv = self.conv
        try:
            result = await conv.services.tools.run(tool, parameters, self.scope(), self.llm)
        except ToolError as exc:
            result = {"ok": False, "error": str(exc)}
            conv.tool_results[tool.id] = result
            conv.event("tool_call", {"toolId": tool.id, "parameters": parameters, "result": result})
            raise errors.CommandError(errors.TOOL_FAILED.format(reason=exc)) from None
        conv.tool_results[tool.id] = result
        conv.event("tool_call", {"toolId": tool.id, "parameters": parameters, "result": result})
        return result

    async def set_variables(
        self, changes: dict[str, Any], depth: int = 0, *, unset: list[str] | None = None
    ) -> None:
        changed = self.apply_variables(changes, unset=unset)
        if changed:
            await self.run_watches(changed, depth)

    def apply_variables(
        self, changes: dict[str, Any], *, unset: list[str] | None = None
    ) -> dict[str, Any]:
        """Change the current stage's variables now; returns what actually changed."""
        conv = self.conv
        stage = conv.project.stages[conv.stage_id]
        descriptors = {d.name: d for d in stage.variables}
        values = conv.stage_variables
        changed: dict[str, Any] = {}
        # All or nothing: a value of the wrong type leaves every variable as it was.
        typed_changes = {name: coerce(v, descriptors.get(name)) for name, v in changes.items()}
        for name, typed in typed_changes.items():
            if name not in values or values[name] != typed:
                values[name] = typed
                changed[name] = typed
        for name in unset or []:
            if name in values:
                del values[name]
                changed[name] = None
        if changed:
            conv.save_stage_variables()
            conv.event("variables_changed", {"stageId": conv.stage_id, "changes": changed})
        return changed

    async def run_watches(self, changed: dict[str, Any], depth: int = 0) -> None:
        conv = self.conv
        if depth >= MAX_WATCH_DEPTH:
            return
        for action in list(conv.project.actions_for(conv.stage_id)):
            if conv.state in TERMINAL:
                return
            if set(action.trigger.variable_changed) & changed.keys():
                await self.run(action, {}, ActionMatch(action), depth=depth + 1)
