"""Project files and server configuration for the end-to-end conversation tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from hubbub.console import demo_projects_dir

REPO = Path(__file__).resolve().parents[2]
DEMO_PROJECT = demo_projects_dir() / "support-desk.yaml"

STORY = (
    "Once upon a time a small robot lived in a lighthouse by the sea and every night it "
    "counted the ships that passed and wrote their names in a very long book."
)

LAB = f"""
id: lab
apiKeys:
  - key: lab-key
  - key: lab-minimal
    features: [conversation_control]
  - key: lab-text-only
    features: [conversation_control, text_input]
  - key: lab-webrtc-only
    transports: [webrtc]
  - key: lab-inactive
    active: false
startingStageId: intro
ruleResponder: {{chunkDelayMs: 30}}
tools:
  - id: echo
    type: python
    callable: tests.conversation.lab_tools:echo
  - id: slow
    type: python
    callable: tests.conversation.lab_tools:slow
  - id: explode
    type: python
    callable: tests.conversation.lab_tools:explode
  - id: forbidden
    type: python
    callable: os:getcwd
  - id: unreachable
    type: webhook
    url: "http://127.0.0.1:9/nothing"
    timeoutS: 2
stages:
  - id: intro
    variables:
      - {{name: counter, type: integer, default: 0}}
      - {{name: note}}
    actions:
      - name: long_story
        trigger: {{keywords: [story]}}
        effects: [{{type: generate_response, text: "{STORY}"}}]
      - name: bump
        trigger: {{keywords: [bump]}}
        effects:
          - {{type: generate_response, text: "Counter is {{{{ stageVars.counter }}}}."}}
          - {{type: modify_variables, set: {{counter: "{{{{ stageVars.counter + 1 }}}}"}}}}
      - name: watch_note
        trigger: {{variableChanged: [note]}}
        effects: [{{type: generate_response, text: "Noted {{{{ stageVars.note }}}}."}}]
      - name: gated
        trigger: {{keywords: [secret]}}
        condition: "stageVars.counter >= 2"
        effects: [{{type: generate_response, text: "The secret is 42."}}]
      - name: use_echo
        parameters: {{word: default}}
        effects:
          - {{type: call_tool, toolId: echo, parameters: {{word: "{{{{ parameters.word }}}}"}}}}
      - name: nap
        trigger: {{keywords: [nap]}}
        effects: [{{type: call_tool, toolId: slow, parameters: {{seconds: "1.0"}}}}]
      - name: finish
        trigger: {{keywords: [finish]}}
        effects:
          - {{type: end_conversation, reason: done}}
          - {{type: generate_response, text: "Bye."}}
      - name: jump
        trigger: {{keywords: [jump]}}
        effects: [{{type: go_to_stage, stageId: other}}]
  - id: other
    onEnter: generate_response
    variables: [{{name: mood, default: calm}}]
    actions:
      - name: __on_enter
        effects: [{{type: generate_response, text: "Welcome to the other stage."}}]
"""

SLEEPY = """
id: sleepy
apiKeys: [{key: sleepy-key}]
startingStageId: only
conversationTimeoutS: 0.5
stages: [{id: only}]
"""


def llm_project(base_url: str) -> str:
    return f"""
id: llmlab
apiKeys: [{{key: llm-key}}]
startingStageId: chat
providers:
  llm: {{baseUrl: "{base_url}", model: test-model, apiKey: sk-test}}
agents:
  - id: bot
    persona: You are Bot, working for {{{{ constants.company }}}}.
constants: {{company: Lab Inc}}
stages:
  - id: chat
    agentId: bot
    onEnter: generate_response
    prompt: "Stage chat. Counter {{{{ stageVars.counter }}}}."
    variables: [{{name: counter, type: integer, default: 7}}]
  - id: orders
    agentId: bot
    actions:
      - name: cancel_order
        description: The customer wants to cancel an order.
        trigger: {{examples: ["please cancel my order"]}}
        effects: [{{type: generate_response, text: "Your order is cancelled."}}]
tools:
  - id: summarize
    type: llm
    prompt: "Summarize in one word: {{{{ parameters.text }}}}"
"""


def write_projects(directory: Path, *, llm_base_url: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_PROJECT, directory / "support-desk.yaml")
    (directory / "lab.yaml").write_text(LAB, encoding="utf-8")
    (directory / "sleepy.yaml").write_text(SLEEPY, encoding="utf-8")
    if llm_base_url is not None:
        (directory / "llmlab.yaml").write_text(llm_project(llm_base_url), encoding="utf-8")


def server_config(projects_dir: Path, database_url: str, *, trusted_proxies: bool = True) -> str:
    proxies = '["127.0.0.1/32"]' if trusted_proxies else "[]"
    return f"""
[server]
trusted_proxies = {proxies}

[conversations]
projects_dir = "{projects_dir}"
database_url = "{database_url}"
demo_api = true
python_tools = [
  "tests.conversation.lab_tools:echo",
  "tests.conversation.lab_tools:slow",
  "tests.conversation.lab_tools:explode",
]
"""
