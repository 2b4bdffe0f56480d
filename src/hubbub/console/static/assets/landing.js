// The landing page: what is running (from /info), and which links apply here.
const $ = (id) => document.getElementById(id);

const DOC_TITLES = {
  "realtime-protocol": "Realtime protocol (and the browser client)",
  "conversation-protocol": "Conversation protocol",
  "conversation-projects": "Conversation projects",
  benchmarks: "Benchmarks",
  "webhooks-and-proxies": "Webhooks and backend proxies",
};

function title(name) {
  const words = name.replace(/-/g, " ");
  return DOC_TITLES[name] || words.charAt(0).toUpperCase() + words.slice(1);
}

async function main() {
  const response = await fetch("/info");
  const info = await response.json();
  $("version").textContent = info.version;
  $("mode").textContent =
    info.mode === "demo" ? "demo (the demo pages and their helpers are on)" : "configured";
  $("broker").textContent =
    info.broker === "redis" ? "Redis (one of a cluster of nodes)" : "in memory (a single node)";
  $("node").textContent = info.node;
  $("apps").textContent = info.apps.length ? info.apps.join(", ") : "none configured";
  $("projects").textContent = info.projects.length ? info.projects.join(", ") : "none";

  if (info.demoKeys && info.demoKeys.secret) {
    const link = $("console-demo-link");
    // The key travels in the fragment, which the browser never sends to the server.
    link.href = `/console#key=${encodeURIComponent(info.demoKeys.secret)}`;
    link.hidden = false;
  }

  const served = new Set(info.demoPages);
  if (info.voiceDemo) served.add("/demo/voice");
  let shown = 0;
  for (const card of document.querySelectorAll("[data-demo]")) {
    const link = card.querySelector("a[data-href]");
    if (served.has(card.dataset.demo)) {
      link.href = link.dataset.href;
      shown += 1;
    } else {
      card.classList.add("muted");
      link.replaceWith(Object.assign(document.createElement("span"), {
        className: "pill warn", textContent: "not served here",
      }));
    }
  }
  $("demos-off").hidden = shown === 6;

  const list = $("doc-list");
  for (const name of info.docs) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `/docs/${name}`;
    link.textContent = title(name);
    item.append(link);
    list.append(item);
  }
  $("docs-off").hidden = info.docs.length > 0;
}

main().catch((error) => {
  $("version").textContent = `could not read /info: ${error}`;
});
