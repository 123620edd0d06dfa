// Private messages, read and written only in this phone. The page loads this module when
// its inbox is first opened (app.js), so a first visit does not pay for it.
//
// The box hands every phone every private entry it holds (/api/private); this phone tries
// to open each one with its own encryption key (private.js) and keeps what opens, so the
// box learns nothing from what a phone fetches. A message that opens is also checked for
// its author's signature: anyone, the box too, can seal a message to this phone's key, so
// only the signature says who wrote it. The encryption key is derived from this phone's
// seed (the backup words restore it) and published in an ENCKEY entry naming this box as a
// home.
//
// Each contact's key is pinned the first time it is used (pins.js); when a contact
// later publishes another key, their conversations say so plainly and nothing more is sent
// to them until the new key is accepted. Every piece of message text goes into the page
// with textContent, never as HTML.

import {
  ContentType,
  decodeEntry,
  decodePost,
  decodeReply,
  encodePost,
  formatFeedId,
  formatMsgId,
  parseFeedId,
  verifyEntry,
} from "./codec.js";
import { openAll, warmUp } from "./opener.js";
import { acceptKey, changedKeys, pinFirstUse } from "./pins.js";
import {
  ENCKEY_CONTENT_TYPE,
  MAX_HOMES,
  MAX_RECIPIENTS,
  PRIVATE_CONTENT_TYPE,
  decodePrivateInner,
  encKeypair,
  encodeEncKey,
  encodePrivateInner,
  privateSize,
  recipientTag,
  seal,
} from "./private.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const PAGE = 500; // private entries asked for at a time (the box's most)
const REACH_POLL_MS = 3000; // how often an open conversation asks how far its messages got
const SHORT_FORM_BYTES = 1 + 6 + 1 + 64; // an entry's short form besides its content

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
const unhex = (text) => Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
const b64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const tagOf = (feedId) => hex(recipientTag(parseFeedId(feedId)));

let ctx = null; // from app.js: box, seed, me, getJson, publish, flush, nameOf, outbox
let wired = false; // the forms' listeners are added once, even if a start fails
let myTag = "";
let secretKeys = []; // this phone's encryption secret keys, the current generation first
let cursor = null; // where the next /api/private read starts
const keysOf = new Map(); // feed id -> { key, keyHex, generation, homes, seq }
const feedOfTag = new Map(); // 8-byte tag (hex) -> feed id, for everyone with a key
const messages = new Map(); // entry id -> a message this phone opened
let reach = new Map(); // box feed id -> highest seq of our feed it holds
let view = { kind: "inbox", value: "" };
let reachTimer = null;
let refreshing = null; // the read under way after news from the box
let again = false;
// What the bench and tests read: when the inbox started, read what waits and first showed it.
const timing = { openedMs: 0, readMs: 0, shownMs: 0, found: 0 };
globalThis.meshnodeInbox = timing;

/** Start: load the keys the box knows and publish ours if it changed (reading waits for show). */
export async function start(context) {
  ctx = context;
  timing.openedMs = performance.now();
  myTag = tagOf(ctx.me);
  if (!wired) {
    wired = true;
    $("dm-compose").addEventListener("submit", (event) => sendNew(event).catch(failed("dm-status")));
    $("dm-answer").addEventListener("submit", (event) => answer(event).catch(failed("dm-answer-status")));
    $("dm-text").addEventListener("input", countBytes);
    $("dm-people").addEventListener("change", limitChoices);
  }
  await loadKeys();
  await publishKey();
}

let readOnce = null; // the first read of every private entry, done when the inbox is shown

function readFirst() {
  readOnce ??= readAll().then(() => {
    timing.readMs = performance.now();
    timing.found = messages.size;
  });
  readOnce.catch(() => { readOnce = null; }); // tried again at the next showing
  return readOnce;
}

function failed(id) {
  return (error) => { $(id).textContent = t("inbox.failed", { reason: error.message }); };
}

/** Show the inbox (kind "inbox") or one conversation (kind "dm", value: its tags). */
export async function show(wanted) {
  view = wanted;
  clearTimeout(reachTimer);
  warmUp(); // the workers load their modules while the entries come
  await readFirst();
  await refreshReach().catch(() => {}); // the box is away: show what this phone knows
  render();
  timing.shownMs ||= performance.now();
}

/** New entries reached the box: read the private ones and the keys again. */
export function refresh() {
  if (refreshing) {
    again = true; // news during a read: read once more after it
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        again = false;
        await loadKeys();
        if (!readOnce) continue; // never shown: only the keys matter yet
        await readAll();
        await refreshReach();
        render();
      } while (again);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// -- keys ------------------------------------------------------------------------------

async function loadKeys() {
  let after = "";
  for (;;) {
    const page = await ctx.getJson(`/api/keys${after ? `?after=${encodeURIComponent(after)}` : ""}`);
    for (const listed of page.keys) {
      const key = b64(listed.key);
      keysOf.set(listed.feed, { ...listed, key, keyHex: hex(key) });
      feedOfTag.set(tagOf(listed.feed), listed.feed);
    }
    if (!page.next) break;
    after = page.next;
  }
}

/** Publish this phone's key when the box's latest one differs or lacks this box as a home. */
async function publishKey() {
  const published = keysOf.get(ctx.me);
  const generation = published?.generation ?? 0;
  secretKeys = [];
  for (let g = generation; g >= 0 && secretKeys.length < 8; g -= 1) {
    secretKeys.push(encKeypair(ctx.seed, g).secretKey); // older ones read older messages
  }
  const mine = encKeypair(ctx.seed, generation);
  const homes = published?.homes ?? [];
  const same = published?.keyHex === hex(mine.publicKey) && homes.includes(ctx.box.id);
  if (same || waitingInOutbox(ENCKEY_CONTENT_TYPE)) return;
  // This box first; the person's other boxes stay homes while there is room.
  const wanted = [ctx.box.id, ...homes.filter((h) => h !== ctx.box.id)].slice(0, MAX_HOMES);
  const content = encodeEncKey({ key: mine.publicKey, generation, homes: wanted.map(parseFeedId) });
  await ctx.publish(ENCKEY_CONTENT_TYPE, content);
  await loadKeys();
}

function waitingInOutbox(contentType) {
  return ctx.outbox().some((raw) => decodeEntry(unhex(raw)).contentType === contentType);
}

// -- reading -----------------------------------------------------------------------------

let reading = Promise.resolve(); // one read of the box at a time, each from the last cursor

/** Read every private entry the box got since the last read. */
function readAll() {
  const done = reading.then(readPages);
  reading = done.catch(() => {});
  return done;
}

function fetchPage(after) {
  const query = after ? `?limit=${PAGE}&after=${encodeURIComponent(after)}` : `?limit=${PAGE}`;
  return ctx.getJson(`/api/private${query}`);
}

async function readPages() {
  let next = fetchPage(cursor);
  for (;;) {
    const page = await next;
    if (page.more) next = fetchPage(page.next); // it comes while this page is tried
    if (page.restarted) messages.clear(); // the box started again and numbered afresh
    const fresh = page.entries.filter((listed) => !messages.get(listed.id) || messages.get(listed.id).waiting);
    await readMany(fresh.map((listed) => b64(listed.raw)), false);
    cursor = page.next;
    if (!page.more) break;
  }
  await readOutbox();
}

function readOutbox() {
  return readMany(ctx.outbox().map(unhex), true); // ours, not yet on the box
}

/** Open entries with this phone's keys and keep those that are for us. */
async function readMany(raws, waiting) {
  const inners = await openAll(raws, secretKeys, ctx.me);
  for (const [i, inner] of inners.entries()) {
    if (inner === null) continue; // for someone else: most are
    try {
      const entry = verifyEntry(raws[i], unhex(ctx.box.network_key)); // the box cannot forge
      keep(entry, decodePrivateInner(inner), waiting);
    } catch {
      // Damaged or forged: never shown. Only a message for us can fail here.
    }
  }
}

function keep(entry, inner, waiting) {
  const author = formatFeedId(entry.author);
  feedOfTag.set(tagOf(author), author); // known even if its author published no key
  const tags = new Set([tagOf(author), ...inner.recipientTags.map(hex)]);
  tags.delete(myTag);
  const text = inner.contentType === ContentType.REPLY
    ? decodeReply(inner.payload).text
    : decodePost(inner.payload);
  const id = formatMsgId(entry.id);
  if (waiting && messages.has(id)) return; // already on the box
  messages.set(id, {
    id,
    author,
    seq: entry.seq,
    timestamp: entry.timestampMs,
    text,
    recipients: inner.recipientTags.map(hex),
    conversation: [...tags].sort().join(","),
    waiting,
  });
}

// -- showing -----------------------------------------------------------------------------

function nameOfTag(tag) {
  const feed = feedOfTag.get(tag);
  return feed ? ctx.nameOf(feed) : t("dm.someone", { tag: tag.slice(0, 6) });
}

function namesOf(conversation) {
  const tags = conversation ? conversation.split(",") : [];
  const names = tags.map(nameOfTag).sort((a, b) => a.localeCompare(b));
  return names.join(", ") || t("dm.yourself");
}

function conversations() {
  const byId = new Map();
  for (const message of messages.values()) {
    const list = byId.get(message.conversation) ?? [];
    list.push(message);
    byId.set(message.conversation, list);
  }
  for (const list of byId.values()) list.sort((a, b) => a.timestamp - b.timestamp || a.seq - b.seq);
  return [...byId.entries()].sort((a, b) => b[1].at(-1).timestamp - a[1].at(-1).timestamp);
}

function render() {
  if (view.kind === "dm") renderConversation(view.value);
  else renderInbox();
}

/** Put ``items`` in ``list`` unless they are what it shows already (keeps focus and clicks). */
function replaceList(list, items) {
  const said = items.map((item) => item.outerHTML).join("");
  if (list.dataset.said === said) return;
  list.dataset.said = said;
  list.replaceChildren(...items);
}

function renderInbox() {
  const items = conversations().map(([id, list]) => {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#dm=${encodeURIComponent(id)}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = namesOf(id);
    const last = document.createElement("span");
    last.className = "last";
    const newest = list.at(-1);
    const by = newest.author === ctx.me ? t("timeline.you") : ctx.nameOf(newest.author);
    last.textContent = t("inbox.last", { name: by, text: newest.text.slice(0, 80) });
    link.append(who, last);
    li.append(link);
    return li;
  });
  replaceList($("conversations"), items);
  $("inbox-status").textContent = items.length ? "" : t("inbox.empty");
  renderChoices();
}

/** The people this phone can write to: everyone with a published key but itself. */
function renderChoices() {
  const chosen = new Set([...document.querySelectorAll("#dm-people input:checked")].map((i) => i.value));
  const people = [...keysOf.keys()].filter((feed) => feed !== ctx.me);
  people.sort((a, b) => ctx.nameOf(a).localeCompare(ctx.nameOf(b)));
  const items = people.map((feed, i) => {
    const li = document.createElement("li");
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = feed;
    box.id = `dm-to-${i}`;
    box.checked = chosen.has(feed);
    label.htmlFor = box.id;
    const name = feed === ctx.box.id ? t("people.this_box", { name: ctx.nameOf(feed) }) : ctx.nameOf(feed);
    label.append(box, name);
    li.append(label);
    return li;
  });
  if (!items.length) {
    const li = document.createElement("li");
    li.textContent = t("inbox.nobody");
    items.push(li);
  }
  replaceList($("dm-people"), items);
  limitChoices();
}

function chosenFeeds() {
  return [...document.querySelectorAll("#dm-people input:checked")].map((i) => i.value);
}

function limitChoices() {
  const full = chosenFeeds().length >= MAX_RECIPIENTS;
  for (const input of document.querySelectorAll("#dm-people input")) {
    input.disabled = full && !input.checked;
  }
  countBytes();
}

function countBytes() {
  const recipients = Math.max(1, chosenFeeds().length);
  const inner = 2 + 8 * recipients + encodePost($("dm-text").value).length;
  const bytes = privateSize(recipients, inner);
  const fits = bytes + SHORT_FORM_BYTES <= ctx.box.lora_entry_bytes;
  $("dm-counter").textContent = t(fits ? "compose.bytes.fits" : "compose.bytes.over", { bytes });
}

function renderConversation(conversation) {
  const tags = conversation ? conversation.split(",") : [];
  $("dm-title").textContent = t("dm.title", { names: namesOf(conversation) });
  const feeds = tags.map((tag) => feedOfTag.get(tag)).filter(Boolean);
  pinFirstUse(feeds, keysOf);
  replaceList($("dm-warnings"), changedKeys(feeds, keysOf).map(warning));
  const list = (conversations().find(([id]) => id === conversation)?.[1]) ?? [];
  replaceList($("dm-list"), list.map(messageItem));
  const unknown = tags.length !== feeds.length;
  $("dm-answer").hidden = unknown || !tags.length;
  clearTimeout(reachTimer); // one poll at a time, however often the view is drawn
  if (list.some((m) => m.author === ctx.me && !reachedAll(m))) {
    reachTimer = setTimeout(() => poll().catch(() => {}), REACH_POLL_MS);
  }
}

/** While a message of ours has not reached everyone: send what waits, ask how far it got. */
async function poll() {
  if ($("dm").hidden) return; // the conversation was left: shown again, it polls again
  if (ctx.outbox().length) {
    await ctx.flush(); // the box may be back without the page having noticed
    await readAll();
  }
  await refreshReach();
  render();
}

function warning(feed) {
  const div = document.createElement("div");
  div.className = "warning";
  div.setAttribute("role", "alert");
  const text = document.createElement("p");
  text.textContent = t("dm.key_changed", { name: ctx.nameOf(feed) });
  const button = document.createElement("button");
  button.type = "button";
  button.className = "accept-key";
  button.textContent = t("dm.accept_key");
  button.setAttribute("aria-label", t("dm.accept_key_of", { name: ctx.nameOf(feed) }));
  button.addEventListener("click", () => {
    acceptKey(feed, keysOf);
    render();
  });
  div.append(text, button);
  return div;
}

function messageItem(message) {
  const li = document.createElement("li");
  const meta = document.createElement("span");
  meta.className = "meta";
  const who = message.author === ctx.me ? t("timeline.you") : ctx.nameOf(message.author);
  meta.textContent = `${who} · ${new Date(message.timestamp).toLocaleString()}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  li.append(meta, text);
  if (message.author === ctx.me) {
    const delivery = document.createElement("span");
    delivery.className = "delivery";
    delivery.textContent = deliveryWords(message);
    li.append(delivery);
  }
  li.dataset.id = message.id;
  return li;
}

// -- how far a sent message got ------------------------------------------------------------

async function refreshReach() {
  const answer = await ctx.getJson(`/api/reach?feed=${encodeURIComponent(ctx.me)}`);
  reach = new Map(answer.boxes.map((held) => [held.box, held.seq]));
}

/** Where a message stands for one recipient: outbox, reached, travelling or no_home. */
function standing(message, tag) {
  if (message.waiting) return "outbox";
  const homes = keysOf.get(feedOfTag.get(tag))?.homes ?? [];
  if (!homes.length) return "no_home";
  return homes.some((home) => (reach.get(home) ?? 0) >= message.seq) ? "reached" : "travelling";
}

function reachedAll(message) {
  return message.recipients.every((tag) => standing(message, tag) === "reached");
}

function deliveryWords(message) {
  if (message.waiting) return t("dm.status.outbox");
  // "dm.status.reached", "dm.status.travelling", "dm.status.no_home": one line per recipient
  return message.recipients
    .map((tag) => t(`dm.status.${standing(message, tag)}`, { name: nameOfTag(tag) }))
    .join(" ");
}

// -- writing -----------------------------------------------------------------------------

async function sendNew(event) {
  event.preventDefault();
  const feeds = chosenFeeds();
  if (!feeds.length) {
    $("dm-status").textContent = t("inbox.choose");
    return;
  }
  if (await send(feeds, $("dm-text").value, "dm-status")) {
    $("dm-text").value = "";
    for (const input of document.querySelectorAll("#dm-people input")) input.checked = false;
    limitChoices();
    location.hash = `#dm=${encodeURIComponent(conversationOf(feeds))}`;
  }
}

async function answer(event) {
  event.preventDefault();
  const feeds = view.value.split(",").map((tag) => feedOfTag.get(tag));
  if (feeds.includes(undefined)) return; // someone unknown here: the form is hidden then
  if (await send(feeds, $("dm-answer-text").value, "dm-answer-status")) {
    $("dm-answer-text").value = "";
  }
}

function conversationOf(feeds) {
  return feeds.map(tagOf).filter((tag) => tag !== myTag).sort().join(",");
}

/** Seal ``text`` to ``feeds`` and publish it; false (saying why) when it cannot be sent. */
async function send(feeds, text, statusId) {
  if (!text.trim()) return false;
  const keyless = feeds.filter((feed) => !keysOf.has(feed));
  if (keyless.length) {
    $(statusId).textContent = t("dm.no_key", { names: keyless.map(ctx.nameOf).join(", ") });
    return false;
  }
  pinFirstUse(feeds, keysOf);
  const changed = changedKeys(feeds, keysOf);
  if (changed.length) {
    $(statusId).textContent = t("dm.blocked", { names: changed.map(ctx.nameOf).join(", ") });
    return false;
  }
  const inner = encodePrivateInner({
    contentType: ContentType.POST,
    recipientTags: feeds.map((feed) => recipientTag(parseFeedId(feed))),
    payload: encodePost(text),
  });
  const payload = seal(inner, feeds.map((feed) => keysOf.get(feed).key), secretKeys[0]);
  $(statusId).textContent = "";
  await ctx.publish(PRIVATE_CONTENT_TYPE, payload); // kept in the outbox while the box is away
  try {
    await readAll();
    await refreshReach();
  } catch {
    await readOutbox(); // the box is away: show it as waiting on this phone
  }
  render();
  return true;
}
