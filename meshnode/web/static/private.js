// Private messages in the browser: the same bytes as meshnode/secure/private.py (the sealed
// box, its keys, its security argument) and the ENCKEY and private inner payloads of
// meshnode/codec/content.py. The known-answer vectors in tests/vectors/private.json check
// this file in a real browser (tests/web/test_private_js_browser.py).
//
// A phone's key never leaves the phone: the page derives its X25519 key from the person's
// seed and seals and opens here. No WebCrypto (the page is usually not a secure context):
// X25519, HSalsa20 and XSalsa20-Poly1305 come from the vendored tweetnacl-js (loaded by
// codec.js), BLAKE2b from the vendored @noble/hashes (vendor/README.md). Randomness (the
// ephemeral key) is nacl.randomBytes, which is crypto.getRandomValues, present everywhere.
//
// Errors follow codec.js: a message that does not open throws PrivateMessageError (a
// DecodeError) whose message starts "not addressed to this key", "not written with this
// key" or "damaged"; decoders throw only DecodeError; calling wrongly throws TypeError or
// RangeError.

import {
  ContentType,
  DecodeError,
  concat,
  decodePost,
  decodeReply,
  decodeVarint,
  encodeVarint,
} from "./codec.js";
import { blake2b } from "./vendor/noble-hashes/blake2.js";

const nacl = globalThis.nacl; // set by the vendored tweetnacl, which codec.js loads

export const PRIVATE_CONTENT_TYPE = 5; // ContentType.PRIVATE in message.py
export const ENCKEY_CONTENT_TYPE = 6; // ContentType.ENCKEY
export const ENC_KEY_BYTES = 32;
export const EPK_BYTES = 32;
export const SLOT_BYTES = 49; // n (1) || K (32), sealed: + 16
export const BODY_OVERHEAD_BYTES = 16;
export const MAX_RECIPIENTS = 7;
export const MAX_GENERATION = 0xffffffff;
export const MIN_PRIVATE_BYTES = EPK_BYTES + SLOT_BYTES + BODY_OVERHEAD_BYTES;
export const MAX_HOMES = 3;
export const RECIPIENT_TAG_BYTES = 8;

const ascii = (text) => new TextEncoder().encode(text);
const padded = (text, length) => concat(ascii(text), new Uint8Array(length - text.length));
const ENCKEY_PERSON = ascii("meshnode-enckey1");
const SELF_PERSON = ascii("meshnode-pm-self");
const BODY_PERSON = ascii("meshnode-pm-body");
const SLOT_NONCE_PREFIX = padded("meshnode-slot", 23);
const BODY_NONCE = padded("meshnode-body", 24);
const SIGMA = ascii("expand 32-byte k"); // HSalsa20's constant, as crypto_box_beforenm uses it
const ZERO16 = new Uint8Array(16);
// 2^254: a clamped scalar, a multiple of 8, so it sends exactly the low-order points to zero.
const PROBE_SCALAR = concat(new Uint8Array(31), Uint8Array.of(0x40));
const INNER_TYPES = [ContentType.POST, ContentType.REPLY];

/** A private message does not open with this key: not addressed to it, or damaged. */
export class PrivateMessageError extends DecodeError {
  constructor(message) {
    super(message);
    this.name = "PrivateMessageError";
  }
}

/** The X25519 keypair of `generation` derived from a 32-byte ed25519 seed. */
export function encKeypair(seed, generation = 0) {
  bytesOf(seed, "seed", 32);
  if (!Number.isInteger(generation) || generation < 0 || generation > MAX_GENERATION) {
    throw new RangeError(`an encryption key generation is 0..${MAX_GENERATION}`);
  }
  const message = new Uint8Array(4);
  new DataView(message.buffer).setUint32(0, generation, false);
  const secretKey = blake2b(message, { dkLen: 32, key: seed, personalization: ENCKEY_PERSON });
  secretKey[0] &= 248;
  secretKey[31] &= 127;
  secretKey[31] |= 64;
  return Object.freeze({ secretKey, publicKey: encPublicKey(secretKey), generation });
}

/** The X25519 public key of a 32-byte secret key. */
export function encPublicKey(secretKey) {
  return nacl.scalarMult.base(bytesOf(secretKey, "secret key", ENC_KEY_BYTES));
}

/** True for a 32-byte X25519 public key that is not a low-order point. */
export function isUsableEncKey(publicKey) {
  return (
    publicKey instanceof Uint8Array &&
    publicKey.length === ENC_KEY_BYTES &&
    sharedKey(PROBE_SCALAR, publicKey) !== null
  );
}

/** Bytes of a PRIVATE payload for `recipients` slots and an inner of `innerBytes`. */
export function privateSize(recipients, innerBytes) {
  return EPK_BYTES + SLOT_BYTES * recipients + BODY_OVERHEAD_BYTES + innerBytes;
}

/**
 * Encrypt `inner` to 1..7 recipient keys (deduplicated, the author's own dropped).
 * `ephemeralSk` is random unless given (known-answer vectors only: never reuse one).
 * RangeError: no recipient besides the author, more than 7, a wrong length, a low-order key.
 */
export function seal(inner, recipientPks, authorEncSk, { ephemeralSk } = {}) {
  bytesOf(inner, "inner");
  const authorHex = hex(encPublicKey(authorEncSk));
  const unique = new Map();
  for (const pk of recipientPks) {
    bytesOf(pk, "recipient key");
    if (hex(pk) !== authorHex && !unique.has(hex(pk))) unique.set(hex(pk), pk);
  }
  const recipients = [...unique.values()];
  if (recipients.length < 1 || recipients.length > MAX_RECIPIENTS) {
    throw new RangeError(`a private message has 1 to ${MAX_RECIPIENTS} recipients besides you`);
  }
  const eSk =
    ephemeralSk === undefined ? nacl.randomBytes(32) : bytesOf(ephemeralSk, "ephemeral key", 32);
  const epk = encPublicKey(eSk);
  const secret = selfKey(authorEncSk, epk);
  const header = concat(Uint8Array.of(recipients.length), secret);
  const parts = [epk];
  recipients.forEach((pk, index) => {
    bytesOf(pk, "recipient key", ENC_KEY_BYTES);
    const shared = sharedKey(eSk, pk);
    if (shared === null) {
      throw new RangeError(`recipient key ${index + 1} is a low-order point, not a usable key`);
    }
    parts.push(nacl.secretbox(header, slotNonce(index), shared));
  });
  const head = concat(...parts);
  return concat(head, nacl.secretbox(inner, BODY_NONCE, bodyKey(secret, head)));
}

/**
 * Decrypt a PRIVATE payload with an X25519 secret key: { inner, asAuthor }.
 * `asAuthor` true reads only as the author (one's own entries), false only as a recipient
 * (others' entries); undefined tries both. PrivateMessageError when it does not open.
 */
export function openPrivate(payload, encSk, { asAuthor } = {}) {
  bytesOf(payload, "payload");
  bytesOf(encSk, "secret key", ENC_KEY_BYTES);
  if (payload.length < MIN_PRIVATE_BYTES) {
    throw new PrivateMessageError(
      `damaged: a private message is at least ${MIN_PRIVATE_BYTES} bytes, got ${payload.length}`,
    );
  }
  if (asAuthor !== false) {
    const secret = selfKey(encSk, payload.subarray(0, EPK_BYTES));
    for (let count = 1; count <= maxSlots(payload.length); count++) {
      const inner = openBody(payload, count, secret);
      if (inner !== null) return Object.freeze({ inner, asAuthor: true });
    }
    if (asAuthor) throw new PrivateMessageError("not written with this key (or damaged)");
  }
  return Object.freeze({ inner: openAsRecipient(payload, encSk), asAuthor: false });
}

function openAsRecipient(payload, encSk) {
  const shared = sharedKey(encSk, payload.subarray(0, EPK_BYTES));
  if (shared === null) {
    throw new PrivateMessageError("damaged: its ephemeral key is a low-order point");
  }
  for (let index = 0; index < maxSlots(payload.length); index++) {
    const start = EPK_BYTES + SLOT_BYTES * index;
    const slot = payload.subarray(start, start + SLOT_BYTES);
    const header = nacl.secretbox.open(slot, slotNonce(index), shared);
    if (header === null) continue;
    const count = header[0];
    if (!(index < count && count <= maxSlots(payload.length))) {
      throw new PrivateMessageError(`damaged: slot ${index + 1} names ${count} slots`);
    }
    const inner = openBody(payload, count, header.subarray(1));
    if (inner === null) {
      throw new PrivateMessageError("damaged: a slot opened but the message does not");
    }
    return inner;
  }
  throw new PrivateMessageError("not addressed to this key (or its header is damaged)");
}

function maxSlots(payloadBytes) {
  const room = Math.floor((payloadBytes - EPK_BYTES - BODY_OVERHEAD_BYTES) / SLOT_BYTES);
  return Math.max(0, Math.min(MAX_RECIPIENTS, room));
}

/** The inner, if the body after `count` slots opens under the key bound to the head; else null. */
function openBody(payload, count, secret) {
  const end = EPK_BYTES + SLOT_BYTES * count;
  const key = bodyKey(secret, payload.subarray(0, end));
  return nacl.secretbox.open(payload.subarray(end), BODY_NONCE, key);
}

/** K: the secret every slot carries, which the author derives again from epk. */
function selfKey(authorEncSk, epk) {
  const key = bytesOf(authorEncSk, "secret key", ENC_KEY_BYTES);
  return blake2b(epk, { dkLen: 32, key, personalization: SELF_PERSON });
}

/** B: the body key, bound to epk and every slot. */
function bodyKey(secret, head) {
  return blake2b(head, { dkLen: 32, key: secret, personalization: BODY_PERSON });
}

function slotNonce(index) {
  return concat(SLOT_NONCE_PREFIX, Uint8Array.of(index));
}

/** crypto_box_beforenm (X25519, then HSalsa20), or null when X25519 gives all zero. */
function sharedKey(secretKey, publicKey) {
  const point = nacl.scalarMult(secretKey, publicKey);
  if (point.every((byte) => byte === 0)) return null;
  const key = new Uint8Array(32);
  nacl.lowlevel.crypto_core_hsalsa20(key, ZERO16, point, SIGMA);
  return key;
}

/** ENCKEY content: key (32) || generation (varint) || 0..3 distinct home feed ids. */
export function encodeEncKey({ key, generation = 0, homes = [] }) {
  if (!isUsableEncKey(key)) {
    throw new RangeError("an encryption key is a 32-byte X25519 key, not a low-order point");
  }
  if (!Number.isInteger(generation) || generation < 0 || generation > MAX_GENERATION) {
    throw new RangeError(`an encryption key generation is 0..${MAX_GENERATION}`);
  }
  homes.forEach((home) => bytesOf(home, "home", 32));
  if (homes.length > MAX_HOMES || new Set(homes.map(hex)).size !== homes.length) {
    throw new RangeError(`an encryption key names 0 to ${MAX_HOMES} distinct homes`);
  }
  return concat(key, encodeVarint(generation), ...homes);
}

/** Decode ENCKEY content to { key, generation, homes }; DecodeError if malformed. */
export function decodeEncKey(data) {
  const key = data.slice(0, ENC_KEY_BYTES);
  if (!isUsableEncKey(key)) {
    throw new DecodeError("enckey content must start with a usable 32-byte X25519 key");
  }
  const [generation, end] = decodeVarint(data, ENC_KEY_BYTES);
  if (generation > MAX_GENERATION) {
    throw new DecodeError(`enckey generation ${generation} is over ${MAX_GENERATION}`);
  }
  const rest = data.slice(end);
  if (rest.length % 32 || rest.length > MAX_HOMES * 32) {
    throw new DecodeError(
      `enckey homes must be 0 to ${MAX_HOMES} feed ids, got ${rest.length} bytes`,
    );
  }
  const homes = [];
  for (let at = 0; at < rest.length; at += 32) homes.push(rest.slice(at, at + 32));
  if (new Set(homes.map(hex)).size !== homes.length) {
    throw new DecodeError("enckey names a home twice");
  }
  return Object.freeze({ key, generation: Number(generation), homes: Object.freeze(homes) });
}

/** The 8-byte tag that names a recipient inside a private message. */
export function recipientTag(feedId) {
  return bytesOf(feedId, "feed id", 32).slice(0, RECIPIENT_TAG_BYTES);
}

/** The inner of a PRIVATE payload: content type, recipient tags, then the POST/REPLY payload. */
export function encodePrivateInner({ contentType, recipientTags, payload }) {
  if (!INNER_TYPES.includes(contentType)) {
    throw new RangeError("a private message holds a POST or a REPLY");
  }
  if (
    recipientTags.length < 1 ||
    recipientTags.length > MAX_RECIPIENTS ||
    recipientTags.some((tag) => !(tag instanceof Uint8Array) || tag.length !== RECIPIENT_TAG_BYTES)
  ) {
    throw new RangeError(`a private message names 1 to ${MAX_RECIPIENTS} 8-byte recipient tags`);
  }
  const head = Uint8Array.of(contentType, recipientTags.length);
  return concat(head, ...recipientTags, bytesOf(payload, "payload"));
}

/** Decode an opened inner to { contentType, recipientTags, payload }; DecodeError if malformed. */
export function decodePrivateInner(data) {
  const count = data[1];
  if (data.length < 2 || !INNER_TYPES.includes(data[0]) || count < 1 || count > MAX_RECIPIENTS) {
    throw new DecodeError(
      `private inner must start with POST or REPLY and 1 to ${MAX_RECIPIENTS} recipients`,
    );
  }
  const end = 2 + RECIPIENT_TAG_BYTES * count;
  if (data.length < end) throw new DecodeError("private inner is shorter than its recipient tags");
  const payload = data.slice(end);
  if (data[0] === ContentType.POST) decodePost(payload);
  else decodeReply(payload);
  const recipientTags = [];
  for (let at = 2; at < end; at += RECIPIENT_TAG_BYTES) {
    recipientTags.push(data.slice(at, at + RECIPIENT_TAG_BYTES));
  }
  Object.freeze(recipientTags);
  return Object.freeze({ contentType: data[0], recipientTags, payload });
}

function bytesOf(value, name, length) {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`${name} must be ${length} bytes, got ${value.length}`);
  }
  return value;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
