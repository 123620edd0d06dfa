// meshnode's entry codec for the browser: the same bytes as meshnode/codec/message.py.
//
// The layout, the signature (ed25519 over network_key || body) and the entry id (sha256 of
// the full form) are specified in the docstring of meshnode/codec/message.py; the varint in
// meshnode/codec/varint.py; content payloads in meshnode/codec/content.py. The known-answer
// vectors in tests/vectors/entries.json check this file in a real browser (tests/web/).
//
// Compression rule: a browser encoder never compresses. createEntry always writes the
// content as it is, with header bit 0 clear; Python's create_entry compresses with lz4 when
// that makes the content smaller. Both are valid entries: every decoder accepts either, and
// the signature covers whichever bytes were written. So for content that lz4 shrinks, the
// browser's entry differs from the one Python would make from the same fields (and has
// another id), while for content lz4 does not shrink the two are byte-identical.
// decodeEntry reads both; plainContent undoes lz4 (block decompression only, capped at
// maxContentBytes, 8192 by default, as Python caps it).
//
// No WebCrypto: a phone reaches its box over plain HTTP at a LAN address, which is not a
// secure context, so crypto.subtle does not exist there. Signing and sha512 come from the
// vendored tweetnacl-js, sha256 from the vendored @noble/hashes (vendor/README.md).
//
// Errors follow meshnode's rule: decoders throw only DecodeError (VerifyError for a bad
// signature) for any bytes; every function throws TypeError or RangeError when called
// wrongly (bytes that are not a Uint8Array, a key of the wrong size, fields out of range).
//
// Integers: seq is a Number (at most 2^53-1). Other varints (timestampMs, contentType) are
// Numbers up to Number.MAX_SAFE_INTEGER and BigInts above it, up to 2^64-1; encoders take
// either.

import "./vendor/tweetnacl/nacl-fast.min.js"; // a UMD script: it sets self.nacl
import { sha256 } from "./vendor/noble-hashes/sha2.js";

const nacl = globalThis.nacl;

export const FORMAT_VERSION = 1;
export const DEFAULT_MAX_CONTENT_BYTES = 8192;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER; // 2^53-1, as MAX_SEQ in message.py
export const MAX_VARINT_BYTES = 10;
export const KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

export const ContentType = Object.freeze({ RAW: 0, POST: 1, CONTACT: 2, REPLY: 3, ABOUT: 4 });
export const MAX_NAME_BYTES = 64;
export const MAX_DESCRIPTION_BYTES = 1024;
export const ContactAction = Object.freeze({ FOLLOW: 1, UNFOLLOW: 2, BLOCK: 3, UNBLOCK: 4 });

const VERSION_BITS = FORMAT_VERSION << 4;
const LZ4 = 0x01;
const SHORT = 0x02;
const RESERVED = 0x0c;
const MAX_U64 = (1n << 64n) - 1n;
const MIN_ENTRY_BYTES = 1 + KEY_BYTES + 1 + 1 + 1 + SIGNATURE_BYTES;
const MIN_SHORT_BYTES = 1 + 1 + 1 + SIGNATURE_BYTES;
// The order of the ed25519 base point. libsodium (Python's verifier) rejects a signature
// whose S is not below it; tweetnacl does not, and S + L would verify there too, giving
// one entry a second id. So verifyEntry checks it here.
const ED25519_L = (1n << 252n) + 27742317777372353535851937790883648493n;
// libsodium also refuses a key or an R that is a point of small order (its encodings are
// these seven, ignoring the top, sign bit: the identity, the points of order 2, 4 and 8,
// and the non-canonical spellings of 0 and 1), and a key whose y is not below p. tweetnacl
// checks none of these, so verifyEntry does, and both verifiers give the same verdict.
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];
const ED25519_P = (1n << 255n) - 19n;

/** A point libsodium would refuse as a key (or, for R, as a signature's first half). */
function degenerate(point, isKey) {
  const masked = Uint8Array.from(point);
  masked[31] &= 0x7f;
  const hex = Array.from(masked, (b) => b.toString(16).padStart(2, "0")).join("");
  return SMALL_ORDER.includes(hex) || (isKey && littleEndian(masked) >= ED25519_P);
}

/** Bytes from outside are malformed. */
export class DecodeError extends Error {
  constructor(message) {
    super(message);
    this.name = "DecodeError";
  }
}

/** A signature check failed. */
export class VerifyError extends DecodeError {
  constructor(message) {
    super(message);
    this.name = "VerifyError";
  }
}

/** Unsigned LEB128 of a non-negative safe integer or a BigInt below 2^64. */
export function encodeVarint(value) {
  let rest = toU64(value, "varint");
  const out = [];
  while (rest >= 0x80n) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return Uint8Array.from(out);
}

/** The varint at buf[pos]: [value, position after it]; DecodeError as varint.py raises. */
export function decodeVarint(buf, pos = 0) {
  if (pos >= buf.length) throw new DecodeError("truncated varint");
  let byte = buf[pos];
  if (byte < 0x80) return [byte, pos + 1];
  let value = BigInt(byte & 0x7f);
  let shift = 7n;
  const end = Math.min(buf.length, pos + MAX_VARINT_BYTES);
  let i = pos + 1;
  while (i < end) {
    byte = buf[i];
    value |= BigInt(byte & 0x7f) << shift;
    i += 1;
    if (byte < 0x80) {
      // Only the minimal form is accepted, so every value has one byte form.
      if (byte === 0) throw new DecodeError("varint is not minimally encoded");
      if (value > MAX_U64) throw new DecodeError("varint exceeds 64 bits");
      return [value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value, i];
    }
    shift += 7n;
  }
  if (i - pos >= MAX_VARINT_BYTES) throw new DecodeError("varint longer than 10 bytes");
  throw new DecodeError("truncated varint");
}

/**
 * Encode and sign a new entry; returns its full form (content never compressed).
 *
 * Takes { seed (32 bytes) or keyPair (nacl.sign.keyPair), networkKey (32 bytes), seq,
 * previous (32-byte id, null for seq 1), timestampMs, contentType, content, maxContentBytes }.
 * Throws TypeError/RangeError for arguments Python's create_entry or the box would refuse,
 * including POST content that is not UTF-8 and CONTACT content that does not decode.
 */
export function createEntry({ seed, keyPair, ...fields }) {
  const keys = keyPair ?? nacl.sign.keyPair.fromSeed(bytesOf(seed, "seed", KEY_BYTES));
  bytesOf(keys.secretKey, "secretKey", 2 * KEY_BYTES);
  const { message, body } = entryToSign(keys.publicKey, fields);
  return finishEntry(body, nacl.sign.detached(message, keys.secretKey), fields);
}

/**
 * createEntry with another signer: ``sign(message)`` resolves to the 64-byte ed25519
 * signature of ``message`` by the key whose public half is ``publicKey`` (the page's
 * signer.js uses WebCrypto where the page is a secure context). Ed25519 signatures are
 * deterministic, so every signer makes the same bytes.
 */
export async function createEntryWith(publicKey, sign, fields) {
  const { message, body } = entryToSign(publicKey, fields);
  return finishEntry(body, bytesOf(await sign(message), "signature", SIGNATURE_BYTES), fields);
}

function entryToSign(publicKey, {
  networkKey,
  seq,
  previous = null,
  timestampMs,
  contentType,
  content,
  maxContentBytes = DEFAULT_MAX_CONTENT_BYTES,
}) {
  bytesOf(networkKey, "networkKey", KEY_BYTES);
  if (!Number.isSafeInteger(seq) || seq < 1 || (seq === 1) !== (previous == null)) {
    throw new RangeError("seq 1 has no previous; every later seq needs one (seq < 2**53)");
  }
  bytesOf(content, "content");
  if (content.length > maxContentBytes) {
    throw new RangeError(`content is ${content.length} bytes, limit is ${maxContentBytes}`);
  }
  try {
    checkContent(toU64(contentType, "contentType"), content);
  } catch (error) {
    if (error instanceof DecodeError) throw new RangeError(error.message);
    throw error;
  }
  const body = concat(
    Uint8Array.of(VERSION_BITS),
    bytesOf(publicKey, "publicKey", KEY_BYTES),
    encodeVarint(seq),
    previous == null ? new Uint8Array(0) : bytesOf(previous, "previous", KEY_BYTES),
    encodeVarint(timestampMs),
    encodeVarint(contentType),
    content,
  );
  return { message: concat(networkKey, body), body };
}

function finishEntry(body, signature, { maxContentBytes = DEFAULT_MAX_CONTENT_BYTES }) {
  const raw = concat(body, signature);
  decodeEntry(raw, { maxContentBytes }); // what we send must be what we accept
  return raw;
}

/**
 * Decode a full-form entry's structure (verifyEntry also checks the signature).
 *
 * Returns a frozen { author, seq, previous, timestampMs, contentType, compressed, content
 * (as carried), raw, id, body, signature }. Throws DecodeError for any malformed input.
 */
export function decodeEntry(raw, { maxContentBytes = DEFAULT_MAX_CONTENT_BYTES } = {}) {
  raw = bytesOf(raw, "raw");
  if (raw.length < MIN_ENTRY_BYTES) {
    throw new DecodeError(`entry too short (${raw.length} bytes)`);
  }
  checkHeader(raw[0], false);
  let [seq, pos] = decodeVarint(raw, 1 + KEY_BYTES);
  if (typeof seq !== "number" || seq < 1) throw new DecodeError(`seq ${seq} outside 1..2**53-1`);
  let previous = null;
  if (seq > 1) {
    previous = raw.slice(pos, pos + KEY_BYTES);
    pos += KEY_BYTES;
  }
  const [timestampMs, afterTimestamp] = decodeVarint(raw, pos);
  const [contentType, contentStart] = decodeVarint(raw, afterTimestamp);
  const end = raw.length - SIGNATURE_BYTES;
  if (contentStart > end) throw new DecodeError("entry truncated before its signature");
  const compressed = Boolean(raw[0] & LZ4);
  // Compressed content carries up to 10 bytes of length varint on top of its limit.
  const limit = compressed ? maxContentBytes + 10 : maxContentBytes;
  if (end - contentStart > limit) {
    throw new DecodeError(`content is ${end - contentStart} bytes, limit is ${maxContentBytes}`);
  }
  return Object.freeze({
    author: raw.slice(1, 1 + KEY_BYTES),
    seq,
    previous,
    timestampMs,
    contentType,
    compressed,
    content: raw.slice(contentStart, end),
    raw: raw.slice(),
    id: entryId(raw),
    body: raw.slice(0, end),
    signature: raw.slice(end),
  });
}

/** Entry id: sha256 of the full form, signature included. */
export function entryId(raw) {
  return sha256(bytesOf(raw, "raw"));
}

/** The short form of a decoded entry, for a receiver that holds entry seq-1. */
export function shortForm(entry) {
  const skip =
    1 + KEY_BYTES + encodeVarint(entry.seq).length + (entry.previous ? KEY_BYTES : 0);
  return concat(Uint8Array.of(entry.raw[0] | SHORT), entry.raw.subarray(skip));
}

/** Decode a short form, given what the receiver knows: { author, seq, previous }. */
export function decodeShortEntry(
  buf,
  { author, seq, previous = null, maxContentBytes = DEFAULT_MAX_CONTENT_BYTES },
) {
  buf = bytesOf(buf, "buf");
  if (buf.length < MIN_SHORT_BYTES) {
    throw new DecodeError(`short entry too short (${buf.length} bytes)`);
  }
  checkHeader(buf[0], true);
  if (seq < 1 || (seq === 1) !== (previous == null)) {
    throw new DecodeError("short entry needs the previous id for seq > 1");
  }
  const prefix = concat(
    Uint8Array.of(buf[0] & ~SHORT),
    bytesOf(author, "author", KEY_BYTES),
    encodeVarint(seq),
    previous ?? new Uint8Array(0),
  );
  return decodeEntry(concat(prefix, buf.subarray(1)), { maxContentBytes });
}

/**
 * Decode a full-form entry, check its signature over networkKey || body and that its content
 * fits its type (as feed.check_content does); returns the decoded entry.
 * Throws VerifyError for a bad signature, DecodeError for anything else malformed.
 * Keys and signatures libsodium refuses (S not below L, small-order or non-canonical
 * points) are refused here too, before tweetnacl, which would accept some of them.
 */
export function verifyEntry(raw, networkKey, { maxContentBytes = DEFAULT_MAX_CONTENT_BYTES } = {}) {
  bytesOf(networkKey, "networkKey", KEY_BYTES);
  const entry = decodeEntry(raw, { maxContentBytes });
  const signature = entry.signature;
  const s = littleEndian(signature.subarray(32));
  const signed = concat(networkKey, entry.body);
  if (
    s >= ED25519_L ||
    degenerate(signature.subarray(0, 32), false) ||
    degenerate(entry.author, true) ||
    !nacl.sign.detached.verify(signed, signature, entry.author)
  ) {
    throw new VerifyError("bad signature");
  }
  checkContent(entry.contentType, plainContent(entry, maxContentBytes));
  return entry;
}

/** An entry's content with lz4 undone; DecodeError if it does not decompress. */
export function plainContent(entry, maxContentBytes = DEFAULT_MAX_CONTENT_BYTES) {
  return entry.compressed ? decompressBlock(entry.content, maxContentBytes) : entry.content;
}

/** SSB text form of a feed id: @<base64>.ed25519. */
export function formatFeedId(publicKey) {
  return "@" + base64(bytesOf(publicKey, "publicKey", KEY_BYTES)) + ".ed25519";
}

/** Parse @<base64>.ed25519 (the @ may be omitted); DecodeError if malformed. */
export function parseFeedId(text) {
  const match = /^@?([A-Za-z0-9+/]{43}=)\.ed25519$/.exec(String(text).trim());
  if (!match) throw new DecodeError(`not a feed id (expected @<base64>.ed25519): ${text}`);
  return Uint8Array.from(atob(match[1]), (c) => c.charCodeAt(0));
}

/** SSB text form of an entry id: %<base64>.sha256. */
export function formatMsgId(id) {
  return "%" + base64(bytesOf(id, "id", KEY_BYTES)) + ".sha256";
}

/** POST content: the text as UTF-8, no framing. */
export function encodePost(text) {
  return new TextEncoder().encode(text);
}

/** Decode POST content; DecodeError unless valid UTF-8 (a leading BOM is kept, as Python does). */
export function decodePost(data) {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(data);
  } catch {
    throw new DecodeError("post is not valid UTF-8");
  }
}

/** CONTACT content: action (ContactAction) then the 32-byte target feed id. */
export function encodeContact({ action, target }) {
  if (!Object.values(ContactAction).includes(action)) {
    throw new RangeError(`unknown contact action ${action}`);
  }
  return concat(Uint8Array.of(action), bytesOf(target, "target", KEY_BYTES));
}

/** Decode CONTACT content to { action, target }; DecodeError if malformed. */
export function decodeContact(data) {
  if (data.length !== 1 + KEY_BYTES) {
    throw new DecodeError(`contact content must be ${1 + KEY_BYTES} bytes, got ${data.length}`);
  }
  if (!Object.values(ContactAction).includes(data[0])) {
    throw new DecodeError(`unknown contact action ${data[0]}`);
  }
  return Object.freeze({ action: data[0], target: data.slice(1) });
}

/** REPLY content: the 32-byte id of the entry it answers, then the text as UTF-8. */
export function encodeReply({ parent, text }) {
  return concat(bytesOf(parent, "parent", KEY_BYTES), encodePost(text));
}

/** Decode REPLY content to { parent, text }; DecodeError if malformed. */
export function decodeReply(data) {
  if (data.length < KEY_BYTES) {
    throw new DecodeError(`reply content must start with a ${KEY_BYTES}-byte parent id`);
  }
  return Object.freeze({ parent: data.slice(0, KEY_BYTES), text: decodePost(data.slice(KEY_BYTES)) });
}

/** ABOUT content: name length (1 byte), name, then the description, both UTF-8. */
export function encodeAbout({ name, description = "" }) {
  const nameBytes = encodePost(name);
  const descriptionBytes = encodePost(description);
  if (nameBytes.length < 1 || nameBytes.length > MAX_NAME_BYTES || !name.trim()) {
    throw new RangeError(`a name is 1 to ${MAX_NAME_BYTES} bytes of UTF-8, not blank`);
  }
  if (descriptionBytes.length > MAX_DESCRIPTION_BYTES) {
    throw new RangeError(`a description is at most ${MAX_DESCRIPTION_BYTES} bytes of UTF-8`);
  }
  return concat(Uint8Array.of(nameBytes.length), nameBytes, descriptionBytes);
}

/** Decode ABOUT content to { name, description }; DecodeError if malformed. */
export function decodeAbout(data) {
  const size = data[0];
  if (!data.length || size < 1 || size > MAX_NAME_BYTES || data.length < 1 + size) {
    throw new DecodeError(`about content must start with a name of 1 to ${MAX_NAME_BYTES} bytes`);
  }
  if (data.length - 1 - size > MAX_DESCRIPTION_BYTES) {
    throw new DecodeError(`about description is over ${MAX_DESCRIPTION_BYTES} bytes`);
  }
  return Object.freeze({
    name: decodePost(data.slice(1, 1 + size)),
    description: decodePost(data.slice(1 + size)),
  });
}

/**
 * Inverse of compress.py's compress_block: varint(plain length) || lz4 block.
 * Refuses a claimed length over maxBytes before decoding anything. Throws DecodeError.
 */
export function decompressBlock(blob, maxBytes) {
  const [size, start] = decodeVarint(blob);
  if (typeof size !== "number" || size > maxBytes) {
    throw new DecodeError(`compressed content claims ${size} bytes, limit is ${maxBytes}`);
  }
  return lz4DecodeBlock(blob, start, size);
}

// lz4 block format (lz4's doc/lz4_Block_format.md), decoded into exactly `size` bytes under
// its end-of-block rules: the last 5 bytes are literals, the last match starts at least 12
// bytes before the end, and the block ends with a sequence of literals only. liblz4 (behind
// Python's lz4.block) enforces these too, but tolerates a few endings that break them; so
// whatever this accepts, Python accepts with the same bytes, never the other way round, and
// every block an lz4 compressor writes is accepted (tests/web checks both against python-lz4).
const MIN_MATCH = 4;
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const RUN_MASK = 15;

function lz4DecodeBlock(src, pos, size) {
  const out = new Uint8Array(size);
  if (size === 0) {
    if (src.length - pos === 1 && src[pos] === 0) return out;
    throw new DecodeError("content is not valid lz4");
  }
  let op = 0;
  for (;;) {
    if (pos >= src.length) throw new DecodeError("content is not valid lz4");
    const token = src[pos++];
    let literals = token >> 4;
    if (literals === RUN_MASK) [literals, pos] = lz4Length(src, pos, literals, RUN_MASK);
    const literalEnd = pos + literals;
    // Literals that reach into either tail can only be the block's last sequence.
    if (op + literals > size - MF_LIMIT || literalEnd > src.length - (2 + 1 + LAST_LITERALS)) {
      if (literalEnd !== src.length || op + literals !== size) {
        throw new DecodeError("content is not valid lz4");
      }
      out.set(src.subarray(pos, literalEnd), op);
      return out;
    }
    out.set(src.subarray(pos, literalEnd), op);
    op += literals;
    pos = literalEnd;
    const offset = src[pos] | (src[pos + 1] << 8);
    pos += 2;
    if (offset > op) throw new DecodeError("content is not valid lz4");
    let length = token & 0x0f;
    if (length === RUN_MASK) [length, pos] = lz4Length(src, pos, length, LAST_LITERALS - 1);
    length += MIN_MATCH;
    if (op + length > size - LAST_LITERALS) throw new DecodeError("content is not valid lz4");
    // Byte by byte, as a match may overlap its own output. Offset 0 is outside the format
    // but liblz4 decodes it as zeros; `out` is still zero there, so the copy agrees.
    for (let end = op + length; op < end; op++) out[op] = out[op - offset];
  }
}

// An lz4 length past its 4-bit nibble: add bytes while they are 255; each must lie before
// the last `reserve` input bytes (liblz4's read limits).
function lz4Length(src, pos, length, reserve) {
  let byte;
  do {
    if (pos >= src.length - reserve) throw new DecodeError("content is not valid lz4");
    byte = src[pos++];
    length += byte;
  } while (byte === 255);
  return [length, pos];
}

function checkHeader(header, short) {
  if (header >> 4 !== FORMAT_VERSION) {
    throw new DecodeError(`unknown entry format version ${header >> 4}`);
  }
  if (header & RESERVED) throw new DecodeError("reserved header bits set");
  if (Boolean(header & SHORT) !== short) {
    throw new DecodeError(
      short
        ? "full-form entry where a short one was expected"
        : "short-form entry where a full one was expected",
    );
  }
}

// What feed.check_content requires of plain content: POST is UTF-8, CONTACT decodes.
function checkContent(contentType, plain) {
  const type = Number(contentType); // a BigInt type is never one the box checks
  if (type === ContentType.POST) decodePost(plain);
  else if (type === ContentType.CONTACT) decodeContact(plain);
  else if (type === ContentType.REPLY) decodeReply(plain);
  else if (type === ContentType.ABOUT) decodeAbout(plain);
}

function toU64(value, name) {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
    }
    return BigInt(value);
  }
  if (typeof value !== "bigint") throw new TypeError(`${name} must be a Number or a BigInt`);
  if (value < 0n || value > MAX_U64) throw new RangeError(`${name} must fit 64 bits`);
  return value;
}

function bytesOf(value, name, length) {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`${name} must be ${length} bytes, got ${value.length}`);
  }
  return value;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function littleEndian(bytes) {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  return value;
}

function base64(bytes) {
  return btoa(String.fromCharCode(...bytes));
}
