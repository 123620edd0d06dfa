// Contacts' keys for private messages, pinned in this browser on first use (trust on first
// use, as SSH does with hosts): a key that later differs from the pinned one is a change
// the person must see and accept before anything more is sealed to it.

const PINS = "meshnode.pins"; // feed id -> { key (hex), generation }: each contact's first key

function pins() {
  return JSON.parse(localStorage.getItem(PINS) || "{}");
}

/** Pin the current key of each of ``feeds`` with none pinned (keysOf: feed id -> { keyHex, generation }). */
export function pinFirstUse(feeds, keysOf) {
  const pinned = pins();
  const fresh = feeds.filter((feed) => keysOf.has(feed) && !pinned[feed]);
  for (const feed of fresh) {
    pinned[feed] = { key: keysOf.get(feed).keyHex, generation: keysOf.get(feed).generation };
  }
  if (fresh.length) localStorage.setItem(PINS, JSON.stringify(pinned));
}

/** Feeds among ``feeds`` whose current key is not the one pinned. */
export function changedKeys(feeds, keysOf) {
  const pinned = pins();
  return feeds.filter((feed) => pinned[feed] && keysOf.get(feed)?.keyHex !== pinned[feed].key);
}

/** Pin ``feed``'s current key in place of the one pinned before. */
export function acceptKey(feed, keysOf) {
  const pinned = pins();
  pinned[feed] = { key: keysOf.get(feed).keyHex, generation: keysOf.get(feed).generation };
  localStorage.setItem(PINS, JSON.stringify(pinned));
}
