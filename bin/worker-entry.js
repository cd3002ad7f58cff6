// What the worker threads of `aiqso edge` run (bin/edge-supervisor.js): one tick object kept first
// (bin/tick-shape.js), before any of the CLI's modules load, then the bundled CLI named in
// `workerData.entry`.
import './tick-shape.js';
import { workerData } from 'node:worker_threads';

await import(workerData.entry);
