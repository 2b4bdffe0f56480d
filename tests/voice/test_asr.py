from __future__ import annotations

import asyncio
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

import pytest

from hubbub.conversation.voice.providers.base import ProviderError, Transcript
from hubbub.conversation.voice.providers.pocketsphinx_asr import PocketsphinxAsr

from .phrases import STAGE_HINTS
from .speech import espeak_pcm16k, piper_pcm16k_async, silence

HELLO = "Hello, I need help with my order"
CHUNK = 3200  # 100 ms, what a client would stream


class CountingExecutor(Executor):
    """Runs jobs on a real thread pool and remembers which thread ran them."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-test")
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.jobs += 1
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


@pytest.fixture(scope="module")
def asr() -> PocketsphinxAsr:
    return PocketsphinxAsr()


async def transcribe(
    asr: PocketsphinxAsr, pcm: bytes, hints: tuple[str, ...] = ()
) -> tuple[list[Transcript], Transcript]:
    stream = await asr.open_stream(language="en-US", hints=hints)
    interim: list[Transcript] = []
    for offset in range(0, len(pcm), CHUNK):
        interim += await stream.push(pcm[offset : offset + CHUNK])
    return interim, await asyncio.wait_for(stream.finish(), 30)


async def test_hello_order_with_stage_hints_gives_order(asr: PocketsphinxAsr) -> None:
    interim, final = await transcribe(asr, espeak_pcm16k(HELLO) + silence(300), STAGE_HINTS)
    assert final.is_final
    assert "order" in final.text.split()
    # Interim results arrive while audio is pushed, each one a new text, none final.
    assert interim
    assert all(not t.is_final and t.text for t in interim)
    assert len({t.text for t in interim}) == len(interim)


async def test_hello_order_without_hints_uses_the_general_model(asr: PocketsphinxAsr) -> None:
    # The general model needs natural speech (espeak-ng's robotic voice defeats it).
    _, final = await transcribe(asr, await piper_pcm16k_async(HELLO))
    print(f"general model: {final.text!r}")
    assert final.is_final
    assert "order" in final.text.split()


async def test_silence_gives_an_empty_final(asr: PocketsphinxAsr) -> None:
    interim, final = await transcribe(asr, silence(1000), STAGE_HINTS)
    assert interim == []
    assert final == Transcript("", is_final=True)


async def test_odd_sized_chunks_are_reassembled(asr: PocketsphinxAsr) -> None:
    pcm = espeak_pcm16k("Where is my package")
    stream = await asr.open_stream(language="en", hints=STAGE_HINTS)
    for offset in range(0, len(pcm), 1001):  # odd: samples split across pushes
        await stream.push(pcm[offset : offset + 1001])
    final = await stream.finish()
    assert "package" in final.text.split()


async def test_unsupported_language_is_a_provider_error(asr: PocketsphinxAsr) -> None:
    with pytest.raises(ProviderError, match="unsupported language"):
        await asr.open_stream(language="fr-FR")


async def test_cancel_then_reuse_and_push_after_finish(asr: PocketsphinxAsr) -> None:
    stream = await asr.open_stream(language="en", hints=STAGE_HINTS)
    await stream.push(espeak_pcm16k("I forgot my password")[:8000])
    await stream.cancel()
    await stream.cancel()  # idempotent
    assert await stream.push(b"\x00\x00") == []
    assert await stream.finish() == Transcript("", is_final=True)
    # The pooled decoder serves the next utterance cleanly.
    _, final = await transcribe(asr, espeak_pcm16k("I forgot my password"), STAGE_HINTS)
    assert "password" in final.text.split()


async def test_concurrent_streams_do_not_mix(asr: PocketsphinxAsr) -> None:
    a, b = espeak_pcm16k("Where is my package"), espeak_pcm16k("My account is locked")
    (_, final_a), (_, final_b) = await asyncio.gather(
        transcribe(asr, a, STAGE_HINTS), transcribe(asr, b, STAGE_HINTS)
    )
    assert "package" in final_a.text.split() and "account" not in final_a.text.split()
    assert "account" in final_b.text.split() and "package" not in final_b.text.split()


async def test_decoding_runs_in_the_executor_not_on_the_loop() -> None:
    executor = CountingExecutor()
    asr = PocketsphinxAsr(executor=executor)
    pcm = espeak_pcm16k("My account is locked")
    pushes = len(range(0, len(pcm), CHUNK))
    try:
        _, final = await transcribe(asr, pcm, STAGE_HINTS)
    finally:
        executor.shutdown()
    assert "account" in final.text.split()
    assert executor.jobs == 1 + pushes + 1  # open, every push, finish


OFF_SCRIPT = "What time does the football match start tonight"


async def test_off_script_speech_falls_back_to_the_general_model(asr: PocketsphinxAsr) -> None:
    pcm = silence(300) + await piper_pcm16k_async(OFF_SCRIPT) + silence(300)
    _, final = await transcribe(asr, pcm, STAGE_HINTS)
    print(f"off script, with fallback: {final.text!r}")
    assert {"football", "match", "tonight"} & set(final.text.split())


async def test_without_the_fallback_off_script_speech_is_forced_into_the_hints() -> None:
    asr = PocketsphinxAsr(off_hint_fit=None)
    pcm = silence(300) + await piper_pcm16k_async(OFF_SCRIPT) + silence(300)
    _, final = await transcribe(asr, pcm, STAGE_HINTS)
    print(f"off script, no fallback: {final.text!r}")
    assert not {"football", "match", "tonight"} & set(final.text.split())
