import { constants } from 'node:fs';
import { open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { badRequest } from '../../core/errors.ts';
import { MAX_LOG_LINES, type LogOptions, type ServiceLogs } from '../../core/compute.ts';

/**
 * Reading a workload's log files from the host: the last lines with a bounded
 * tail (never more than TAIL_BYTES of a file read back, however large it is),
 * and following what is appended, across the file being truncated or replaced
 * (rotation). Files are opened so that nothing in the container can point the
 * platform at another file: no symlink is followed anywhere on the path (the
 * opened file must be the path itself), and only regular files are read.
 */

/** At most this much of the end of one file is read for its last lines. */
export const TAIL_BYTES = 1024 * 1024;
/** A longer line is cut (its start kept) and ends with "…". */
export const MAX_LINE_CHARS = 8 * 1024;
/** At most this much is read from one file per poll when following; more is skipped and said so. */
const FOLLOW_BYTES = 1024 * 1024;
const CHUNK = 64 * 1024;
const DEFAULT_LINES = 100;

/** A log file: `rel` inside `root`, a directory of the platform's own. */
export interface LogFile {
  root: string;
  rel: string;
}

/** The `lines` option checked: an integer from 0 to MAX_LOG_LINES. */
export function logLineCount(options: LogOptions): number {
  const n = options.lines ?? DEFAULT_LINES;
  if (!Number.isInteger(n) || n < 0 || n > MAX_LOG_LINES)
    throw badRequest(`lines must be a whole number from 0 to ${MAX_LOG_LINES}`, { lines: n });
  return n;
}

/** Open `file` for reading, or undefined when it is not there, not a regular file, or reached through a symlink. */
export async function openInside(file: LogFile): Promise<FileHandle | undefined> {
  const root = await realpath(file.root).catch(() => undefined);
  if (!root) return undefined;
  const want = path.join(root, file.rel);
  if (!want.startsWith(`${root}${path.sep}`)) return undefined;
  let fh: FileHandle;
  try {
    fh = await open(want, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    // O_NOFOLLOW covers the last component; the kernel's name for what was opened covers the rest.
    const opened = await readlink(`/proc/self/fd/${fh.fd}`);
    if (opened === want && (await fh.stat()).isFile()) return fh;
  } catch {
    // Treated as not there.
  }
  await fh.close();
  return undefined;
}

function cut(line: Buffer): string {
  const text = line.toString('utf8').replace(/\r$/, '');
  return text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}…` : text;
}

function splitLines(data: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = data.indexOf(0x0a); at !== -1; at = data.indexOf(0x0a, from)) {
    parts.push(data.subarray(from, at));
    from = at + 1;
  }
  parts.push(data.subarray(from));
  return parts;
}

interface Tail {
  lines: string[];
  truncated: boolean;
  /** Where following starts: the end of the last complete line (an unfinished one is followed, not shown twice). */
  end: number;
}

/** The last `n` lines of an open file, reading back at most TAIL_BYTES. */
async function lastLines(fh: FileHandle, n: number, keepUnfinished: boolean): Promise<Tail> {
  const { size } = await fh.stat();
  const chunks: Buffer[] = [];
  let pos = size;
  let newlines = 0;
  while (pos > 0 && size - pos < TAIL_BYTES && newlines <= n) {
    const len = Math.min(CHUNK, pos, TAIL_BYTES - (size - pos));
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, pos - len);
    pos -= len;
    chunks.unshift(buf.subarray(0, bytesRead));
    for (let at = buf.indexOf(0x0a); at !== -1 && at < bytesRead; at = buf.indexOf(0x0a, at + 1)) newlines++;
  }
  const parts = splitLines(Buffer.concat(chunks));
  const unfinished = parts.pop()!;
  let end = size - unfinished.length;
  if (keepUnfinished && unfinished.length) {
    parts.push(unfinished);
    end = size;
  }
  let truncated = false;
  // The first part read began somewhere inside a line: only its end is there.
  if (pos > 0 && parts.length > 1) {
    parts.shift();
    truncated = true;
  }
  if (parts.length > n) {
    parts.splice(0, parts.length - n);
    truncated = true;
  }
  return { lines: parts.map(cut), truncated: truncated || pos > 0, end };
}

interface Followed {
  file: LogFile;
  fh?: FileHandle;
  ino?: number;
  pos: number;
  unfinished: Buffer;
}

/** What was appended to one file since the last poll, as complete lines; reopens a replaced file. */
async function poll(f: Followed, out: string[], signal: AbortSignal): Promise<void> {
  if (!f.fh) {
    const fh = await openInside(f.file);
    if (!fh) return;
    if (signal.aborted) return void (await fh.close());
    f.fh = fh;
    f.ino = (await f.fh.stat()).ino;
    f.pos = 0;
    f.unfinished = Buffer.alloc(0);
  }
  const fh = f.fh;
  const { size } = await fh.stat();
  if (size < f.pos) {
    // Truncated in place (copytruncate): start again from its beginning.
    f.pos = 0;
    f.unfinished = Buffer.alloc(0);
  }
  if (size - f.pos > FOLLOW_BYTES) {
    out.push(`… ${size - f.pos - FOLLOW_BYTES} bytes of output skipped (written faster than they are shown)`);
    f.pos = size - FOLLOW_BYTES;
    f.unfinished = Buffer.alloc(0);
  }
  while (f.pos < size) {
    const buf = Buffer.alloc(Math.min(CHUNK, size - f.pos));
    const { bytesRead } = await fh.read(buf, 0, buf.length, f.pos);
    if (bytesRead === 0) break;
    f.pos += bytesRead;
    const parts = splitLines(Buffer.concat([f.unfinished, buf.subarray(0, bytesRead)]));
    f.unfinished = parts.pop()!;
    out.push(...parts.map(cut));
    if (f.unfinished.length > MAX_LINE_CHARS * 4) {
      out.push(cut(f.unfinished));
      f.unfinished = Buffer.alloc(0);
    }
  }
  // Replaced (rotated) or removed: once what the old file held is read, the new one is read from its start.
  const now = await stat(path.join(f.file.root, f.file.rel)).catch(() => undefined);
  if (!now || now.ino !== f.ino) {
    if (f.unfinished.length) out.push(cut(f.unfinished));
    f.fh = undefined;
    await fh.close();
  }
}

async function* follow(
  files: Followed[],
  signal: AbortSignal,
  pollMs: number,
  close: () => Promise<void>,
): AsyncGenerator<string[]> {
  try {
    while (!signal.aborted) {
      const out: string[] = [];
      try {
        for (const f of files) await poll(f, out, signal);
      } catch (err) {
        // Files closed by the abort under a read: the end, not a failure.
        if (signal.aborted) return;
        throw err;
      }
      if (out.length) yield out;
      try {
        await sleep(pollMs, undefined, { signal });
      } catch {
        return;
      }
    }
  } finally {
    await close();
  }
}

/**
 * The last lines of `files` (a workload's outputs, the one written last
 * shown last), and with `follow` everything appended to any of them, polled
 * every `pollMs`. Following without a signal is refused: it would never end.
 */
export async function tailLogs(files: LogFile[], options: LogOptions, pollMs = 250): Promise<ServiceLogs> {
  const n = logLineCount(options);
  if (options.follow && !options.signal) throw new Error('following a log needs a signal that ends it');
  const opened: { followed: Followed; tail?: Tail; mtime: number }[] = [];
  try {
    for (const file of files) {
      const fh = await openInside(file);
      const st = fh ? await fh.stat() : undefined;
      const tail = fh ? await lastLines(fh, n, !options.follow) : undefined;
      opened.push({
        followed: { file, fh, ino: st?.ino, pos: tail?.end ?? 0, unfinished: Buffer.alloc(0) },
        tail,
        mtime: st?.mtimeMs ?? 0,
      });
    }
  } catch (err) {
    for (const o of opened) await o.followed.fh?.close();
    throw err;
  }
  // Without timestamps the files cannot be interleaved: the one written to last comes last.
  const byAge = [...opened].sort((a, b) => a.mtime - b.mtime);
  const all = byAge.flatMap((o) => o.tail?.lines ?? []);
  const lines = all.slice(Math.max(0, all.length - n));
  const truncated = lines.length < all.length || byAge.some((o) => o.tail?.truncated);
  if (!options.follow || !options.signal) {
    for (const o of opened) await o.followed.fh?.close();
    return { lines, truncated };
  }
  const followed = opened.map((o) => o.followed);
  const close = async () => {
    for (const f of followed) {
      const fh = f.fh;
      f.fh = undefined;
      await fh?.close().catch(() => undefined);
    }
  };
  // The abort closes the files even when no one ever iterates `follow`.
  const signal = options.signal;
  if (signal.aborted) await close();
  else signal.addEventListener('abort', () => void close(), { once: true });
  return { lines, truncated, follow: follow(followed, signal, pollMs, close) };
}
