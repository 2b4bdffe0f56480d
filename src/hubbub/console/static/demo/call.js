// A two-party WebRTC call. Presence says who else is in the room; the newcomer (the peer that
// finds someone in its presence snapshot) makes the offer, and every SDP and ICE candidate goes
// to the other peer as a Hubbub direct message. ICE servers come from the welcome.
import { CLOSE_REASONS } from "/client/hubbub.js";
import { demoConnect, params, showState } from "./demo.js";

const $ = (id) => document.getElementById(id);
const room = params.get("room") || "demo";
const channel = `call/${room}`;
$("room-name").textContent = room;
$("channel-name").textContent = channel;

let client = null;
let local = null;
let call = null; // {peerId, pc, pendingCandidates, remoteSet}

function setCallState(text) {
  $("call-state").textContent = text;
}

function hangUp(reason) {
  if (!call) return;
  call.pc.close();
  call = null;
  $("remote").srcObject = null;
  $("waiting").hidden = false;
  $("remote-label").textContent = "nobody yet";
  setCallState(reason);
}

function startCall(peerId, { offer }) {
  if (call) return call;
  const pc = new RTCPeerConnection({ iceServers: client.iceServers });
  call = { peerId, pc, pendingCandidates: [], remoteSet: false };
  for (const track of local.getTracks()) pc.addTrack(track, local);
  pc.onicecandidate = ({ candidate }) => {
    client.send(peerId, { kind: "ice", candidate: candidate ? candidate.toJSON() : null }).catch(() => {});
  };
  pc.ontrack = (event) => {
    $("remote").srcObject = event.streams[0] || new MediaStream([event.track]);
    $("waiting").hidden = true;
  };
  pc.onconnectionstatechange = () => {
    setCallState(pc.connectionState);
    if (pc.connectionState === "failed") hangUp("the connection failed");
  };
  $("remote-label").textContent = peerId;
  setCallState(offer ? "calling…" : "answering…");
  if (offer) {
    (async () => {
      await pc.setLocalDescription(await pc.createOffer());
      await client.send(peerId, { kind: "sdp", description: pc.localDescription.toJSON() });
    })().catch((error) => setCallState(`could not call: ${error.message}`));
  }
  return call;
}

async function onSignal(from, data) {
  if (!data || typeof data !== "object") return;
  if (data.kind === "sdp" && data.description) {
    const current = call && call.peerId === from ? call : startCall(from, { offer: false });
    if (current.peerId !== from) return; // already in a call with someone else
    await current.pc.setRemoteDescription(data.description);
    current.remoteSet = true;
    for (const candidate of current.pendingCandidates.splice(0)) await current.pc.addIceCandidate(candidate);
    if (data.description.type === "offer") {
      await current.pc.setLocalDescription(await current.pc.createAnswer());
      await client.send(from, { kind: "sdp", description: current.pc.localDescription.toJSON() });
    }
  } else if (data.kind === "ice" && call && call.peerId === from) {
    if (!data.candidate) return;
    if (call.remoteSet) await call.pc.addIceCandidate(data.candidate);
    else call.pendingCandidates.push(data.candidate);
  }
}

/** For people and tests alike: what arrives from the other side. */
window.callStats = async () => {
  if (!call) return { connection: "none", framesDecoded: 0, bytesReceived: 0 };
  const stats = await call.pc.getStats();
  let framesDecoded = 0;
  let bytesReceived = 0;
  stats.forEach((report) => {
    if (report.type === "inbound-rtp" && report.kind === "video") {
      framesDecoded += report.framesDecoded || 0;
      bytesReceived += report.bytesReceived || 0;
    }
  });
  return { connection: call.pc.connectionState, framesDecoded, bytesReceived };
};

async function main() {
  local = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  $("local").srcObject = local;
  client = await demoConnect({ name: "caller" });
  showState(client, $("connection"));
  const servers = client.iceServers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
  $("ice-servers").textContent = servers.length ? servers.join(", ") : "none (host candidates: fine on one machine or LAN)";
  client.on("direct", ({ from, data }) => onSignal(from, data).catch((error) => setCallState(`signalling failed: ${error.message}`)));
  client.on("presence", ({ channel: where, joined, left, snapshot }) => {
    if (where !== channel) return;
    if (call && left.some((entry) => entry.peerId === call.peerId)) hangUp("the other side left");
    // The newcomer calls whoever is already there; the others wait for its offer.
    if (snapshot && !call && joined.length) startCall(joined[0].peerId, { offer: true });
  });
  client.on("close", ({ code, reason, willReconnect }) => {
    if (willReconnect) return;
    $("banner").textContent = `Disconnected: ${reason || CLOSE_REASONS[code]} (close ${code}).`;
    $("banner").hidden = false;
  });
  await client.subscribe(channel);
  setInterval(async () => {
    const { framesDecoded, bytesReceived } = await window.callStats();
    $("received").textContent = call ? `${framesDecoded} video frames decoded, ${Math.round(bytesReceived / 1024)} KiB` : "–";
  }, 1000);
}

main().catch((error) => {
  $("banner").textContent = `Could not start: ${error.message}`;
  $("banner").hidden = false;
});
