// The page: the box's timeline, newest first, kept live by one server-sent event stream.
// Every piece of entry text goes into the page with textContent, never as HTML.

const $ = (id) => document.getElementById(id);
const shown = new Set();
let next = null;

function describe(entry) {
  if (entry.type === "post") return entry.text;
  if (entry.type === "reply") return `↳ ${entry.text}`;
  if (entry.type === "about") return `is now called ${entry.about.name}`;
  if (entry.type === "contact") return `${entry.contact.action}s ${entry.contact.target.slice(0, 9)}…`;
  return `(${entry.type})`;
}

function item(entry) {
  const li = document.createElement("li");
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = new Date(entry.timestamp).toLocaleString();
  meta.textContent = `${entry.author.slice(0, 9)}… · #${entry.seq} · ${when}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = describe(entry);
  li.append(meta, text);
  li.dataset.id = entry.id;
  return li;
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function loadPage(before) {
  const url = before ? `/api/timeline?before=${encodeURIComponent(before)}` : "/api/timeline";
  const page = await getJson(url);
  const list = $("timeline");
  for (const entry of page.entries) {
    if (shown.has(entry.id)) continue;
    shown.add(entry.id);
    list.append(item(entry));
  }
  next = page.next;
  $("more").hidden = !next;
}

async function refresh() {
  // New entries: read the first page again and put what is new on top, in order.
  const page = await getJson("/api/timeline");
  const list = $("timeline");
  const fresh = page.entries.filter((e) => !shown.has(e.id));
  for (const entry of fresh.reverse()) {
    shown.add(entry.id);
    list.prepend(item(entry));
  }
}

function follow() {
  const events = new EventSource("/api/events");
  events.addEventListener("entries", () => refresh().catch(() => {}));
  events.onopen = () => { $("box-status").textContent = "Connected to the box."; };
  events.onerror = () => { $("box-status").textContent = "The box is out of reach; retrying…"; };
}

async function start() {
  try {
    const box = await getJson("/api/box");
    const name = box.name || "meshnode box";
    $("box-name").textContent = name;
    document.title = name;
    await loadPage(null);
    $("box-status").textContent = "Connected to the box.";
  } catch (error) {
    $("box-status").textContent = "The box is out of reach; retrying…";
  }
  $("more").addEventListener("click", () => loadPage(next));
  follow();
}

start();
