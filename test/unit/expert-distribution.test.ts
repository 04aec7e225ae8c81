// The expert distribution dump (src/runtime/expert-distribution.ts): the native record as JSON, the file names
// and contents (SGLang's keys, the CSV), the writer (directory created, never over an earlier dump), the
// directory variable, and the recorder flags and engine options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { NativeExpertRecord } from '../../src/native/addon.js';
import {
  EXPERT_DISTRIBUTION_MESSAGES,
  expertDistributionCsv,
  expertDistributionDir,
  expertDistributionFiles,
  expertRecordFromNative,
  timeStamp,
  writeExpertDistributionFiles,
} from '../../src/runtime/expert-distribution.js';
import { resolveEngineOptions } from '../../src/engine/engine-options.js';
import { parseServerOptions } from '../../src/server/server-flags.js';
import { makeTempDir } from '../helpers/temp-dir.js';

/** L 2 layers (layer 0 dense, layer 1 MoE), E 3 experts, K 2; two passes of 2 and 1 tokens. */
function nativeRecord(mode: NativeExpertRecord['mode']): NativeExpertRecord {
  const detail = mode === 'per_pass' || mode === 'per_token';
  return {
    mode,
    recording: true,
    numLayers: 2,
    numExperts: 3,
    topK: 2,
    numPasses: 2,
    logicalCount: Int32Array.from([0, 0, 0, 2, 3, 1]),
    passIds: detail ? Float64Array.from([7, 9]) : new Float64Array(0),
    passCounts: detail ? Int32Array.from([0, 0, 0, 2, 1, 1, /* pass 9 */ 0, 0, 0, 0, 2, 0]) : new Int32Array(0),
    passTokens: mode === 'per_token' ? Int32Array.from([2, 1]) : new Int32Array(0),
    // pass 7: layer 0 [[-1,-1],[-1,-1]], layer 1 [[0,1],[2,0]]; pass 9: layer 0 [[-1,-1]], layer 1 [[1,1]]
    topkIds: mode === 'per_token' ? Int32Array.from([-1, -1, -1, -1, 0, 1, 2, 0, -1, -1, 1, 1]) : new Int32Array(0),
  };
}

test('the messages are http_server.py\'s', () => {
  assert.deepEqual(EXPERT_DISTRIBUTION_MESSAGES, {
    start: 'Start recording the expert distribution.\n',
    stop: 'Stop recording the expert distribution.\n',
    dump: 'Dump expert distribution record.\n',
  });
});

test('stat: the record is [layers][experts] counts, no per-pass records; files keep SGLang\'s keys first', () => {
  const r = expertRecordFromNative(nativeRecord('stat'), [1], 1000);
  assert.deepEqual(r, {
    mode: 'stat', recording: true, num_layers: 2, num_experts: 3, top_k: 2, moe_layer_ids: [1], buffer_size: 1000, num_passes: 2,
    logical_count: [[0, 0, 0], [2, 3, 1]], files: [],
  });
  assert.deepEqual(Object.keys(r).at(-1), 'files');
  const files = expertDistributionFiles(r, '1744347750.3721356');
  assert.deepEqual(files.map((f) => f.name), ['expert_distribution_recorder_1744347750.3721356.json', 'expert_distribution_recorder_1744347750.3721356.csv']);
  const json = JSON.parse(files[0]!.content);
  assert.deepEqual(json, {
    rank: 0, logical_count: [[0, 0, 0], [2, 3, 1]], average_utilization_rate_over_window: null,
    mode: 'stat', recording: true, num_layers: 2, num_experts: 3, top_k: 2, moe_layer_ids: [1], buffer_size: 1000, num_passes: 2,
  });
  assert.deepEqual(Object.keys(json).slice(0, 3), ['rank', 'logical_count', 'average_utilization_rate_over_window']);
  // readable: one key a line, one row of logical_count a line
  assert.match(files[0]!.content, /\n  "logical_count": \[\n    \[0,0,0\],\n    \[2,3,1\]\n  \],\n/);
  // the CSV: the MoE layers only, every expert (zeros kept)
  assert.equal(files[1]!.content, 'layer_id,expert_id,count\n1,0,2\n1,1,3\n1,2,1\n');
  assert.equal(expertDistributionCsv({ ...r, logical_count: [[0, 0, 0], [0, 0, 0]] }), 'layer_id,expert_id,count\n1,0,0\n1,1,0\n1,2,0\n');
});

test('stat_approx is dumped as stat (same file names and keys)', () => {
  const files = expertDistributionFiles(expertRecordFromNative(nativeRecord('stat_approx'), [1], 10), '1.5');
  assert.equal(files[0]!.name, 'expert_distribution_recorder_1.5.json');
  assert.equal(JSON.parse(files[0]!.content).mode, 'stat_approx');
});

test('per_pass: one record per pass ([layers][experts] each); file _0 with records and the identity map', () => {
  const r = expertRecordFromNative(nativeRecord('per_pass'), [1], 5);
  assert.deepEqual(r.records, [
    { forward_pass_id: 7, rank: 0, gatherer_key: 'primary', global_physical_count: [[0, 0, 0], [2, 1, 1]] },
    { forward_pass_id: 9, rank: 0, gatherer_key: 'primary', global_physical_count: [[0, 0, 0], [0, 2, 0]] },
  ]);
  assert.deepEqual(Object.keys(r).slice(-2), ['records', 'files']);
  const files = expertDistributionFiles(r, '2.25');
  assert.deepEqual(files.map((f) => f.name), ['expert_distribution_recorder_2.25_0.json', 'expert_distribution_recorder_2.25_0.csv']);
  const json = JSON.parse(files[0]!.content);
  assert.deepEqual(Object.keys(json).slice(0, 3), ['records', 'last_physical_to_logical_map', 'logical_count']);
  assert.deepEqual(json.records, r.records);
  assert.deepEqual(json.last_physical_to_logical_map, [[0, 1, 2], [0, 1, 2]]);
  assert.deepEqual(json.logical_count, [[0, 0, 0], [2, 3, 1]]);
});

test('per_token: topk ids reshaped per pass to [layers][tokens][k], with num_tokens', () => {
  const r = expertRecordFromNative(nativeRecord('per_token'), [1], -1);
  assert.equal(r.buffer_size, -1);
  assert.deepEqual(
    r.records!.map((p) => [p.num_tokens, p.topk_ids_of_layer]),
    [
      [2, [[[-1, -1], [-1, -1]], [[0, 1], [2, 0]]]],
      [1, [[[-1, -1]], [[1, 1]]]],
    ],
  );
});

test('a dense model: [layers][0] counts, a CSV with its header only', () => {
  const raw: NativeExpertRecord = { ...nativeRecord('stat'), numLayers: 5, numExperts: 0, topK: 0, numPasses: 0, logicalCount: new Int32Array(0) };
  const r = expertRecordFromNative(raw, [], 1000);
  assert.deepEqual(r.logical_count, [[], [], [], [], []]);
  assert.equal(expertDistributionCsv(r), 'layer_id,expert_id,count\n');
  assert.deepEqual(JSON.parse(expertDistributionFiles(r, '3')[0]!.content).logical_count, [[], [], [], [], []]);
});

test('the writer creates the directory, returns absolute paths, and never writes over an earlier dump', async () => {
  const base = makeTempDir('sgl-expert-unit-');
  const dir = path.join(base, 'a', 'b');
  const r = expertRecordFromNative(nativeRecord('stat'), [1], 1000);
  const paths = await writeExpertDistributionFiles(r, dir, '42.5');
  assert.deepEqual(paths, [path.join(dir, 'expert_distribution_recorder_42.5.json'), path.join(dir, 'expert_distribution_recorder_42.5.csv')]);
  assert.ok(paths.every((p) => path.isAbsolute(p) && existsSync(p)));
  assert.equal(readFileSync(paths[1]!, 'utf8'), expertDistributionFiles(r, '42.5')[1]!.content);
  const other = { ...r, logical_count: [[9, 9, 9], [9, 9, 9]] };
  await assert.rejects(writeExpertDistributionFiles(other, dir, '42.5'), /EEXIST/);
  assert.deepEqual(JSON.parse(readFileSync(paths[0]!, 'utf8')).logical_count, [[0, 0, 0], [2, 3, 1]], 'the first dump stays');
  // a relative directory resolves against the working directory
  const rel = path.relative(process.cwd(), path.join(base, 'rel'));
  const relPaths = await writeExpertDistributionFiles(r, rel, '1');
  assert.equal(relPaths[0], path.join(base, 'rel', 'expert_distribution_recorder_1.json'));
});

test('the dump directory: SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, else /tmp; the time stamp is Python\'s time.time()', () => {
  assert.equal(expertDistributionDir({}), '/tmp');
  assert.equal(expertDistributionDir({ SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR: '' }), '/tmp');
  assert.equal(expertDistributionDir({ SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR: '/data/eplb' }), '/data/eplb');
  assert.equal(timeStamp(1744347750372.5), '1744347750.3725');
  assert.match(timeStamp(), /^\d{10}(\.\d+)?$/);
});

test('flags: --expert-distribution-recorder-mode / -buffer-size reach the engine options, also from SGL_* variables', () => {
  const o = parseServerOptions(['--expert-distribution-recorder-mode', 'per_pass', '--expert-distribution-recorder-buffer-size', '-5'], {});
  assert.equal(o.engine.expertDistributionRecorderMode, 'per_pass');
  assert.equal(o.engine.expertDistributionRecorderBufferSize, -5);
  const e = parseServerOptions([], { SGL_EXPERT_DISTRIBUTION_RECORDER_MODE: 'stat', SGL_EXPERT_DISTRIBUTION_RECORDER_BUFFER_SIZE: '64' });
  assert.equal(e.engine.expertDistributionRecorderMode, 'stat');
  assert.equal(e.engine.expertDistributionRecorderBufferSize, 64);
  assert.equal(parseServerOptions([], {}).engine.expertDistributionRecorderMode, undefined);
  assert.throws(() => parseServerOptions(['--expert-distribution-recorder-mode', 'sometimes'], {}), /--expert-distribution-recorder-mode must be one of stat, stat_approx, per_pass, per_token/);
  assert.throws(() => parseServerOptions(['--expert-distribution-recorder-buffer-size', '0'], {}), /--expert-distribution-recorder-buffer-size must be positive/);
  assert.throws(() => parseServerOptions(['--expert-distribution-recorder-buffer-size', '1.5'], {}), /--expert-distribution-recorder-buffer-size must be an integer/);
});

test('engine options: default off with a 1000-pass buffer; a negative buffer is unbounded (-1); bad values are RangeErrors', () => {
  const d = resolveEngineOptions({});
  assert.equal(d.expertDistributionRecorderMode, null);
  assert.equal(d.expertDistributionRecorderBufferSize, 1000);
  const o = resolveEngineOptions({ expertDistributionRecorderMode: 'per_token', expertDistributionRecorderBufferSize: -7 });
  assert.equal(o.expertDistributionRecorderMode, 'per_token');
  assert.equal(o.expertDistributionRecorderBufferSize, -1);
  assert.throws(() => resolveEngineOptions({ expertDistributionRecorderMode: 'x' as never }), RangeError);
  assert.throws(() => resolveEngineOptions({ expertDistributionRecorderBufferSize: 0 }), /expertDistributionRecorderBufferSize must be a positive integer, or negative for no limit/);
});
