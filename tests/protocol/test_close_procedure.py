"""The close procedure's decisions (sans-I/O): every phase, event and deadline."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.protocol.close_procedure import (
    MAX_CLOSE_REASON_BYTES,
    ClosePhase,
    CloseProcedure,
    CloseStep,
    CloseTimeouts,
    encode_close_frame,
)

TIMEOUTS = CloseTimeouts(send_timeout_s=1.0, linger_s=2.0)


def started(now: float = 100.0) -> CloseProcedure:
    procedure = CloseProcedure(TIMEOUTS)
    assert procedure.start(4011, "over message rate", now) == encode_close_frame(
        4011, "over message rate"
    )
    return procedure


def test_encode_close_frame() -> None:
    assert encode_close_frame(1000, "") == b"\x88\x02\x03\xe8"
    assert encode_close_frame(4011, "over message rate") == (
        b"\x88\x13\x0f\xab" + b"over message rate"
    )


def test_a_long_reason_is_cut_on_a_character_boundary() -> None:
    frame = encode_close_frame(1008, "é" * 100)
    assert frame[1] <= 125
    reason = frame[4:].decode()  # still valid UTF-8
    assert reason == "é" * (MAX_CLOSE_REASON_BYTES // 2)


def test_the_happy_path_send_half_close_linger_eof_close() -> None:
    procedure = CloseProcedure(TIMEOUTS)
    assert procedure.reads_application_frames
    assert procedure.start(4011, "over message rate", 100.0) is not None
    assert not procedure.reads_application_frames
    assert (procedure.phase, procedure.deadline) == (ClosePhase.SENDING, 101.0)
    assert procedure.input_received(500) is CloseStep.NOTHING
    assert procedure.output_drained(100.2) is CloseStep.HALF_CLOSE
    assert (procedure.phase, procedure.deadline) == (ClosePhase.LINGERING, 102.2)
    assert procedure.input_received(700) is CloseStep.NOTHING
    assert procedure.input_ended() is CloseStep.CLOSE
    assert (procedure.phase, procedure.deadline, procedure.discarded_bytes) == (
        ClosePhase.DONE,
        None,
        1200,
    )


def test_a_second_start_is_ignored() -> None:
    procedure = started()
    assert procedure.start(1000, "again", 100.5) is None
    assert (procedure.code, procedure.reason) == (4011, "over message rate")


def test_a_close_frame_that_cannot_be_written_is_aborted_at_the_send_deadline() -> None:
    procedure = started()
    assert procedure.deadline_passed(100.999) is CloseStep.NOTHING
    assert procedure.deadline_passed(101.0) is CloseStep.ABORT
    assert procedure.phase is ClosePhase.DONE
    assert procedure.output_drained(101.5) is CloseStep.NOTHING


def test_a_peer_that_never_ends_its_side_is_aborted_at_the_linger_deadline() -> None:
    procedure = started()
    procedure.output_drained(100.5)
    assert procedure.deadline_passed(102.4) is CloseStep.NOTHING
    assert procedure.deadline_passed(102.5) is CloseStep.ABORT


def test_eof_while_still_sending_closes_once_the_frame_is_out() -> None:
    procedure = started()
    assert procedure.input_ended() is CloseStep.NOTHING
    assert procedure.output_drained(100.1) is CloseStep.CLOSE
    assert procedure.phase is ClosePhase.DONE


def test_a_lost_connection_ends_everything() -> None:
    procedure = started()
    procedure.connection_lost()
    assert procedure.phase is ClosePhase.DONE
    assert procedure.deadline_passed(1e9) is CloseStep.NOTHING
    assert procedure.input_ended() is CloseStep.NOTHING


def test_events_before_the_start_change_nothing() -> None:
    procedure = CloseProcedure(TIMEOUTS)
    assert procedure.input_received(10) is CloseStep.NOTHING
    assert procedure.output_drained(1.0) is CloseStep.NOTHING
    assert procedure.deadline_passed(1e9) is CloseStep.NOTHING
    assert (procedure.phase, procedure.discarded_bytes) == (ClosePhase.OPEN, 0)


EVENTS = st.sampled_from(["drained", "input", "eof", "tick", "lost"])


@given(st.lists(st.tuples(EVENTS, st.floats(0, 10)), max_size=20))
@settings(max_examples=300, deadline=None)
def test_any_event_order_ends_within_the_worst_case_and_never_raises(
    events: list[tuple[str, float]],
) -> None:
    procedure = started(0.0)
    now = 0.0
    for event, advance in events:
        now += advance
        if event == "drained":
            procedure.output_drained(now)
        elif event == "input":
            procedure.input_received(100)
        elif event == "eof":
            procedure.input_ended()
        elif event == "tick":
            procedure.deadline_passed(now)
        else:
            procedure.connection_lost()
        deadline = procedure.deadline
        assert deadline is None or deadline <= now + TIMEOUTS.worst_case_s
    # A timer at the deadline always finishes it; without a deadline it is finished already.
    final = procedure.deadline
    if final is not None:
        assert procedure.deadline_passed(final) is CloseStep.ABORT
    assert procedure.phase is ClosePhase.DONE


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1009, 4001, 4010, 4011, 4020])
def test_every_code_round_trips(code: int) -> None:
    frame = encode_close_frame(code, "reason")
    assert int.from_bytes(frame[2:4], "big") == code
