"""LLM tool calling end to end: a real server, the loopback fake LLM speaking the OpenAI chat
completions API (streamed, and one JSON completion), a real webhook backend.

The project offers a webhook tool and two described actions as functions; the fake answers
with calls, the server runs them with their effects and sends the results back as ``tool``
messages, and the final answer is what the client receives.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from hubbub.client import ConversationClient
from tests.conversation.lab_projects import REPO
from tests.support.backend import Backend, running_backend
from tests.support.fake_openai import FakeOpenAi, Reply
from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


def project(llm_url: str, backend_url: str) -> str:
    return f"""
id: tools
apiKeys: [{{key: tools-key}}]
startingStageId: chat
providers:
  llm: {{baseUrl: "{llm_url}", model: test-model, apiKey: sk-test, maxToolRounds: 2}}
stages:
  - id: chat
    prompt: You help with trips.
    variables: [{{name: city, type: string}}]
    actions:
      - name: book_trip
        description: Book a trip to a city.
        parametersSchema:
          type: object
          properties: {{city: {{type: string}}}}
          required: [city]
        effects:
          - {{type: modify_variables, set: {{city: "{{{{ parameters.city }}}}"}}}}
          - {{type: generate_response, text: "never said: the LLM answers"}}
          - {{type: go_to_stage, stageId: booked}}
      - name: only_for_paris
        description: Something only Paris allows.
        condition: "stageVars.city == 'Paris'"
        effects: [{{type: modify_variables, set: {{city: nowhere}}}}]
      - name: on_city
        trigger: {{variableChanged: [city]}}
        effects: [{{type: generate_response, text: "never said: a watch mid-answer"}}]
      - name: hidden
        trigger: {{keywords: [hidden]}}
        effects: [{{type: generate_response, text: "not offered: no description"}}]
  - id: booked
    prompt: The trip is booked.
tools:
  - id: weather
    type: webhook
    description: The weather in a city.
    parametersSchema:
      type: object
      properties: {{city: {{type: string}}}}
    url: "{backend_url}/weather?city={{{{ parameters.city }}}}"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[Backend]:
    async with running_backend() as backend:
        backend.answer("/weather", 200, {"forecast": "sunny", "celsius": 24})
        yield backend


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake_llm() -> AsyncIterator[FakeOpenAi]:
    async with FakeOpenAi() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAi, backend: Backend
) -> AsyncIterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tools")
    (root / "projects").mkdir()
    (root / "projects" / "tools.yaml").write_text(
        project(fake_llm.base_url, backend.url("")), encoding="utf-8"
    )
    config = f"""
[conversations]
projects_dir = "{root / "projects"}"
database_url = "sqlite+aiosqlite:///{root / "store.db"}"
"""
    async with running_server(config, env={"PYTHONPATH": str(REPO)}) as process:
        yield process


def script(fake: FakeOpenAi, *replies: Reply) -> int:
    """The fake's next replies; returns the index of the first request they answer."""
    served = len(fake.requests)
    fake.replies = [Reply()] * served + list(replies)
    return served


async def started(server: ServerProcess) -> ConversationClient:
    client = await ConversationClient.connect(server.ws_url + "/ws")
    await client.auth("tools-key")
    await client.start("traveller")
    return client


def bodies(fake: FakeOpenAi, first: int) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests[first:]]


def events(client: ConversationClient, event_type: str) -> list[dict[str, Any]]:
    return [
        m["eventData"]
        for m in client.log
        if m.get("type") == "conversation_event" and m.get("eventType") == event_type
    ]


async def test_a_webhook_tool_called_by_the_llm_fetches_and_its_result_goes_back(
    server: ServerProcess, fake_llm: FakeOpenAi, backend: Backend
) -> None:
    async with await started(server) as client:
        first = script(
            fake_llm,
            Reply.calls(("tool_weather", '{"city": "Paris"}')),
            Reply.text(["Sunny, ", "24 degrees."]),
        )
        await client.send_text("what is the weather in Paris?")
        turn = await client.next_turn()
        assert turn.completed and turn.text == "Sunny, 24 degrees."
        [fetch] = [r for r in backend.received("/weather")]
        assert fetch.headers["Host"].startswith("127.0.0.1")
        offered, answered = bodies(fake_llm, first)
        names = [t["function"]["name"] for t in offered["tools"]]
        assert names == ["tool_weather", "action_book_trip", "action_only_for_paris"]
        weather = offered["tools"][0]["function"]
        assert weather["description"] == "The weather in a city."
        assert weather["parameters"]["properties"] == {"city": {"type": "string"}}
        assert offered["tool_choice"] == "auto"
        call, result = answered["messages"][-2:]
        assert call["role"] == "assistant" and call["tool_calls"] == [
            {
                "type": "function",
                "id": "call_0",
                "function": {"name": "tool_weather", "arguments": '{"city": "Paris"}'},
            }
        ]
        assert result["role"] == "tool" and result["tool_call_id"] == "call_0"
        sent = json.loads(result["content"])
        assert sent["ok"] is True and sent["result"]["data"] == {"forecast": "sunny", "celsius": 24}
        [tool_call] = events(client, "tool_call")
        assert tool_call["toolId"] == "weather" and tool_call["parameters"] == {"city": "Paris"}


async def test_an_action_called_by_the_llm_sets_variables_and_moves_stage_after_the_answer(
    server: ServerProcess, fake_llm: FakeOpenAi
) -> None:
    async with await started(server) as client:
        first = script(
            fake_llm,
            Reply.calls(("action_book_trip", '{"city": "Rome"}')),
            Reply.text(["Booked Rome."]),
        )
        await client.send_text("book me a trip to Rome")
        turn = await client.next_turn()
        # Neither the action's prescripted response nor its watch's speaks mid-answer.
        assert turn.text == "Booked Rome."
        jump = await client.wait_for(
            lambda m: m.get("type") == "conversation_event" and m["eventType"] == "jump_to_stage"
        )
        assert jump["eventData"] == {"fromStageId": "chat", "toStageId": "booked"}
        order = [m.get("type") for m in client.log]
        assert order.index("end_ai_generation_output") < client.log.index(jump)
        [changed] = events(client, "variables_changed")
        assert changed == {"stageId": "chat", "changes": {"city": "Rome"}}
        result = json.loads(bodies(fake_llm, first)[1]["messages"][-1]["content"])
        assert result["ok"] is True and result["variables"]["city"] == "Rome"
        assert result["then"] == ["after this answer the conversation moves to stage booked"]
        # The new stage offers only the project's tools (its own actions are none).
        script(fake_llm, Reply.text(["Anything else?"]))
        await client.send_text("thanks")
        assert (await client.next_turn()).text == "Anything else?"
        spoken = [m["fullText"] for m in client.log if m.get("type") == "end_ai_generation_output"]
        assert spoken == ["Booked Rome.", "Anything else?"]
        assert [a["name"] for a in events(client, "action")] == ["book_trip", "on_city"]
        names = [t["function"]["name"] for t in fake_llm.requests[-1].body["tools"]]
        assert names == ["tool_weather"]


async def test_bad_calls_are_answered_to_the_model_and_the_turn_goes_on(
    server: ServerProcess, fake_llm: FakeOpenAi
) -> None:
    async with await started(server) as client:
        first = script(
            fake_llm,
            Reply.calls(
                ("no_such_function", "{}"),
                ("tool_weather", "[1, 2]"),
                ("action_only_for_paris", "{}"),
            ),
            Reply.text(["Sorry, I could not."]),
        )
        await client.send_text("do odd things")
        assert (await client.next_turn()).text == "Sorry, I could not."
        results = [
            json.loads(m["content"])
            for m in bodies(fake_llm, first)[1]["messages"]
            if m["role"] == "tool"
        ]
        assert results == [
            {"ok": False, "error": "unknown function 'no_such_function'"},
            {"ok": False, "error": "the arguments must be a JSON object"},
            {"ok": False, "error": "the action does not apply now"},
        ]
        assert events(client, "tool_call") == [] and events(client, "action") == []
        assert (await client.command("get_var", stageId="chat", variableName="city"))[
            "variableValue"
        ] is None


async def test_tool_rounds_are_bounded_per_turn(
    server: ServerProcess, fake_llm: FakeOpenAi
) -> None:
    async with await started(server) as client:
        first = script(
            fake_llm, Reply.calls(("tool_weather", '{"city": "Oslo"}'), text=["Checking. "])
        )
        await client.send_text("weather forever")
        turn = await client.next_turn()
        # maxToolRounds 2: two rounds may call, the third must answer in words.
        sent = bodies(fake_llm, first)
        assert [b["tool_choice"] for b in sent] == ["auto", "auto", "none"]
        assert turn.completed and turn.text == "Checking. " * 3
        assert len(events(client, "tool_call")) == 2


async def test_a_json_completion_with_calls_works_too(
    server: ServerProcess, fake_llm: FakeOpenAi
) -> None:
    async with await started(server) as client:
        calls = Reply.calls(("action_book_trip", '{"city": "Lima"}'))
        unstreamed = Reply(chunks=(), tool_calls=calls.tool_calls, ignore_stream=True)
        script(fake_llm, unstreamed, Reply(chunks=("Lima it is.",), ignore_stream=True))
        await client.send_text("Lima please")
        assert (await client.next_turn()).text == "Lima it is."
        await client.wait_for(
            lambda m: m.get("type") == "conversation_event" and m["eventType"] == "jump_to_stage"
        )
        assert events(client, "variables_changed")[0]["changes"] == {"city": "Lima"}


async def test_a_barge_in_during_a_tool_round_drops_the_rest(
    server: ServerProcess, fake_llm: FakeOpenAi, backend: Backend, tmp_path: Path
) -> None:
    async with await started(server) as client:
        script(
            fake_llm,
            Reply.calls(("action_book_trip", '{"city": "Kyiv"}'), text=["One ", "moment. "]),
            Reply.text([f"w{i} " for i in range(50)], chunk_delay_s=0.05),
            Reply.text(["Stopped."]),
        )
        await client.send_text("book Kyiv")
        await client.wait_for(
            lambda m: m.get("type") == "ai_transcribed_chunk" and m["chunkText"].startswith("w")
        )
        await client.send_text("stop")
        aborted = await client.wait_type("abort_ai_generation_output")
        assert aborted["accumulatedText"].startswith("One moment. w0 ")
        assert (await client.next_turn()).text == "Stopped."
        # The interrupted answer's stage jump never happened.
        assert events(client, "jump_to_stage") == []
