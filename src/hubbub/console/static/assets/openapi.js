// Renders /v1/openapi.json as a readable page: each operation with its parameters, body and
// answers, then each schema as a table of fields. Our own small renderer, no library.
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child));
  return node;
}

// `code` spans in descriptions, everything else as text.
function prose(text) {
  const span = el("span");
  String(text || "").split(/(`[^`]+`)/).forEach((part) => {
    span.append(part.startsWith("`") && part.endsWith("`") ? el("code", {}, part.slice(1, -1)) : part);
  });
  return span;
}

function refName(ref) {
  return ref.split("/").pop();
}

function typeOf(schema) {
  if (!schema) return "any";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.oneOf) return schema.oneOf.map(typeOf).join(" | ");
  let type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "any";
  if (type.startsWith("array") && schema.items) type = `array of ${typeOf(schema.items)}`;
  const limits = [];
  if (schema.minimum !== undefined) limits.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) limits.push(`≤ ${schema.maximum}`);
  if (schema.minLength !== undefined) limits.push(`length ≥ ${schema.minLength}`);
  if (schema.maxLength !== undefined) limits.push(`length ≤ ${schema.maxLength}`);
  if (schema.maxItems !== undefined) limits.push(`≤ ${schema.maxItems} items`);
  return limits.length ? `${type} (${limits.join(", ")})` : type;
}

function schemaLink(schema) {
  const target = schema && (schema.$ref || (schema.items && schema.items.$ref));
  if (!target) return el("span", { class: "mono" }, typeOf(schema));
  return el("a", { href: `#schema-${refName(target)}`, class: "mono" }, typeOf(schema));
}

function fieldsTable(schema, prefix = "") {
  const rows = [];
  const required = new Set(schema.required || []);
  for (const [name, field] of Object.entries(schema.properties || {})) {
    rows.push(el("tr", {},
      el("td", { class: "mono" }, prefix + name, required.has(name) ? el("span", { class: "req" }, " required") : ""),
      el("td", { class: "type" }, field.$ref ? schemaLink(field) : typeOf(field)),
      el("td", {}, prose(field.description || "")),
    ));
    const nested = field.type === "object" ? field : field.items && field.items.type === "object" ? field.items : null;
    if (nested && nested.properties) {
      rows.push(...fieldsTable(nested, `${prefix}${name}${nested === field ? "" : "[]"}.`));
    }
  }
  return rows;
}

function table(head, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))), el("tbody", {}, ...rows));
}

function operation(path, method, op) {
  const id = op.operationId || `${method}-${path}`;
  const card = el("section", { class: `card op ${method}`, id });
  card.append(el("h3", {}, el("span", { class: `method ${method}` }, method.toUpperCase()),
    el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || "")));
  if (op.description) card.append(el("p", {}, prose(op.description)));
  if (op.security && op.security.length === 0) card.append(el("p", { class: "small muted" }, "No credentials needed."));
  if (op.parameters && op.parameters.length) {
    card.append(el("h4", {}, "Parameters"), table(["name", "in", "type", "about"], op.parameters.map((p) =>
      el("tr", {}, el("td", { class: "mono" }, p.name, p.required ? el("span", { class: "req" }, " required") : ""),
        el("td", {}, p.in), el("td", { class: "type" }, typeOf(p.schema)), el("td", {}, prose(p.description || ""))))));
  }
  const body = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  if (body) card.append(el("h4", {}, "Body"), el("p", {}, "JSON: ", schemaLink(body.schema)));
  card.append(el("h4", {}, "Answers"), table(["status", "meaning", "body"], Object.entries(op.responses || {}).map(([status, answer]) => {
    const content = answer.content && answer.content["application/json"];
    return el("tr", {}, el("td", { class: "mono" }, status), el("td", {}, prose(answer.description || "")),
      el("td", {}, content ? schemaLink(content.schema) : ""));
  })));
  return card;
}

async function main() {
  const doc = await (await fetch("/v1/openapi.json")).json();
  $("title").textContent = doc.info.title;
  $("description").replaceChildren(prose(doc.info.description));
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const id = op.operationId || `${method}-${path}`;
      $("toc").append(el("a", { href: `#${id}` }, `${method.toUpperCase()} ${path}`));
      $("operations").append(operation(path, method, op));
    }
  }
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    const card = el("section", { class: "card", id: `schema-${name}` }, el("h3", { class: "schema-name" }, name));
    if (schema.description) card.append(el("p", {}, prose(schema.description)));
    if (schema.properties) card.append(table(["field", "type", "about"], fieldsTable(schema)));
    else card.append(el("p", { class: "mono" }, typeOf(schema)));
    $("schemas").append(card);
  }
}

main().catch((error) => {
  $("description").textContent = `could not read /v1/openapi.json: ${error}`;
});
