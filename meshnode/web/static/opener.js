// Trying private entries with this phone's keys: here, or in workers that share a batch.
//
// Every private entry the box holds costs a reader one X25519 multiplication (about a
// millisecond in a phone's JavaScript), so an inbox among a thousand entries spreads them
// over a few workers, one per core, and a phone with several cores reads that much sooner.
// The same file is the workers' module: run as a worker, it answers batches.

import { decodeEntry, formatFeedId, plainContent } from "./codec.js";
import { PRIVATE_CONTENT_TYPE, openPrivate } from "./private.js";

const MAX_WORKERS = 4;
const WORKER_MIN = 64; // a batch smaller than this is tried here: a worker's start costs more

/** The inner of ``raw`` (a full-form entry) if one of ``secretKeys`` opens it, else null. */
export function openEntry(raw, secretKeys, me) {
  let entry;
  try {
    entry = decodeEntry(raw);
  } catch {
    return null; // damaged: the box stored it, but it is nothing this phone can read
  }
  if (entry.contentType !== PRIVATE_CONTENT_TYPE) return null;
  const asAuthor = formatFeedId(entry.author) === me; // each way costs: try only one
  for (const secretKey of secretKeys) {
    try {
      return openPrivate(plainContent(entry), secretKey, { asAuthor }).inner;
    } catch (error) {
      if (error.name !== "PrivateMessageError") return null;
    }
  }
  return null; // for someone else: most are
}

let workers = null;

/** Start the workers early, so that their modules load while the inbox fetches. */
export function warmUp() {
  if (workers !== null) return;
  const count = Math.min(MAX_WORKERS, navigator.hardwareConcurrency || 1);
  try {
    workers = count > 1
      ? Array.from({ length: count }, () => new Worker(new URL(import.meta.url), { type: "module" }))
      : [];
  } catch {
    workers = []; // no workers here: every entry is tried in the page
  }
}

let turn = Promise.resolve(); // one batch at a time: each worker answers one question

/** For each of ``raws``, its inner or null, tried in the workers when it pays. */
export function openAll(raws, secretKeys, me) {
  const result = turn.then(() => openNow(raws, secretKeys, me));
  turn = result.catch(() => {});
  return result;
}

async function openNow(raws, secretKeys, me) {
  warmUp();
  if (raws.length >= WORKER_MIN && workers.length) {
    try {
      const share = Math.ceil(raws.length / workers.length);
      const parts = await Promise.all(workers.map((worker, i) => ask(worker, {
        raws: raws.slice(i * share, (i + 1) * share),
        secretKeys,
        me,
      })));
      return parts.flat();
    } catch {
      workers = []; // a worker that fails once is not asked again
    }
  }
  return raws.map((raw) => openEntry(raw, secretKeys, me));
}

function ask(worker, batch) {
  return new Promise((resolve, reject) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.onerror = (event) => reject(new Error(event.message || "the worker failed"));
    worker.postMessage(batch);
  });
}

if (typeof WorkerGlobalScope !== "undefined" && globalThis instanceof WorkerGlobalScope) {
  globalThis.onmessage = ({ data }) => {
    globalThis.postMessage(data.raws.map((raw) => openEntry(raw, data.secretKeys, data.me)));
  };
}
