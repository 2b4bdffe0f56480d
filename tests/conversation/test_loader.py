"""Project files: the demo loads; each kind of broken file is refused with file, path, reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hubbub.console import demo_projects_dir
from hubbub.conversation.project.loader import (
    ProjectError,
    load_project_file,
    load_projects_dir,
    parse_project,
)
from hubbub.conversation.project.schema import CallToolEffect, WebhookTool
from hubbub.conversation.project.templates import TemplateRenderer

DEMO_DIR = demo_projects_dir()

MINIMAL = """
id: p
apiKeys: [{key: k1}]
startingStageId: s1
stages:
  - id: s1
    actions:
      - name: hello
        trigger: {keywords: [hi]}
        effects: [{type: generate_response, text: "Hello {{ vars.name }}"}]
"""


def parse(text: str) -> object:
    return parse_project(text, "test.yaml", TemplateRenderer())


def test_the_demo_project_loads() -> None:
    [loaded] = load_projects_dir(DEMO_DIR, TemplateRenderer())
    assert loaded.id == "support-desk"
    assert loaded.project.api_keys[0].key == "demo-conversation-key"
    assert set(loaded.stages) == {"greeting", "order_status", "troubleshooting"}
    assert isinstance(loaded.tools["order_status"], WebhookTool)
    effects = loaded.stages["order_status"].actions[0].effects
    assert isinstance(effects[0], CallToolEffect)


def test_a_minimal_project_loads_with_defaults() -> None:
    loaded = parse(MINIMAL)
    project = loaded.project  # type: ignore[attr-defined]
    assert project.asr_config.unintelligible_placeholder == "**inaudible**"
    assert project.asr_config.server_vad is False
    assert project.conversation_timeout_s == 1800.0
    assert project.api_keys[0].features is None


BROKEN = [
    ("id: [unclosed", "line 1, column", "not valid YAML"),
    ("- just\n- a list", "(document)", "must be a mapping"),
    (MINIMAL.replace("id: p\n", "id: 42\n"), "id", "Expected `str`, got `int`"),
    (MINIMAL.replace("startingStageId: s1\n", ""), "(document)", "startingStageId"),
    (MINIMAL + "surprise: 1\n", "(document)", "unknown field `surprise`"),
    (
        MINIMAL.replace("startingStageId: s1", "startingStageId: nowhere"),
        "startingStageId",
        "unknown stage 'nowhere'",
    ),
    (
        MINIMAL.replace("type: generate_response", "type: teleport"),
        "stages[0].actions[0].effects[0]",
        "Invalid value 'teleport'",
    ),
    (
        MINIMAL.replace('text: "Hello {{ vars.name }}"', 'text: "Hello {{ vars.name "'),
        "stages[0].actions[0].effects[0].text",
        "bad template",
    ),
    (
        MINIMAL.replace("trigger: {keywords: [hi]}", "trigger: {patterns: ['(unclosed']}"),
        "stages[0].actions[0].trigger.patterns[0]",
        "bad regular expression",
    ),
    (
        MINIMAL.replace("trigger: {keywords: [hi]}", "condition: 'vars.x =='"),
        "stages[0].actions[0].condition",
        "bad condition",
    ),
    (
        MINIMAL.replace("effects: [", "effects: [{type: go_to_stage, stageId: ghost}, "),
        "stages[0].actions[0].effects[0].stageId",
        "unknown stage 'ghost'",
    ),
    (
        MINIMAL.replace("effects: [", "effects: [{type: call_tool, toolId: ghost}, "),
        "stages[0].actions[0].effects[0].toolId",
        "unknown tool 'ghost'",
    ),
    (
        MINIMAL.replace("  - id: s1\n", "  - id: s1\n    agentId: nobody\n"),
        "stages[0].agentId",
        "unknown agent 'nobody'",
    ),
    (MINIMAL + "  - id: s1\n", "stages[1].id", "duplicate id 's1'"),
    (
        MINIMAL.replace("apiKeys: [{key: k1}]", "apiKeys: [{key: k1}, {key: k1}]"),
        "apiKeys[1].key",
        "duplicate API key",
    ),
    (
        MINIMAL.replace("apiKeys: [{key: k1}]", "apiKeys: [{key: k1, features: [fly]}]"),
        "apiKeys[0].features[0]",
        "Invalid enum value 'fly'",
    ),
    (
        MINIMAL.replace("name: hello", "name: __on_teleport"),
        "stages[0].actions[0].name",
        "unknown lifecycle action",
    ),
    (
        MINIMAL + "tools: [{id: t, type: python, callable: 'no_colon'}]\n",
        "tools[0].callable",
        "expected 'package.module:function'",
    ),
    (MINIMAL + "tools: [{id: t, type: webhook, url: '{{ x'}]\n", "tools[0].url", "bad template"),
    (MINIMAL + "conversationTimeoutS: 0\n", "conversationTimeoutS", "must be positive"),
    (MINIMAL + "turnTaking: {endOfTurn: psychic}\n", "turnTaking.endOfTurn", "Invalid enum"),
    (
        MINIMAL + "turnTaking: {maxSilenceMs: -1}\n",
        "turnTaking.maxSilenceMs",
        "must not be negative",
    ),
    (
        MINIMAL + "turnTaking: {finishedThreshold: 1.5}\n",
        "turnTaking.finishedThreshold",
        "between 0 and 1",
    ),
    (
        MINIMAL.replace("  - id: s1\n", "  - id: s1\n    turnTaking: {minInterruptionMs: -5}\n"),
        "stages[0].turnTaking.minInterruptionMs",
        "must not be negative",
    ),
    (MINIMAL + "turnTaking: {backchanels: [mm]}\n", "turnTaking", "unknown field"),
    (
        MINIMAL + "providers: {llm: {baseUrl: u, model: m, apiKey: a, apiKeyEnv: B}}\n",
        "providers.llm",
        "not both",
    ),
]


@pytest.mark.parametrize(("text", "path", "reason"), BROKEN)
def test_each_kind_of_broken_file_is_refused(text: str, path: str, reason: str) -> None:
    with pytest.raises(ProjectError) as caught:
        parse(text)
    error = caught.value
    assert error.source == "test.yaml"
    assert error.path.startswith(path), error
    assert reason in error.reason, error
    assert str(error).startswith(f"test.yaml: {error.path}: ")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="cannot read"):
        load_project_file(tmp_path / "missing.yaml", TemplateRenderer())
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"id: \xff\xfe")
    with pytest.raises(ProjectError, match="not UTF-8"):
        load_project_file(bad, TemplateRenderer())


def test_ids_and_keys_must_be_unique_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yaml").write_text(MINIMAL.replace("id: p\n", "id: q\n"))
    with pytest.raises(ProjectError, match="API key also used in"):
        load_projects_dir(tmp_path, TemplateRenderer())
    (tmp_path / "b.yaml").write_text(MINIMAL.replace("key: k1", "key: k2"))
    with pytest.raises(ProjectError, match="duplicate project id"):
        load_projects_dir(tmp_path, TemplateRenderer())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubbub", *args], capture_output=True, text=True, timeout=60
    )


def test_projects_check_cli(tmp_path: Path) -> None:
    good = run_cli("projects", "check", str(DEMO_DIR))
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout
    (tmp_path / "broken.yaml").write_text(
        MINIMAL.replace("startingStageId: s1", "startingStageId: x")
    )
    bad = run_cli("projects", "check", str(tmp_path))
    assert bad.returncode == 2
    assert f"{tmp_path / 'broken.yaml'}: startingStageId: unknown stage 'x'" in bad.stderr


def test_serve_refuses_a_broken_projects_dir(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: [")
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[conversations]\nprojects_dir = "{tmp_path}"\n')
    result = run_cli("serve", "--config", str(config), "--port", "0")
    assert result.returncode == 2
    assert "broken.yaml: line 1, column" in result.stderr
