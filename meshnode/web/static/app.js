// The page: this phone's own key and feed, a composer, and the box's timeline kept live by
// one server-sent event stream. Entries are signed here, in the browser (codec.js); the box
// only ever sees signed entries. Every piece of entry text goes into the page with
// textContent, never as HTML.

import {
  ContactAction,
  ContentType,
  createEntryWith,
  encodeAbout,
  encodeContact,
  encodePost,
  encodeReply,
  parseFeedId,
  formatFeedId,
  formatMsgId,
  entryId,
} from "./codec.js";
import { loadWords, t, tn } from "./i18n.js";
import { makeSigner } from "./signer.js";

const nacl = globalThis.nacl; // set by the vendored tweetnacl, which codec.js loads
const $ = (id) => document.getElementById(id);
const KEY = "meshnode.seed"; // this phone's secret seed, hex; it never leaves the browser
const HEAD = "meshnode.head"; // { seq, id } of our own latest entry, as this phone made it
const OUTBOX = "meshnode.outbox"; // signed entries (hex) waiting for the box
const BACKED_UP = "meshnode.backed-up"; // the backup was shown once: no more reminders
const INBOX_USED = "meshnode.inbox-used"; // this phone opened its inbox: keep its key published
const shown = new Set();
const names = new Map(); // feed id -> the name its owner gave
const loaded = new Map(); // entry id -> the entry as the box described it
let replyTo = null; // the entry being answered, while composing a reply
let box = null;
let keys = null;
let signer = null; // signer.js: WebCrypto in a secure context, else tweetnacl
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

const CONTACT_WORDS = {
  follow: "timeline.follows",
  unfollow: "timeline.unfollows",
  block: "timeline.blocks",
  unblock: "timeline.unblocks",
};

function describe(entry) {
  if (entry.type === "post") return entry.text;
  if (entry.type === "private") return t("timeline.private");
  if (entry.type === "enckey") return t("timeline.enckey");
  if (entry.type === "reply") return entry.text;
  if (entry.type === "about") return t("timeline.about", { name: entry.about.name });
  if (entry.type === "contact") {
    const key = CONTACT_WORDS[entry.contact.action] ?? "timeline.follows";
    return t(key, { target: nameOf(entry.contact.target) });
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
  const who = document.createElement("a");
  who.href = `#person=${encodeURIComponent(entry.author)}`;
  who.textContent = keys && entry.author === formatFeedId(keys.publicKey) ? t("timeline.you") : nameOf(entry.author);
  const when = new Date(entry.timestamp).toLocaleString();
  meta.append(who, ` · ${t("timeline.when", { seq: entry.seq, when })}`);
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
    const actions = document.createElement("span");
    actions.className = "actions";
    const reply = document.createElement("button");
    reply.type = "button";
    reply.className = "reply";
    reply.textContent = t("timeline.reply");
    reply.setAttribute("aria-label", t("timeline.reply_to", { name: nameOf(entry.author) }));
    reply.addEventListener("click", () => startReply(entry));
    actions.append(reply);
    if (entry.replies || entry.type === "reply") {
      // "timeline.replies.one", "timeline.replies.other": the plural forms tn() picks from
      const thread = document.createElement("a");
      thread.className = "thread";
      thread.href = `#thread=${encodeURIComponent(entry.id)}`;
      thread.textContent = entry.replies ? tn("timeline.replies", entry.replies) : t("timeline.thread");
      actions.append(thread);
    }
    li.append(actions);
  }
  li.dataset.id = entry.id;
  li.dataset.replies = entry.replies ?? 0;
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
    const who = document.createElement("a");
    who.className = "who";
    who.href = `#person=${encodeURIComponent(person.id)}`;
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
  for (const entry of page.entries) {
    // An entry already shown is drawn again when it gained replies.
    const old = shown.has(entry.id) && $("timeline").querySelector(`li[data-id="${CSS.escape(entry.id)}"]`);
    if (old && Number(old.dataset.replies ?? 0) !== (entry.replies ?? 0)) old.replaceWith(item(entry));
  }
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

async function sign(contentType, content) {
  const head = localHead();
  const raw = await createEntryWith(signer.publicKey, signer.sign, {
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
  await sign(contentType, content);
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

// -- a person's page and a thread, opened by the address's #fragment ----------------------

let viewNext = null; // the next page of a person's entries (a seq), or null

const SECTION_OF = { person: "view", thread: "view", inbox: "inbox", dm: "dm" }; // views

function viewOf(hash) {
  const text = hash.replace(/^#/, "");
  if (text === "inbox") return { kind: "inbox", value: "" };
  const [kind, value] = text.split("=", 2);
  if (!value || !Object.hasOwn(SECTION_OF, kind) || kind === "inbox") return null;
  try {
    return { kind, value: decodeURIComponent(value) };
  } catch {
    return null;
  }
}

async function showView() {
  const view = viewOf(location.hash);
  const open = view ? SECTION_OF[view.kind] : null;
  const views = new Set(Object.values(SECTION_OF));
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = open ? section.id !== open : views.has(section.id);
  }
  if (!view) return;
  if (view.kind === "inbox" || view.kind === "dm") {
    window.scrollTo(0, 0);
    await showInbox(view);
    return;
  }
  $("view-list").replaceChildren();
  $("view-about").textContent = "";
  $("view-more").hidden = true;
  $("view-title").textContent = t("view.loading");
  $("view-title").focus();
  window.scrollTo(0, 0);
  try {
    if (view.kind === "person") await showPerson(view.value, null);
    else await showThread(view.value);
  } catch (error) {
    $("view-title").textContent = t("view.missing");
  }
}

async function showPerson(id, before) {
  const query = `feed=${encodeURIComponent(id)}${before ? `&before=${before}` : ""}`;
  const page = await getJson(`/api/feed?${query}`);
  if (page.name) names.set(page.feed, page.name);
  const mine = keys && page.feed === formatFeedId(keys.publicKey);
  $("view-title").textContent = mine ? t("view.you") : nameOf(page.feed);
  $("view-about").textContent = page.description || page.feed;
  $("view-list").append(...page.entries.map(item));
  viewNext = page.next;
  $("view-more").hidden = !viewNext;
  if (!page.entries.length && !before) $("view-about").textContent = t("view.nothing", { id: page.feed });
}

async function showThread(id) {
  const page = await getJson(`/api/thread?id=${encodeURIComponent(id)}`);
  const first = page.entries[0];
  $("view-title").textContent = t("view.thread", { name: nameOf(first.author) });
  for (const entry of page.entries) loaded.set(entry.id, entry);
  $("view-list").append(...page.entries.map(item));
}

function morePerson() {
  const view = viewOf(location.hash);
  if (view && view.kind === "person" && viewNext) showPerson(view.value, viewNext).catch(() => {});
}

// -- private messages: inbox.js, loaded when the inbox is first opened ------------------------

let inbox = null; // the inbox module once started

async function loadInbox() {
  if (!inbox) {
    const module = await import("./inbox.js");
    await module.start({
      box,
      seed: unhex(localStorage.getItem(KEY)),
      me: formatFeedId(keys.publicKey),
      getJson,
      publish,
      flush: flushOutbox,
      nameOf,
      outbox,
    });
    inbox = module;
    localStorage.setItem(INBOX_USED, "1");
  }
  return inbox;
}

async function showInbox(view) {
  const title = view.kind === "inbox" ? $("inbox-title") : $("dm-title");
  title.focus();
  if (!box) return; // the box was never reached: nothing to read or write with yet
  try {
    await (await loadInbox()).show(view);
  } catch (error) {
    $("inbox-status").textContent = t("inbox.failed", { reason: error.message });
  }
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
  $("poster-link").hidden = false;
  $("operator-detail").hidden = false;
  await Promise.all([operatorStatus(), loadPeople()]);
}

/** A size in bytes as people read it: KB, MB or GB, in the phone's own number format. */
function bytesText(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit && value < 10 ? 1 : 0;
  return `${value.toLocaleString(undefined, { maximumFractionDigits: digits })} ${units[unit]}`;
}

async function operatorStatus() {
  const status = await getJson("/api/operator/status");
  const cap = status.caps?.global_cap_bytes ?? 0;
  const size = cap
    ? t("operator.cap", { size: bytesText(status.bytes), cap: bytesText(cap) })
    : t("operator.no_cap", { size: bytesText(status.bytes) });
  $("operator-status").textContent = t("operator.summary", {
    entries: status.entries,
    feeds: status.feeds,
    size,
    forked: status.forked.length,
  });
  $("operator-disk").textContent = status.disk
    ? t("operator.disk", { free: bytesText(status.disk.free_bytes), total: bytesText(status.disk.total_bytes) })
    : "";
  const lines = (id, records, line, none) => {
    const items = records.map((record) => {
      const li = document.createElement("li");
      li.textContent = line(record);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.textContent = t(none);
      items.push(li);
    }
    $(id).replaceChildren(...items);
  };
  lines("operator-peers", status.peers ?? [], (peer) => t(peer.connected ? "operator.peer_on" : "operator.peer_off", {
    name: nameOf(peer.id),
    link: peer.link,
    address: peer.address ?? "?",
    behind: peer.behind ?? 0,
  }), "operator.no_peers");
  lines("operator-radios", status.radios ?? [], (radio) => t("operator.radio", {
    name: radio.name,
    driver: radio.driver,
    state: radio.problem || radio.state,
    used: radio.airtime_used_s ?? 0,
    limit: radio.airtime_limit_s ?? "∞",
  }), "operator.no_radios");
  lines("operator-usb", [...(status.usb_syncs ?? [])].reverse(), (sync) => t("operator.usb", {
    when: new Date(sync.at_ms).toLocaleString(),
    path: sync.drive,
    from: sync.from_drive,
    to: sync.to_drive,
  }), "operator.no_usb");
  const log = (await getJson("/api/operator/log")).log;
  lines("operator-log", log, (record) => t("operator.hid", { // hiding is the one action logged
    when: new Date(record.time_ms).toLocaleString(),
    name: nameOf(record.feed),
    address: record.address,
  }), "operator.no_log");
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
  events.addEventListener("entries", () => {
    Promise.all([refresh(), loadPeople(), inbox?.refresh()]).catch(() => {});
  });
  events.onopen = () => {
    $("box-status").textContent = t("status.connected");
    flushOutbox().then(refresh).catch(showOutbox);
  };
  events.onerror = () => { $("box-status").textContent = t("status.away"); };
}

async function start() {
  await loadWords().catch(() => {}); // without the catalogue the page shows its keys
  keys = loadKeys();
  signer = await makeSigner(unhex(localStorage.getItem(KEY)));
  document.documentElement.dataset.signer = signer.kind; // which one signs, for the curious
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
  $("view-more").addEventListener("click", morePerson);
  window.addEventListener("hashchange", () => showView());
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
    await showView();
    // A phone that uses its inbox keeps its key published and this box among its homes.
    if (localStorage.getItem(INBOX_USED)) loadInbox().catch(() => {});
  } catch (error) {
    $("box-status").textContent = t("status.away");
  }
  follow();
}

function keepForOffline() {
  // Where the page is a secure context (HTTPS), sw.js keeps a copy of it so that it opens
  // with no box in reach. Over plain HTTP there is no service worker and nothing changes.
  if (!window.isSecureContext || !("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/sw.js").catch(() => {}); // the page works without it
}

start();
window.addEventListener("load", keepForOffline); // after the first load, never in its way
