// SGLang's expert distribution recorder over REST, on launched servers (`npm start -- ...`) on 127.0.0.1:
// qwen2-moe-tiny with --expert-distribution-recorder-mode stat (the dumped counts equal transformers' router
// choices of the golden requests exactly, concurrent requests add up, a dump clears the record, an idle
// record is zeros) and per_token (each pass's chosen experts), stories260k without a mode (400 in SGLang's
// error shape, and the server keeps serving) and with one (a dense model: an empty record). The dump files
// go to SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, a temp dir here.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { launchServer, type RunningServer } from '../../src/server/launch.js';
import { parseServerOptions } from '../../src/server/server-flags.js';
import { fixtureModelDir, loadGolden, type GoldenGenerate } from '../helpers/fixtures.js';
import { makeTempDir } from '../helpers/temp-dir.js';

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const golden = loadGolden('qwen2-moe-tiny');
const L = 3;
const E = 8;
const OFF = 'expert distribution recording is off: launch with --expert-distribution-recorder-mode (stat, stat_approx, per_pass or per_token)';
const dumpDir = makeTempDir('sgl-expert-dump-');
const servers: RunningServer[] = [];
const logs = new Map<RunningServer, string[]>();
let moe: string; // qwen2-moe-tiny, stat
let moeToken: string; // qwen2-moe-tiny, per_token
let dense: string; // stories260k, no recorder mode
let denseRec: string; // stories260k, stat

async function launch(args: string[]): Promise<string> {
  const lines: string[] = [];
  const s = await launchServer(parseServerOptions(['--port', '0', '--page-size', '4', ...args], {}), (m) => lines.push(m), { isTTY: false, write: () => true });
  servers.push(s);
  logs.set(s, lines);
  return `http://127.0.0.1:${s.httpPort}`;
}

before(async () => {
  process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR = path.join(dumpDir, 'nested', 'dir'); // created by the first dump
  const moePath = fixtureModelDir('qwen2-moe-tiny');
  // No radix cache: a cached prefix is not routed again, and the goldens count every prompt token.
  moe = await launch(['--model-path', moePath, '--disable-radix-cache', '--expert-distribution-recorder-mode', 'stat']);
  moeToken = await launch(['--model-path', moePath, '--disable-radix-cache', '--expert-distribution-recorder-mode', 'per_token', '--expert-distribution-recorder-buffer-size', '-1']);
  dense = await launch([]);
  denseRec = await launch(['--expert-distribution-recorder-mode', 'stat']);
});

after(async () => {
  for (const s of servers) await s.close();
  delete process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR;
});

async function call(base: string, route: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}) {
  const res = await fetch(base + route, {
    method: init.method ?? 'POST',
    headers: init.headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await res.text();
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, type: res.headers.get('content-type') };
}

const record = (base: string, op: 'start' | 'stop' | 'dump') => call(base, `/${op}_expert_distribution_record`, { headers: { accept: 'application/json' } });

async function generate(base: string, g: GoldenGenerate): Promise<void> {
  const r = await call(base, '/generate', { body: { input_ids: g.input_ids, sampling_params: { max_new_tokens: 24, temperature: 0, ignore_eos: true } } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json.output_ids, g.greedy_ids, 'greedy output as transformers');
}

/** [L][E] totals of the golden router choices of one request with max_new_tokens 24 (prefill + 23 decodes). */
function goldenCounts(...gs: GoldenGenerate[]): number[][] {
  const c = Array.from({ length: L }, () => new Array<number>(E).fill(0));
  for (const g of gs) {
    g.prefill_router_topk!.forEach((perPos, l) => perPos.forEach((ks) => ks.forEach((e) => c[l]![e]!++)));
    for (const step of g.decode_router_topk!) step.forEach((ks, l) => ks.forEach((e) => c[l]![e]!++));
  }
  return c;
}
const zeros = () => Array.from({ length: L }, () => new Array<number>(E).fill(0));

test('start / stop / dump answer SGLang\'s text bodies on GET and POST', async () => {
  for (const method of ['GET', 'POST']) {
    for (const [op, body] of [
      ['start', 'Start recording the expert distribution.\n'],
      ['stop', 'Stop recording the expert distribution.\n'],
      ['dump', 'Dump expert distribution record.\n'],
    ] as const) {
      const r = await call(moe, `/${op}_expert_distribution_record`, { method });
      assert.equal(r.status, 200, `${method} ${op}`);
      assert.equal(r.text, body, `${method} ${op}`);
      assert.match(r.type ?? '', /^text\/plain/);
    }
  }
  // JSON on request: ?format=json or Accept: application/json (a wildcard Accept stays text)
  assert.deepEqual((await call(moe, '/start_expert_distribution_record?format=json', { method: 'GET' })).json, { message: 'Start recording the expert distribution.' });
  assert.deepEqual((await record(moe, 'stop')).json, { message: 'Stop recording the expert distribution.' });
  const star = await call(moe, '/stop_expert_distribution_record', { headers: { accept: '*/*' } });
  assert.equal(star.text, 'Stop recording the expert distribution.\n');
  const put = await call(moe, '/dump_expert_distribution_record', { method: 'PUT' });
  assert.equal(put.status, 405);
});

test('stat: one greedy /generate of 24 tokens dumps exactly transformers\' router choices, into the env dir', async () => {
  const g = golden.generate[0]!;
  await record(moe, 'start');
  await generate(moe, g);
  await record(moe, 'stop');
  const r = await record(moe, 'dump');
  assert.equal(r.status, 200);
  assert.equal(r.json.message, 'Dump expert distribution record.');
  const rec = r.json.record;
  assert.deepEqual(
    { mode: rec.mode, recording: rec.recording, num_layers: rec.num_layers, num_experts: rec.num_experts, top_k: rec.top_k, moe_layer_ids: rec.moe_layer_ids, buffer_size: rec.buffer_size, num_passes: rec.num_passes },
    { mode: 'stat', recording: false, num_layers: L, num_experts: E, top_k: 4, moe_layer_ids: [0, 1, 2], buffer_size: 1000, num_passes: 24 },
  );
  assert.deepEqual(rec.logical_count, goldenCounts(g));
  assert.equal(rec.records, undefined, 'no per-pass records in stat mode');

  // the files: expert_distribution_recorder_<time>.json and .csv, in the (created) env directory
  const dir = process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR!;
  assert.equal(rec.files.length, 2);
  const [jsonPath, csvPath] = rec.files as string[];
  assert.equal(path.dirname(jsonPath!), dir);
  assert.match(path.basename(jsonPath!), /^expert_distribution_recorder_\d+\.\d+\.json$/);
  assert.equal(path.basename(csvPath!), path.basename(jsonPath!).replace(/\.json$/, '.csv'));
  const file = JSON.parse(readFileSync(jsonPath!, 'utf8'));
  assert.deepEqual(Object.keys(file).slice(0, 3), ['rank', 'logical_count', 'average_utilization_rate_over_window']);
  assert.equal(file.rank, 0);
  assert.equal(file.average_utilization_rate_over_window, null);
  assert.deepEqual(file.logical_count, goldenCounts(g));
  assert.equal(file.num_passes, 24);
  const csv = readFileSync(csvPath!, 'utf8').trimEnd().split('\n');
  assert.equal(csv[0], 'layer_id,expert_id,count');
  assert.equal(csv.length, 1 + L * E);
  const want = goldenCounts(g);
  for (const line of csv.slice(1)) {
    const [l, e, n] = line.split(',').map(Number) as [number, number, number];
    assert.equal(n, want[l]![e], line);
  }

  // the dump cleared the record (SGLang's dump_record resets)
  const again = await record(moe, 'dump');
  assert.equal(again.json.record.num_passes, 0);
  assert.deepEqual(again.json.record.logical_count, zeros());
});

test('stat: two concurrent requests add up; start clears an earlier record', async () => {
  const [a, b] = [golden.generate[1]!, golden.generate[2]!];
  await record(moe, 'start');
  await generate(moe, golden.generate[0]!); // cleared by the start below
  await record(moe, 'start');
  await Promise.all([generate(moe, a), generate(moe, b)]);
  await record(moe, 'stop');
  const r = await record(moe, 'dump');
  assert.deepEqual(r.json.record.logical_count, goldenCounts(a, b));
  assert.equal(r.json.record.num_passes >= 24, true);
});

test('stat: start / stop / dump with no traffic is zeros; traffic while stopped is not counted', async () => {
  await record(moe, 'start');
  await record(moe, 'stop');
  await generate(moe, golden.generate[0]!);
  const r = await record(moe, 'dump');
  assert.equal(r.status, 200);
  assert.equal(r.json.record.num_passes, 0);
  assert.deepEqual(r.json.record.logical_count, zeros());
  const csv = readFileSync(r.json.record.files[1], 'utf8');
  assert.equal(csv.split('\n').filter((l: string) => l.endsWith(',0')).length, L * E);
});

test('stat: a dump while recording clears the record and recording goes on', async () => {
  const [a, b] = [golden.generate[0]!, golden.generate[1]!];
  await record(moe, 'start');
  await generate(moe, a);
  const first = await record(moe, 'dump');
  assert.equal(first.json.record.recording, true);
  assert.deepEqual(first.json.record.logical_count, goldenCounts(a));
  await generate(moe, b);
  const dir = process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR!;
  const earlier = new Set(readdirSync(dir));
  const second = (await call(moe, '/dump_expert_distribution_record')).text; // a text dump writes its files too
  assert.equal(second, 'Dump expert distribution record.\n');
  const added = readdirSync(dir).filter((f) => !earlier.has(f)).sort();
  assert.equal(added.length, 2);
  assert.deepEqual(added.map((f) => path.extname(f)), ['.csv', '.json']);
  const last = JSON.parse(readFileSync(path.join(dir, added[1]!), 'utf8'));
  assert.deepEqual(last.logical_count, goldenCounts(b), 'only what came after the first dump');
  await record(moe, 'stop');
});

test('per_token: each pass\'s records, its chosen experts per layer and token as transformers chose them', async () => {
  const g = golden.generate[2]!;
  await record(moeToken, 'start');
  await generate(moeToken, g);
  await record(moeToken, 'stop');
  const rec = (await record(moeToken, 'dump')).json.record;
  assert.equal(rec.mode, 'per_token');
  assert.equal(rec.buffer_size, -1, 'a negative buffer size keeps every pass');
  assert.equal(rec.num_passes, 24);
  assert.equal(rec.records.length, 24);
  assert.deepEqual(rec.logical_count, goldenCounts(g));
  const [p0, p1] = rec.records;
  assert.deepEqual(Object.keys(p0), ['forward_pass_id', 'rank', 'gatherer_key', 'global_physical_count', 'num_tokens', 'topk_ids_of_layer']);
  assert.equal(p0.num_tokens, g.input_ids.length);
  assert.deepEqual(p0.topk_ids_of_layer, g.prefill_router_topk, 'prefill: [layer][token][k]');
  assert.deepEqual(p1.topk_ids_of_layer, g.decode_router_topk![0]!.map((ks) => [ks]), 'first decode: one token');
  assert.ok(rec.records.every((r: Json, i: number) => i === 0 || r.forward_pass_id > rec.records[i - 1].forward_pass_id));
  // the sum of the passes is the record's logical_count
  const sum = zeros();
  for (const r of rec.records) r.global_physical_count.forEach((row: number[], l: number) => row.forEach((n, e) => (sum[l]![e]! += n)));
  assert.deepEqual(sum, rec.logical_count);
  // per_pass / per_token files carry SGLang's rank suffix: expert_distribution_recorder_<time>_0.json
  const [jsonPath] = rec.files as string[];
  assert.match(path.basename(jsonPath!), /^expert_distribution_recorder_\d+\.\d+_0\.json$/);
  const file = JSON.parse(readFileSync(jsonPath!, 'utf8'));
  assert.deepEqual(Object.keys(file).slice(0, 2), ['records', 'last_physical_to_logical_map']);
  assert.deepEqual(file.records, rec.records);
  assert.deepEqual(file.last_physical_to_logical_map, Array.from({ length: L }, () => [0, 1, 2, 3, 4, 5, 6, 7]));
});

test('without --expert-distribution-recorder-mode: 400 in SGLang\'s error shape on each route, and the server keeps serving', async () => {
  const dir = process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR!;
  const filesBefore = existsSync(dir) ? readdirSync(dir).length : 0;
  for (const method of ['GET', 'POST']) {
    for (const op of ['start', 'stop', 'dump']) {
      for (const headers of [{}, { accept: 'application/json' }] as Record<string, string>[]) {
        const r = await call(dense, `/${op}_expert_distribution_record`, { method, headers });
        assert.equal(r.status, 400, `${method} ${op}`);
        assert.deepEqual(r.json, { error: { message: OFF } });
      }
    }
  }
  assert.equal(existsSync(dir) ? readdirSync(dir).length : 0, filesBefore, 'nothing written');
  const g = loadGolden('stories260k').generate[0]!;
  const r = await call(dense, '/generate', { body: { input_ids: g.input_ids, sampling_params: { max_new_tokens: 8, temperature: 0, ignore_eos: true } } });
  assert.equal(r.status, 200);
  assert.deepEqual(r.json.output_ids, g.greedy_ids.slice(0, 8));
  const info = (await call(dense, '/server_info', { method: 'GET' })).json;
  assert.equal(info.expert_distribution_recorder_mode, null);
  assert.equal(info.expert_distribution_recorder_buffer_size, 1000);
  assert.equal((await call(moe, '/server_info', { method: 'GET' })).json.expert_distribution_recorder_mode, 'stat');
  assert.equal((await call(moeToken, '/get_server_info', { method: 'GET' })).json.expert_distribution_recorder_buffer_size, -1);
});

test('a dense model with a recorder mode: it serves, and the record has no experts (an empty [layers][0] count)', async () => {
  const s = servers[3]!;
  assert.ok(logs.get(s)!.some((m) => /--expert-distribution-recorder-mode stat: LlamaForCausalLM has no MoE layers/.test(m)), logs.get(s)!.join('\n'));
  const g = loadGolden('stories260k').generate[0]!;
  assert.equal((await record(denseRec, 'start')).status, 200);
  const r = await call(denseRec, '/generate', { body: { input_ids: g.input_ids, sampling_params: { max_new_tokens: 8, temperature: 0, ignore_eos: true } } });
  assert.deepEqual(r.json.output_ids, g.greedy_ids.slice(0, 8));
  const rec = (await record(denseRec, 'dump')).json.record;
  assert.deepEqual(
    { num_experts: rec.num_experts, moe_layer_ids: rec.moe_layer_ids, logical_count: rec.logical_count },
    { num_experts: 0, moe_layer_ids: [], logical_count: [[], [], [], [], []] },
  );
  assert.equal(readFileSync(rec.files[1], 'utf8'), 'layer_id,expert_id,count\n');
});
