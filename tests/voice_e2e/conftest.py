"""Voice end to end: real ``hubbub serve`` processes, speech synthesized in the test with the
project's own Piper provider, real clients (aiortc, a raw WebSocket, headless Chromium)."""

from __future__ import annotations

import pytest

from hubbub.conversation.voice.providers.registry import piper_available, voice_available

if not (voice_available() and piper_available()):
    pytest.skip("needs the `voice` extra (make test installs it)", allow_module_level=True)
