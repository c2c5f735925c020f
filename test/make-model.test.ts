import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readdirSync, readSync, closeSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getLlama, LlamaLogLevel, readGgufFileInfo, type Llama } from 'node-llama-cpp';
import {
    encodeGgufValue, gguf, GgufValueType, ggufMetadataMap, readGguf, writeGguf,
    type GgufArray, type GgufValue, type GgufWritableValue,
} from '../bench/gguf-writer.js';
import { makeRandomModel, presets, sharedVocabDir, toHalf } from '../bench/make-model.js';

const spmVocab = resolve(sharedVocabDir, 'ggml-vocab-llama-spm.gguf');

let dir: string;
before(() => { dir = mkdtempSync(join(tmpdir(), 'chorus-make-model-')); });
after(() => { rmSync(dir, { recursive: true, force: true }); });

function readBytes(path: string, offset: number, length: number): Buffer {
    const fd = openSync(path, 'r');
    try {
        const b = Buffer.alloc(length);
        assert.equal(readSync(fd, b, 0, length, offset), length);
        return b;
    } finally {
        closeSync(fd);
    }
}

/** Normalizes a written value to what the reader decodes (f32 rounding, u64 as bigint, strings). */
function expected(v: GgufValue): unknown {
    const item = (type: string, x: unknown): unknown => {
        if (type === 'f32') return Math.fround(x as number);
        if (type === 'u64' || type === 'i64') return BigInt(x as number | bigint);
        if (type === 'string') return typeof x === 'string' ? x : new TextDecoder().decode(x as Uint8Array);
        if (type === 'array') return expected(x as GgufArray);
        return x;
    };
    if (v.type === 'array') return { type: 'array', itemType: v.itemType, value: Array.from(v.value as ArrayLike<unknown>, (x) => item(v.itemType, x)) };
    return { type: v.type, value: item(v.type, v.value) };
}

describe('gguf writer/reader', () => {
    const metadata: [string, GgufValue][] = [
        ['general.architecture', gguf.str('llama')],
        ['t.u8', gguf.u8(255)],
        ['t.i8', gguf.i8(-128)],
        ['t.u16', gguf.u16(65535)],
        ['t.i16', gguf.i16(-32768)],
        ['t.u32', gguf.u32(4294967295)],
        ['t.i32', gguf.i32(-2147483648)],
        ['t.f32', gguf.f32(0.1)],
        ['t.bool.true', gguf.bool(true)],
        ['t.bool.false', gguf.bool(false)],
        ['t.string', gguf.str('héllo ▁wörld 🎉')],
        ['t.string.empty', gguf.str('')],
        ['t.string.bytes', gguf.str(new Uint8Array([0x61, 0x62, 0x63]))],
        ['t.u64', gguf.u64(18446744073709551615n)],
        ['t.u64.number', gguf.u64(2 ** 40 + 7)],
        ['t.i64', gguf.i64(-9223372036854775808n)],
        ['t.f64', gguf.f64(Math.PI)],
        ['t.arr.u8', gguf.array('u8', [0, 1, 255])],
        ['t.arr.i8', gguf.array('i8', [-1, 0, 127])],
        ['t.arr.u16', gguf.array('u16', [1, 65535])],
        ['t.arr.i16', gguf.array('i16', [-2, 2])],
        ['t.arr.u32', gguf.array('u32', new Uint32Array([7, 4000000000]))],
        ['t.arr.i32', gguf.array('i32', [-3, 3, 1 << 30])],
        ['t.arr.f32', gguf.array('f32', new Float32Array([0.5, -1.25, 1e-7]))],
        ['t.arr.f64', gguf.array('f64', [Math.E, -0])],
        ['t.arr.bool', gguf.array('bool', [true, false, true])],
        ['t.arr.string', gguf.array('string', ['a', '', '<0x0A>', 'Ġthe', '日本'])],
        ['t.arr.u64', gguf.array('u64', [1n, 2 ** 53 - 1])],
        ['t.arr.i64', gguf.array('i64', [-1n, 5n])],
        ['t.arr.empty', gguf.array('u32', [])],
        ['t.arr.nested', gguf.array('array', [gguf.array('i32', [1, 2]), gguf.array('string', ['x'])])],
    ];
    const f32Data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const f16Data = new Uint16Array(Array.from({ length: 64 * 3 }, (_, i) => toHalf(i / 7)));

    test('round-trips metadata of every kind, tensor infos and data', async () => {
        const path = join(dir, 'kinds.gguf');
        const size = await writeGguf(path, {
            metadata,
            tensors: [
                { name: 'a', dims: [3, 2], type: 'F32', data: new Uint8Array(f32Data.buffer) },
                // in chunks, one buffer reused for each chunk
                {
                    name: 'b', dims: [64, 3], type: 'F16', data: function* () {
                        const chunk = new Uint16Array(64);
                        for (let r = 0; r < 3; r++) {
                            chunk.set(f16Data.subarray(r * 64, r * 64 + 64));
                            yield new Uint8Array(chunk.buffer);
                        }
                    },
                },
                { name: 'c', dims: [5], type: 'I32', data: new Uint8Array(new Int32Array([1, -1, 2, -2, 3]).buffer) },
            ],
        });
        assert.equal(statSync(path).size, size);
        const file = readGguf(path);
        assert.equal(file.version, 3);
        assert.equal(file.alignment, 32);
        const read = ggufMetadataMap(file);
        assert.deepEqual(read.get('general.alignment'), gguf.u32(32));
        for (const [key, value] of metadata) {
            assert.deepEqual(read.get(key), expected(value), key);
            // the raw bytes are exactly the encoding (type code + value)
            const kv = file.kvs.find((k) => k.key === key)!;
            assert.deepEqual(Buffer.concat([Buffer.from(new Uint32Array([kv.raw.valueType]).buffer), kv.raw.bytes]), encodeGgufValue(value), key);
            assert.equal(kv.raw.valueType, GgufValueType[value.type]);
        }
        assert.deepEqual(file.tensors.map((t) => [t.name, t.dims, t.type, t.bytes]), [
            ['a', [3, 2], 0, 24], ['b', [64, 3], 1, 384], ['c', [5], 26, 20],
        ]);
        for (const t of file.tensors) {
            assert.equal(t.offset % 32, 0);
            assert.equal(file.dataOffset % 32, 0);
        }
        assert.deepEqual(readBytes(path, file.tensors[0].fileOffset, 24), Buffer.from(f32Data.buffer));
        assert.deepEqual(readBytes(path, file.tensors[1].fileOffset, 384), Buffer.from(f16Data.buffer));
        assert.deepEqual(new Int32Array(new Uint8Array(readBytes(path, file.tensors[2].fileOffset, 20)).buffer), new Int32Array([1, -1, 2, -2, 3]));

        // an independent reader (node-llama-cpp's) agrees; it does not read nested arrays
        const flat = metadata.filter(([k]) => k !== 't.arr.nested');
        const flatPath = join(dir, 'flat.gguf');
        await writeGguf(flatPath, { metadata: flat, tensors: [{ name: 'a', dims: [3, 2], type: 'F32', data: new Uint8Array(f32Data.buffer) }] });
        const info = await readGgufFileInfo(flatPath, { readTensorInfo: true });
        const m = info.metadata as unknown as Record<string, Record<string, unknown>>;
        assert.equal(m.general.architecture, 'llama');
        assert.equal(m.t.u32, 4294967295);
        assert.equal(m.t.i8, -128);
        assert.equal(m.t.string, 'héllo ▁wörld 🎉');
        assert.deepEqual(m.t['arr'] !== undefined ? (m.t['arr'] as Record<string, unknown>).string : undefined, ['a', '', '<0x0A>', 'Ġthe', '日本']);
        assert.equal(info.tensorInfo?.[0].name, 'a');
        assert.deepEqual(info.tensorInfo?.[0].dimensions.map(Number), [3, 2]);
    });

    test('honours a non-default alignment and rejects wrong tensor sizes', async () => {
        const path = join(dir, 'align64.gguf');
        await writeGguf(path, {
            metadata: { 'general.architecture': gguf.str('x') }, alignment: 64,
            tensors: [
                { name: 'a', dims: [3], type: 'F32', data: new Uint8Array(12) },
                { name: 'b', dims: [3], type: 'F32', data: new Uint8Array(12) },
            ],
        });
        const file = readGguf(path);
        assert.equal(file.alignment, 64);
        assert.equal(file.dataOffset % 64, 0);
        assert.deepEqual(file.tensors.map((t) => t.offset), [0, 64]);
        await assert.rejects(writeGguf(join(dir, 'bad.gguf'), {
            metadata: {}, tensors: [{ name: 'a', dims: [4], type: 'F32', data: new Uint8Array(12) }],
        }), /expected 16/);
    });

    test('copies a real vocabulary byte-exactly', async () => {
        const vocab = readGguf(resolve(sharedVocabDir, 'ggml-vocab-qwen2.gguf'));
        const kvs = vocab.kvs.filter((kv) => kv.key.startsWith('tokenizer.'));
        assert.ok(kvs.some((kv) => kv.key === 'tokenizer.ggml.merges'));
        const path = join(dir, 'copy.gguf');
        await writeGguf(path, { metadata: kvs.map((kv): [string, GgufWritableValue] => [kv.key, kv.raw]) });
        const copy = readGguf(path);
        for (const kv of kvs) {
            const c = copy.kvs.find((k) => k.key === kv.key)!;
            assert.equal(c.raw.valueType, kv.raw.valueType);
            assert.ok(Buffer.from(c.raw.bytes).equals(kv.raw.bytes), kv.key);
        }
        const tokens = ggufMetadataMap(copy).get('tokenizer.ggml.tokens');
        assert.equal(tokens?.type === 'array' ? tokens.value.length : 0, 151669);
    });
});

describe('makeRandomModel', () => {
    let llama: Llama;
    before(async () => {
        llama = await getLlama({ gpu: false, maxThreads: availableParallelism(), logLevel: LlamaLogLevel.error });
    });
    after(async () => { await llama?.dispose(); });

    test('presets point at existing vocabularies', () => {
        for (const p of Object.values(presets)) assert.ok(statSync(p.vocabPath).isFile(), p.vocabPath);
    });

    test('makes a loadable llama model with the real vocabulary', async () => {
        const outPath = join(dir, 'sub', 'tiny.gguf');
        const opts = {
            vocabPath: spmVocab, outPath, embeddingLength: 64, layers: 1, heads: 4, kvHeads: 2,
            feedForwardLength: 128, contextLength: 256, seed: 7,
        };
        const made = await makeRandomModel(opts);
        assert.equal(made.reused, false);
        assert.equal(made.vocabSize, 32000);
        assert.equal(made.bytes, statSync(outPath).size);
        assert.deepEqual(readdirSync(join(dir, 'sub')), ['tiny.gguf']); // no temporary file left
        const mtime = statSync(outPath).mtimeMs;
        const again = await makeRandomModel(opts);
        assert.equal(again.reused, true);
        assert.equal(statSync(outPath).mtimeMs, mtime);
        const other = await makeRandomModel({ ...opts, seed: 8 });
        assert.equal(other.reused, false);
        assert.notEqual(statSync(outPath).mtimeMs, mtime);

        const file = readGguf(outPath);
        const vocabFile = readGguf(spmVocab);
        for (const kv of vocabFile.kvs.filter((k) => k.key.startsWith('tokenizer.'))) {
            const c = file.kvs.find((k) => k.key === kv.key);
            assert.ok(c && Buffer.from(c.raw.bytes).equals(kv.raw.bytes), kv.key);
        }
        const tensors = new Map(file.tensors.map((t) => [t.name, t]));
        assert.equal(tensors.size, 3 + 9);
        assert.deepEqual(tensors.get('token_embd.weight')?.dims, [64, 32000]);
        assert.deepEqual(tensors.get('output.weight')?.dims, [64, 32000]);
        assert.deepEqual(tensors.get('blk.0.attn_k.weight')?.dims, [64, 32]);
        assert.deepEqual(tensors.get('blk.0.ffn_down.weight')?.dims, [128, 64]);
        assert.equal(tensors.get('blk.0.attn_q.weight')?.type, 1);
        assert.equal(tensors.get('output_norm.weight')?.type, 0);

        const model = await llama.loadModel({ modelPath: outPath });
        const vocabModel = await llama.loadModel({ modelPath: spmVocab, vocabOnly: true });
        try {
            assert.equal(model.fileInfo.metadata.tokenizer.ggml.tokens.length, 32000);
            assert.equal(model.embeddingVectorSize, 64);
            const text = 'Hello world';
            const ids = model.tokenize(text);
            assert.deepEqual(ids, vocabModel.tokenize(text));
            assert.deepEqual(model.tokenize('The quick brown fox, 3.14 € 日本'), vocabModel.tokenize('The quick brown fox, 3.14 € 日本'));
            assert.equal(model.tokens.bos, vocabModel.tokens.bos);

            const context = await model.createContext({ contextSize: 256, threads: 1 });
            try {
                const seq = context.getSequence();
                const input = [model.tokens.bos!, ...ids];
                const out = await seq.controlledEvaluate([
                    ...input.slice(0, -1),
                    [input[input.length - 1], { generateNext: { probabilities: true } }],
                ]);
                const probs = out[out.length - 1]?.next.probabilities;
                assert.ok(probs);
                assert.equal(probs.size, 32000); // the whole vocabulary
                let sum = 0;
                let max = 0;
                for (const p of probs.values()) {
                    assert.ok(Number.isFinite(p) && p >= 0);
                    sum += p;
                    max = Math.max(max, p);
                }
                assert.ok(Math.abs(sum - 1) < 1e-3, `sum ${sum}`);
                assert.ok(max < 0.5 && max > 1 / 32000, `max ${max}`); // varied, not degenerate
            } finally {
                await context.dispose();
            }
        } finally {
            await vocabModel.dispose();
            await model.dispose();
        }
    });
});
