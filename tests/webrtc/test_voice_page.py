"""/demo/voice in headless Chromium (Debian's chromium + npm playwright-core), with a fake
microphone fed from a WAV file the test synthesizes: the page connects over WebRTC, opens
control, authenticates and holds a text exchange with the support-desk agent."""

from __future__ import annotations

import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.node import run_node_script
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("voice_page.mjs")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
async def demo_server() -> AsyncIterator[ServerProcess]:
    async with running_server(None, env={"WEBRTC_STUN_URL": ""}) as process:
        yield process


def write_tone_wav(path: Path, seconds: float = 2.0, rate: int = 48_000) -> None:
    count = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * 300 * i / rate)) for i in range(count))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(struct.pack(f"<{count}h", *samples))


async def test_voice_page_is_served(demo_server: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(demo_server.http_url + "/demo/voice") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert 'createDataChannel("control"' in page
    assert "/api/webrtc/offer" in page


@pytest.mark.skipif(
    not CHROMIUM.exists() or not (REPO / "node_modules" / "playwright-core").exists(),
    reason="needs Debian chromium and `npm ci` (playwright-core)",
)
async def test_voice_page_connects_and_talks(demo_server: ServerProcess, tmp_path: Path) -> None:
    wav = tmp_path / "microphone.wav"
    write_tone_wav(wav)
    result = await run_node_script(SCRIPT, demo_server.http_url, str(wav), timeout_s=90)
    assert "error" not in result, result
    assert result["control"] == "open"
    assert result["auth"] == "ok"
    assert result["pageErrors"] == []
    assert result["greeting"].startswith("Agent: Hi, welcome to Acme Gadgets support!")
    assert "You: where is my package?" in result["transcript"]
    assert any("order number" in line for line in result["transcript"][-2:]), result
    # The browser has left: the server notices (ICE consent, ~30 s), closes the session with
    # one line, and nothing of aiortc's teardown reaches the log as a traceback.
    closed = "conversation connection closed transport=webrtc"
    await demo_server.wait_for_output(closed, timeout_s=60)
    log = demo_server.log_text()
    assert "Traceback" not in log and "exception was never retrieved" not in log, log
