import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { DomainError } from '../core/errors.ts';

/**
 * The listing of a data snapshot's tar archive (gzip-compressed or not): how
 * many entries it holds and the bytes of its regular files. Read as a stream,
 * header by header, skipping the file contents: nothing is unpacked or kept,
 * so an archive dumped from restic is checked without a plaintext copy on
 * disk. Pax extended headers (a size above 8 GiB, long names) and GNU long
 * names are read, not counted.
 */
export interface ArchiveListing {
  files: number;
  bytes: number;
}

const BLOCK = 512;

class TarCounter {
  files = 0;
  bytes = 0;
  ended = false;
  #header = Buffer.alloc(0);
  /** Bytes of the current entry's content (and padding) still to skip. */
  #skip = 0;
  /** A pax header's content being read (its records may change the next entry's size). */
  #pax: { want: number; chunks: Buffer[]; got: number; global: boolean } | null = null;
  #paxSize: number | null = null;

  write(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.ended) {
      if (this.#pax) {
        const take = Math.min(this.#pax.want - this.#pax.got, chunk.length - at);
        this.#pax.chunks.push(chunk.subarray(at, at + take));
        this.#pax.got += take;
        at += take;
        if (this.#pax.got === this.#pax.want) {
          const text = Buffer.concat(this.#pax.chunks).toString('utf8');
          if (!this.#pax.global) {
            const size = /(?:^|\n)\d+ size=(\d+)\n/.exec(text);
            if (size) this.#paxSize = Number(size[1]);
          }
          this.#pax = null;
        }
        continue;
      }
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, chunk.length - at);
        this.#skip -= take;
        at += take;
        continue;
      }
      const take = Math.min(BLOCK - this.#header.length, chunk.length - at);
      this.#header = Buffer.concat([this.#header, chunk.subarray(at, at + take)]);
      at += take;
      if (this.#header.length === BLOCK) {
        const header = this.#header;
        this.#header = Buffer.alloc(0);
        this.#entry(header);
      }
    }
  }

  #entry(header: Buffer): void {
    if (header.every((b) => b === 0)) {
      // The end-of-archive marker (two zero blocks; the first is enough to stop).
      this.ended = true;
      return;
    }
    if (header.subarray(257, 262).toString('latin1') !== 'ustar' && !validChecksum(header))
      throw new DomainError('validation_failed', 'not a tar archive (a header block is damaged)');
    const type = String.fromCharCode(header[156]!);
    let size = headerSize(header);
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'g') {
      // The records are read (with their padding: the text ends in NULs the parse ignores).
      if (padded > 0) this.#pax = { want: padded, chunks: [], got: 0, global: type === 'g' };
      return;
    }
    if (type === 'L' || type === 'K') {
      this.#skip = padded;
      return;
    }
    if (this.#paxSize !== null) {
      size = this.#paxSize;
      this.#paxSize = null;
    }
    this.files += 1;
    // Regular files ('0', NUL, contiguous '7') carry content; links, directories, devices none.
    if (type === '0' || type === '\0' || type === '7') {
      this.bytes += size;
      this.#skip = Math.ceil(size / BLOCK) * BLOCK;
    }
  }
}

function headerSize(header: Buffer): number {
  const field = header.subarray(124, 136);
  if (field[0]! & 0x80) {
    // GNU base-256: a big-endian number in the remaining bytes.
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    return n;
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  return text ? parseInt(text, 8) : 0;
}

function validChecksum(header: Buffer): boolean {
  const stored = parseInt(header.subarray(148, 156).toString('latin1').replace(/\0.*$/s, '').trim(), 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return sum === stored;
}

/**
 * A writable that lists the tar archive written into it (gunzipping first
 * when it starts with gzip's magic); `listing` settles once it is finished.
 */
export function archiveLister(): { sink: Writable; listing: Promise<ArchiveListing> } {
  const counter = new TarCounter();
  let gunzip: ReturnType<typeof createGunzip> | null = null;
  let decided = false;
  let resolveListing!: (l: ArchiveListing) => void;
  let rejectListing!: (err: unknown) => void;
  const listing = new Promise<ArchiveListing>((resolve, reject) => {
    resolveListing = resolve;
    rejectListing = reject;
  });
  listing.catch(() => undefined);
  const feed = (chunk: Buffer) => {
    try {
      counter.write(chunk);
    } catch (err) {
      rejectListing(err);
      gunzip?.destroy();
    }
  };
  const done = () => {
    if (!counter.ended && counter.files === 0)
      rejectListing(new DomainError('validation_failed', 'the archive is empty or not a tar archive'));
    else resolveListing({ files: counter.files, bytes: counter.bytes });
  };
  const sink = new Writable({
    write(chunk: Buffer, _enc, callback) {
      if (!decided) {
        decided = true;
        if (chunk[0] === 0x1f && chunk[1] === 0x8b) {
          gunzip = createGunzip();
          gunzip.on('data', feed);
          gunzip.on('error', (err) => {
            const failure = new DomainError('validation_failed', `the archive's gzip stream: ${err.message}`);
            rejectListing(failure);
            sink.destroy(failure);
          });
        }
      }
      if (!gunzip) {
        feed(chunk);
        return callback();
      }
      // Backpressure through the gunzip stream.
      if (gunzip.write(chunk)) callback();
      else gunzip.once('drain', () => callback());
    },
    final(callback) {
      if (!gunzip) {
        done();
        return callback();
      }
      gunzip.once('end', () => {
        done();
        callback();
      });
      gunzip.end();
    },
  });
  return { sink, listing };
}

/** The listing of the archive in `file`. */
export async function listArchiveFile(file: string): Promise<ArchiveListing> {
  const { sink, listing } = archiveLister();
  await pipeline(createReadStream(file), sink);
  return listing;
}
