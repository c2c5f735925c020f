/**
 * A small GGUF (v3) writer and metadata reader.
 *
 * Format (ggml `docs/gguf.md`), all little-endian:
 *   magic "GGUF" · u32 version · u64 tensor_count · u64 kv_count
 *   kv_count × { string key · u32 value_type · value }
 *   tensor_count × { string name · u32 n_dims · u64 ne[n_dims] · u32 ggml_type · u64 offset }
 *   zero padding to `general.alignment` (default 32)
 *   tensor data; every tensor's offset (relative to the data start) is a multiple of the alignment
 * string = u64 byte length + bytes (no terminator); array = u32 item_type · u64 n · items.
 *
 * The writer builds the header in memory (metadata is a few MB even for 150k-token vocabularies)
 * and streams tensor data to disk chunk by chunk. The reader parses the header only and keeps the
 * exact encoded bytes of every metadata value, so keys can be copied byte-exactly into a new file.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';

// ---------------------------------------------------------------------------------------------
// Value types

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value type codes. */
export const GgufValueType = {
    u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7,
    string: 8, array: 9, u64: 10, i64: 11, f64: 12,
} as const;
export type GgufTypeName = keyof typeof GgufValueType;
export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufBigIntType = 'u64' | 'i64';

const typeNameByCode: GgufTypeName[] = [];
for (const [name, code] of Object.entries(GgufValueType)) typeNameByCode[code] = name as GgufTypeName;

export function ggufTypeName(code: number): GgufTypeName {
    const name = typeNameByCode[code];
    if (name === undefined) throw new Error(`unknown GGUF value type ${code}`);
    return name;
}

/** A string value may be given as raw bytes (GGUF strings are not guaranteed to be valid UTF-8). */
export type GgufString = string | Uint8Array;

export type GgufScalar =
    | { type: GgufNumberType; value: number }
    | { type: GgufBigIntType; value: bigint | number }
    | { type: 'bool'; value: boolean }
    | { type: 'string'; value: GgufString };

export type GgufArray =
    | { type: 'array'; itemType: GgufNumberType; value: ArrayLike<number> }
    | { type: 'array'; itemType: GgufBigIntType; value: ArrayLike<bigint | number> }
    | { type: 'array'; itemType: 'bool'; value: ArrayLike<boolean> }
    | { type: 'array'; itemType: 'string'; value: ArrayLike<GgufString> }
    | { type: 'array'; itemType: 'array'; value: ArrayLike<GgufArray> };

/** The JavaScript type of one value of each GGUF type. */
export interface GgufItemValue {
    u8: number; i8: number; u16: number; i16: number; u32: number; i32: number; f32: number; f64: number;
    u64: bigint | number; i64: bigint | number; bool: boolean; string: GgufString; array: GgufArray;
}

/** A metadata value already encoded: `bytes` is the value without its u32 type code. */
export interface GgufRawValue {
    type: 'raw';
    valueType: number;
    bytes: Uint8Array;
}

export type GgufValue = GgufScalar | GgufArray;
export type GgufWritableValue = GgufValue | GgufRawValue;

/** Shorthand constructors: `gguf.u32(5)`, `gguf.str('llama')`, `gguf.array('string', tokens)`. */
export const gguf = {
    u8: (value: number): GgufScalar => ({ type: 'u8', value }),
    i8: (value: number): GgufScalar => ({ type: 'i8', value }),
    u16: (value: number): GgufScalar => ({ type: 'u16', value }),
    i16: (value: number): GgufScalar => ({ type: 'i16', value }),
    u32: (value: number): GgufScalar => ({ type: 'u32', value }),
    i32: (value: number): GgufScalar => ({ type: 'i32', value }),
    f32: (value: number): GgufScalar => ({ type: 'f32', value }),
    f64: (value: number): GgufScalar => ({ type: 'f64', value }),
    u64: (value: bigint | number): GgufScalar => ({ type: 'u64', value }),
    i64: (value: bigint | number): GgufScalar => ({ type: 'i64', value }),
    bool: (value: boolean): GgufScalar => ({ type: 'bool', value }),
    str: (value: GgufString): GgufScalar => ({ type: 'string', value }),
    array<T extends GgufTypeName>(itemType: T, value: ArrayLike<GgufItemValue[T]>): GgufArray {
        return { type: 'array', itemType, value } as GgufArray;
    },
};

// ---------------------------------------------------------------------------------------------
// Tensor types

export interface GgmlTypeInfo { code: number; blockSize: number; typeSize: number }

/** ggml tensor types (code, elements per block, bytes per block). */
export const GgmlType = {
    F32: { code: 0, blockSize: 1, typeSize: 4 },
    F16: { code: 1, blockSize: 1, typeSize: 2 },
    Q4_0: { code: 2, blockSize: 32, typeSize: 18 },
    Q4_1: { code: 3, blockSize: 32, typeSize: 20 },
    Q5_0: { code: 6, blockSize: 32, typeSize: 22 },
    Q5_1: { code: 7, blockSize: 32, typeSize: 24 },
    Q8_0: { code: 8, blockSize: 32, typeSize: 34 },
    Q8_1: { code: 9, blockSize: 32, typeSize: 36 },
    Q2_K: { code: 10, blockSize: 256, typeSize: 84 },
    Q3_K: { code: 11, blockSize: 256, typeSize: 110 },
    Q4_K: { code: 12, blockSize: 256, typeSize: 144 },
    Q5_K: { code: 13, blockSize: 256, typeSize: 176 },
    Q6_K: { code: 14, blockSize: 256, typeSize: 210 },
    Q8_K: { code: 15, blockSize: 256, typeSize: 292 },
    I8: { code: 24, blockSize: 1, typeSize: 1 },
    I16: { code: 25, blockSize: 1, typeSize: 2 },
    I32: { code: 26, blockSize: 1, typeSize: 4 },
    I64: { code: 27, blockSize: 1, typeSize: 8 },
    F64: { code: 28, blockSize: 1, typeSize: 8 },
    BF16: { code: 30, blockSize: 1, typeSize: 2 },
} as const satisfies Record<string, GgmlTypeInfo>;
export type GgmlTypeName = keyof typeof GgmlType;

function ggmlTypeInfo(type: GgmlTypeName | number): GgmlTypeInfo | undefined {
    if (typeof type === 'number') return Object.values(GgmlType).find((t) => t.code === type);
    return GgmlType[type];
}

/** Bytes of a tensor with dimensions `dims` (ne[0] first, the contiguous one). */
export function ggmlTensorBytes(type: GgmlTypeName | number, dims: readonly number[]): number {
    const info = ggmlTypeInfo(type);
    if (!info) throw new Error(`unknown ggml type ${type}`);
    const ne0 = dims[0] ?? 1;
    if (ne0 % info.blockSize !== 0) throw new Error(`ne[0]=${ne0} is not a multiple of the block size ${info.blockSize}`);
    let rows = 1;
    for (let i = 1; i < dims.length; i++) rows *= dims[i];
    return (ne0 / info.blockSize) * info.typeSize * rows;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const textEncoder = new TextEncoder();

/** A growable little-endian byte buffer. */
class ByteWriter {
    private buf: Buffer;
    length = 0;

    constructor(initial = 1 << 16) {
        this.buf = Buffer.alloc(initial);
    }

    private reserve(n: number): number {
        const need = this.length + n;
        if (need > this.buf.length) {
            let size = this.buf.length * 2;
            while (size < need) size *= 2;
            const next = Buffer.alloc(size);
            this.buf.copy(next, 0, 0, this.length);
            this.buf = next;
        }
        const at = this.length;
        this.length = need;
        return at;
    }

    u8(v: number) { const at = this.reserve(1); this.buf.writeUInt8(v, at); }
    i8(v: number) { const at = this.reserve(1); this.buf.writeInt8(v, at); }
    u16(v: number) { const at = this.reserve(2); this.buf.writeUInt16LE(v, at); }
    i16(v: number) { const at = this.reserve(2); this.buf.writeInt16LE(v, at); }
    u32(v: number) { const at = this.reserve(4); this.buf.writeUInt32LE(v, at); }
    i32(v: number) { const at = this.reserve(4); this.buf.writeInt32LE(v, at); }
    f32(v: number) { const at = this.reserve(4); this.buf.writeFloatLE(v, at); }
    f64(v: number) { const at = this.reserve(8); this.buf.writeDoubleLE(v, at); }
    u64(v: bigint | number) {
        const at = this.reserve(8);
        if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
            this.buf.writeUInt32LE(v % 0x100000000, at);
            this.buf.writeUInt32LE(Math.floor(v / 0x100000000), at + 4);
        } else {
            this.buf.writeBigUInt64LE(BigInt(v), at);
        }
    }
    i64(v: bigint | number) { const at = this.reserve(8); this.buf.writeBigInt64LE(BigInt(v), at); }
    bytes(b: Uint8Array) { const at = this.reserve(b.length); this.buf.set(b, at); }
    string(s: GgufString) {
        const b = typeof s === 'string' ? textEncoder.encode(s) : s;
        this.u64(b.length);
        this.bytes(b);
    }
    zeros(n: number) { const at = this.reserve(n); this.buf.fill(0, at, this.length); }

    result(): Buffer {
        return this.buf.subarray(0, this.length);
    }
}

function checkInt(v: number, min: number, max: number, type: string) {
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`${v} is not a valid ${type}`);
}

function writeItem(w: ByteWriter, type: GgufTypeName, v: unknown): void {
    switch (type) {
        case 'u8': checkInt(v as number, 0, 0xff, type); return w.u8(v as number);
        case 'i8': checkInt(v as number, -0x80, 0x7f, type); return w.i8(v as number);
        case 'u16': checkInt(v as number, 0, 0xffff, type); return w.u16(v as number);
        case 'i16': checkInt(v as number, -0x8000, 0x7fff, type); return w.i16(v as number);
        case 'u32': checkInt(v as number, 0, 0xffffffff, type); return w.u32(v as number);
        case 'i32': checkInt(v as number, -0x80000000, 0x7fffffff, type); return w.i32(v as number);
        case 'f32': return w.f32(v as number);
        case 'f64': return w.f64(v as number);
        case 'u64': return w.u64(v as bigint | number);
        case 'i64': return w.i64(v as bigint | number);
        case 'bool': return w.u8((v as boolean) ? 1 : 0);
        case 'string': return w.string(v as GgufString);
        case 'array': return writeArrayBody(w, v as GgufArray);
    }
}

function writeArrayBody(w: ByteWriter, a: GgufArray): void {
    w.u32(GgufValueType[a.itemType]);
    const items = a.value as ArrayLike<unknown>;
    w.u64(items.length);
    for (let i = 0; i < items.length; i++) writeItem(w, a.itemType, items[i]);
}

function writeValue(w: ByteWriter, v: GgufWritableValue): void {
    if (v.type === 'raw') {
        w.u32(v.valueType);
        w.bytes(v.bytes);
        return;
    }
    w.u32(GgufValueType[v.type]);
    if (v.type === 'array') writeArrayBody(w, v);
    else writeItem(w, v.type, v.value);
}

/** Encodes one value (type code + value bytes). */
export function encodeGgufValue(v: GgufWritableValue): Buffer {
    const w = new ByteWriter(256);
    writeValue(w, v);
    return w.result();
}

// ---------------------------------------------------------------------------------------------
// Writer

/** Tensor data: the bytes, or a function yielding chunks. The writer awaits each chunk's write
 * before pulling the next, so a generator may reuse one buffer for every chunk. */
export type TensorData = Uint8Array | (() => Iterable<Uint8Array> | AsyncIterable<Uint8Array>);

export interface GgufTensorSpec {
    name: string;
    /** ne[0] first (the contiguous dimension), as in ggml and the GGUF tensor info. */
    dims: readonly number[];
    type: GgmlTypeName | number;
    data: TensorData;
}

export type GgufMetadataInput =
    | Iterable<readonly [string, GgufWritableValue]>
    | Readonly<Record<string, GgufWritableValue>>;

export interface WriteGgufOptions {
    metadata: GgufMetadataInput;
    tensors?: readonly GgufTensorSpec[];
    /** Data alignment; written as `general.alignment` (u32). Defaults to 32 (or the value given in
     * the metadata as `general.alignment`). */
    alignment?: number;
}

function metadataEntries(m: GgufMetadataInput): [string, GgufWritableValue][] {
    if (Symbol.iterator in m) return [...(m as Iterable<readonly [string, GgufWritableValue]>)].map(([k, v]) => [k, v]);
    return Object.entries(m as Record<string, GgufWritableValue>);
}

function alignUp(n: number, alignment: number): number {
    return Math.ceil(n / alignment) * alignment;
}

/** Encodes the header (magic … tensor infos), without the padding before the data section. */
export function encodeGgufHeader(opts: Omit<WriteGgufOptions, 'tensors'> & { tensors?: readonly Omit<GgufTensorSpec, 'data'>[] }): {
    header: Buffer; alignment: number; tensorOffsets: number[]; tensorBytes: number[]; dataBytes: number;
} {
    const entries = metadataEntries(opts.metadata);
    const keys = new Set<string>();
    for (const [k] of entries) {
        if (keys.has(k)) throw new Error(`duplicate metadata key ${k}`);
        keys.add(k);
    }
    const given = entries.find(([k]) => k === 'general.alignment');
    let alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    if (given) {
        const v = given[1];
        const fromMeta = v.type === 'u32' ? v.value : v.type === 'raw' && v.valueType === GgufValueType.u32
            ? Buffer.from(v.bytes).readUInt32LE(0) : undefined;
        if (fromMeta === undefined) throw new Error('general.alignment must be a u32');
        if (opts.alignment !== undefined && opts.alignment !== fromMeta) throw new Error('conflicting alignments');
        alignment = fromMeta;
    } else {
        entries.push(['general.alignment', gguf.u32(alignment)]);
    }
    if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) throw new Error(`bad alignment ${alignment}`);

    const tensors = opts.tensors ?? [];
    const w = new ByteWriter(1 << 20);
    w.u32(GGUF_MAGIC);
    w.u32(GGUF_VERSION);
    w.u64(tensors.length);
    w.u64(entries.length);
    for (const [key, value] of entries) {
        w.string(key);
        writeValue(w, value);
    }
    const tensorOffsets: number[] = [];
    const tensorBytes: number[] = [];
    const names = new Set<string>();
    let offset = 0;
    for (const t of tensors) {
        if (names.has(t.name)) throw new Error(`duplicate tensor ${t.name}`);
        names.add(t.name);
        const bytes = ggmlTensorBytes(t.type, t.dims);
        w.string(t.name);
        w.u32(t.dims.length);
        for (const d of t.dims) w.u64(d);
        w.u32(typeof t.type === 'number' ? t.type : GgmlType[t.type].code);
        w.u64(offset);
        tensorOffsets.push(offset);
        tensorBytes.push(bytes);
        offset = alignUp(offset + bytes, alignment);
    }
    const last = tensors.length - 1;
    const dataBytes = last < 0 ? 0 : tensorOffsets[last] + tensorBytes[last];
    return { header: w.result(), alignment, tensorOffsets, tensorBytes, dataBytes };
}

/** Writes a GGUF file, streaming tensor data. Returns the file size in bytes. */
export async function writeGguf(path: string, opts: WriteGgufOptions): Promise<number> {
    const tensors = opts.tensors ?? [];
    const { header, alignment, tensorOffsets, tensorBytes } = encodeGgufHeader(opts);
    const fh = await open(path, 'w');
    try {
        let pos = 0;
        const write = async (b: Uint8Array) => {
            let done = 0;
            while (done < b.length) {
                const { bytesWritten } = await fh.write(b, done, b.length - done, pos);
                done += bytesWritten;
                pos += bytesWritten;
            }
        };
        const pad = async (to: number) => {
            if (to > pos) await write(new Uint8Array(to - pos));
        };
        await write(header);
        const dataStart = alignUp(pos, alignment);
        await pad(dataStart);
        for (let i = 0; i < tensors.length; i++) {
            const t = tensors[i];
            await pad(dataStart + tensorOffsets[i]);
            const start = pos;
            if (t.data instanceof Uint8Array) await write(t.data);
            else for await (const chunk of t.data()) await write(chunk);
            if (pos - start !== tensorBytes[i]) {
                throw new Error(`tensor ${t.name}: got ${pos - start} bytes, expected ${tensorBytes[i]}`);
            }
        }
        return pos;
    } finally {
        await fh.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

export interface GgufKv {
    key: string;
    /** The decoded value (strings decoded as UTF-8, replacing invalid sequences; u64/i64 as bigint). */
    value: GgufValue;
    /** The exact encoded value, ready to be written again unchanged. */
    raw: GgufRawValue;
}

export interface GgufTensorInfo {
    name: string;
    dims: number[];
    type: number;
    /** Offset relative to the data section. */
    offset: number;
    /** Absolute offset in the file. */
    fileOffset: number;
    bytes: number;
}

export interface GgufFile {
    version: number;
    kvs: GgufKv[];
    tensors: GgufTensorInfo[];
    alignment: number;
    /** Absolute file offset of the tensor data section. */
    dataOffset: number;
    fileSize: number;
}

const textDecoder = new TextDecoder('utf-8');

/** Reads the file sequentially on demand, keeping every byte read (the header is small). */
class HeaderReader {
    private buf = Buffer.alloc(1 << 20);
    private filled = 0;
    pos = 0;

    constructor(private readonly fd: number, private readonly fileSize: number) {}

    private need(n: number) {
        const want = this.pos + n;
        if (want <= this.filled) return;
        if (want > this.fileSize) throw new Error(`GGUF truncated: need byte ${want}, file has ${this.fileSize}`);
        if (want > this.buf.length) {
            let size = this.buf.length * 2;
            while (size < want) size *= 2;
            const next = Buffer.alloc(Math.min(size, Math.max(want, this.fileSize)));
            this.buf.copy(next, 0, 0, this.filled);
            this.buf = next;
        }
        while (this.filled < want) {
            const n = readSync(this.fd, this.buf, this.filled, this.buf.length - this.filled, this.filled);
            if (n === 0) throw new Error('GGUF truncated');
            this.filled += n;
        }
    }

    u8() { this.need(1); return this.buf.readUInt8((this.pos += 1) - 1); }
    i8() { this.need(1); return this.buf.readInt8((this.pos += 1) - 1); }
    u16() { this.need(2); return this.buf.readUInt16LE((this.pos += 2) - 2); }
    i16() { this.need(2); return this.buf.readInt16LE((this.pos += 2) - 2); }
    u32() { this.need(4); return this.buf.readUInt32LE((this.pos += 4) - 4); }
    i32() { this.need(4); return this.buf.readInt32LE((this.pos += 4) - 4); }
    f32() { this.need(4); return this.buf.readFloatLE((this.pos += 4) - 4); }
    f64() { this.need(8); return this.buf.readDoubleLE((this.pos += 8) - 8); }
    u64() { this.need(8); return this.buf.readBigUInt64LE((this.pos += 8) - 8); }
    i64() { this.need(8); return this.buf.readBigInt64LE((this.pos += 8) - 8); }
    safeU64(what: string): number {
        this.need(8);
        const lo = this.buf.readUInt32LE(this.pos);
        const hi = this.buf.readUInt32LE(this.pos + 4);
        this.pos += 8;
        if (hi >= 0x200000) throw new Error(`GGUF ${what} too large`);
        return hi * 0x100000000 + lo;
    }
    string(): string {
        const n = this.safeU64('string length');
        this.need(n);
        const s = textDecoder.decode(this.buf.subarray(this.pos, this.pos + n));
        this.pos += n;
        return s;
    }
    slice(from: number, to: number): Uint8Array {
        return new Uint8Array(this.buf.subarray(from, to)); // a copy: the buffer may be replaced
    }
}

function readItem(r: HeaderReader, type: GgufTypeName): unknown {
    switch (type) {
        case 'u8': return r.u8();
        case 'i8': return r.i8();
        case 'u16': return r.u16();
        case 'i16': return r.i16();
        case 'u32': return r.u32();
        case 'i32': return r.i32();
        case 'f32': return r.f32();
        case 'f64': return r.f64();
        case 'u64': return r.u64();
        case 'i64': return r.i64();
        case 'bool': {
            const b = r.u8();
            if (b > 1) throw new Error(`bad GGUF bool ${b}`);
            return b === 1;
        }
        case 'string': return r.string();
        case 'array': return readArrayBody(r);
    }
}

function readArrayBody(r: HeaderReader): GgufArray {
    const itemType = ggufTypeName(r.u32());
    const n = r.safeU64('array length');
    const value: unknown[] = new Array(n);
    for (let i = 0; i < n; i++) value[i] = readItem(r, itemType);
    return { type: 'array', itemType, value } as GgufArray;
}

/** Reads the header of a GGUF file: metadata (decoded and raw) and tensor infos. Tensor data is
 * not read. Supports GGUF v2 and v3 (v1 used 32-bit lengths and is not supported). */
export function readGguf(path: string): GgufFile {
    const fd = openSync(path, 'r');
    try {
        const fileSize = fstatSync(fd).size;
        const r = new HeaderReader(fd, fileSize);
        const magic = r.u32();
        if (magic !== GGUF_MAGIC) throw new Error(`${path}: not a GGUF file`);
        const version = r.u32();
        if (version !== 2 && version !== 3) throw new Error(`${path}: unsupported GGUF version ${version}`);
        const tensorCount = r.safeU64('tensor count');
        const kvCount = r.safeU64('kv count');
        const kvs: GgufKv[] = [];
        for (let i = 0; i < kvCount; i++) {
            const key = r.string();
            const valueType = r.u32();
            const type = ggufTypeName(valueType);
            const start = r.pos;
            const item = readItem(r, type);
            const value = (type === 'array' ? item : { type, value: item }) as GgufValue;
            kvs.push({ key, value, raw: { type: 'raw', valueType, bytes: r.slice(start, r.pos) } });
        }
        const alignKv = kvs.find((kv) => kv.key === 'general.alignment');
        const alignment = alignKv && alignKv.value.type === 'u32' ? alignKv.value.value : GGUF_DEFAULT_ALIGNMENT;
        const infos: Omit<GgufTensorInfo, 'fileOffset'>[] = [];
        for (let i = 0; i < tensorCount; i++) {
            const name = r.string();
            const nDims = r.u32();
            const dims: number[] = [];
            for (let d = 0; d < nDims; d++) dims.push(r.safeU64('dimension'));
            const type = r.u32();
            const offset = r.safeU64('tensor offset');
            let bytes = -1;
            try { bytes = ggmlTensorBytes(type, dims); } catch { /* unknown type */ }
            infos.push({ name, dims, type, offset, bytes });
        }
        const dataOffset = alignUp(r.pos, alignment);
        const tensors = infos.map((t) => ({ ...t, fileOffset: dataOffset + t.offset }));
        return { version, kvs, tensors, alignment, dataOffset, fileSize };
    } finally {
        closeSync(fd);
    }
}

/** The decoded metadata of a GGUF file as a Map (key order preserved). */
export function ggufMetadataMap(file: GgufFile): Map<string, GgufValue> {
    return new Map(file.kvs.map((kv) => [kv.key, kv.value]));
}
