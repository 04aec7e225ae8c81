// Each broken checkpoint gives a clear error naming the file and, where it applies, the tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadAddon } from '../../src/native/addon.js';
import { tinyConfig, tinyTensors, writeTinyModel } from '../helpers/tiny-model.js';
import { writeSafetensors } from '../../src/util/safetensors-writer.js';

const { NativeModel } = loadAddon();
const open = (dir: string) => new NativeModel({ modelPath: dir, numPages: 16, pageSize: 4 });

function expectError(dir: string, pattern: RegExp): void {
  assert.throws(() => open(dir), (e: Error) => {
    assert.match(e.message, pattern);
    return true;
  });
}

test('a valid tiny checkpoint loads in f32, bf16 and f16', () => {
  for (const dtype of ['F32', 'BF16', 'F16'] as const) {
    const dir = writeTinyModel({ tensors: tinyTensors(dtype) });
    const m = open(dir);
    assert.equal(m.info().architecture, 'LlamaForCausalLM');
    m.close();
  }
});

test('missing model directory, config.json and weights', () => {
  expectError('/nonexistent/model/dir', /model directory not found: \/nonexistent\/model\/dir/);
  const dir = writeTinyModel();
  rmSync(path.join(dir, 'config.json'));
  expectError(dir, /missing config\.json in .*sgl-tiny-/);
  const dir2 = writeTinyModel({ noWeights: true });
  expectError(dir2, /no model\.safetensors or model\.safetensors\.index\.json in .*sgl-tiny-/);
});

test('truncated file and corrupt header name the file', () => {
  const dir = writeTinyModel();
  const file = path.join(dir, 'model.safetensors');
  const bytes = readFileSync(file);
  truncateSync(file, 4);
  expectError(dir, /model\.safetensors: truncated safetensors file \(4 bytes/);
  writeFileSync(file, bytes.subarray(0, 100)); // header length says more than the file holds
  expectError(dir, /model\.safetensors: truncated or corrupt safetensors header \(header length \d+ bytes, file has 100\)/);
  const garbage = Buffer.from(bytes);
  garbage.write('{"model.embed_tokens.weight": [[[', 8, 'utf8');
  writeFileSync(file, garbage);
  expectError(dir, /model\.safetensors: corrupt safetensors header: invalid JSON/);
  writeFileSync(file, bytes.subarray(0, bytes.length - 64)); // tensor data cut short
  expectError(dir, /model\.safetensors: corrupt safetensors header: tensor '.*' data \[\d+, \d+\) lies outside the file/);
});

test('unknown architecture and bad config values', () => {
  expectError(writeTinyModel({ config: { ...tinyConfig, architectures: ['FooForCausalLM'] } }), /config\.json: unknown architecture "FooForCausalLM" \(supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen2MoeForCausalLM, LlamaForSequenceClassification, XLMRobertaForSequenceClassification\)/);
  expectError(writeTinyModel({ config: { ...tinyConfig, hidden_size: undefined } }), /config\.json: missing or non-numeric "hidden_size"/);
  expectError(writeTinyModel({ config: { ...tinyConfig, rope_scaling: { rope_type: 'yarn', factor: 4 } } }), /unsupported rope type "yarn"/);
});

test('missing tensor, wrong shape and wrong dtype name the tensor and the file', () => {
  const noQ = tinyTensors().filter((t) => t.name !== 'model.layers.0.self_attn.q_proj.weight');
  expectError(writeTinyModel({ tensors: noQ }), /missing tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' in .*sgl-tiny-\S+ \(model\.safetensors\)/);
  const badShape = tinyTensors().map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [9] } : t));
  expectError(writeTinyModel({ tensors: badShape }), /tensor 'model\.norm\.weight' in .*model\.safetensors has shape \[9\], expected \[8\]/);
  const badDtype = tinyTensors().map((t) => (t.name === 'lm_head.weight' ? { ...t, dtype: 'I32' as const } : t));
  expectError(writeTinyModel({ tensors: badDtype }), /tensor 'lm_head\.weight' in .*model\.safetensors has dtype I32, expected BF16, F16 or F32/);
});

test('sharded checkpoints: loads through the index, and a missing shard is named', () => {
  const dir = writeTinyModel({ noWeights: true });
  const tensors = tinyTensors();
  writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), tensors.slice(0, 5));
  writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), tensors.slice(5));
  const weightMap: Record<string, string> = {};
  tensors.forEach((t, i) => (weightMap[t.name] = i < 5 ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors'));
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  open(dir).close();
  rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
  expectError(dir, /missing shard model-00002-of-00002\.safetensors named by .*model\.safetensors\.index\.json/);
});

test('argument errors are thrown synchronously and name the argument', () => {
  assert.throws(() => new NativeModel({ modelPath: 42 as unknown as string, numPages: 1 }), /modelPath must be a string/);
  const m = open(writeTinyModel());
  const ok = { tokenIds: Int32Array.of(1), qoIndptr: Int32Array.of(0, 1), kvIndptr: Int32Array.of(0, 1), kvPageIndices: Int32Array.of(0), kvLens: Int32Array.of(1), logitRows: Int32Array.of(0) };
  assert.equal(m.forward(ok).length, 32);
  assert.throws(() => m.forward({ ...ok, tokenIds: [1] as unknown as Int32Array }), /tokenIds must be an Int32Array/);
  assert.throws(() => m.forward({ ...ok, tokenIds: Int32Array.of(99) }), /token id 99 at index 0 is outside the vocabulary \[0, 32\)/);
  assert.throws(() => m.forward({ ...ok, kvPageIndices: Int32Array.of(16) }), /page id 16 is outside the pool \[0, 16\)/);
  assert.throws(() => m.forward({ ...ok, kvLens: Int32Array.of(5) }), /1 pages of 4 cannot hold 5 tokens/);
  m.close();
  assert.throws(() => m.forward(ok), /model is closed/);
});
