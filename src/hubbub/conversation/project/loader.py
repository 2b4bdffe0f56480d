"""Load and validate project files (YAML) into :class:`LoadedProject` objects.

A broken file is refused with a :class:`ProjectError` naming the file, the path inside the
document (``stages[1].actions[0].effects[2].stageId``) and the reason. Besides the schema, the
loader checks what a schema cannot: unknown stage, agent and tool ids, duplicate ids, template
syntax (through the template renderer) and regular expressions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from hubbub.conversation.project.schema import (
    LIFECYCLE_ACTIONS,
    Action,
    Agent,
    CallToolEffect,
    GenerateResponseEffect,
    GoToStageEffect,
    ModifyVariablesEffect,
    Project,
    PythonTool,
    Stage,
    Tool,
    TurnTaking,
    WebhookTool,
)
from hubbub.conversation.project.templates import TemplateError, TemplateRenderer
from hubbub.errors import ConversationLayerError

PROJECT_SUFFIXES = (".yaml", ".yml")
_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


NESTED_TOO_DEEPLY = "nested too deeply"


class ProjectError(ConversationLayerError):
    def __init__(self, source: str, path: str, reason: str) -> None:
        super().__init__(f"{source}: {path}: {reason}")
        self.source = source
        self.path = path
        self.reason = reason


@dataclass(slots=True)
class LoadedProject:
    """A validated project with its lookups built once."""

    project: Project
    source: str
    stages: dict[str, Stage] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    tools: dict[str, Tool] = field(default_factory=dict)
    patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.project.id

    def actions_for(self, stage_id: str) -> Iterator[Action]:
        """The stage's own actions first, then the project's global ones."""
        stage = self.stages.get(stage_id)
        if stage is not None:
            yield from stage.actions
        yield from self.project.actions

    def find_action(self, stage_id: str, name: str) -> Action | None:
        return next((a for a in self.actions_for(stage_id) if a.name == name), None)


def _path_from_msgspec(message: str) -> tuple[str, str]:
    found = _MSGSPEC_PATH.search(message)
    if not found:
        return "(document)", message
    return found.group("path").lstrip(".") or "(document)", message[: found.start()]


def parse_project(text: str, source: str, renderer: TemplateRenderer) -> LoadedProject:
    """The validated project, or :class:`ProjectError` (never another exception, whatever
    the text: structures nested past Python's recursion limit are an error too)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProjectError(source, where, f"not valid YAML: {problem}") from None
    except RecursionError:
        raise ProjectError(source, "(document)", NESTED_TOO_DEEPLY) from None
    if not isinstance(raw, dict):
        raise ProjectError(source, "(document)", "a project file must be a mapping")
    try:
        project = msgspec.convert(raw, Project)
        loaded = LoadedProject(project=project, source=source)
        _Checker(loaded, renderer).run()
    except msgspec.ValidationError as exc:
        path, reason = _path_from_msgspec(str(exc))
        raise ProjectError(source, path, reason) from None
    except RecursionError:
        raise ProjectError(source, "(document)", NESTED_TOO_DEEPLY) from None
    return loaded


def load_project_file(path: Path, renderer: TemplateRenderer) -> LoadedProject:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError(source, "(file)", f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProjectError(source, "(file)", "not UTF-8 text") from None
    return parse_project(text, source, renderer)


def project_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in PROJECT_SUFFIXES and p.is_file())


def load_projects_dir(directory: Path, renderer: TemplateRenderer) -> list[LoadedProject]:
    """Every project file in ``directory``; project ids and API keys must be unique."""
    if not directory.is_dir():
        raise ProjectError(str(directory), "(directory)", "not a directory")
    projects: list[LoadedProject] = []
    ids: dict[str, str] = {}
    keys: dict[str, str] = {}
    for path in project_files(directory):
        loaded = load_project_file(path, renderer)
        if loaded.id in ids:
            raise ProjectError(
                loaded.source, "id", f"duplicate project id (also in {ids[loaded.id]})"
            )
        ids[loaded.id] = loaded.source
        for k, api_key in enumerate(loaded.project.api_keys):
            if api_key.key in keys:
                raise ProjectError(
                    loaded.source, f"apiKeys[{k}].key", f"API key also used in {keys[api_key.key]}"
                )
            keys[api_key.key] = loaded.source
        projects.append(loaded)
    return projects


class _Checker:
    def __init__(self, loaded: LoadedProject, renderer: TemplateRenderer) -> None:
        self._loaded = loaded
        self._renderer = renderer

    def fail(self, path: str, reason: str) -> None:
        raise ProjectError(self._loaded.source, path, reason)

    def template(self, path: str, source: str) -> None:
        try:
            self._renderer.check(source)
        except TemplateError as exc:
            self.fail(path, f"bad template: {exc}")

    def templates_in(self, path: str, value: Any) -> None:
        if isinstance(value, str):
            self.template(path, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                self.templates_in(f"{path}.{key}", item)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.templates_in(f"{path}[{i}]", item)

    def run(self) -> None:
        loaded, project = self._loaded, self._loaded.project
        if not project.id:
            self.fail("id", "must not be empty")
        seen_keys: set[str] = set()
        for k, api_key in enumerate(project.api_keys):
            if not api_key.key:
                self.fail(f"apiKeys[{k}].key", "must not be empty")
            if api_key.key in seen_keys:
                self.fail(f"apiKeys[{k}].key", "duplicate API key")
            seen_keys.add(api_key.key)
        llm = project.providers.llm
        if llm is not None and llm.api_key and llm.api_key_env:
            self.fail("providers.llm", "give apiKey or apiKeyEnv, not both")
        if llm is not None and not 0 <= llm.max_tool_rounds <= 10:
            self.fail("providers.llm.maxToolRounds", "must be from 0 to 10")
        if project.conversation_timeout_s <= 0:
            self.fail("conversationTimeoutS", "must be positive")
        self.unique("agents", [a.id for a in project.agents])
        for a, agent in enumerate(project.agents):
            self.template(f"agents[{a}].persona", agent.persona)
        loaded.agents = {a.id: a for a in project.agents}
        self.unique("stages", [s.id for s in project.stages])
        loaded.stages = {s.id: s for s in project.stages}
        self.unique("tools", [t.id for t in project.tools])
        loaded.tools = {t.id: t for t in project.tools}
        if project.starting_stage_id not in loaded.stages:
            self.fail("startingStageId", f"unknown stage {project.starting_stage_id!r}")
        for t, tool in enumerate(project.tools):
            self.tool(f"tools[{t}]", tool)
        for s, stage in enumerate(project.stages):
            where = f"stages[{s}]"
            if stage.agent_id is not None and stage.agent_id not in loaded.agents:
                self.fail(f"{where}.agentId", f"unknown agent {stage.agent_id!r}")
            self.template(f"{where}.prompt", stage.prompt)
            self.unique(f"{where}.variables", [v.name for v in stage.variables], key="name")
            self.actions(f"{where}.actions", stage.actions)
        self.actions("actions", project.actions)
        self.turn_taking("turnTaking", project.turn_taking)
        for s, stage in enumerate(project.stages):
            if stage.turn_taking is not None:
                self.turn_taking(f"stages[{s}].turnTaking", stage.turn_taking)

    def turn_taking(self, path: str, turn_taking: TurnTaking) -> None:
        durations = {
            "semanticSilenceMs": turn_taking.semantic_silence_ms,
            "maxSilenceMs": turn_taking.max_silence_ms,
            "minInterruptionMs": turn_taking.min_interruption_ms,
            "minInterruptionWords": turn_taking.min_interruption_words,
            "falseInterruptionTimeoutMs": turn_taking.false_interruption_timeout_ms,
        }
        for name, value in durations.items():
            if value is not None and value < 0:
                self.fail(f"{path}.{name}", "must not be negative")
        threshold = turn_taking.finished_threshold
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            self.fail(f"{path}.finishedThreshold", "must be between 0 and 1")

    def unique(self, path: str, ids: list[str], key: str = "id") -> None:
        seen: set[str] = set()
        for i, item in enumerate(ids):
            if not item:
                self.fail(f"{path}[{i}].{key}", "must not be empty")
            if item in seen:
                self.fail(f"{path}[{i}].{key}", f"duplicate {key} {item!r}")
            seen.add(item)

    def tool(self, path: str, tool: Tool) -> None:
        if isinstance(tool, WebhookTool):
            self.template(f"{path}.url", tool.url)
            self.templates_in(f"{path}.headers", tool.headers)
            if tool.body is not None:
                self.template(f"{path}.body", tool.body)
        elif isinstance(tool, PythonTool):
            module, _, function = tool.callable.partition(":")
            if not module or not function:
                self.fail(f"{path}.callable", "expected 'package.module:function'")
        else:
            self.template(f"{path}.prompt", tool.prompt)

    def actions(self, path: str, actions: list[Action]) -> None:
        self.unique(path, [a.name for a in actions], key="name")
        for a, action in enumerate(actions):
            self.action(f"{path}[{a}]", action)

    def action(self, path: str, action: Action) -> None:
        loaded = self._loaded
        if action.name.startswith("__") and action.name not in LIFECYCLE_ACTIONS:
            self.fail(
                f"{path}.name",
                f"unknown lifecycle action (expected one of {', '.join(LIFECYCLE_ACTIONS)})",
            )
        for p, pattern in enumerate(action.trigger.patterns):
            try:
                loaded.patterns[pattern] = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                self.fail(f"{path}.trigger.patterns[{p}]", f"bad regular expression: {exc}")
        if action.condition is not None:
            try:
                self._renderer.check_expression(action.condition)
            except TemplateError as exc:
                self.fail(f"{path}.condition", f"bad condition: {exc}")
        for e, effect in enumerate(action.effects):
            where = f"{path}.effects[{e}]"
            if isinstance(effect, CallToolEffect):
                if effect.tool_id not in loaded.tools:
                    self.fail(f"{where}.toolId", f"unknown tool {effect.tool_id!r}")
                self.templates_in(f"{where}.parameters", effect.parameters)
            elif isinstance(effect, ModifyVariablesEffect):
                self.templates_in(f"{where}.set", effect.set)
            elif isinstance(effect, GenerateResponseEffect):
                self.template(f"{where}.text", effect.text)
                self.template(f"{where}.instructions", effect.instructions)
            elif isinstance(effect, GoToStageEffect) and effect.stage_id not in loaded.stages:
                self.fail(f"{where}.stageId", f"unknown stage {effect.stage_id!r}")
