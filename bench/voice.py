"""Voice latency where the user hears it, and server memory over many voice sessions.

    .venv/bin/python bench/voice.py [--turns 50] [--concurrent 4] [--modes silence,semantic]
                                    [--rss-sessions 100] [--transports ws,webrtc]

Runs a real ``hubbub serve`` with the support-desk agent in server-VAD mode (the offline
providers: PocketSphinx ASR, Piper TTS, Silero VAD, and for ``semantic`` the Smart Turn v3
end-of-turn model), one server per turn-detection mode, and talks to it over the WebSocket the
way a microphone does: audio streams continuously in 20 ms pieces at real-time pace, with no
start/end commands (``--transports webrtc``: the same over an aiortc peer, audio both ways as
binary frames on the ``audio`` DataChannel, the answer paced by the server). The turns cycle
through five finished sentences the greeting stage answers alike ("I need help with my
order.", "My delivery has not arrived.", ... each synthesized once with Piper), each followed
by silence until the answer is heard. (Not "Hello, I need ...": the pause after "Hello," is a
finished utterance to the end-of-turn model, which then rightly ends the turn there.) A turn
whose final transcript lacks the sentence's key word ("order", "delivery", ...) counts as cut
off. The table also splits the latency at the final transcript's arrival: end of speech ->
transcript (VAD silence, end-of-turn decision, final decode) and transcript -> heard (answer,
first piece's synthesis, delivery).

Latency is measured in the client's own audio: from the moment the last non-silent sample of
the user's speech was recorded to the moment the first non-silent sample of the answer would
play. Playback is modelled as a player that starts with the answer's first chunk and plays gaplessly
(a chunk that arrives late delays what follows it). Nothing comes from server timestamps. It
spans the VAD's silence, the end-of-turn decision, the final ASR decode, the rule-based answer
and the synthesis of its first piece.

Scenarios per mode: one conversation speaking ``--turns`` turns, then ``--concurrent``
conversations at once speaking ``--turns`` turns between them (p50/p95 each). Goal: p50 <=
350 ms with semantic end of turn. Then ``--rss-sessions`` voice sessions one after another
(connect, auth, greeting, one spoken turn, close): the server's RSS after the first 10 and after
all of them should be flat (within 5%). Clients and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubbub.protocol.audio_frame import encode_audio_frame  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402
from tests.voice.speech import piper_pcm16k_async, silence  # noqa: E402
from tests.voice_e2e.voice_clients import (  # noqa: E402
    DEMO_PROJECT,
    WsClient,
    config_for,
    voice_chunk,
)
from tests.webrtc.conftest import Client  # noqa: E402

KEY = "demo-conversation-key"
# What the caller says, in turn: finished sentences the greeting stage answers the same way
# (its "ask_for_order" action), each with the word its final transcript must hold. Several
# sentences, because the end-of-turn model judges each one's intonation: one sentence repeated
# 50 times would measure that one synthesis (Piper's output varies from run to run) 50 times.
# None pauses inside ("Can you check my order, please?" ends at the comma: a finished clause).
UTTERANCES = (
    ("I need help with my order.", "order"),
    ("Can you check my order?", "order"),
    ("I want to know where my package is.", "package"),
    ("My delivery has not arrived.", "delivery"),
    ("I have a question about shipping.", "shipping"),
)
RATE = 16_000
PIECE_BYTES = 640  # 20 ms
LOUD = 300  # |sample| above this is not silence (both directions)
TURN_TIMEOUT_S = 30.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Utterance:
    text: str
    keyword: str
    pcm: bytes  # 200 ms of silence, then the speech up to its last loud sample
    end: int  # the index of that sample


async def utterances() -> list[Utterance]:
    made = []
    for text, keyword in UTTERANCES:
        speech = silence(200) + await piper_pcm16k_async(text)
        end = last_loud_sample(speech)
        made.append(Utterance(text, keyword, speech[: (end + 1) * 2], end))
    return made


@dataclass
class Turn:
    latency_ms: float
    to_transcript_ms: float
    cut_off: bool
    said: str = ""


def summary(name: str, turns: list[Turn], wall_s: float) -> dict[str, Any]:
    latencies = [t.latency_ms for t in turns]
    return {
        "scenario": name,
        "turns": len(latencies),
        "cut": sum(t.cut_off for t in turns),
        "transcript_ms": round(statistics.median(t.to_transcript_ms for t in turns), 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
        "wall_s": round(wall_s, 1),
        "by_sentence": {
            said: round(statistics.median(t.latency_ms for t in turns if t.said == said), 1)
            for said in dict.fromkeys(t.said for t in turns)
        },
    }


def first_loud_sample(pcm: bytes) -> int | None:
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > LOUD)[0]
    return int(loud[0]) if len(loud) else None


def last_loud_sample(pcm: bytes) -> int:
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > LOUD)[0]
    return int(loud[-1])


def project_dir(tmp: Path, mode: str) -> Path:
    directory = tmp / f"projects-{mode}"
    directory.mkdir(parents=True, exist_ok=True)
    text = DEMO_PROJECT.read_text(encoding="utf-8")
    text = text.replace(
        "acceptVoice: true\n",
        f"acceptVoice: true\nasrConfig:\n  serverVad: true\nturnTaking: {{endOfTurn: {mode}}}\n",
    )
    (directory / "support-desk.yaml").write_text(text, encoding="utf-8")
    return directory


@dataclass
class Heard:
    """The answer as the client's player would play it."""

    first_arrival: float | None = None
    played_s: float = 0.0  # audio received so far, in seconds
    heard_at: float | None = None

    def chunk(self, at: float, pcm: bytes) -> None:
        if self.heard_at is not None or not pcm:
            return
        if self.first_arrival is None:
            self.first_arrival = at
        # Gapless playback from the first chunk; a late chunk starts when it arrives.
        starts = max(at, self.first_arrival + self.played_s)
        loud = first_loud_sample(pcm)
        if loud is not None:
            self.heard_at = starts + loud / RATE
        self.played_s = starts - self.first_arrival + len(pcm) / 2 / RATE


class TimedClient(WsClient):
    """Stamps each message with its arrival (``_arrived``, the loop's clock) as it is read,
    not when the speaker's 20 ms send loop next looks at its inbox."""

    async def _read(self) -> None:
        clock = asyncio.get_running_loop().time
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                data["_arrived"] = clock()
                self.log.append(data)
                self.inbox.put_nowait(data)


class Speaker:
    """One WebSocket conversation in server-VAD mode, with a microphone that never stops."""

    transport = "WebSocket"

    def __init__(self, client: Any, conversation_id: str) -> None:
        self.client = client
        self.conversation_id = conversation_id
        self.ordinal = 0
        self._loop = asyncio.get_running_loop()
        self._next_send = self._loop.time()  # when the next piece starts being recorded
        self._voice: list[tuple[float, str, bytes]] = []  # (arrived, outputTurnId, pcm)

    @classmethod
    async def open(cls, server: ServerProcess) -> Speaker:
        client = await TimedClient.connect(server)
        auth = await client.command(
            {"type": "auth", "apiKey": KEY, "sessionSettings": {"receiveEvents": False}}
        )
        assert auth["success"] is True, auth
        started = await client.command({"type": "start_conversation", "userId": "bench"})
        await turn_end(client)  # the greeting
        return cls(client, str(started["conversationId"]))

    def send_audio(self, piece: bytes) -> None:
        self.client.send(voice_chunk(self.conversation_id, "", piece, self.ordinal))

    def messages(self) -> list[dict[str, Any]]:
        """The control messages that have arrived (each stamped ``_arrived``)."""
        arrived: list[dict[str, Any]] = []
        while not self.client.inbox.empty():
            message = self.client.inbox.get_nowait()
            if message.get("type") == "send_ai_voice_chunk":
                pcm = base64.b64decode(message["audioData"])
                self._voice.append((message["_arrived"], message["outputTurnId"], pcm))
            else:
                arrived.append(message)
        return arrived

    def voice(self, output_turn_id: str | None) -> list[tuple[float, bytes]]:
        """The answer's audio that has arrived since the last call: (arrival, pcm)."""
        taken = [(at, pcm) for at, turn_id, pcm in self._voice if turn_id == output_turn_id]
        self._voice.clear()
        return taken

    async def send_piece(self, piece: bytes) -> float:
        """Send a piece of audio the way a microphone does, once it has all been recorded
        (at the end of its real-time span); returns when its first sample was recorded."""
        duration = len(piece) / 2 / RATE
        delay = self._next_send + duration - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)  # a microphone's pace, not waiting for an event
        else:
            self._next_send = self._loop.time() - duration
        recorded_at = self._next_send
        self.send_audio(piece)
        self.ordinal += 1
        self._next_send += duration
        return recorded_at

    async def turn(self, utterance: Utterance) -> Turn:
        """Speak, then keep sending silence until the answer is heard; returns the latency
        (ms) from the end of the speech to the first audible answer sample."""
        speech, speech_end = utterance.pcm, utterance.end
        spoken_end_at = 0.0
        for offset in range(0, len(speech), PIECE_BYTES):
            piece = speech[offset : offset + PIECE_BYTES]
            recorded_at = await self.send_piece(piece)
            if offset <= speech_end * 2 < offset + len(piece):
                spoken_end_at = recorded_at + (speech_end * 2 - offset) / 2 / RATE
        heard = Heard()
        finals: list[str] = []
        transcript_at = 0.0
        answer: str | None = None
        answer_over = False  # a short answer may end in the same 20 ms as it is first heard
        quiet = silence(20)
        deadline = self._loop.time() + TURN_TIMEOUT_S
        while heard.heard_at is None:
            if self._loop.time() > deadline:
                raise TimeoutError("no answer heard")
            await self.send_piece(quiet)
            for message in self.messages():
                kind = message.get("type")
                if kind == "start_ai_generation_output":
                    answer = message["outputTurnId"]
                elif kind == "user_transcribed_chunk" and message["isFinal"]:
                    finals.append(message["chunkText"])
                    transcript_at = message["_arrived"]
                elif _ends(message, answer):
                    answer_over = True
            for arrived, pcm in self.voice(answer):
                heard.chunk(arrived, pcm)
        assert heard.heard_at is not None
        latency_ms = (heard.heard_at - spoken_end_at) * 1000
        if not answer_over:
            await self.listen(answer)
        return Turn(
            latency_ms,
            (transcript_at - spoken_end_at) * 1000,
            not any(utterance.keyword in text.lower() for text in finals),
            utterance.text,
        )

    async def listen(self, answer: str | None) -> None:
        """Keep the microphone open (silence) until the answer's turn is over (over WebRTC,
        once its paced voice has played)."""
        async with asyncio.timeout(TURN_TIMEOUT_S):
            while True:
                await self.send_piece(silence(20))
                self.voice(None)
                if any(_ends(message, answer) for message in self.messages()):
                    return

    async def close(self) -> None:
        await self.client.close()


def _ends(message: dict[str, Any], answer: str | None) -> bool:
    return message.get("outputTurnId") == answer and message.get("type") in (
        "end_ai_generation_output",
        "abort_ai_generation_output",
    )


class StampedPeer(Client):
    """An aiortc peer that stamps control messages with their arrival; audio frames carry
    theirs (``frames[i].at_s``)."""

    def _on_control(self, payload: str | bytes) -> None:
        super()._on_control(payload)
        self.events[-1][1]["_arrived"] = asyncio.get_running_loop().time()


class WebRtcSpeaker(Speaker):
    """The same conversation over WebRTC: control on the ``control`` DataChannel, audio both
    ways as binary frames on the ``audio`` channel (the server paces the answer in real time)."""

    transport = "WebRTC"

    def __init__(self, client: StampedPeer, conversation_id: str) -> None:
        super().__init__(client, conversation_id)
        self._frames_seen = len(client.frames)

    @classmethod
    async def open(cls, server: ServerProcess) -> Speaker:
        client = StampedPeer()
        await client.connect(server.http_url + "/api/webrtc/offer")
        auth = await peer_command(
            client, {"type": "auth", "apiKey": KEY, "sessionSettings": {"receiveEvents": False}}
        )
        assert auth["success"] is True, auth
        started = await peer_command(client, {"type": "start_conversation", "userId": "bench"})
        await turn_end(client)  # the greeting, once it has played
        return cls(client, str(started["conversationId"]))

    def send_audio(self, piece: bytes) -> None:
        assert self.client.audio is not None
        self.client.audio.send(encode_audio_frame("", piece))

    def messages(self) -> list[dict[str, Any]]:
        arrived: list[dict[str, Any]] = []
        while not self.client.inbox.empty():
            arrived.append(self.client.inbox.get_nowait())
        return arrived

    def voice(self, output_turn_id: str | None) -> list[tuple[float, bytes]]:
        frames = self.client.frames[self._frames_seen :]
        self._frames_seen = len(self.client.frames)
        return [(f.at_s, f.frame.audio) for f in frames if f.frame.turn_id == output_turn_id]


async def peer_command(client: Client, message: dict[str, Any]) -> dict[str, Any]:
    request_id = f"req-{message['type']}"
    client.send({**message, "requestId": request_id})
    async with asyncio.timeout(30):
        while True:
            reply = await client.receive()
            if reply.get("requestId") == request_id:
                return reply


async def turn_end(client: WsClient | Client) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            message = await client.receive()
            if message.get("type") in ("end_ai_generation_output", "abort_ai_generation_output"):
                return message


SPEAKERS: dict[str, type[Speaker]] = {"ws": Speaker, "webrtc": WebRtcSpeaker}


async def sequential(
    kind: type[Speaker], server: ServerProcess, said: list[Utterance], turns: int
) -> list[Turn]:
    speaker = await kind.open(server)
    try:
        return [await speaker.turn(said[i % len(said)]) for i in range(turns)]
    finally:
        await speaker.close()


async def concurrent(
    kind: type[Speaker], server: ServerProcess, said: list[Utterance], sessions: int, turns: int
) -> list[Turn]:
    speakers = [await kind.open(server) for _ in range(sessions)]
    each = -(-turns // sessions)

    async def talk(index: int, speaker: Speaker) -> list[Turn]:
        await asyncio.sleep(index * 0.6)  # stagger the callers, as real ones would be
        return [await speaker.turn(said[(index + i) % len(said)]) for i in range(each)]

    try:
        results = await asyncio.gather(*(talk(i, s) for i, s in enumerate(speakers)))
    finally:
        for speaker in speakers:
            await speaker.close()
    return [value for result in results for value in result]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def rss_run(server: ServerProcess, said: list[Utterance], sessions: int) -> list[str]:
    pid = server.process.pid
    marks: list[tuple[int, int]] = [(0, rss_kib(pid))]
    for index in range(1, sessions + 1):
        speaker = await Speaker.open(server)
        try:
            await speaker.turn(said[index % len(said)])
        finally:
            await speaker.close()
        if index in (1, 10, 25, 50, 75, 100) or index == sessions:
            marks.append((index, rss_kib(pid)))
            print(f"  after {index} sessions: RSS {marks[-1][1] / 1024:.1f} MiB", flush=True)
    base = next((kib for n, kib in marks if n == 10), marks[1][1])
    lines = ["| sessions done | RSS MiB | vs after 10 |", "|---|---|---|"]
    for n, kib in marks:
        lines.append(f"| {n} | {kib / 1024:.1f} | {kib / base:.3f} |")
    return lines


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | transport | scenario | turns | cut off | p50 ms | p95 ms | max ms "
        "| p50 speech end -> transcript ms | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['mode']} | {row['transport']} | {row['scenario']} | {row['turns']} "
            f"| {row['cut']} "
            f"| {row['p50_ms']} "
            f"| {row['p95_ms']} | {row['max_ms']} | {row['transcript_ms']} | {row['wall_s']} |"
        )
    lines.append("")
    lines.append("p50 ms by sentence:")
    for row in rows:
        by_sentence = ", ".join(f"{said!r} {ms}" for said, ms in row["by_sentence"].items())
        lines.append(f"* {row['mode']}, {row['transport']}, {row['scenario']}: {by_sentence}")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--modes", default="silence,semantic")
    parser.add_argument("--rss-sessions", type=int, default=100)
    parser.add_argument("--transports", default="ws", help="ws, webrtc or both (ws,webrtc)")
    args = parser.parse_args()
    kinds = [SPEAKERS[name] for name in args.transports.split(",") if name]
    said = await utterances()
    for utterance in said:
        print(f"utterance: {utterance.text!r}, {utterance.end / RATE:.2f} s", flush=True)
    rows: list[dict[str, Any]] = []
    rss: list[str] = []
    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        for mode in modes:
            config = config_for(project_dir(Path(tmp), mode), Path(tmp) / f"store-{mode}.db")
            async with running_server(config, env={"WEBRTC_STUN_URL": ""}) as server:
                warm = await Speaker.open(server)  # models loaded, first decode done
                for utterance in said:
                    await warm.turn(utterance)
                await warm.close()
                for kind in kinds if args.turns else []:
                    began = time.perf_counter()
                    values = await sequential(kind, server, said, args.turns)
                    label = {"mode": mode, "transport": kind.transport}
                    rows.append(
                        label | summary("1 conversation", values, time.perf_counter() - began)
                    )
                    print(table(rows[-1:]), flush=True)
                    if args.concurrent > 1:
                        began = time.perf_counter()
                        values = await concurrent(kind, server, said, args.concurrent, args.turns)
                        name = f"{args.concurrent} at once"
                        rows.append(label | summary(name, values, time.perf_counter() - began))
                        print(table(rows[-1:]), flush=True)
                if args.rss_sessions and mode == modes[-1]:
                    print(f"RSS over {args.rss_sessions} sessions ({mode}):", flush=True)
                    rss = await rss_run(server, said, args.rss_sessions)
    print()
    print(table(rows))
    if rss:
        print()
        print("\n".join(rss))


if __name__ == "__main__":
    asyncio.run(main())
