// The page: this phone's own key and feed, a composer, and the box's timeline kept live by
// one server-sent event stream. Entries are signed here, in the browser (codec.js); the box
// only ever sees signed entries. Every piece of entry text goes into the page with
// textContent, never as HTML.

import {
  ContactAction,
  ContentType,
  createEntry,
  encodeAbout,
  encodeContact,
  encodePost,
  encodeReply,
  parseFeedId,
  formatFeedId,
  formatMsgId,
  entryId,
} from "./codec.js";
import { loadWords, t } from "./i18n.js";

const nacl = globalThis.nacl; // set by the vendored tweetnacl, which codec.js loads
const $ = (id) => document.getElementById(id);
const KEY = "meshnode.seed"; // this phone's secret seed, hex; it never leaves the browser
const HEAD = "meshnode.head"; // { seq, id } of our own latest entry, as this phone made it
const OUTBOX = "meshnode.outbox"; // signed entries (hex) waiting for the box
const BACKED_UP = "meshnode.backed-up"; // the backup was shown once: no more reminders
const shown = new Set();
const names = new Map(); // feed id -> the name its owner gave
const loaded = new Map(); // entry id -> the entry as the box described it
let replyTo = null; // the entry being answered, while composing a reply
let box = null;
let keys = null;
let next = null;

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
const b64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

function loadKeys() {
  let seed = localStorage.getItem(KEY);
  if (!seed) {
    seed = hex(nacl.randomBytes(32)); // getRandomValues: present without a secure context
    localStorage.setItem(KEY, seed);
  }
  return nacl.sign.keyPair.fromSeed(unhex(seed));
}

function describe(entry) {
  if (entry.type === "post") return entry.text;
  if (entry.type === "reply") return entry.text;
  if (entry.type === "about") return t("timeline.about", { name: entry.about.name });
  if (entry.type === "contact") {
    return t("timeline.contact", { action: entry.contact.action, target: nameOf(entry.contact.target) });
  }
  return t("timeline.other", { type: entry.type });
}

function startReply(entry) {
  replyTo = entry;
  $("replying-to").textContent = t("compose.replying", { name: nameOf(entry.author), text: (entry.text ?? "").slice(0, 60) });
  $("replying").hidden = false;
  countBytes();
  $("text").focus();
}

function stopReply() {
  replyTo = null;
  $("replying").hidden = true;
  countBytes();
}

function item(entry) {
  loaded.set(entry.id, entry);
  const li = document.createElement("li");
  const meta = document.createElement("span");
  meta.className = "meta";
  const when = new Date(entry.timestamp).toLocaleString();
  const who = keys && entry.author === formatFeedId(keys.publicKey) ? t("timeline.you") : nameOf(entry.author);
  meta.textContent = t("timeline.meta", { who, seq: entry.seq, when });
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = describe(entry);
  li.append(meta);
  const parent = entry.type === "reply" ? loaded.get(entry.parent) : undefined;
  if (parent) {
    const quote = document.createElement("span");
    quote.className = "meta";
    quote.textContent = t("timeline.in_reply", { name: nameOf(parent.author), text: (parent.text ?? "").slice(0, 60) });
    li.append(quote);
  }
  li.append(text);
  if (entry.type === "post" || entry.type === "reply") {
    const reply = document.createElement("button");
    reply.type = "button";
    reply.className = "reply";
    reply.textContent = t("timeline.reply");
    reply.setAttribute("aria-label", t("timeline.reply_to", { name: nameOf(entry.author) }));
    reply.addEventListener("click", () => startReply(entry));
    li.append(reply);
  }
  li.dataset.id = entry.id;
  return li;
}

function nameOf(id) {
  return names.get(id) ?? `${id.slice(0, 9)}…`;
}

async function loadPeople() {
  const me = encodeURIComponent(formatFeedId(keys.publicKey));
  const listed = (await getJson(`/api/people?feed=${me}`)).people;
  const list = $("people");
  list.replaceChildren();
  for (const person of listed) {
    if (person.name) names.set(person.id, person.name);
    if (person.id === formatFeedId(keys.publicKey)) continue;
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = person.box ? t("people.this_box", { name: nameOf(person.id) }) : nameOf(person.id);
    li.append(who);
    if (!person.box) {
      const actions = person.followed
        ? [[t("people.unfollow"), ContactAction.UNFOLLOW]]
        : [[t("people.follow"), ContactAction.FOLLOW]];
      actions.push(person.blocked ? [t("people.unblock"), ContactAction.UNBLOCK] : [t("people.block"), ContactAction.BLOCK]);
      for (const [label, action] of actions) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.setAttribute("aria-label", t("people.action", { action: label, name: nameOf(person.id) }));
        button.addEventListener("click", () => publish(ContentType.CONTACT, encodeContact({ action, target: parseFeedId(person.id) })));
        li.append(button);
      }
      if (operator) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "hide";
        button.textContent = t("operator.hide");
        button.setAttribute("aria-label", t("people.action", { action: t("operator.hide"), name: nameOf(person.id) }));
        button.addEventListener("click", () => hide(person.id));
        li.append(button);
      }
    }
    list.append(li);
  }
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

async function loadPage(before) {
  const url = before ? `/api/timeline?before=${encodeURIComponent(before)}` : "/api/timeline";
  const page = await getJson(url);
  for (const entry of page.entries) {
    if (shown.has(entry.id)) continue;
    shown.add(entry.id);
    $("timeline").append(item(entry));
  }
  next = page.next;
  $("more").hidden = !next;
}

async function refresh() {
  const page = await getJson("/api/timeline");
  const fresh = page.entries.filter((e) => !shown.has(e.id));
  for (const entry of fresh.reverse()) {
    shown.add(entry.id);
    $("timeline").prepend(item(entry));
  }
}

// -- our own feed ------------------------------------------------------------------------

function localHead() {
  const saved = JSON.parse(localStorage.getItem(HEAD) || "null");
  return saved ? { seq: saved.seq, id: unhex(saved.id) } : { seq: 0, id: null };
}

async function syncHead() {
  // The box may know entries of ours this browser forgot (cleared, or restored from a
  // backup): sign after the box's latest, so the feed never forks.
  const me = encodeURIComponent(formatFeedId(keys.publicKey));
  const head = await getJson(`/api/head?feed=${me}`);
  const mine = localHead();
  if (head.latest > mine.seq) {
    localStorage.setItem(HEAD, JSON.stringify({ seq: head.latest, id: hex(b64(head.latest_id.slice(1, -7))) }));
  } else if (head.latest === mine.seq && head.latest && formatMsgId(mine.id) !== head.latest_id) {
    $("outbox").textContent = t("outbox.second_device");
  }
}

function outbox() {
  return JSON.parse(localStorage.getItem(OUTBOX) || "[]");
}

function showOutbox() {
  const waiting = outbox().length;
  $("outbox").textContent = waiting ? t("outbox.waiting", { count: waiting }) : "";
}

async function flushOutbox() {
  let waiting = outbox();
  while (waiting.length) {
    const response = await fetch("/api/entries", {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: unhex(waiting[0]),
    });
    if (response.status >= 500 || response.status === 429) throw new Error("the box is busy");
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      $("outbox").textContent = t("outbox.refused", { reason: answer.reason ?? response.status });
    }
    waiting = waiting.slice(1);
    localStorage.setItem(OUTBOX, JSON.stringify(waiting));
  }
  showOutbox();
}

function sign(contentType, content) {
  const head = localHead();
  const raw = createEntry({
    keyPair: keys,
    networkKey: unhex(box.network_key),
    seq: head.seq + 1,
    previous: head.id,
    timestampMs: Date.now(),
    contentType,
    content,
  });
  localStorage.setItem(HEAD, JSON.stringify({ seq: head.seq + 1, id: hex(entryId(raw)) }));
  localStorage.setItem(OUTBOX, JSON.stringify([...outbox(), hex(raw)]));
  return raw;
}

function countBytes() {
  const text = $("text").value;
  const content = encodePost(text).length + (replyTo ? 32 : 0); // a reply names its parent
  const shortForm = 1 + 6 + 1 + content + 64; // header, time, type, text, signature
  const fits = box && shortForm <= box.lora_entry_bytes;
  $("counter").textContent = t(fits ? "compose.bytes.fits" : "compose.bytes.over", { bytes: content });
}

async function publish(contentType, content) {
  if (!box) return;
  try {
    await syncHead();
  } catch {
    // The box is out of reach: sign after what this phone knows, send later.
  }
  sign(contentType, content);
  showOutbox();
  try {
    await flushOutbox();
    await Promise.all([refresh(), loadPeople()]);
  } catch {
    showOutbox();
  }
}

async function post(event) {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim()) return;
  $("text").value = "";
  const parent = replyTo;
  stopReply();
  if (parent) {
    await publish(ContentType.REPLY, encodeReply({ parent: b64(parent.id.slice(1, -7)), text }));
  } else {
    await publish(ContentType.POST, encodePost(text));
  }
}

async function saveAbout(event) {
  event.preventDefault();
  let content;
  try {
    content = encodeAbout({ name: $("name").value, description: $("description").value });
  } catch (error) {
    $("outbox").textContent = t("about.invalid");
    return;
  }
  await publish(ContentType.ABOUT, content);
}

// -- backup ------------------------------------------------------------------------------

async function showBackup() {
  if (!$("backup").open || $("backup-words").childElementCount) return;
  const { seedToWords, qrDataUrl } = await import("./backup.js"); // only when asked for
  const words = seedToWords(unhex(localStorage.getItem(KEY)));
  $("backup-words").replaceChildren(...words.map((word) => {
    const li = document.createElement("li");
    li.textContent = word;
    return li;
  }));
  $("backup-qr").src = qrDataUrl(`${location.origin}/#restore=${words.join("-")}`);
  $("backup-qr").hidden = false;
  localStorage.setItem(BACKED_UP, "1");
  $("me-note").hidden = true;
}

async function restore(event) {
  event.preventDefault();
  const { wordsToSeed } = await import("./backup.js");
  let seed;
  try {
    seed = wordsToSeed($("restore-words").value);
  } catch (error) {
    $("restore-status").textContent = error.key ? t(error.key, error.values) : error.message;
    return;
  }
  if (outbox().length) {
    $("restore-status").textContent = t("restore.pending");
    return;
  }
  localStorage.setItem(KEY, hex(seed));
  localStorage.removeItem(HEAD); // the box's latest entry of the restored feed comes next
  localStorage.setItem(BACKED_UP, "1");
  location.replace(location.pathname);
}

function offerRestoreFromLink() {
  // A scanned backup code opens the page with its words in the fragment (never sent).
  if (!location.hash.startsWith("#restore=")) return;
  $("restore-words").value = decodeURIComponent(location.hash.slice(9)).replaceAll("-", " ");
  $("restore").open = true;
  history.replaceState(null, "", location.pathname);
}

// -- operator ----------------------------------------------------------------------------

let operator = false; // logged in as the box's operator (the cookie itself is HttpOnly)

function postJson(url, body) {
  const headers = { "Content-Type": "application/json" };
  return fetch(url, { method: "POST", headers, body: JSON.stringify(body) });
}

async function operatorLogin(event) {
  event.preventDefault();
  const response = await postJson("/api/operator/login", { passphrase: $("passphrase").value });
  $("passphrase").value = "";
  if (!response.ok) {
    $("operator-status").textContent = t(response.status === 403 ? "operator.wrong" : "operator.refused", { status: response.status });
    return;
  }
  operator = true;
  $("operator-login").hidden = true;
  await Promise.all([operatorStatus(), loadPeople()]);
}

async function operatorStatus() {
  const status = await getJson("/api/operator/status");
  $("operator-status").textContent = t("operator.summary", {
    entries: status.entries,
    feeds: status.feeds,
    mib: (status.bytes / 1048576).toFixed(1),
    forked: status.forked.length,
  });
  const log = (await getJson("/api/operator/log")).log;
  $("operator-log").replaceChildren(...log.map((record) => {
    const li = document.createElement("li");
    li.textContent = t("operator.logged", {
      when: new Date(record.time_ms).toLocaleString(),
      action: record.action,
      name: nameOf(record.feed),
      address: record.address,
    });
    return li;
  }));
}

async function hide(id) {
  const response = await postJson("/api/operator/hide", { feed: id });
  if (!response.ok) {
    $("operator-status").textContent = t("operator.refused", { status: response.status });
    return;
  }
  await Promise.all([operatorStatus(), loadPeople()]);
}

// -- start -------------------------------------------------------------------------------

function follow() {
  const events = new EventSource("/api/events");
  events.addEventListener("entries", () => Promise.all([refresh(), loadPeople()]).catch(() => {}));
  events.onopen = () => {
    $("box-status").textContent = t("status.connected");
    flushOutbox().then(refresh).catch(showOutbox);
  };
  events.onerror = () => { $("box-status").textContent = t("status.away"); };
}

async function start() {
  await loadWords().catch(() => {}); // without the catalogue the page shows its keys
  keys = loadKeys();
  $("me-id").textContent = formatFeedId(keys.publicKey);
  $("compose").addEventListener("submit", post);
  $("about").addEventListener("submit", saveAbout);
  $("cancel-reply").addEventListener("click", stopReply);
  $("operator-login").addEventListener("submit", (event) => operatorLogin(event).catch(() => {}));
  $("backup").addEventListener("toggle", () => showBackup().catch((e) => { $("restore-status").textContent = e.message; }));
  $("restore-form").addEventListener("submit", restore);
  $("me-note").hidden = Boolean(localStorage.getItem(BACKED_UP));
  offerRestoreFromLink();
  $("text").addEventListener("input", countBytes);
  $("more").addEventListener("click", () => loadPage(next));
  showOutbox();
  try {
    box = await getJson("/api/box");
    const name = box.name || t("title");
    $("box-name").textContent = name;
    document.title = name;
    countBytes();
    await syncHead();
    await loadPeople();
    await loadPage(null);
    $("box-status").textContent = t("status.connected");
  } catch (error) {
    $("box-status").textContent = t("status.away");
  }
  follow();
}

start();
