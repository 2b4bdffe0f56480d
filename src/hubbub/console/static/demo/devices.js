// IoT telemetry and control. Devices publish readings; the dashboard watches every device with
// one wildcard subscription and sends commands through the server's REST publish.
import { CLOSE_REASONS } from "/client/hubbub.js";
import { demoConnect, el, params, showState } from "./demo.js";

const $ = (id) => document.getElementById(id);
const DEVICES = (params.get("devices") || "thermo-1,thermo-2,thermo-3").split(",").filter(Boolean);
const REPORT_EVERY_MS = 2000;
const rows = new Map(); // device id -> {row, cells, history}

function log(text) {
  const line = el("div", { textContent: `${new Date().toLocaleTimeString()} ${text}` });
  $("log").prepend(line);
  while ($("log").children.length > 120) $("log").lastChild.remove();
}

// --- a simulated device -----------------------------------------------------------------------

async function simulate(id) {
  const client = await demoConnect({ name: id, peerId: `device-${id}` });
  let temperature = 19 + Math.random() * 4;
  let battery = 80 + Math.random() * 20;
  let every = REPORT_EVERY_MS;
  let timer = null;
  const badge = el("span", { className: "pill ok", textContent: id });
  $("simulators").append(badge);
  const report = () => {
    temperature += (Math.random() - 0.5) * 0.6;
    battery = Math.max(0, battery - 0.05);
    client.publish(`devices/${id}/events`, {
      type: "reading", temperature: Number(temperature.toFixed(2)), battery: Number(battery.toFixed(1)), at: Date.now(),
    }).catch(() => {});
  };
  const schedule = () => {
    clearInterval(timer);
    timer = setInterval(report, every);
  };
  client.on("message", ({ channel, data }) => {
    if (channel !== `devices/${id}/commands` || !data) return;
    const command = data.command || {};
    if (command.action === "blink") {
      badge.classList.remove("blink");
      void badge.offsetWidth; // restart the animation
      badge.classList.add("blink");
    } else if (command.action === "report-faster") {
      every = Math.max(250, every / 2);
      schedule();
    }
    client.publish(`devices/${id}/events`, { type: "ack", action: command.action || "?", at: Date.now() }).catch(() => {});
  });
  client.on("close", ({ willReconnect }) => {
    if (!willReconnect) badge.className = "pill bad";
  });
  await client.subscribe(`devices/${id}/commands`);
  report();
  schedule();
}

// --- the dashboard ----------------------------------------------------------------------------

async function command(id, action) {
  const response = await fetch(`/demo/api/devices/${encodeURIComponent(id)}/commands`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ command: { action } }),
  });
  const answer = await response.json();
  log(response.ok ? `→ ${id}: ${action} (reached ${answer.delivered})` : `→ ${id}: refused: ${answer.message}`);
}

function spark(canvas, values) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  if (values.length < 2) return;
  const low = Math.min(...values) - 0.1, high = Math.max(...values) + 0.1;
  g.strokeStyle = "#3b5bdb";
  g.lineWidth = 1.5;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / (values.length - 1)) * (width - 2) + 1;
    const y = height - 2 - ((v - low) / (high - low)) * (height - 4);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
}

function rowFor(id) {
  let entry = rows.get(id);
  if (entry) return entry;
  const cells = {
    temperature: el("td", { className: "reading", textContent: "–" }),
    trend: el("td", {}, el("canvas", { className: "spark" })),
    battery: el("td", { textContent: "–" }),
    last: el("td", { className: "small muted", textContent: "–" }),
  };
  const blink = el("button", { className: "small secondary", textContent: "Blink" });
  const faster = el("button", { className: "small secondary", textContent: "Report faster" });
  blink.onclick = () => command(id, "blink");
  faster.onclick = () => command(id, "report-faster");
  const row = el("tr", {}, el("td", {}, el("code", { textContent: id })), cells.temperature, cells.trend,
    cells.battery, cells.last, el("td", {}, el("div", { className: "row" }, blink, faster)));
  row.dataset.device = id;
  entry = { row, cells, history: [], at: 0 };
  rows.set(id, entry);
  const sorted = [...rows.keys()].sort();
  const body = $("devices");
  body.replaceChildren(...sorted.map((key) => rows.get(key).row));
  return entry;
}

async function dashboard() {
  const client = await demoConnect({ name: "dashboard" });
  showState(client, $("connection"));
  client.on("message", ({ channel, data }) => {
    const match = /^devices\/([^/]+)\/events$/.exec(channel);
    if (!match || !data) return;
    const id = match[1];
    const entry = rowFor(id);
    if (data.type === "reading") {
      entry.cells.temperature.textContent = `${data.temperature.toFixed(1)} °C`;
      entry.cells.battery.textContent = `${data.battery.toFixed(0)} %`;
      entry.history.push(data.temperature);
      if (entry.history.length > 30) entry.history.shift();
      spark(entry.cells.trend.firstChild, entry.history);
      entry.at = Date.now();
    } else if (data.type === "ack") {
      log(`← ${id}: done ${data.action}`);
    }
  });
  client.on("close", ({ code, reason, willReconnect }) => {
    if (willReconnect) return;
    $("banner").textContent = `Dashboard disconnected: ${reason || CLOSE_REASONS[code]} (close ${code}).`;
    $("banner").hidden = false;
  });
  await client.subscribe("devices/*/events");
  setInterval(() => {
    for (const entry of rows.values()) {
      if (entry.at) entry.cells.last.textContent = `${Math.round((Date.now() - entry.at) / 1000)} s ago`;
    }
  }, 1000);
}

async function main() {
  $("interval").textContent = REPORT_EVERY_MS / 1000;
  await dashboard();
  if (params.get("simulate") !== "0") await Promise.all(DEVICES.map(simulate));
}

main().catch((error) => {
  $("banner").textContent = `Could not start: ${error.message}`;
  $("banner").hidden = false;
});
