// AI agent coordination: a planner publishes tasks on a workflow channel; workers pick theirs
// and answer with direct messages. The "AI" of each worker is a small function here: the point
// is the coordination, which is what Hubbub does.
import { CLOSE_REASONS } from "/client/hubbub.js";
import { demoConnect, el, showState } from "./demo.js";

const $ = (id) => document.getElementById(id);
const run = Math.random().toString(36).slice(2, 8);
const channel = `agents/${run}/tasks`;
$("channel-name").textContent = channel;

const SKILLS = {
  counter: { title: "Counter", does: "counts words and letters", work: (text) => `${text.split(/\s+/).filter(Boolean).length} words, ${text.replace(/\s/g, "").length} letters` },
  summarizer: { title: "Summarizer", does: "keeps the longest words", work: (text) => text.split(/\s+/).sort((a, b) => b.length - a.length).slice(0, 3).join(", ") },
  translator: { title: "Translator", does: "speaks backwards", work: (text) => text.split(/\s+/).reverse().join(" ") },
};

function trace(kind, text) {
  const box = $("trace");
  box.append(el("div", { className: kind, textContent: `${new Date().toLocaleTimeString()} ${text}` }));
  box.scrollTop = box.scrollHeight;
}

function card(role, title, does) {
  const status = el("span", { className: "pill warn", textContent: "starting" });
  const task = el("div", { className: "task muted", textContent: does });
  const box = el("section", { className: "card agent" }, el("h3", {}, title, status), task);
  box.dataset.role = role;
  $("agents").append(box);
  return { status, task, box };
}

function mark(view, text, kind) {
  view.status.textContent = text;
  view.status.className = `pill ${kind}`;
}

async function worker(skill) {
  const { title, does, work } = SKILLS[skill];
  const view = card(skill, title, does);
  const client = await demoConnect({ name: `${title} (worker)`, peerId: `worker-${skill}-${run}` });
  client.on("message", async ({ channel: where, data }) => {
    if (where !== channel || !data || data.type !== "task" || data.assignee !== skill) return;
    mark(view, "working", "warn");
    view.task.textContent = `task ${data.taskId}: ${data.instruction}`;
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 600)); // thinking
    const output = work(data.input);
    await client.send(data.replyTo, { type: "result", taskId: data.taskId, skill, output });
    trace("direct", `${skill} → planner: result of ${data.taskId}`);
    mark(view, "done", "ok");
    view.task.textContent = `task ${data.taskId}: ${output}`;
  });
  await client.subscribe(channel);
  mark(view, "ready", "ok");
  return client;
}

async function planner() {
  const view = card("planner", "Planner", "splits the job and gathers the results");
  const client = await demoConnect({ name: "Planner", peerId: `planner-${run}` });
  showState(client, $("connection"));
  const waiting = new Map(); // taskId -> resolve
  client.on("direct", ({ from, data }) => {
    if (!data || data.type !== "result" || !waiting.has(data.taskId)) return;
    trace("direct", `planner ← ${from}: ${data.taskId}`);
    waiting.get(data.taskId)(data);
    waiting.delete(data.taskId);
  });
  client.on("presence", () => {
    const ready = [...client.members(channel).keys()].filter((peer) => peer.startsWith("worker-")).length;
    view.task.textContent = `${ready} of ${Object.keys(SKILLS).length} workers present`;
    $("run").disabled = ready < Object.keys(SKILLS).length;
  });
  client.on("close", ({ code, reason, willReconnect }) => {
    if (willReconnect) return;
    $("banner").textContent = `Planner disconnected: ${reason || CLOSE_REASONS[code]} (close ${code}).`;
    $("banner").hidden = false;
  });
  await client.subscribe(channel);
  mark(view, "ready", "ok");

  $("job").onsubmit = async (event) => {
    event.preventDefault();
    const input = $("text").value.trim();
    if (!input) return;
    $("run").disabled = true;
    mark(view, "planning", "warn");
    $("result").textContent = "working…";
    const started = performance.now();
    const answers = await Promise.all(Object.entries(SKILLS).map(async ([skill, { does }], i) => {
      const taskId = `t${Date.now().toString(36)}-${i}`;
      const done = new Promise((resolve) => waiting.set(taskId, resolve));
      await client.publish(channel, { type: "task", taskId, assignee: skill, instruction: does, input, replyTo: client.peerId });
      trace("channel", `planner → ${channel}: ${taskId} for ${skill}`);
      return done;
    }));
    await client.publish(channel, { type: "done", tasks: answers.length });
    const elapsed = Math.round(performance.now() - started);
    $("result").textContent = answers.map((a) => `${SKILLS[a.skill].title}: ${a.output}`).join("\n") + `\n\n(${answers.length} tasks in ${elapsed} ms)`;
    $("result").className = "";
    mark(view, "done", "ok");
    $("run").disabled = false;
  };
}

async function main() {
  await planner();
  await Promise.all(Object.keys(SKILLS).map(worker));
}

main().catch((error) => {
  $("banner").textContent = `Could not start: ${error.message}`;
  $("banner").hidden = false;
});
