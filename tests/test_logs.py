"""The log formats and levels (unit), and the one line a server without the voice extra says."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from hubbub import logs
from hubbub.console import demo_projects_dir
from hubbub.conversation.project.loader import load_projects_dir
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.voice.speech import SpeechStack, speech_stack_for


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in logs.CHATTY_LIBRARIES}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in chatty.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_carry_the_event_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    log = logging.getLogger("hubbub.test")
    log.info(
        "connection opened app=%s", "demo", extra={"event": "connection_opened", "app": "demo"}
    )
    log.debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "connection opened app=demo"
    assert (first["event"], first["app"], first["level"], first["logger"]) == (
        "connection_opened",
        "demo",
        "INFO",
        "hubbub.test",
    )
    assert first["time"].endswith("Z")
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exception"]


def test_text_lines_and_quiet_libraries(restore_logging: None) -> None:
    stream = io.StringIO()
    logs.configure("INFO", "text", stream)
    logging.getLogger("aioice.ice").info("Connection(0) Check CandidatePair ... State.IN_PROGRESS")
    logging.getLogger("aiortc.rtcsctptransport").info("chatter")
    logging.getLogger("aiortc").warning("a real problem")
    logging.getLogger("hubbub.x").info("hello %s", "there")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("WARNING aiortc: a real problem")
    assert lines[1].endswith("INFO hubbub.x: hello there")
    logs.configure("DEBUG", "text", stream)
    assert logging.getLogger("aioice").getEffectiveLevel() == logging.DEBUG


def test_a_server_without_the_voice_extra_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    projects = load_projects_dir(demo_projects_dir(), TemplateRenderer())
    monkeypatch.setattr(SpeechStack, "available", staticmethod(lambda: False))
    with caplog.at_level(logging.INFO, logger="hubbub.conversation.voice.speech"):
        assert speech_stack_for(projects) is None
    lines = [r for r in caplog.records if "'voice' extra is not installed" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING  # the demo project wants voice
    assert "pip install 'hubbub[voice]'" in lines[0].getMessage()
    assert "support-desk" in lines[0].getMessage()


class CountingStream(io.StringIO):
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_logged_on_the_loop_leave_in_one_write_at_the_iterations_end(
    restore_logging: None,
) -> None:
    stream = CountingStream()
    logs.configure("INFO", "text", stream)
    log = logging.getLogger("hubbub.test")
    log.info("first")
    log.warning("second")
    assert stream.getvalue() == ""  # not yet: the iteration has not ended
    await asyncio.sleep(0)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["first", "second"]
    assert stream.writes == 1
    # Another thread writes at once, after whatever the loop had batched.
    log.info("batched")
    worker = threading.Thread(target=log.info, args=("from a thread",))
    worker.start()
    worker.join()
    assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()[2:]] == [
        "batched",
        "from a thread",
    ]
