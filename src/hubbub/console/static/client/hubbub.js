// Hubbub's browser client: the realtime protocol of docs/realtime-protocol.md over one
// WebSocket, as an ES module with no dependencies. Served by every Hubbub at /client/hubbub.js.
//
//   import { connect } from "/client/hubbub.js";
//   const hub = await connect({ key: "pk_live_..." });          // or { token } / { tokenProvider }
//   hub.on("message", ({ channel, from, data, fromMetadata }) => { ... });
//   await hub.subscribe("chat/lobby", { includeSenderMetadata: true });
//   await hub.publish("chat/lobby", { text: "hello" });
//   hub.members("chat/lobby");   // Map of peerId -> peerMetadata, kept from presence
//
// Events: "message", "direct", "presence" ({channel, joined, left, snapshot}), "state"
// ("connecting" | "open" | "reconnecting" | "closed"), "close" ({code, reason, willReconnect}),
// "error" (an error frame no request was waiting for), "going-away" ({retryAfterMs}).
// A request (subscribe, publish, send, unsubscribe) resolves on its ack and rejects with an
// Error whose `code` is the protocol's error code (or "timeout", "not_connected").

const TERMINAL_CLOSE_CODES = new Set([4001, 4003, 4012, 4020]);
export const CLOSE_REASONS = {
  1000: "closed",
  1001: "server going away",
  1006: "connection lost",
  1008: "policy violation",
  1009: "message too big",
  4001: "invalid token",
  4002: "token expired",
  4003: "channel not authorized",
  4010: "over the concurrent connection limit",
  4011: "over the message rate",
  4012: "account suspended",
  4020: "disconnected by an administrator",
};
const REQUEST_TIMEOUT_MS = 10000;
const PING_AFTER_QUIET_MS = 20000;
const DEAD_AFTER_QUIET_MS = 60000;

export class HubbubError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "HubbubError";
    this.code = code;
  }
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}`;
}

export class HubbubClient {
  constructor({ url, key, token, tokenProvider, reconnect = true } = {}) {
    if (!key && !token && !tokenProvider) throw new TypeError("give key, token or tokenProvider");
    this.url = (url || defaultUrl()).replace(/\/+$/, "");
    this._key = key;
    this._token = token;
    this._tokenProvider = tokenProvider;
    this._reconnect = reconnect;
    this._listeners = new Map();
    this._pending = new Map();
    this._subscriptions = new Map(); // channel -> {includeSenderMetadata}
    this._members = new Map(); // channel -> Map(peerId -> metadata)
    this._awaitingSnapshot = new Set();
    this._positions = new Map(); // channel -> {offset, epoch} of the last message (history)
    this._nextRequest = 0;
    this._attempt = 0;
    this._ws = null;
    this._timers = { ping: null, dead: null, retry: null };
    this.state = "idle";
    this.peerId = null;
    this.welcome = null;
  }

  // --- events --------------------------------------------------------------------------------

  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this._listeners.get(type).delete(listener);
  }

  _emit(type, detail) {
    for (const listener of this._listeners.get(type) || []) {
      try {
        listener(detail);
      } catch (error) {
        // A listener's bug must not break the connection; report it where it can be seen.
        setTimeout(() => { throw error; });
      }
    }
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", state);
    }
  }

  /** ICE servers the server put in the welcome (TURN when configured), for RTCPeerConnection. */
  get iceServers() {
    return (this.welcome && this.welcome.metadata && this.welcome.metadata.iceServers) || [];
  }

  // --- connecting ----------------------------------------------------------------------------

  async _credential() {
    if (this._key) return `key=${encodeURIComponent(this._key)}`;
    if (this._tokenProvider && (this._attempt > 0 || !this._token)) {
      this._token = await this._tokenProvider();
    }
    return `token=${encodeURIComponent(this._token)}`;
  }

  /** Open the connection; resolves with the welcome frame (rejects if the first attempt fails). */
  async open() {
    this._closedByUser = false;
    return new Promise((resolve, reject) => {
      this._firstOpen = { resolve, reject };
      this._dial();
    });
  }

  async _dial() {
    this._setState(this._attempt === 0 ? "connecting" : "reconnecting");
    let query;
    try {
      query = await this._credential();
    } catch (error) {
      this._fail(new HubbubError("token_provider_failed", String(error)));
      return;
    }
    const ws = new WebSocket(`${this.url}/v1?${query}`);
    this._ws = ws;
    ws.onmessage = (event) => this._onFrame(event.data);
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
  }

  _fail(error) {
    if (this._firstOpen) {
      this._firstOpen.reject(error);
      this._firstOpen = null;
    }
    this._setState("closed");
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._stopTimers();
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new HubbubError("not_connected", "the connection closed"));
    }
    this._pending.clear();
    const welcomed = this.welcome !== null && this._welcomedThisSocket;
    this._welcomedThisSocket = false;
    const terminal = TERMINAL_CLOSE_CODES.has(code) || this._closedByUser;
    // A first attempt that never got a welcome is reported, not retried.
    const willReconnect = this._reconnect && !terminal && (welcomed || !this._firstOpen);
    this._emit("close", { code, reason: reason || CLOSE_REASONS[code] || "", willReconnect });
    if (this._firstOpen && !welcomed) {
      this._fail(new HubbubError(`close_${code}`, reason || CLOSE_REASONS[code] || `closed (${code})`));
      return;
    }
    if (!willReconnect) {
      this._setState("closed");
      return;
    }
    this._attempt += 1;
    const base = Math.min(10000, 500 * 2 ** Math.min(this._attempt - 1, 5));
    const delay = this._goingAwayMs || base / 2 + Math.random() * (base / 2);
    this._goingAwayMs = 0;
    this._setState("reconnecting");
    this._timers.retry = setTimeout(() => this._dial(), delay);
  }

  /** Close for good (no reconnect). */
  close() {
    this._closedByUser = true;
    clearTimeout(this._timers.retry);
    if (this._ws) this._ws.close(1000, "client requested close");
    else this._setState("closed");
  }

  // --- frames --------------------------------------------------------------------------------

  _onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this._armTimers();
    switch (frame.type) {
      case "welcome":
        this._onWelcome(frame);
        break;
      case "ack":
      case "error":
        this._settle(frame);
        break;
      case "message":
        if (typeof frame.offset === "number" && this._subscriptions.has(frame.channel)) {
          this._positions.set(frame.channel, { offset: frame.offset, epoch: frame.epoch });
        }
        this._emit("message", frame);
        break;
      case "direct":
        this._emit("direct", frame);
        break;
      case "presence":
        this._onPresence(frame);
        break;
      case "going_away":
        this._goingAwayMs = frame.retryAfterMs || 1000;
        this._emit("going-away", frame);
        break;
      default:
        break; // pong, and anything newer than this client
    }
  }

  _onWelcome(frame) {
    this.welcome = frame;
    this.peerId = frame.peerId;
    this._welcomedThisSocket = true;
    this._attempt = 0;
    this._setState("open");
    if (this._firstOpen) {
      this._firstOpen.resolve(frame);
      this._firstOpen = null;
    } else {
      // A reconnect: subscribe again; each snapshot then replaces what was known.
      for (const [channel, options] of this._subscriptions) {
        const since = this._positions.get(channel);
        this._request({ type: "subscribe", channel, ...options, ...(since ? { since } : {}) }, channel).catch((error) =>
          this._emit("error", { code: error.code, message: `resubscribe ${channel}: ${error.message}` }),
        );
      }
    }
  }

  _onPresence(frame) {
    const { channel, joined, left } = frame;
    let members = this._members.get(channel);
    const snapshot = this._awaitingSnapshot.delete(channel);
    if (snapshot || !members) {
      members = new Map();
      this._members.set(channel, members);
    }
    for (const entry of left) members.delete(entry.peerId);
    for (const entry of joined) {
      if (entry.peerId !== this.peerId) members.set(entry.peerId, entry.metadata || null);
    }
    this._emit("presence", { channel, joined, left, snapshot });
  }

  _settle(frame) {
    const pending = frame.requestId && this._pending.get(frame.requestId);
    if (!pending) {
      if (frame.type === "error") this._emit("error", frame);
      return;
    }
    this._pending.delete(frame.requestId);
    clearTimeout(pending.timer);
    if (frame.type === "ack") pending.resolve(frame);
    else pending.reject(new HubbubError(frame.code, frame.message));
  }

  _request(frame, snapshotFor = null) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this._welcomedThisSocket) {
      return Promise.reject(new HubbubError("not_connected", "not connected"));
    }
    const requestId = `r${++this._nextRequest}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(requestId);
        reject(new HubbubError("timeout", `no answer to ${frame.type} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(requestId, { resolve, reject, timer });
      if (snapshotFor !== null) this._awaitingSnapshot.add(snapshotFor);
      ws.send(JSON.stringify({ ...frame, requestId }));
    });
  }

  _armTimers() {
    this._stopTimers();
    this._timers.ping = setTimeout(() => {
      if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send('{"type":"ping"}');
    }, PING_AFTER_QUIET_MS);
    this._timers.dead = setTimeout(() => {
      if (this._ws) this._ws.close(4000, "no frames from the server");
    }, DEAD_AFTER_QUIET_MS);
  }

  _stopTimers() {
    clearTimeout(this._timers.ping);
    clearTimeout(this._timers.dead);
  }

  // --- requests ------------------------------------------------------------------------------

  /**
   * Subscribe to a channel or a pattern (`devices/*\/events`); presence follows the ack. On a
   * channel with history, `rewind: K` first delivers its last K messages (spec 16.1); after a
   * reconnect the client asks for what it missed (`since` its last offset) instead. Resolves
   * with the ack (`recovered`, `offset`, `epoch` on a channel with history).
   */
  async subscribe(channel, { includeSenderMetadata = false, rewind } = {}) {
    const options = includeSenderMetadata ? { includeSenderMetadata: true } : {};
    const ack = await this._request({ type: "subscribe", channel, ...options, ...(rewind ? { rewind } : {}) }, channel);
    this._subscriptions.set(channel, options);
    return ack;
  }

  async unsubscribe(channel) {
    this._subscriptions.delete(channel);
    this._positions.delete(channel);
    this._members.delete(channel);
    await this._request({ type: "unsubscribe", channel });
  }

  publish(channel, data) {
    return this._request({ type: "publish", channel, data: data === undefined ? null : data });
  }

  /** A direct message to every connection of `peerId` (needs the send action). */
  send(peerId, data) {
    return this._request({ type: "send", to: peerId, data: data === undefined ? null : data });
  }

  /** Who is present in a subscribed channel (this peer left out): Map of peerId -> metadata. */
  members(channel) {
    return new Map(this._members.get(channel) || []);
  }
}

/** Create a client and open it: resolves once the server's welcome has arrived. */
export async function connect(options) {
  const client = new HubbubClient(options);
  await client.open();
  return client;
}
