import v8 from 'node:v8';

/**
 * Keep WebAssembly on V8's baseline compiler (Liftoff) in a process that
 * serves the edge.
 *
 * undici parses every upstream answer with llhttp, compiled to WebAssembly.
 * Once the parser is hot, V8 compiles it again with its optimising compiler
 * (TurboFan). For llhttp's one large state-machine function, that compile took
 * about 35 MB of malloc'd memory for a third of a second, seen once, under the
 * first load. It was the whole of the edge's high-water mark above its working
 * size: 185 MB against 150–157 MB, for a 50,000-route edge (bench/README.md).
 * With Liftoff alone the high-water mark was 156–165 MB. CPU per request was
 * the same within the noise: parsing is 2–3% of the edge's time.
 *
 * The flag belongs to the process, so it covers worker threads too. It must be
 * set before the first module is compiled.
 */
export function baselineWasmOnly(): void {
  v8.setFlagsFromString('--liftoff-only');
}
