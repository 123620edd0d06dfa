// The page's service worker. Browsers run one only where the page is a secure context:
// over HTTPS with a community's own certificate authority ([web] tls_cert, tls_key), never
// at a LAN address over plain HTTP. It keeps a copy of the page itself, so the page opens
// with no box in reach and shows this phone's key and the posts waiting in its outbox.
//
// The page and its files go to the box first, so a box with a newer page serves it at
// once, and come from the copy only when the box does not answer. /api/ is never kept:
// what the box holds is live, and the page keeps its own state (its key, its feed's head,
// its outbox) in localStorage. server.py serves this file at /sw.js, so that its scope is
// the whole page (a worker controls only the paths under its own folder).

const PREFIX = "meshnode-page-";
const CACHE = `${PREFIX}v4`; // a new version when SHELL changes; the older copies go
const NETWORK_WAIT_MS = 4000; // then the copy: a box that is away may never refuse

// The page, every module it imports at start, and the backup's and the inbox's modules
// (imported when the backup or the inbox is opened, which may be while the box is away). tests/web/test_tls.py checks
// that every module the page imports is here.
const SHELL = [
  "/",
  "/static/style.css",
  "/static/app.js",
  "/static/codec.js",
  "/static/signer.js",
  "/static/i18n.js",
  "/static/i18n/en.json",
  "/static/i18n/fr.json",
  "/static/i18n/es.json",
  "/static/backup.js",
  "/static/inbox.js",
  "/static/opener.js",
  "/static/pins.js",
  "/static/private.js",
  "/static/vendor/tweetnacl/nacl-fast.min.js",
  "/static/vendor/noble-hashes/sha2.js",
  "/static/vendor/noble-hashes/_md.js",
  "/static/vendor/noble-hashes/_u64.js",
  "/static/vendor/noble-hashes/utils.js",
  "/static/vendor/noble-hashes/blake2.js",
  "/static/vendor/noble-hashes/_blake.js",
  "/static/vendor/scure-bip39/english.js",
  "/static/vendor/qrcode-generator/qrcode.mjs",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()), // network first: a newer worker may take over at once
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => names.filter((name) => name.startsWith(PREFIX) && name !== CACHE))
      .then((old) => Promise.all(old.map((name) => caches.delete(name))))
      .then(() => self.clients.claim()), // the page that registered it is kept from now on
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/api/")) return; // live, never kept: the browser fetches it
  if (request.mode === "navigate" && url.pathname === "/") {
    event.respondWith(networkFirst(request, "/")); // "/#restore=…" and "/?…" are the page too
  } else if (url.pathname.startsWith("/static/")) {
    event.respondWith(networkFirst(request, url.pathname));
  }
});

/** The box's answer (kept for next time), or the copy when the box fails or is slow. */
async function networkFirst(request, key) {
  const cache = await caches.open(CACHE);
  const network = fetch(request).then(async (response) => {
    if (response.ok) await cache.put(key, response.clone()).catch(() => {});
    return response;
  });
  const kept = await cache.match(key);
  if (!kept) return network; // never kept (a first visit): the box's answer, or its error
  const late = new Promise((resolve) => setTimeout(resolve, NETWORK_WAIT_MS, kept));
  return Promise.race([network.catch(() => kept), late]);
}
