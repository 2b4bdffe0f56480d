// Shared plumbing for the Node scenarios: every scenario takes one JSON argument (the server
// url and whatever tokens the Python test minted), prints one JSON summary line on success, and
// exits non-zero with the failure on stderr otherwise. Every wait is bounded.
import { MeteredPeer, SignallingClient } from "@metered-ca/realtime";
import WebSocket from "ws";

export const params = JSON.parse(process.argv[2] ?? "{}");
export const url = params.url;

const DEFAULT_WAIT_MS = 15_000;

// The SDK needs a WebSocket constructor; Node's comes from `ws`. The SDK is written for
// browsers, which dispatch each WebSocket message as its own task; `ws` by default emits every
// message of one TCP read back to back, before promise continuations run. On a loaded machine
// a subscribe's ack and its presence snapshot (sent a few ms apart) can land in one read, and
// MeteredPeer then drops the snapshot because join() has not recorded its channel yet (spec
// section 5, point 3). Browser-like dispatch keeps the SDK's assumptions true.
export const webSocketFactory = (wsUrl) => new WebSocket(wsUrl, { allowSynchronousEvents: false });

// MeteredPeer builds an RTCPeerConnection for every remote peer; Node 20 has none. These
// scenarios test signalling only (the WebRTC path is covered by the Python SDK with aiortc), so
// an inert connection that never negotiates stands in. Without tracks or data channels the SDK
// never calls its negotiation methods.
class InertPeerConnection {
  connectionState = "new";
  signalingState = "stable";
  iceConnectionState = "new";
  localDescription = null;
  remoteDescription = null;
  async createOffer() { throw new Error("inert peer connection"); }
  async createAnswer() { throw new Error("inert peer connection"); }
  async setLocalDescription() {}
  async setRemoteDescription() {}
  async addIceCandidate() {}
  addTrack() { throw new Error("inert peer connection"); }
  removeTrack() {}
  getSenders() { return []; }
  createDataChannel() { throw new Error("inert peer connection"); }
  setConfiguration() {}
  addEventListener() {}
  removeEventListener() {}
  close() { this.connectionState = "closed"; }
}

const commonOptions = { url, webSocketFactory };

export function signallingClient(options) {
  return new SignallingClient({ ...commonOptions, ...options });
}

export function meteredPeer(options) {
  return new MeteredPeer({
    ...commonOptions,
    rtcPeerConnectionFactory: () => new InertPeerConnection(),
    ...options,
  });
}

export const withToken = (token) => ({ tokenProvider: async () => token });
export const withKey = (apiKey = params.apiKey ?? "pk_live_demo") => ({ apiKey });

// An event recorder: `events.next(predicate)` resolves with the first matching event,
// including ones that arrived before the call, so no event is missed by a late waiter.
export function record(emitter, eventName) {
  const seen = [];
  const waiters = [];
  emitter.on(eventName, (payload) => {
    seen.push(payload);
    for (const waiter of [...waiters]) {
      if (waiter.predicate(payload)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(payload);
      }
    }
  });
  return {
    seen,
    next(predicate = () => true, what = eventName, timeoutMs = DEFAULT_WAIT_MS) {
      const already = seen.find(predicate);
      if (already !== undefined) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const waiter = { predicate, resolve };
        waiters.push(waiter);
        setTimeout(() => {
          const index = waiters.indexOf(waiter);
          if (index >= 0) {
            waiters.splice(index, 1);
            reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
          }
        }, timeoutMs).unref();
      });
    },
  };
}

// Resolves with the rejection of `promise` (and fails if it resolves).
export async function rejectionOf(promise, what) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error(`${what} resolved but was expected to reject`);
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export async function run(scenario) {
  const watchdog = setTimeout(() => {
    console.error("scenario watchdog fired");
    process.exit(3);
  }, params.watchdogMs ?? 45_000);
  try {
    const summary = await scenario();
    console.log(JSON.stringify(summary));
    clearTimeout(watchdog);
    process.exit(0);
  } catch (err) {
    console.error(err?.stack ?? String(err));
    process.exit(1);
  }
}
