"""Turn-taking settings: project over defaults, stage over project, and which words count
towards an interruption (the pure part of voice/turn_taking.py; the behaviour with real speech
is in tests/voice_e2e/test_turn_taking.py)."""

from __future__ import annotations

from hubbub.conversation.project.loader import LoadedProject, parse_project
from hubbub.conversation.project.templates import TemplateRenderer
from hubbub.conversation.voice.turn_taking import turn_policy

PROJECT = """
id: p
apiKeys: [{key: k1}]
asrConfig: {serverVad: true, autoEndSilenceDurationMs: 700}
turnTaking: {endOfTurn: semantic, maxSilenceMs: 1800, minInterruptionWords: 2}
startingStageId: calm
stages:
  - id: calm
  - id: brisk
    turnTaking: {endOfTurn: silence, minInterruptionWords: 1, backchannels: [indeed]}
"""


def project() -> LoadedProject:
    return parse_project(PROJECT, "test.yaml", TemplateRenderer())


def test_defaults_then_project_then_stage() -> None:
    calm = turn_policy(project(), "calm", semantic_available=True)
    assert calm.end_of_turn == "semantic"
    assert calm.silence_ms == 700
    assert calm.semantic_silence_ms == 200  # the default
    assert calm.max_silence_ms == 1800  # the project's
    assert calm.min_interruption_words == 2
    assert calm.min_interruption_ms == 400  # the default
    assert "yeah" in calm.backchannels
    brisk = turn_policy(project(), "brisk", semantic_available=True)
    assert brisk.end_of_turn == "silence"
    assert brisk.max_silence_ms == 1800  # not overridden: the project's
    assert brisk.min_interruption_words == 1
    assert brisk.backchannels == frozenset({"indeed"})


def test_without_the_model_semantic_falls_back_to_silence() -> None:
    assert turn_policy(project(), "calm", semantic_available=False).end_of_turn == "silence"


def test_max_silence_defaults_to_the_silence_end_of_turn() -> None:
    text = PROJECT.replace("maxSilenceMs: 1800, ", "")
    policy = turn_policy(
        parse_project(text, "t.yaml", TemplateRenderer()), "calm", semantic_available=True
    )
    assert policy.max_silence_ms == 700


def test_backchannels_do_not_count_as_words() -> None:
    policy = turn_policy(project(), "calm", semantic_available=True)  # needs 2 words
    assert policy.meaningful_words("Mm-hm. Yeah, okay!") == []
    assert policy.meaningful_words("mm hm") == []  # as a recogniser may spell it
    assert policy.meaningful_words("uh huh, I see") == []
    assert policy.meaningful_words("yeah wait stop") == ["wait", "stop"]
    assert not policy.interrupts("okay right")
    assert not policy.interrupts("stop")  # one word, two needed
    assert policy.interrupts("wait, stop")
    assert not policy.interrupts("")


def test_end_of_turn_is_silence_unless_the_project_asks_for_semantic() -> None:
    plain = parse_project(
        PROJECT.replace("endOfTurn: semantic, ", ""), "t.yaml", TemplateRenderer()
    )
    assert turn_policy(plain, "calm", semantic_available=True).end_of_turn == "silence"
