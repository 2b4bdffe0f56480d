"""A webhook tool's parameters cannot walk its URL out of its path (issue 11: ``call_tool
order_status {"orderId": "../../../metrics"}`` fetched ``/metrics``). Against a real HTTP server
on loopback that records every path it is asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from aiohttp import web

from hubbub.conversation.project.schema import WebhookTool
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.runtime.tools import ToolError, ToolRunner
from hubbub.conversation.runtime.webhook_client import AiohttpWebhookClient


class Recorder:
    def __init__(self) -> None:
        self.raw_paths: list[str] = []
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.raw_paths.append(request.raw_path)
        if request.path == "/metrics":
            return web.Response(text="secret_metric 1")
        return web.json_response({"path": request.path})


@pytest_asyncio.fixture
async def recorder() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    recorder.base_url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()


@pytest_asyncio.fixture
async def runner() -> AsyncIterator[ToolRunner]:
    client = AiohttpWebhookClient()
    yield ToolRunner(TemplateRenderer(), client, frozenset())
    await client.close()


def tool(url: str) -> WebhookTool:
    return msgspec.convert({"type": "webhook", "id": "order_status", "url": url}, WebhookTool)


async def call(runner: ToolRunner, recorder: Recorder, url: str, **parameters: Any) -> Any:
    context = {"hubbub": {"baseUrl": recorder.base_url}}
    return await runner.run(tool(url), parameters, context, None)


ENCODED = "{{ hubbub.baseUrl }}/demo/api/orders/{{ parameters.orderId | urlencode }}"
RAW = "{{ hubbub.baseUrl }}/demo/api/orders/{{ parameters.orderId }}"


async def test_ordinary_parameters_reach_the_tools_path(
    runner: ToolRunner, recorder: Recorder
) -> None:
    result = await call(runner, recorder, ENCODED, orderId="A-100")
    assert result["data"] == {"path": "/demo/api/orders/A-100"}
    result = await call(runner, recorder, ENCODED, orderId="a b/c?d#e.f")
    assert recorder.raw_paths[-1] == "/demo/api/orders/a%20b%2Fc%3Fd%23e.f"
    assert result["data"] == {"path": "/demo/api/orders/a b/c?d#e.f"}
    kinds = "{{ hubbub.baseUrl }}/demo/api/{{ parameters.kind | urlencode }}/items"
    result = await call(runner, recorder, kinds, kind="books")
    assert result["data"] == {"path": "/demo/api/books/items"}
    assert recorder.raw_paths == [
        "/demo/api/orders/A-100",
        "/demo/api/orders/a%20b%2Fc%3Fd%23e.f",
        "/demo/api/books/items",
    ]


async def test_urlencoded_slashes_stay_inside_one_segment(
    runner: ToolRunner, recorder: Recorder
) -> None:
    result = await call(runner, recorder, ENCODED, orderId="../../../metrics")
    assert recorder.raw_paths == ["/demo/api/orders/..%2F..%2F..%2Fmetrics"]
    assert result["data"] == {"path": "/demo/api/orders/../../../metrics"}


@pytest.mark.parametrize(
    ("url", "order_id"),
    [
        (ENCODED, ".."),
        (ENCODED, "."),
        (RAW, "../../../metrics"),
        (RAW, "x/%2e%2e/%2E%2E/../metrics"),
        (RAW, "/../../metrics"),
        (RAW, "..%2F..%2Fmetrics/../.."),
        ("{{ hubbub.baseUrl }}/demo/api/orders{{ parameters.orderId }}", "/../../metrics"),
    ],
)
async def test_parameters_that_leave_the_path_are_refused_before_any_request(
    runner: ToolRunner, recorder: Recorder, url: str, order_id: str
) -> None:
    with pytest.raises(ToolError) as refused:
        await call(runner, recorder, url, orderId=order_id)
    assert str(refused.value) == "webhook order_status: the parameters lead the URL out of its path"
    assert recorder.raw_paths == []
    # The runner is fine afterwards.
    ok = await call(runner, recorder, ENCODED, orderId="A-1")
    assert ok["data"] == {"path": "/demo/api/orders/A-1"}


async def test_a_parameter_cannot_change_the_host(runner: ToolRunner, recorder: Recorder) -> None:
    url = "{{ hubbub.baseUrl }}{{ parameters.suffix }}/demo/api/orders/1"
    with pytest.raises(ToolError, match="out of its path"):
        await call(runner, recorder, url, suffix="@127.0.0.2:1")
    assert recorder.raw_paths == []
