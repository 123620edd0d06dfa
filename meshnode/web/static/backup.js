// A key's backup: its 32-byte seed as 24 BIP-39 recovery words, and a QR code of a link
// that restores it. BIP-39 writes 256 bits and an 8-bit checksum (the first byte of their
// sha256) as 24 indexes of 11 bits into its 2,048-word list; the list and sha256 are the
// vendored ones (vendor/README.md). The link carries the words in its fragment, which a
// browser never sends to the box: scanning it with a phone's camera opens this page, which
// offers to restore.

import { wordlist } from "./vendor/scure-bip39/english.js";
import { sha256 } from "./vendor/noble-hashes/sha2.js";
import { qrcode } from "./vendor/qrcode-generator/qrcode.mjs";

export const WORDS = 24;

/** Words that are not a backup: ``key`` names the message in the page's catalogue. */
export class BackupError extends Error {
  constructor(key, values, message) {
    super(message);
    this.name = "BackupError";
    this.key = key;
    this.values = values;
  }
}
const INDEX = new Map(wordlist.map((word, i) => [word, i]));

/** The 24 recovery words of a 32-byte seed. */
export function seedToWords(seed) {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new RangeError("a seed is 32 bytes");
  let bits = 0n;
  for (const byte of seed) bits = (bits << 8n) | BigInt(byte);
  bits = (bits << 8n) | BigInt(sha256(seed)[0]);
  const words = [];
  for (let i = WORDS - 1; i >= 0; i -= 1) words.push(wordlist[Number((bits >> BigInt(11 * i)) & 2047n)]);
  return words;
}

/** The seed that 24 recovery words write; Error naming the problem when they do not. */
export function wordsToSeed(text) {
  const words = String(text).toLowerCase().split(/[\s,.-]+/).filter(Boolean);
  if (words.length !== WORDS) {
    const values = { count: words.length };
    throw new BackupError("restore.count", values, `a backup is ${WORDS} words; these are ${words.length}`);
  }
  let bits = 0n;
  for (const [i, word] of words.entries()) {
    const index = INDEX.get(word);
    if (index === undefined) {
      const values = { number: i + 1, word };
      throw new BackupError("restore.unknown", values, `word ${i + 1}, "${word}", is not one of the backup words`);
    }
    bits = (bits << 11n) | BigInt(index);
  }
  const seed = new Uint8Array(32);
  for (let i = 0; i < 32; i += 1) seed[i] = Number((bits >> BigInt(8 * (32 - i))) & 255n);
  if (Number(bits & 255n) !== sha256(seed)[0]) {
    throw new BackupError("restore.checksum", {}, "these words do not check out: a word is wrong or out of order");
  }
  return seed;
}

/** A data: URL of a QR code for ``text`` (a GIF; the page's policy allows data: images). */
export function qrDataUrl(text) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  return qr.createDataURL(4, 8);
}
