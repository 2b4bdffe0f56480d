"""Gather-and-return with a deadline, on top of aiortc.

aiortc gathers every candidate inside ``setLocalDescription`` and offers no partial result;
aioice waits up to 5 s for each STUN server. To honour ``WEBRTC_ICE_GATHERING_TIMEOUT_MS``
(spec section 7) the answer is built like this:

* gathering finished in time: aiortc's local description, every candidate in it;
* past the deadline: the answer with the **host** candidates already bound (they exist as soon
  as gathering starts; only server-reflexive ones wait for STUN), while ``setLocalDescription``
  goes on in the background. ICE starts when it finishes, and the client's connectivity checks
  (which it retransmits) then succeed. A slow or blocked STUN server thus delays the connection
  instead of failing it.

Reading the host candidates uses aiortc/aioice internals (both pinned); if they are not where
expected, :class:`GatheringTimeout` is raised and the request fails cleanly.
"""

from __future__ import annotations

import asyncio
import logging

from aiortc import RTCPeerConnection, RTCSessionDescription, sdp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import candidate_from_aioice

from hubbub.errors import TransportLayerError

log = logging.getLogger(__name__)


class GatheringTimeout(TransportLayerError):
    """Gathering missed the deadline and no host candidate could be read."""


async def set_answer_and_gather(
    pc: RTCPeerConnection, answer: RTCSessionDescription, timeout_s: float
) -> str:
    """Apply ``answer`` locally; the SDP to return to the client, within ``timeout_s``."""
    gathering = asyncio.ensure_future(pc.setLocalDescription(answer))
    done, _ = await asyncio.wait({gathering}, timeout=timeout_s)
    if done:
        gathering.result()
        return str(pc.localDescription.sdp)
    try:
        partial = _with_host_candidates(pc, answer.sdp)
    except Exception:
        gathering.cancel()
        raise
    gathering.add_done_callback(_report_late_failure)
    return partial


def _report_late_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("late ICE gathering failed: %r", task.exception())


def _transport_for(pc: RTCPeerConnection, media: sdp.MediaDescription) -> RTCDtlsTransport:
    if media.kind == "application":
        if pc.sctp is None:
            raise GatheringTimeout("no SCTP transport")
        return pc.sctp.transport
    for transceiver in pc.getTransceivers():
        if transceiver.mid == media.rtp.muxId:
            return transceiver.receiver.transport
    raise GatheringTimeout(f"no transceiver for mid {media.rtp.muxId}")


def _with_host_candidates(pc: RTCPeerConnection, answer_sdp: str) -> str:
    description = sdp.SessionDescription.parse(answer_sdp)
    for media in description.media:
        gatherer = _transport_for(pc, media).transport.iceGatherer
        connection = getattr(gatherer, "_connection", None)
        protocols = getattr(connection, "_protocols", None)
        if not isinstance(protocols, list):
            raise GatheringTimeout("ICE internals not found")
        bound = [getattr(p, "local_candidate", None) for p in protocols]
        candidates = [candidate_from_aioice(c) for c in bound if c is not None]
        if not candidates:
            raise GatheringTimeout("no host candidate bound yet")
        media.ice_candidates = candidates
        media.ice_candidates_complete = False
        media.host = candidates[0].ip
        media.port = candidates[0].port
    return str(description)
