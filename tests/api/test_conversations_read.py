"""GET /v1/conversations, /v1/conversations/{id} and /v1/conversations/{id}/events: which
app reads which project, filters, paging, the live state, and the bad inputs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.client import ConversationClient
from tests.api.conftest import API_TOML, Served, api_client, serve

pytestmark = pytest.mark.integration

OTHER_APP = "Bearer sk_id_other:sk_secret_other_0123456789abcdefghijkl"

NOTES = """
id: {id}
apiKeys: [{{key: {id}-key}}]
startingStageId: intro
ruleResponder: {{chunkDelayMs: 0}}
stages:
  - id: intro
    onEnter: generate_response
    variables: [{{name: topic, default: none}}]
    actions:
      - name: __on_enter
        effects: [{{type: generate_response, text: "Hello."}}]
      - name: pick
        trigger: {{keywords: [weather]}}
        effects:
          - {{type: modify_variables, set: {{topic: weather}}}}
          - {{type: generate_response, text: "Weather it is."}}
      - name: bye
        trigger: {{keywords: [bye]}}
        effects:
          - {{type: end_conversation, reason: done}}
          - {{type: generate_response, text: "Bye."}}
"""


def config(projects: Path, database: Path) -> str:
    toml = API_TOML.replace(
        'id = "acme"\n', 'id = "acme"\nconversation_projects = ["notes"]\n', 1
    ).replace('id = "other"\n', 'id = "other"\nconversation_projects = ["*"]\n', 1)
    return (
        toml
        + f'\n[conversations]\nprojects_dir = "{projects}"\n'
        + f'database_url = "sqlite+aiosqlite:///{database}"\n'
        + '\n[[apps]]\nid = "nothing"\n[[apps.keys]]\nid = "sk_id_nothing"\nkind = "secret"\n'
        + 'secret = "sk_secret_nothing_0123456789abcdefghijkl"\n'
    )


NOTHING_APP = "Bearer sk_id_nothing:sk_secret_nothing_0123456789abcdefghijkl"


@contextlib.asynccontextmanager
async def conversation(served: Served, key: str, user: str) -> AsyncIterator[ConversationClient]:
    client = await ConversationClient.connect(served.ws_url + "/ws")
    try:
        await client.auth(key)
        await client.start(user)
        await client.next_turn()  # the greeting
        yield client
    finally:
        await client.close()


async def say(client: ConversationClient, text: str) -> None:
    await client.send_text(text)
    await client.next_turn()


@pytest.fixture
def toml(tmp_path: Path) -> str:
    projects = tmp_path / "projects"
    projects.mkdir()
    for name in ("notes", "secret"):
        (projects / f"{name}.yaml").write_text(NOTES.format(id=name), encoding="utf-8")
    return config(projects, tmp_path / "store.db")


async def test_listing_filters_pages_and_shows_the_live_state(toml: str) -> None:
    async with serve(toml) as served, api_client(served) as api:
        async with conversation(served, "notes-key", "u1") as first:
            await say(first, "bye")
        async with (
            conversation(served, "notes-key", "u2") as second,
            conversation(served, "notes-key", "u3") as third,
            conversation(served, "secret-key", "u4") as hidden,
        ):
            await say(second, "weather")
            ids = [first.conversation_id, second.conversation_id, third.conversation_id]

            reply = await api.call("GET", "/v1/conversations")
            assert reply.status == 200
            listed = reply.body["conversations"]
            assert [c["conversationId"] for c in listed] == ids[::-1]  # newest first
            assert set(listed[0]) == {
                "conversationId",
                "projectId",
                "userId",
                "stageId",
                "state",
                "startedAt",
                "endedAt",
            }
            by_id = {c["conversationId"]: c for c in listed}
            assert by_id[ids[0]]["state"] == "finished"
            assert by_id[ids[0]]["endedAt"] >= by_id[ids[0]]["startedAt"]
            assert by_id[ids[1]]["state"] == "awaiting_user_input"
            assert by_id[ids[1]]["endedAt"] is None
            assert {c["projectId"] for c in listed} == {"notes"}
            assert by_id[ids[2]]["userId"] == "u3"

            async def listed_ids(query: str, auth: str = "default") -> list[str]:
                reply = await api.call("GET", f"/v1/conversations?{query}", auth=auth)
                assert reply.status == 200, reply.body
                return [c["conversationId"] for c in reply.body["conversations"]]

            assert await listed_ids("state=live") == ids[:0:-1]
            assert await listed_ids("state=ended") == [ids[0]]
            assert await listed_ids("state=finished") == [ids[0]]
            assert await listed_ids("state=failed") == []
            assert await listed_ids("projectId=notes&limit=2") == ids[:0:-1]
            assert await listed_ids(f"limit=2&before={ids[1]}") == [ids[0]]
            assert await listed_ids(f"before={ids[0]}") == []
            # The other app reads every project, the hidden one included.
            everything = await listed_ids("", auth=OTHER_APP)
            assert everything == [hidden.conversation_id, *ids[::-1]]
            assert await listed_ids("projectId=secret", auth=OTHER_APP) == [hidden.conversation_id]
            assert await listed_ids("", auth=NOTHING_APP) == []

            refused = await api.call("GET", "/v1/conversations?projectId=secret")
            assert (refused.status, refused.body["error"]) == (403, "project_not_authorized")
            cursor = await api.call("GET", f"/v1/conversations?before={hidden.conversation_id}")
            assert (cursor.status, cursor.body["error"]) == (400, "invalid_request")


async def test_one_conversation_its_variables_and_its_events_in_pages(toml: str) -> None:
    async with serve(toml) as served, api_client(served) as api:
        async with conversation(served, "notes-key", "u1") as client:
            await say(client, "weather")
            cid = client.conversation_id
            live = await api.call("GET", f"/v1/conversations/{cid}")
            assert live.status == 200
            assert live.body["state"] == "awaiting_user_input"
            assert live.body["runningHere"] is True
            assert live.body["stageId"] == "intro"
            assert live.body["variables"] == {"intro": {"topic": "weather"}}
            await say(client, "bye")

        done = await api.call("GET", f"/v1/conversations/{cid}")
        assert (done.body["state"], done.body["runningHere"]) == ("finished", False)
        assert done.body["variables"] == {"intro": {"topic": "weather"}}
        assert done.body["endedAt"] is not None

        everything = await api.call("GET", f"/v1/conversations/{cid}/events")
        events = everything.body["events"]
        assert everything.body["nextAfter"] is None
        assert [e["seq"] for e in events] == list(range(len(events)))
        messages = [
            (e["eventData"]["role"], e["eventData"]["text"])
            for e in events
            if e["eventType"] == "message"
        ]
        assert messages == [
            ("assistant", "Hello."),
            ("user", "weather"),
            ("assistant", "Weather it is."),
            ("user", "bye"),
            ("assistant", "Bye."),
        ]
        assert "conversation_end" in [e["eventType"] for e in events]
        assert set(events[0]) == {
            "seq",
            "eventType",
            "eventData",
            "inputTurnId",
            "outputTurnId",
            "createdAt",
        }

        pages: list[int] = []
        after = None
        while True:
            query = "limit=3" + (f"&after={after}" if after is not None else "")
            page = await api.call("GET", f"/v1/conversations/{cid}/events?{query}")
            pages += [e["seq"] for e in page.body["events"]]
            after = page.body["nextAfter"]
            if after is None:
                break
        assert pages == [e["seq"] for e in events]


async def test_a_conversation_of_another_project_is_not_found(toml: str) -> None:
    async with serve(toml) as served, api_client(served) as api:
        async with conversation(served, "secret-key", "u1") as hidden:
            cid = hidden.conversation_id
        for path in (f"/v1/conversations/{cid}", f"/v1/conversations/{cid}/events"):
            reply = await api.call("GET", path)
            assert (reply.status, reply.body["error"]) == (404, "not_found"), path
            assert (await api.call("GET", path, auth=NOTHING_APP)).status == 404
            assert (await api.call("GET", path, auth=OTHER_APP)).status == 200
        for path in ("/v1/conversations/conv_nope", "/v1/conversations/conv_nope/events"):
            assert (await api.call("GET", path)).status == 404


@pytest.mark.parametrize(
    "query",
    ["state=bogus", "limit=0", "limit=x", "before=%01", "projectId=" + "p" * 201],
)
async def test_bad_listing_queries_are_refused(toml: str, query: str) -> None:
    async with serve(toml) as served, api_client(served) as api:
        reply = await api.call("GET", f"/v1/conversations?{query}")
        assert (reply.status, reply.body["error"]) == (400, "invalid_request"), reply.body


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=1001", "after=" + "9" * 13])
async def test_bad_event_queries_are_refused(toml: str, query: str) -> None:
    async with serve(toml) as served, api_client(served) as api:
        async with conversation(served, "notes-key", "u1") as client:
            cid = client.conversation_id
        reply = await api.call("GET", f"/v1/conversations/{cid}/events?{query}")
        assert (reply.status, reply.body["error"]) == (400, "invalid_request"), reply.body


async def test_without_conversations_the_routes_answer_empty_and_not_found() -> None:
    async with serve() as served, api_client(served) as api:
        reply = await api.call("GET", "/v1/conversations")
        assert (reply.status, reply.body) == (200, {"conversations": []})
        reply = await api.call("GET", "/v1/conversations/conv_x")
        assert (reply.status, reply.body["error"]) == (404, "not_found")
        assert (await api.call("GET", "/v1/conversations", auth=None)).status == 401


async def test_the_reads_need_a_secret_key(toml: str) -> None:
    async with serve(toml) as served, api_client(served) as api:
        for path in ("/v1/conversations", "/v1/conversations/c", "/v1/conversations/c/events"):
            for auth in (None, "Bearer pk_live_acme", "Bearer sk_id_acme:nope"):
                reply = await api.call("GET", path, auth=auth)
                assert (reply.status, reply.body["error"]) == (401, "unauthorized")


async def test_with_the_bus_off_the_commands_find_no_conversation(toml: str) -> None:
    async with (
        serve(toml) as served,
        api_client(served) as api,
        conversation(served, "notes-key", "u1") as client,
    ):
        path = f"/v1/conversations/{client.conversation_id}"
        for command, body in (("say", {"text": "x"}), ("end", None)):
            reply = await api.call("POST", f"{path}/{command}", body)
            assert (reply.status, reply.body["error"]) == (404, "conversation_not_found")
        # The body is still checked first, and nothing happened to the conversation.
        reply = await api.call("POST", f"{path}/stage", {"stage": "x"})
        assert (reply.status, reply.body["error"]) == (400, "invalid_request")
        await say(client, "weather")
        reply = await api.call("GET", path)
        assert reply.body["variables"]["intro"]["topic"] == "weather"
