"""Schemathesis against a live ``hubbub serve``: no 5xx, and every response (status, content
type, headers, body) conforms to the OpenAPI document the server itself publishes."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from hubbub.console import demo_projects_dir
from tests.support.server import running_server

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SECRET = "sk_secret_fuzz_0123456789abcdefghijklmnop"

FUZZ_TOML = f"""
# Rate limits high enough that the fuzzer measures the API, not the limiter.
[api]
requests_per_second_per_key = 100000
request_burst_per_key = 100000
requests_per_second_per_ip = 100000
request_burst_per_ip = 100000

# Conversations on, so their listing routes read a real (empty) store.
[conversations]
projects_dir = "{demo_projects_dir()}"
database_url = "sqlite+aiosqlite:///fuzz-conversations.db"
events_app = "fuzz"

[[apps]]
id = "fuzz"
max_messages_per_period = 1000000
conversation_projects = ["*"]

[[apps.keys]]
id = "pk_live_fuzz"
kind = "publishable"

[[apps.keys]]
id = "sk_id_fuzz"
kind = "secret"
secret = "{SECRET}"
turn = {{ urls = ["turn:127.0.0.1:3478"], shared_secret = "fuzz-turn" }}

# Most channels keep history (so publish answers carry offsets and history pages fill up);
# channels starting with "n" keep none (the null-epoch answer).
[[apps.channels]]
pattern = "n*"
history_size = 0

[[apps.channels]]
pattern = "**"
history_size = 50
history_ttl_s = 600
"""


@pytest.mark.skipif(
    not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None,
    reason="schemathesis is not installed (pip install -e '.[dev]')",
)
async def test_the_live_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    binary = str(SCHEMATHESIS) if SCHEMATHESIS.exists() else "schemathesis"
    async with running_server(FUZZ_TOML) as server:
        process = await asyncio.create_subprocess_exec(
            binary,
            "run",
            f"{server.http_url}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer sk_id_fuzz:{SECRET}",
            "--checks",
            "all",
            # A schema cannot express every semantic rule (a channel pattern ending in a lone
            # backslash, a channel outside the key's patterns), so a schema-valid request may
            # rightly be refused with a documented 4xx: only that check is left out.
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "40",
            # One worker: the generator is not reliably thread-safe, and the server is shared.
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 150)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert " passed" in report and "failed" not in report.split("SUMMARY")[-1], report[-3000:]
