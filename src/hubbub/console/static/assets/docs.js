// Shows docs/<name>.md as HTML with a small Markdown renderer of our own (headings, lists,
// tables, code, quotes, links, emphasis). /docs alone lists the documents.
const article = document.getElementById("doc");

function escape(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function docLink(href) {
  // Links between the docs (realtime-protocol.md, docs/x.md#part) stay inside /docs.
  const match = /^(?:\.\/|docs\/)?([a-z0-9-]+)\.md(#.*)?$/.exec(href);
  if (match) return `/docs/${match[1]}${match[2] || ""}`;
  if (/^(https?:|\/|#|mailto:)/.test(href)) return href;
  return null;
}

function inline(text) {
  const parts = text.split(/(`[^`]*`)/);
  return parts.map((part) => {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) return `<code>${escape(part.slice(1, -1))}</code>`;
    let html = escape(part);
    html = html.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (all, label, href) => {
      const target = docLink(href.replace(/&amp;/g, "&"));
      return target ? `<a href="${escape(target)}">${label}</a>` : label;
    });
    html = html.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
    html = html.replace(/(^|[\s(])\*([^*\s][^*]*)\*(?=[\s).,;:]|$)/g, "$1<em>$2</em>");
    return html;
  }).join("");
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9 -]/g, "").trim().replace(/\s+/g, "-");
}

function cells(line) {
  return line.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function renderList(items) {
  let html = "";
  const stack = [];
  for (const item of items) {
    while (stack.length && item.indent < stack[stack.length - 1].indent) html += `</li></${stack.pop().tag}>`;
    if (!stack.length || item.indent > stack[stack.length - 1].indent) {
      stack.push(item);
      html += `<${item.tag}>`;
    } else {
      html += "</li>";
    }
    html += `<li>${inline(item.text)}`;
  }
  while (stack.length) html += `</li></${stack.pop().tag}>`;
  return html;
}

export function render(markdown) {
  const lines = markdown.replace(/\r\n/g, "\n").split("\n");
  const out = [];
  let i = 0;
  let paragraph = [];
  const flush = () => {
    if (paragraph.length) out.push(`<p>${inline(paragraph.join(" "))}</p>`);
    paragraph = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^(\s*)```/.exec(line);
    if (fence) {
      flush();
      const code = [];
      i += 1;
      while (i < lines.length && !/^\s*```/.test(lines[i])) code.push(lines[i++]);
      i += 1;
      out.push(`<pre><code>${escape(code.join("\n"))}</code></pre>`);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      const level = heading[1].length;
      out.push(`<h${level} id="${slug(heading[2])}">${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (/^\s*(---+|\*\*\*+)\s*$/.test(line)) {
      flush();
      out.push("<hr>");
      i += 1;
      continue;
    }
    if (/^\s*\|/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
      flush();
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && /^\s*\|/.test(lines[i])) rows.push(cells(lines[i++]));
      out.push(`<table><thead><tr>${head.map((h) => `<th>${inline(h)}</th>`).join("")}</tr></thead><tbody>${
        rows.map((r) => `<tr>${r.map((c) => `<td>${inline(c)}</td>`).join("")}</tr>`).join("")}</tbody></table>`);
      continue;
    }
    if (/^>\s?/.test(line)) {
      flush();
      const quote = [];
      while (i < lines.length && /^>\s?/.test(lines[i])) quote.push(lines[i++].replace(/^>\s?/, ""));
      out.push(`<blockquote>${render(quote.join("\n"))}</blockquote>`);
      continue;
    }
    if (/^\s*([*+-]|\d+\.)\s+/.test(line)) {
      flush();
      // A list, nested by indentation; a line that continues an item belongs to its text.
      const items = [];
      while (i < lines.length) {
        const item = /^(\s*)([*+-]|\d+\.)\s+(.*)$/.exec(lines[i]);
        if (item) {
          items.push({ indent: item[1].length, tag: /\d/.test(item[2]) ? "ol" : "ul", text: item[3] });
        } else if (/^\s+\S/.test(lines[i]) && items.length) {
          items[items.length - 1].text += ` ${lines[i].trim()}`;
        } else {
          break;
        }
        i += 1;
      }
      out.push(renderList(items));
      continue;
    }
    if (!line.trim()) {
      flush();
      i += 1;
      continue;
    }
    paragraph.push(line.trim());
    i += 1;
  }
  flush();
  return out.join("\n");
}

async function main() {
  const name = decodeURIComponent(location.pathname.replace(/^\/docs\/?/, ""));
  if (!name) {
    const { docs } = await (await fetch("/info")).json();
    article.innerHTML = docs.length
      ? `<h1>Documentation</h1><ul>${docs.map((d) => `<li><a href="/docs/${d}">${escape(d)}</a></li>`).join("")}</ul>`
      : `<h1>Documentation</h1><p class="muted">This installation serves no docs; they come with the source.</p>`;
    return;
  }
  const response = await fetch(`/docs/${encodeURIComponent(name)}.md`);
  if (!response.ok) {
    article.innerHTML = `<h1>Not found</h1><p>No document named <code>${escape(name)}</code>. <a href="/docs">All documents</a></p>`;
    return;
  }
  article.innerHTML = render(await response.text());
  document.title = `${article.querySelector("h1")?.textContent || name} — Hubbub docs`;
  if (location.hash) document.getElementById(location.hash.slice(1))?.scrollIntoView();
}

main().catch((error) => {
  article.textContent = `could not show the document: ${error}`;
});
