/**
 * The alignment cache: one file per (models' contents, method, parameters), written atomically
 * (temporary file, fsync, rename) and checked on every read (magic, version, lengths, SHA-256 of
 * the whole body), so a corrupt or truncated file is rebuilt, never trusted.
 *
 * A model's content is identified by the SHA-256 of its GGUF header (metadata, vocabulary, tensor
 * table) and of its embedding tensors' bytes: exactly what the alignment is computed from.
 */
import { createHash } from "node:crypto";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { open, rename, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { locateEmbeddings, rowBytes, type TensorLocation } from "./gguf-tensors.js";
import { buildAlignment, methodParams, type Alignment, type AlignmentSpec, type AlignmentStats, type Progress } from "./alignment.js";
import type { SparseRows } from "./sparse-rows.js";
import { DirectoryError, ensureWritableDirectory, fileErrorReason } from "../files/writable-directory.js";

const MAGIC = "CHORUSAL";
const FORMAT_VERSION = 1;
/** Magic, version and header length, before the JSON header. */
const HEAD_BYTES = 16;
const CHECKSUM_BYTES = 32;
/** A header holds a few numbers per member; anything longer is not one of ours. */
const MAX_HEADER_BYTES = 1 << 20;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.CHORUS_CACHE ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), ".cache"), "chorus", "align");
}

export class CacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CacheError";
  }
}

/** SHA-256 of a model's header bytes and embedding tensors. */
export async function modelFingerprint(model: string): Promise<string> {
  const e = await locateEmbeddings(model);
  const tensors = e.info.fullTensorInfo ?? e.info.tensorInfo ?? [];
  const dataStart = Math.min(...tensors.map((t) => Number(t.fileOffset)));
  const hash = createHash("sha256");
  const fd = openSync(model, "r");
  try {
    const hashRange = (from: number, length: number) => {
      const chunk = Buffer.alloc(Math.min(length, 4 << 20));
      for (let done = 0; done < length; ) {
        const n = readSync(fd, chunk, 0, Math.min(chunk.length, length - done), from + done);
        if (n === 0) throw new Error(`${model}: the file ends early (truncated?)`);
        hash.update(chunk.subarray(0, n));
        done += n;
      }
    };
    hashRange(0, dataStart);
    const ranges: TensorLocation[] = e.tied ? [e.input] : [e.input, e.output];
    for (const t of ranges) hashRange(t.fileOffset, rowBytes(t.type, t.width) * t.rows);
  } finally {
    closeSync(fd);
  }
  return hash.digest("hex");
}

export async function cacheKey(spec: AlignmentSpec): Promise<string> {
  const fingerprints = [];
  for (const m of spec.members) fingerprints.push(await modelFingerprint(m.model));
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ format: FORMAT_VERSION, method: spec.method, params: methodParams(spec), main: spec.mainIndex, models: fingerprints }));
  return hash.digest("hex").slice(0, 32);
}

interface Header {
  method: Alignment["method"];
  mainIndex: number;
  stats: AlignmentStats;
  matrices: ({ rows: number; columns: number; entries: number } | null)[];
}

export function encodeAlignment(a: Alignment): Buffer[] {
  const header: Header = {
    method: a.method,
    mainIndex: a.mainIndex,
    stats: a.stats,
    matrices: a.matrices.map((m) => (m ? { rows: m.rows, columns: m.columns, entries: m.cols.length } : null)),
  };
  let json = Buffer.from(JSON.stringify(header), "utf8");
  json = Buffer.concat([json, Buffer.alloc((4 - (json.length % 4)) % 4, 0x20)]);
  const head = Buffer.alloc(16);
  head.write(MAGIC, 0, "latin1");
  head.writeUInt32LE(FORMAT_VERSION, 8);
  head.writeUInt32LE(json.length, 12);
  const parts: Buffer[] = [head, json];
  for (const m of a.matrices) {
    if (!m) continue;
    for (const arr of [m.rowStart, m.cols, m.vals]) parts.push(Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength));
  }
  const hash = createHash("sha256");
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  return parts;
}

/** The bytes the header says the file holds: head, header, each matrix's arrays, checksum. */
function describedLength(jsonLength: number, header: Header): number {
  let length = HEAD_BYTES + jsonLength + CHECKSUM_BYTES;
  for (const m of header.matrices) if (m) length += 4 * (m.rows + 1) + 8 * m.entries;
  return length;
}

/**
 * Reads a cache file, or returns undefined when there is none. Whatever sits at the path is
 * checked before it is read: a regular file (a FIFO would block, a device never end), whose size
 * is the one its own header describes. Throws CacheError naming what is wrong.
 */
export async function readCacheFile(file: string): Promise<Buffer | undefined> {
  let info;
  try {
    info = await stat(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CacheError(`cannot look at it: ${fileErrorReason(error)}`);
  }
  if (!info.isFile()) throw new CacheError(`it is ${fileKind(info)}, not a regular file; remove it`);
  // O_NONBLOCK: should the path have become a FIFO since, opening it must not wait for a writer.
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch((error: unknown) => {
    throw new CacheError(`cannot open it: ${fileErrorReason(error)}`);
  });
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) throw new CacheError(`it is ${fileKind(opened)}, not a regular file; remove it`);
    const size = opened.size;
    if (size < HEAD_BYTES + CHECKSUM_BYTES) throw new CacheError("not an alignment cache file (too short)");
    const head = Buffer.alloc(HEAD_BYTES);
    await handle.read(head, 0, HEAD_BYTES, 0);
    if (head.toString("latin1", 0, 8) !== MAGIC) throw new CacheError("not an alignment cache file (bad magic)");
    const jsonLength = head.readUInt32LE(12);
    if (jsonLength > MAX_HEADER_BYTES || HEAD_BYTES + jsonLength + CHECKSUM_BYTES > size) throw new CacheError(`its header claims ${jsonLength} bytes, more than the file or any alignment holds`);
    const json = Buffer.alloc(jsonLength);
    await handle.read(json, 0, jsonLength, HEAD_BYTES);
    let header: Header;
    try {
      header = JSON.parse(json.toString("utf8")) as Header;
    } catch {
      throw new CacheError("its header is not valid JSON (corrupt)");
    }
    if (typeof header !== "object" || header === null || !Array.isArray(header.matrices)) throw new CacheError("its header lists no matrices (corrupt)");
    const expected = describedLength(jsonLength, header);
    if (size !== expected) throw new CacheError(`the file is ${size} bytes but its header describes ${expected} (truncated or corrupt)`);
    const bytes = Buffer.alloc(size);
    const { bytesRead } = await handle.read(bytes, 0, size, 0);
    if (bytesRead !== size) throw new CacheError("the file shrank while it was read");
    return bytes;
  } finally {
    await handle.close();
  }
}

function fileKind(info: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (info.isDirectory()) return "a directory";
  if (info.isFIFO()) return "a FIFO";
  if (info.isCharacterDevice()) return "a character device";
  if (info.isBlockDevice()) return "a block device";
  if (info.isSocket()) return "a socket";
  return "not a regular file";
}

/** Decodes a cache file's bytes; throws CacheError naming what is wrong. */
export function decodeAlignment(bytes: Buffer): Alignment {
  if (bytes.length < 16 + 32 || bytes.toString("latin1", 0, 8) !== MAGIC) throw new CacheError("not an alignment cache file (bad magic or too short)");
  if (bytes.readUInt32LE(8) !== FORMAT_VERSION) throw new CacheError(`cache format version ${bytes.readUInt32LE(8)}, expected ${FORMAT_VERSION}`);
  const body = bytes.subarray(0, bytes.length - 32);
  if (!createHash("sha256").update(body).digest().equals(bytes.subarray(bytes.length - 32))) throw new CacheError("checksum mismatch (corrupt or truncated)");
  const jsonLength = bytes.readUInt32LE(12);
  const header = JSON.parse(bytes.toString("utf8", 16, 16 + jsonLength)) as Header;
  let at = 16 + jsonLength;
  const take = (bytesLength: number): ArrayBuffer => {
    if (at + bytesLength > body.length) throw new CacheError("cache file shorter than its header says");
    const copy = new Uint8Array(bytesLength);
    copy.set(bytes.subarray(at, at + bytesLength));
    at += bytesLength;
    return copy.buffer;
  };
  const matrices = header.matrices.map((m): SparseRows | undefined =>
    m
      ? {
          rows: m.rows,
          columns: m.columns,
          rowStart: new Uint32Array(take(4 * (m.rows + 1))),
          cols: new Int32Array(take(4 * m.entries)),
          vals: new Float32Array(take(4 * m.entries)),
        }
      : undefined,
  );
  if (at !== body.length) throw new CacheError("cache file longer than its header says");
  return { method: header.method, mainIndex: header.mainIndex, matrices, stats: header.stats };
}

async function writeAtomically(file: string, parts: Buffer[]): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    const handle = await open(tmp, "w");
    try {
      for (const p of parts) await handle.write(p);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => {});
    throw error;
  }
}

/** What went wrong writing the cache, and the fix for that. */
function cacheWriteProblem(error: unknown, file: string): string {
  const elsewhere = "point CHORUS_CACHE / cacheDir at a writable directory";
  if (error instanceof DirectoryError) return `${error.message} — ${elsewhere}`;
  switch ((error as NodeJS.ErrnoException).code) {
    case "ENOSPC":
    case "EDQUOT":
      return `${fileErrorReason(error)} — free space, or ${elsewhere} on another disk`;
    case "EACCES":
    case "EPERM":
      return `permission denied — fix the directory's permissions, or ${elsewhere}`;
    case "EROFS":
      return `the file system is read-only — ${elsewhere}`;
    case "EISDIR":
      return `a directory sits at ${file}, where the cache file goes — remove it`;
    default:
      return `${fileErrorReason(error)} — ${elsewhere}`;
  }
}

export interface PrepareOptions {
  /** Cache directory; default $CHORUS_CACHE or ~/.cache/chorus/align. `false`: build without caching. */
  readonly cacheDir?: string | false;
  readonly onProgress?: Progress;
  /** Told about cache events worth a line (rebuilt a corrupt file, could not write). */
  readonly onNote?: (message: string) => void;
  /** Rebuild even if a valid cache file exists. */
  readonly rebuild?: boolean;
  /** When the cache cannot be written: throw (the align command) or note it and go on (generate). */
  readonly cacheWriteErrors?: "throw" | "note";
}

export interface Prepared {
  readonly alignment: Alignment;
  readonly source: "cache" | "built";
  readonly file?: string;
}

export async function prepareAlignment(spec: AlignmentSpec, options: PrepareOptions = {}): Promise<Prepared> {
  if (options.cacheDir === false) return { alignment: await buildAlignment(spec, options.onProgress), source: "built" };
  const dir = options.cacheDir ?? defaultCacheDir();
  const key = await cacheKey(spec);
  const file = path.join(dir, `${spec.method}-${key}.chorus-align`);
  if (!options.rebuild) {
    let bytes: Buffer | undefined;
    try {
      bytes = await readCacheFile(file);
    } catch (error) {
      options.onNote?.(`alignment cache ${file} is unusable (${(error as Error).message}); rebuilding`);
    }
    if (bytes) {
      try {
        const alignment = decodeAlignment(bytes);
        if (alignment.matrices.length === spec.members.length) return { alignment, source: "cache", file };
        options.onNote?.(`alignment cache ${file} does not match the members; rebuilding`);
      } catch (error) {
        options.onNote?.(`alignment cache ${file} is unusable (${(error as Error).message}); rebuilding`);
      }
    }
  }
  const alignment = await buildAlignment(spec, options.onProgress);
  try {
    ensureWritableDirectory(dir);
    await writeAtomically(file, encodeAlignment(alignment));
  } catch (error) {
    const message = `cannot write the alignment cache in ${dir}: ${cacheWriteProblem(error, file)}`;
    if (options.cacheWriteErrors === "note") {
      options.onNote?.(`${message}; using the alignment without caching it`);
      return { alignment, source: "built" };
    }
    throw new CacheError(message);
  }
  return { alignment, source: "built", file };
}
