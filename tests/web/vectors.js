// The browser's half of tests/web: runs codec.js on what the test hands it and reports what
// it computed, as JSON-friendly values. The test (Python) holds the expectations and compares,
// so a failure names the field; nothing here decides pass or fail.

import * as codec from "/static/codec.js";
import { makeSigner } from "/static/signer.js";
import { bytesToHex as hex, hexToBytes as unhex } from "/static/vendor/noble-hashes/utils.js";

// FIPS 180-4 example messages; the test holds their digests.
const SHA256_MESSAGES = {
  abc: "abc",
  empty: "",
  two_blocks: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
};

/** Load the vectors, run them all, and publish the report as window.results and in the DOM. */
export async function main() {
  const vectors = await (await fetch("/vectors/entries.json")).json();
  window.meshnodeVectors = {
    run,
    decodeVarints,
    decompressBlocks,
    verifyEntries,
    createEntries,
    signEntries,
    contents,
  };
  window.results = run(vectors);
  document.getElementById("report").textContent = JSON.stringify(window.results, null, 1);
}

/** Everything the vectors file asks of the codec, and the context it ran in. */
function run(vectors) {
  return {
    context: {
      secure: window.isSecureContext,
      subtlePresent: window.webCrypto.subtlePresent,
      viewport: [window.innerWidth, window.innerHeight],
    },
    varints: Object.keys(vectors.varints).map((value) => ({
      value,
      encoded: attempt(() => hex(codec.encodeVarint(BigInt(value)))),
      decoded: decodeVarints([vectors.varints[value]])[0],
    })),
    sha256: Object.fromEntries(
      Object.entries(SHA256_MESSAGES).map(([name, text]) => [
        name,
        hex(codec.entryId(new TextEncoder().encode(text))),
      ]),
    ),
    entries: vectors.entries.map(entryReport),
  };
}

/** One vector: the entry made from its fields, and everything decoded from its bytes. */
function entryReport(vector) {
  const networkKey = unhex(vector.network_key_hex);
  const raw = unhex(vector.full_hex);
  const report = {
    name: vector.name,
    made_hex: createEntries([vector])[0],
    verify: attempt(() => (codec.verifyEntry(raw, networkKey), "ok")),
  };
  let entry;
  try {
    entry = codec.decodeEntry(raw);
  } catch (error) {
    return { ...report, decode: describe(error) };
  }
  return {
    ...report,
    decode: "ok",
    author_text: codec.formatFeedId(entry.author),
    seq: entry.seq,
    previous_hex: entry.previous === null ? null : hex(entry.previous),
    timestamp_ms: String(entry.timestampMs),
    content_type: String(entry.contentType),
    compressed: entry.compressed,
    content_hex: hex(entry.content),
    plain_hex: attempt(() => hex(codec.plainContent(entry))),
    id_hex: hex(entry.id),
    short_hex: attempt(() => hex(codec.shortForm(entry))),
    rebuilt_hex: attempt(() => {
      const { author, seq, previous } = entry;
      return hex(codec.decodeShortEntry(unhex(vector.short_hex), { author, seq, previous }).raw);
    }),
  };
}

/** A vector's fields as createEntry takes them (content as given). */
function entryFields(vector) {
  return {
    networkKey: unhex(vector.network_key_hex),
    seq: vector.seq,
    previous: vector.previous_hex === null ? null : unhex(vector.previous_hex),
    timestampMs: vector.timestamp_ms,
    contentType: vector.content_type,
    content: unhex(vector.content_plain_hex),
  };
}

/** createEntry on each vector's fields (content as given, never compressed): hex or error. */
function createEntries(vectors) {
  return vectors.map((vector) =>
    attempt(() =>
      hex(
        codec.createEntry({ seed: unhex(vector.seed_hex), ...entryFields(vector) }),
      ),
    ),
  );
}

/** Each vector's entry made by the page's signer (signer.js): { kind, made } per vector. */
async function signEntries(vectors) {
  const out = [];
  for (const vector of vectors) {
    const signer = await makeSigner(unhex(vector.seed_hex));
    const raw = await codec.createEntryWith(signer.publicKey, signer.sign, entryFields(vector));
    out.push({ kind: signer.kind, made: hex(raw) });
  }
  return out;
}

/** decodeVarint on each hex string: [value as text, end] or the error. */
function decodeVarints(hexes) {
  return hexes.map((text) =>
    attempt(() => {
      const [value, end] = codec.decodeVarint(unhex(text));
      return [String(value), end];
    }),
  );
}

/** decompressBlock on each hex string: the plain bytes as hex, or the error. */
function decompressBlocks(hexes, maxBytes) {
  return hexes.map((text) => attempt(() => hex(codec.decompressBlock(unhex(text), maxBytes))));
}

/** verifyEntry on each [entry hex, network key hex]: "ok <id hex>" or the error. */
function verifyEntries(pairs) {
  return pairs.map(([text, keyText]) =>
    attempt(() => `ok ${hex(codec.verifyEntry(unhex(text), unhex(keyText)).id)}`),
  );
}

function attempt(compute) {
  try {
    return compute();
  } catch (error) {
    return describe(error);
  }
}

function describe(error) {
  return `error ${error.name}: ${error.message}`;
}

/** The REPLY and ABOUT payloads of tests/vectors/content.json, encoded and decoded here. */
function contents(vectors) {
  const about = (v) => ({
    encoded: attempt(() => hex(codec.encodeAbout({ name: v.name, description: v.description }))),
    decoded: attempt(() => ({ ...codec.decodeAbout(unhex(v.content_hex)) })),
  });
  const reply = vectors.reply;
  const decodedReply = attempt(() => codec.decodeReply(unhex(reply.content_hex)));
  return {
    reply: {
      encoded: attempt(() => hex(codec.encodeReply({ parent: unhex(reply.parent_hex), text: reply.text }))),
      decoded: typeof decodedReply === "string" ? decodedReply : { parent: hex(decodedReply.parent), text: decodedReply.text },
    },
    about: about(vectors.about),
    about_name_only: about(vectors.about_name_only),
    entries: createEntries(vectors.entries),
    refused: attempt(() => hex(codec.encodeAbout({ name: "" }))),
  };
}
