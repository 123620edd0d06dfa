// How this phone signs its entries. Where the page is a secure context (HTTPS with the
// community's certificate, or localhost) and the browser's WebCrypto has Ed25519, the
// browser's own implementation signs; elsewhere (plain HTTP at a LAN address, the usual
// case, where crypto.subtle does not exist) the vendored, audited tweetnacl does. Ed25519
// signatures are deterministic, so both make the same bytes for the same entry.

import { concat } from "./codec.js";

const nacl = globalThis.nacl; // set by the vendored tweetnacl, which codec.js loads
// A PKCS #8 envelope for a raw Ed25519 seed (RFC 8410): SEQUENCE { version 0,
// AlgorithmIdentifier { 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }.
const PKCS8_ED25519 = Uint8Array.of(
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
);

/** { kind: "webcrypto" | "tweetnacl", publicKey, sign(message) -> Promise<signature> }. */
export async function makeSigner(seed) {
  const keys = nacl.sign.keyPair.fromSeed(seed);
  const fallback = {
    kind: "tweetnacl",
    publicKey: keys.publicKey,
    sign: async (message) => nacl.sign.detached(message, keys.secretKey),
  };
  if (!globalThis.isSecureContext || !globalThis.crypto?.subtle) return fallback;
  try {
    const key = await crypto.subtle.importKey(
      "pkcs8", concat(PKCS8_ED25519, seed), { name: "Ed25519" }, false, ["sign"],
    );
    const sign = async (message) => new Uint8Array(await crypto.subtle.sign("Ed25519", key, message));
    // Trust the browser's signer only once it signs as tweetnacl does for this key.
    const probe = new TextEncoder().encode("meshnode signer check");
    if (!nacl.sign.detached.verify(probe, await sign(probe), keys.publicKey)) return fallback;
    return { kind: "webcrypto", publicKey: keys.publicKey, sign };
  } catch {
    return fallback; // a browser without Ed25519 in WebCrypto
  }
}
