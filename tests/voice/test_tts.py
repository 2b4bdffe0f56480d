from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from hubbub.conversation.voice.providers.base import (
    ENGINE_SAMPLE_RATE,
    ProviderError,
    VoiceSettings,
)
from hubbub.conversation.voice.providers.espeak_tts import EspeakTts
from hubbub.conversation.voice.providers.piper_tts import CHUNK_MS, PiperTts, _clauses

LONG_TEXT = " ".join(
    f"This is sentence number {n}, which the assistant reads out slowly and carefully."
    for n in range(1, 30)
)
# One very long sentence: Piper synthesizes a sentence in one model run.
LONG_SENTENCE = ", and then ".join(
    f"the customer asked about parcel number {n} which had not arrived" for n in range(5)
)


def seconds(pcm: bytes) -> float:
    return len(pcm) / (2 * ENGINE_SAMPLE_RATE)


async def collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


class InferenceWatchingExecutor(ThreadPoolExecutor):
    """One worker thread; tells the test when the next Piper model run has begun on it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="piper-test")
        self.inference_started: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self) -> asyncio.Event:
        self._loop = asyncio.get_running_loop()
        self.inference_started = asyncio.Event()
        return self.inference_started

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        loop, event = self._loop, self.inference_started
        if getattr(fn, "__name__", "") != "_infer" or loop is None or event is None:
            return super().submit(fn, *args, **kwargs)
        self._loop = self.inference_started = None  # one-shot: the next run is not watched

        def announced() -> Any:
            loop.call_soon_threadsafe(event.set)
            return fn(*args, **kwargs)

        return super().submit(announced)


@pytest.fixture(scope="module")
def piper_executor() -> Iterator[InferenceWatchingExecutor]:
    executor = InferenceWatchingExecutor()
    yield executor
    executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def piper(piper_executor: InferenceWatchingExecutor) -> PiperTts:
    return PiperTts(executor=piper_executor)


# --- espeak-ng ------------------------------------------------------------------------------


async def test_espeak_speaks_at_engine_rate() -> None:
    chunks = await asyncio.wait_for(
        collect(EspeakTts().synthesize("Hello, how can I help you?", VoiceSettings())), 10
    )
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0
    assert 0.8 < seconds(pcm) < 4.0


async def test_espeak_speed_setting_changes_duration() -> None:
    text = "Your order will arrive on Tuesday."
    normal = b"".join(await collect(EspeakTts().synthesize(text, VoiceSettings())))
    fast = b"".join(await collect(EspeakTts().synthesize(text, VoiceSettings(speed=2.0))))
    assert seconds(fast) < 0.75 * seconds(normal)


async def test_espeak_closing_the_stream_kills_the_process_promptly() -> None:
    tts = EspeakTts()
    stream = tts.synthesize(LONG_TEXT, VoiceSettings())
    first = await asyncio.wait_for(anext(stream), 10)
    assert first
    process = tts.last_process
    assert process is not None and process.returncode is None
    started = time.perf_counter()
    await asyncio.wait_for(stream.aclose(), 5)  # type: ignore[attr-defined]
    assert time.perf_counter() - started < 1.0
    assert process.returncode is not None and process.returncode < 0  # killed by a signal


async def test_espeak_cancelling_the_consumer_kills_the_process() -> None:
    tts = EspeakTts()
    got_audio = asyncio.Event()

    async def consume() -> None:
        async for _ in tts.synthesize(LONG_TEXT, VoiceSettings()):
            got_audio.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_audio.wait(), 10)
    process = tts.last_process
    assert process is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert process.returncode is not None and process.returncode < 0


async def test_espeak_missing_binary_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="cannot start"):
        await collect(EspeakTts(binary="/nonexistent/espeak-ng").synthesize("Hi", VoiceSettings()))


async def test_espeak_text_that_looks_like_an_option_is_spoken() -> None:
    pcm = b"".join(await collect(EspeakTts().synthesize("--help -v xx", VoiceSettings())))
    assert seconds(pcm) > 0.3


# --- Piper ----------------------------------------------------------------------------------


async def test_piper_streams_sentence_by_sentence_in_100ms_chunks(piper: PiperTts) -> None:
    await piper.warm_up()
    text = "Thanks for calling. Let me check that order for you. One moment please."
    started = time.perf_counter()
    arrivals: list[float] = []
    chunks: list[bytes] = []
    async for chunk in piper.synthesize(text, VoiceSettings()):
        arrivals.append(time.perf_counter() - started)
        chunks.append(chunk)
    elapsed = time.perf_counter() - started
    audio_s = seconds(b"".join(chunks))
    print(
        f"piper: {audio_s:.2f} s of audio in {elapsed:.2f} s (RTF {elapsed / audio_s:.2f}), "
        f"first chunk after {arrivals[0] * 1000:.0f} ms"
    )
    assert 2.5 < audio_s < 10
    chunk_bytes = 2 * ENGINE_SAMPLE_RATE * CHUNK_MS // 1000
    assert all(len(c) <= chunk_bytes for c in chunks)
    # The first sentence is out well before the whole text has been synthesized.
    assert arrivals[0] < 0.7 * elapsed


async def test_piper_worker_threads_do_not_spin_between_runs(piper: PiperTts) -> None:
    # ONNX Runtime's default spins its threads after each run, burning CPU that other
    # conversations' speech needs (bench/voice.py, four at once).
    await piper.warm_up()
    options = piper._load().session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


async def test_piper_speed_setting_changes_duration(piper: PiperTts) -> None:
    text = "Your order will arrive on Tuesday."
    normal = b"".join(await collect(piper.synthesize(text, VoiceSettings())))
    fast = b"".join(await collect(piper.synthesize(text, VoiceSettings(speed=1.6))))
    assert seconds(fast) < 0.8 * seconds(normal)


async def test_piper_concurrent_syntheses_both_complete() -> None:
    tts = PiperTts()  # the loop's default executor: several worker threads
    texts = ("Your parcel is on its way.", "Your refund has been approved.")
    results = await asyncio.wait_for(
        asyncio.gather(*(collect(tts.synthesize(t, VoiceSettings())) for t in texts)), 60
    )
    assert all(1.0 < seconds(b"".join(chunks)) < 5.0 for chunks in results)


async def test_piper_empty_text_gives_no_audio(piper: PiperTts) -> None:
    assert await collect(piper.synthesize("", VoiceSettings())) == []


async def test_piper_cancel_mid_sentence_frees_the_worker_promptly(
    piper: PiperTts, piper_executor: InferenceWatchingExecutor
) -> None:
    await piper.warm_up()
    loop = asyncio.get_running_loop()
    # How long one model run of the long sentence takes when left alone.
    started = time.perf_counter()
    whole = b"".join(await collect(piper.synthesize(LONG_SENTENCE, VoiceSettings())))
    uncancelled_s = time.perf_counter() - started
    assert seconds(whole) > 10

    inference_started = piper_executor.watch()
    task = asyncio.create_task(collect(piper.synthesize(LONG_SENTENCE, VoiceSettings())))
    await asyncio.wait_for(inference_started.wait(), 10)  # the sentence is inside the model
    cancelled_at = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The single worker thread is free again long before the sentence would have finished.
    await asyncio.wait_for(loop.run_in_executor(piper_executor, lambda: None), 10)
    freed_after = time.perf_counter() - cancelled_at
    print(
        f"piper: sentence alone {uncancelled_s:.2f} s; worker freed {freed_after * 1000:.0f} ms "
        "after cancel"
    )
    assert freed_after < uncancelled_s / 3


async def test_piper_closing_between_chunks_stops(piper: PiperTts) -> None:
    stream = piper.synthesize(LONG_TEXT, VoiceSettings())
    assert await asyncio.wait_for(anext(stream), 30)
    started = time.perf_counter()
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.perf_counter() - started < 0.5


def test_long_sentences_are_cut_after_clause_marks_only_into_useful_pieces() -> None:
    first, second = [*list("a" * 20), ","], [*list(" b" * 10), "."]
    assert _clauses(first + second) == [first, second]
    # A short lead-in ("Well,") stays with what follows; so does a short tail.
    assert _clauses(["w", "ɛ", "l", ",", *second]) == [["w", "ɛ", "l", ",", *second]]
    assert _clauses([*first, " ", "o", "k", "."]) == [[*first, " ", "o", "k", "."]]
    assert _clauses(first + list(" c" * 10) + [";"] + second) == [
        first,
        [*list(" c" * 10), ";"],
        second,
    ]
