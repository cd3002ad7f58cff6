import { createHook } from 'node:async_hooks';

/**
 * Keep one of Node's next-tick objects alive for the life of this thread, so
 * that V8 never collects their hidden class.
 *
 * `process.nextTick` (called several times for every proxied request by
 * node:http and streams) builds each of its queue entries from one object
 * literal whose first keys are symbols. V8 remembers, per key of that literal,
 * the hidden class (map) the object had before the key was added, weakly. A
 * thread that is idle when a full collection runs (the edge at night, an edge
 * waiting for its database at start, V8's memory reducer after a burst) has
 * no such object alive, so those classes are collected; the next tick object
 * gets new ones, the remembered class no longer matches, and V8 marks those
 * keys megamorphic for good. From then on every tick object is built by a
 * runtime call: measured with `perf` on a forwarding edge pinned to one core,
 * 4–6 µs of CPU per request (7–10% of it), on the main thread after a minute
 * idle, and in a worker thread where a collection ran while it started. A tick
 * object kept alive keeps its class, and through its back pointers the classes
 * of every step of the literal, so the keys stay monomorphic and optimised code
 * builds the object inline.
 *
 * The object is caught with an async hook enabled for one `nextTick` call
 * (the hook sees each tick object as its resource), then disabled: nothing
 * is left running. Imported first by bin/aiqso.js (the main thread) and by
 * bin/worker-entry.js (the worker threads of `aiqso edge`), before any of the
 * CLI's modules load: so it runs before the thread has been idle.
 */
/** @type {object | undefined} */
let kept;

function keepTickObjectShape() {
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject') kept = resource;
    },
  }).enable();
  try {
    process.nextTick(noop);
  } finally {
    hook.disable();
  }
}

function noop() {}

keepTickObjectShape();
