// Drives every page of a demo-mode server in ONE headless Chromium (several tabs), checks what
// each shows, takes a screenshot of each, and prints one JSON line: {checks: {name: {ok,
// detail}}, errors: [...], requests: [...], screenshots: [...]}. Every wait is bounded.
// Usage: node pages.mjs <server url> <screenshot dir> <id of a finished conversation>
import { chromium } from "playwright-core";

const [base, shotDir, conversationId] = process.argv.slice(2);
const SECRET = "sk_id_demo:sk_secret_demo";
const WAIT = { timeout: 20000 };
const room = `r${Date.now().toString(36)}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    // Several tabs work at once here (a console watching two chat pages): none may be slowed
    // down for being in the background.
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
  ],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const result = { checks: {}, errors: [], requests: [], screenshots: [] };
// Refusals a check provokes on purpose (Chromium logs every non-2xx fetch as an error): each
// one expected is taken off once, and any other still counts.
const expectedRefusals = [];

async function open(path, label) {
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const expected = expectedRefusals.findIndex((status) => message.text().includes(`status of ${status}`));
    if (expected >= 0) expectedRefusals.splice(expected, 1);
    else result.errors.push(`${label}: console: ${message.text()}`);
  });
  page.on("pageerror", (error) => result.errors.push(`${label}: page error: ${error}`));
  page.on("request", (request) => result.requests.push({ page: label, url: request.url() }));
  await page.goto(base + path);
  return page;
}

async function shot(page, name, fullPage = true) {
  const path = `${shotDir}/${name}.png`;
  await page.screenshot({ path, fullPage });
  result.screenshots.push(path);
}

async function check(name, run) {
  const started = Date.now();
  try {
    const detail = await run();
    result.checks[name] = { ok: true, detail: detail ?? null, ms: Date.now() - started };
  } catch (error) {
    result.checks[name] = { ok: false, detail: String(error && error.stack || error), ms: Date.now() - started };
  }
}

async function rest(method, path, body) {
  const response = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${SECRET}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

const textOf = (page, selector) => page.$$eval(selector, (els) => els.map((e) => e.textContent));

try {
  await check("landing", async () => {
    const page = await open("/", "landing");
    await page.waitForFunction(() => document.getElementById("version").textContent !== "…", null, WAIT);
    const hrefs = await page.$$eval("a[href]", (links) => links.map((a) => a.getAttribute("href")));
    const wanted = ["/console", "/openapi", "/v1/openapi.json", "/demo/chat?room=lobby&name=Ada",
      "/demo/call?room=demo", "/demo/cursors?room=board", "/demo/devices", "/demo/agents", "/demo/voice",
      "/docs/realtime-protocol"];
    const missing = wanted.filter((href) => !hrefs.includes(href));
    if (missing.length) throw new Error(`missing links: ${missing}`);
    const demoLink = await page.getAttribute("#console-demo-link", "href");
    const statuses = {};
    for (const href of new Set(hrefs.filter((h) => h.startsWith("/") && !h.startsWith("/console#")))) {
      const response = await page.request.get(base + href);
      statuses[href] = response.status();
    }
    const broken = Object.entries(statuses).filter(([, status]) => status !== 200);
    if (broken.length) throw new Error(`links that do not answer 200: ${JSON.stringify(broken)}`);
    await shot(page, "landing");
    const facts = await textOf(page, "#running dd");
    await page.close();
    return { links: Object.keys(statuses).length, demoLink, facts };
  });

  await check("openapi", async () => {
    const page = await open("/openapi", "openapi");
    await page.waitForFunction(() => document.querySelectorAll("#operations .op").length >= 12, null, WAIT);
    const ops = await textOf(page, "#operations .op h3");
    await page.locator("#listConnections").scrollIntoViewIfNeeded();
    await shot(page, "openapi", false);
    await page.close();
    return ops.length;
  });

  await check("docs", async () => {
    const page = await open("/docs/realtime-protocol", "docs");
    await page.waitForSelector("#doc h1", WAIT);
    const tables = await page.$$eval("#doc table", (t) => t.length);
    const browserClient = await page.$("#doc h2:has-text('browser client'), #doc h3:has-text('browser client')");
    await page.locator("#doc h2:has-text('browser client')").scrollIntoViewIfNeeded();
    await shot(page, "docs", false);
    await page.close();
    if (!browserClient) throw new Error("the realtime protocol doc has no browser client section");
    return { tables };
  });

  // The browser client on its own: a dropped socket reconnects and recovers what was missed
  // (chat rooms keep history in demo mode); an admin's kick is final.
  await check("client", async () => {
    const page = await open("/openapi", "client");
    const channel = `chat/recover-${room}`;
    const first = await page.evaluate(async (channel) => {
      const { connect } = await import("/client/hubbub.js");
      const listener = await connect({ key: "pk_live_demo" });
      const publisher = await connect({ key: "pk_live_demo" });
      const got = [];
      const states = [];
      listener.on("message", (m) => got.push(m.data));
      listener.on("state", (s) => states.push(s));
      await listener.subscribe(channel);
      await publisher.publish(channel, "m1");
      const until = (test) => new Promise((resolve, reject) => {
        const started = Date.now();
        const poll = setInterval(() => {
          if (test()) { clearInterval(poll); resolve(); }
          else if (Date.now() - started > 10000) { clearInterval(poll); reject(new Error(`timeout: ${JSON.stringify({ got, states })}`)); }
        }, 20);
      });
      await until(() => got.length === 1);
      listener._ws.close(4000, "a dropped link, as far as the client can tell");
      await until(() => listener.state === "reconnecting");
      await publisher.publish(channel, "m2");
      await publisher.publish(channel, "m3");
      await until(() => got.length === 3);
      window.listener = listener;
      return { got, states, peerId: listener.peerId };
    }, channel);
    if (JSON.stringify(first.got) !== '["m1","m2","m3"]') throw new Error(`got ${JSON.stringify(first)}`);
    const kicked = await rest("DELETE", `/v1/peers/${encodeURIComponent(first.peerId)}`);
    if (kicked.body.closed !== 1) throw new Error(`kick: ${JSON.stringify(kicked)}`);
    await page.waitForFunction(() => window.listener.state === "closed", null, WAIT);
    await page.waitForTimeout(1200); // longer than the first reconnect delay: none happens
    const after = await page.evaluate(() => window.listener.state);
    if (after !== "closed") throw new Error(`after the kick the client is ${after}`);
    await page.close();
    return { ...first, after };
  });

  // Two chat pages see each other's presence (names from peerMetadata) and a REST publish.
  let ada, bo;
  await check("chat", async () => {
    ada = await open(`/demo/chat?room=${room}&name=Ada`, "chat-ada");
    await ada.waitForFunction(() => !document.getElementById("text").disabled, null, WAIT);
    bo = await open(`/demo/chat?room=${room}&name=Bo`, "chat-bo");
    await ada.waitForFunction(() => document.getElementById("members").textContent.includes("Bo"), null, WAIT);
    await bo.waitForFunction(() => document.getElementById("members").textContent.includes("Ada"), null, WAIT);
    const published = await rest("POST", `/v1/channels/${encodeURIComponent(`chat/${room}`)}/publish`,
      { data: { text: "hello from REST" } });
    if (published.body.delivered !== 2) throw new Error(`REST publish reached ${JSON.stringify(published)}`);
    for (const page of [ada, bo]) {
      await page.waitForFunction(() => document.getElementById("messages").textContent.includes("hello from REST"), null, WAIT);
    }
    await ada.fill("#text", "hi Bo");
    await ada.click("#send");
    await bo.waitForFunction(() => [...document.querySelectorAll("#messages .line")]
      .some((l) => l.textContent.includes("hi Bo") && l.querySelector(".who")?.textContent === "Ada"), null, WAIT);
    await shot(bo, "chat");
    return { adaSees: await textOf(ada, "#members li"), boSees: await textOf(bo, "#members li") };
  });

  // The console, signed in through the fragment: the chat peers and their channel, a kick, and
  // the finished conversation's transcript. It stays open: the cursors check films its chart.
  let consolePage;
  await check("console", async () => {
    const page = await open(`/console#key=${encodeURIComponent(SECRET)}`, "console");
    consolePage = page;
    await page.waitForSelector("#dashboard:not([hidden])", WAIT);
    const address = page.url();
    if (address.includes("#") || address.includes("sk_secret")) throw new Error(`the key stayed in the address: ${address}`);
    const adaPeer = await ada.evaluate(() => document.querySelector("#members li")?.dataset.peer);
    const boPeer = await bo.evaluate(() => document.querySelector("#members li")?.dataset.peer);
    await page.waitForSelector(`#connections tr[data-peer="${adaPeer}"]`, WAIT);
    await page.waitForSelector(`#connections tr[data-peer="${boPeer}"]`, WAIT);
    const channelsOfBo = await page.textContent(`#connections tr[data-peer="${boPeer}"] td:nth-child(2)`);
    if (!channelsOfBo.includes(`chat/${room}`)) throw new Error(`Bo's channels: ${channelsOfBo}`);
    await page.waitForSelector(`#channels tr[data-channel="chat/${room}"]`, WAIT);
    const channelRow = await textOf(page, `#channels tr[data-channel="chat/${room}"] td`);
    await page.click(`#channels tr[data-channel="chat/${room}"]`);
    await page.waitForFunction(() => document.getElementById("channel-peers").textContent.includes("Bo"), null, WAIT);
    await page.fill("#publish-data", '{"text": "hello from the console"}');
    await page.click("#publish-button");
    await page.waitForFunction(() => document.getElementById("publish-result").textContent.startsWith("delivered to 2"), null, WAIT);
    await ada.waitForFunction(() => document.getElementById("messages").textContent.includes("hello from the console"), null, WAIT);
    // Demo mode keeps chat history: the channel panel shows what was said.
    await page.waitForFunction(() => document.getElementById("history").textContent.includes("hello from REST"), null, WAIT);
    await page.locator("#channel-card").scrollIntoViewIfNeeded();
    await shot(page, "console-channel", false);
    await page.waitForFunction(() => document.querySelectorAll(".tile").length > 0, null, WAIT);

    const kick = `#connections tr[data-peer="${boPeer}"] button`;
    await page.click(kick);
    await page.click(kick); // the second click confirms
    await bo.waitForFunction(() => !document.getElementById("banner").hidden, null, WAIT);
    const banner = await bo.textContent("#banner");
    if (!banner.includes("4020") || !banner.includes("disconnected by admin")) throw new Error(`Bo's page says: ${banner}`);
    await page.waitForFunction((peer) => !document.querySelector(`#connections tr[data-peer="${peer}"]`), boPeer, WAIT);
    await shot(bo, "chat-kicked");

    await page.waitForSelector(`#conversations tr[data-conversation="${conversationId}"]`, WAIT);
    await page.click(`#conversations tr[data-conversation="${conversationId}"]`);
    await page.waitForFunction(() => document.querySelectorAll("#transcript .bubble").length >= 4, null, WAIT);
    const transcript = await textOf(page, "#transcript .bubble");
    const summary = await page.textContent("#conversation-summary");
    if (!summary.includes("finished")) throw new Error(`the conversation shows as: ${summary}`);
    // Stepping in goes through the bus's REST commands: an ended conversation says so.
    expectedRefusals.push(409);
    await page.fill("#steer-text", "a supervisor here");
    await page.click("#steer-say");
    await page.waitForFunction(() => document.getElementById("steer-result").textContent.includes("refused"), null, WAIT);
    const steered = await page.textContent("#steer-result");
    if (!steered.includes("has finished")) throw new Error(`stepping in says: ${steered}`);
    await page.locator("#conversation-card").scrollIntoViewIfNeeded();
    await shot(page, "console-conversation", false);
    await page.click("#conversation-close");
    await page.click("#channel-close");
    return { channelRow, kickedBanner: banner, transcript, summary, steered };
  });
  for (const page of [ada, bo]) await page?.close();

  // Two call pages: a WebRTC connection with fake media, video frames decoded on both sides.
  await check("call", async () => {
    const first = await open(`/demo/call?room=${room}`, "call-1");
    await first.waitForFunction(() => document.getElementById("connection").textContent.startsWith("connected"), null, WAIT);
    const second = await open(`/demo/call?room=${room}`, "call-2");
    const stats = [];
    for (const page of [first, second]) {
      await page.waitForFunction(async () => (await window.callStats()).framesDecoded > 5, null, { timeout: 30000, polling: 250 });
      stats.push(await page.evaluate(() => window.callStats()));
    }
    await second.waitForFunction(() => document.getElementById("received").textContent.includes("decoded"), null, WAIT);
    await shot(second, "call");
    await first.close();
    await second.close();
    return stats;
  });

  // Cursors: moves on one page are drawn on the other.
  await check("cursors", async () => {
    const mover = await open(`/demo/cursors?room=${room}&name=Mover`, "cursors-mover");
    const watcher = await open(`/demo/cursors?room=${room}&name=Watcher`, "cursors-watcher");
    for (const page of [mover, watcher]) {
      await page.waitForFunction(() => document.getElementById("others").textContent === "1", null, WAIT);
    }
    const moverPeer = await mover.evaluate(() => document.getElementById("connection").textContent.replace("connected as ", ""));
    // A background tab's timers are throttled to about one a second: move in the front one.
    await mover.bringToFront();
    const box = await mover.locator("#board").boundingBox();
    // About three seconds of movement, a step every ~10 ms: the page sends at most 60 a second.
    const until = Date.now() + 3000;
    let sendRate = 0;
    for (let i = 0; Date.now() < until; i += 1) {
      const t = i / 40;
      await mover.mouse.move(box.x + box.width * (0.5 + 0.35 * Math.cos(t)), box.y + box.height * (0.5 + 0.35 * Math.sin(t)));
      await mover.waitForTimeout(10);
      if (i % 25 === 0) sendRate = Math.max(sendRate, Number(await mover.textContent("#send-rate")));
    }
    const target = { x: 0.7, y: 0.5 };
    await mover.mouse.move(box.x + box.width * target.x, box.y + box.height * target.y);
    await watcher.waitForFunction(({ peer, x, y }) => {
      const cursor = document.querySelector(`.cursor[data-peer="${peer}"]`);
      return cursor && Math.abs(parseFloat(cursor.style.left) - x * 100) < 1 && Math.abs(parseFloat(cursor.style.top) - y * 100) < 1;
    }, { peer: moverPeer, ...target }, WAIT);
    await watcher.waitForTimeout(100); // let the cursor's 40 ms glide finish for the picture
    await shot(watcher, "cursors");
    const label = await watcher.textContent(`.cursor[data-peer="${moverPeer}"] .tag`);
    // At most 60 a second however fast the pointer moves; at least some under any load.
    if (!(sendRate >= 10 && sendRate <= 61)) throw new Error(`the mover sent ${sendRate} msg/s`);
    let consoleRate = null;
    if (consolePage) {
      // The console's channel list and chart show the cursor traffic as it happens.
      const row = `#channels tr[data-channel="cursors/${room}"] td:nth-child(4)`;
      await consolePage.waitForFunction((selector) => Number(document.querySelector(selector)?.textContent) > 3, row, WAIT);
      consoleRate = await consolePage.textContent(row);
      await consolePage.evaluate(() => window.scrollTo(0, 0));
      await shot(consolePage, "console");
    }
    await mover.close();
    await watcher.close();
    return { label, sendRate, consoleRate };
  });

  // Devices: the dashboard shows a simulated device's reading, and a command reaches it.
  await check("devices", async () => {
    const page = await open("/demo/devices", "devices");
    await page.waitForFunction(() => /°C/.test(document.querySelector('tr[data-device="thermo-1"] .reading')?.textContent || ""), null, WAIT);
    const reading = await page.textContent('tr[data-device="thermo-1"] .reading');
    await page.click('tr[data-device="thermo-1"] button:has-text("Blink")');
    await page.waitForFunction(() => document.getElementById("log").textContent.includes("thermo-1: done blink"), null, WAIT);
    await page.waitForFunction(() => document.querySelectorAll("#devices tr").length === 3, null, WAIT);
    await page.waitForTimeout(2500); // a second reading, so the trend has a line
    await shot(page, "devices");
    await page.close();
    return { reading };
  });

  // Agents: a workflow runs to its end.
  await check("agents", async () => {
    const page = await open("/demo/agents", "agents");
    await page.waitForFunction(() => !document.getElementById("run").disabled, null, WAIT);
    await page.click("#run");
    await page.waitForFunction(() => document.getElementById("result").textContent.includes("Translator:"), null, WAIT);
    const text = await page.textContent("#result");
    await shot(page, "agents");
    await page.close();
    return text;
  });

  // Voice: the project picker, a typed exchange, and the live stage / variables / events panel.
  await check("voice", async () => {
    const page = await open("/demo/voice", "voice");
    await page.waitForSelector("#project-picker:not([hidden])", WAIT);
    const projects = await textOf(page, "#project option");
    await page.click("#connect");
    await page.waitForFunction(() => document.getElementById("auth-state").textContent === "ok", null, WAIT);
    await page.waitForFunction(() => !document.getElementById("text").disabled, null, WAIT);
    await page.waitForSelector(".ai:not(.interim)", WAIT);
    await page.fill("#text", "where is my package?");
    await page.click("#send");
    await page.waitForFunction(() => document.querySelectorAll(".ai:not(.interim)").length >= 2, null, WAIT);
    await page.fill("#text", "1002");
    await page.click("#send");
    await page.waitForFunction(() => document.getElementById("variables").textContent.includes("1002"), null, WAIT);
    // The order's status, spoken to its end (the turn ends once its audio has gone out).
    await page.waitForFunction(() => document.querySelectorAll(".ai:not(.interim)").length >= 3
      && !document.querySelector("#transcript .interim"), null, { timeout: 30000 });
    const stage = await page.textContent("#stage");
    const events = await textOf(page, "#events li b");
    await shot(page, "voice");
    await page.click("#hangup");
    await page.close();
    return { projects, stage, events: events.slice(0, 12) };
  });
  await consolePage?.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
