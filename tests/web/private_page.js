// The browser's half of tests/web/test_private_js_browser.py: runs private.js on what the
// test hands it and reports what it computed, as JSON-friendly values. The test (Python)
// holds the expectations and compares; nothing here decides pass or fail.

import * as codec from "/static/codec.js";
import * as priv from "/static/private.js";
import { bytesToHex as hex, hexToBytes as unhex } from "/static/vendor/noble-hashes/utils.js";

/** Load the vectors, run them all, and publish the report as window.results and in the DOM. */
export async function main() {
  const calls = { run, sealMany, openMany, usable, decodeEncKeys, decodeInners, refusals };
  window.meshnodePrivate = calls;
  const report = run(await (await fetch("/vectors/private.json")).json());
  document.getElementById("report").textContent = JSON.stringify(report, null, 1);
  window.results = report;
}

/** Everything the vectors file asks of private.js, and the context it ran in. */
function run(vectors) {
  return {
    context: {
      secure: window.isSecureContext,
      subtlePresent: window.webCrypto.subtlePresent,
      contentTypes: [priv.PRIVATE_CONTENT_TYPE, priv.ENCKEY_CONTENT_TYPE],
    },
    keys: vectors.keys.map((k) =>
      attempt(() => {
        const pair = priv.encKeypair(unhex(k.seed_hex), k.generation);
        const { secretKey, publicKey, generation } = pair;
        return { secret_hex: hex(secretKey), public_hex: hex(publicKey), generation };
      }),
    ),
    enckeys: vectors.enckeys.map((v) => ({
      encoded: attempt(() => {
        const fields = { key: unhex(v.key_hex), generation: v.generation };
        return hex(priv.encodeEncKey({ ...fields, homes: v.homes_hex.map(unhex) }));
      }),
      decoded: decodeEncKeys([v.content_hex])[0],
    })),
    messages: vectors.messages.map((m) => messageReport(m, vectors.third_seed_hex)),
  };
}

/** One message vector: its inner and payload made here, and who can open it. */
function messageReport(m, thirdSeedHex) {
  const author = priv.encKeypair(unhex(m.author_seed_hex), m.author_generation);
  const recipients = m.recipients.map((r) => priv.encKeypair(unhex(r.seed_hex), r.generation));
  const third = priv.encKeypair(unhex(thirdSeedHex));
  const fields = {
    contentType: m.inner.content_type,
    recipientTags: m.inner.recipient_tags_hex.map(unhex),
    payload: unhex(m.inner.payload_hex),
  };
  const others = recipients.filter((r) => hex(r.publicKey) !== hex(author.publicKey));
  return {
    name: m.name,
    inner_hex: attempt(() => hex(priv.encodePrivateInner(fields))),
    inner_decoded: decodeInners([m.inner_hex])[0],
    payload_hex: attempt(() =>
      hex(
        priv.seal(unhex(m.inner_hex), recipients.map((r) => r.publicKey), author.secretKey, {
          ephemeralSk: unhex(m.ephemeral_sk_hex),
        }),
      ),
    ),
    author: openMany([m.payload_hex], hex(author.secretKey))[0],
    recipients: others.map((r) => openMany([m.payload_hex], hex(r.secretKey))[0]),
    third: openMany([m.payload_hex], hex(third.secretKey))[0],
    entry_hex: attempt(() => hex(codec.createEntry(entryFields(m.entry)))),
    size: priv.privateSize(m.slots, m.inner_hex.length / 2),
  };
}

function entryFields(vector) {
  return {
    seed: unhex(vector.seed_hex),
    networkKey: unhex(vector.network_key_hex),
    seq: vector.seq,
    previous: vector.previous_hex === null ? null : unhex(vector.previous_hex),
    timestampMs: vector.timestamp_ms,
    contentType: vector.content_type,
    content: unhex(vector.content_plain_hex),
  };
}

/** seal (random ephemeral key) for each [inner hex, [recipient pk hex], author sk hex]. */
function sealMany(jobs) {
  return jobs.map(([innerHex, pkHexes, skHex]) =>
    attempt(() => hex(priv.seal(unhex(innerHex), pkHexes.map(unhex), unhex(skHex)))),
  );
}

/** openPrivate on each payload with one key: "author|recipient <inner hex>" or the error. */
function openMany(payloadHexes, skHex, asAuthor) {
  const key = unhex(skHex);
  return payloadHexes.map((text) =>
    attempt(() => {
      const opened = priv.openPrivate(unhex(text), key, { asAuthor: asAuthor ?? undefined });
      return `${opened.asAuthor ? "author" : "recipient"} ${hex(opened.inner)}`;
    }),
  );
}

/** isUsableEncKey on each hex key, and whether seal accepts it as a recipient. */
function usable(keyHexes, authorSkHex) {
  return keyHexes.map((text) => ({
    usable: priv.isUsableEncKey(unhex(text)),
    seal: attempt(() => (priv.seal(Uint8Array.of(1), [unhex(text)], unhex(authorSkHex)), "ok")),
  }));
}

function decodeEncKeys(hexes) {
  return hexes.map((text) =>
    attempt(() => {
      const enckey = priv.decodeEncKey(unhex(text));
      const { key, generation, homes } = enckey;
      return { key_hex: hex(key), generation, homes_hex: homes.map(hex) };
    }),
  );
}

function decodeInners(hexes) {
  return hexes.map((text) =>
    attempt(() => {
      const inner = priv.decodePrivateInner(unhex(text));
      return {
        content_type: inner.contentType,
        recipient_tags_hex: inner.recipientTags.map(hex),
        payload_hex: hex(inner.payload),
      };
    }),
  );
}

/** Encoders called out of bounds: each outcome, "ok" or the error. */
function refusals(keyHex, tagHex) {
  const key = unhex(keyHex);
  const tag = unhex(tagHex);
  const base = { contentType: 1, recipientTags: [tag], payload: new Uint8Array(0) };
  const inner = (change) => attempt(() => (priv.encodePrivateInner({ ...base, ...change }), "ok"));
  const enckey = (change) =>
    attempt(() => (priv.encodeEncKey({ key, generation: 0, homes: [], ...change }), "ok"));
  return {
    enckey_zero_key: enckey({ key: new Uint8Array(32) }),
    enckey_generation: enckey({ generation: 2 ** 32 }),
    enckey_four_homes: enckey({ homes: [1, 2, 3, 4].map((n) => new Uint8Array(32).fill(n)) }),
    enckey_same_home: enckey({ homes: [new Uint8Array(32), new Uint8Array(32)] }),
    inner_about: inner({ contentType: 4 }),
    inner_no_tags: inner({ recipientTags: [] }),
    inner_eight_tags: inner({ recipientTags: Array(8).fill(tag) }),
    inner_short_tag: inner({ recipientTags: [tag.slice(1)] }),
    ok: inner({}),
  };
}

function attempt(compute) {
  try {
    return compute();
  } catch (error) {
    return `error ${error.name}: ${error.message}`;
  }
}
