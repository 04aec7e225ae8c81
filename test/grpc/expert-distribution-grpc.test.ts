// The expert distribution recorder over gRPC, end to end: a launched qwen2-moe-tiny server (stat mode) with
// its gRPC port, reached by RemoteRuntime and by a --grpc-target gateway (REST in another "process" shape):
// the dumped counts equal transformers' router choices, the files are written on the engine's side and named
// in the reply, REST through the gateway answers what the engine server answers; a server without a recorder
// mode refuses with INVALID_ARGUMENT (400 through RemoteRuntime and the gateway) and keeps serving.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';

import { launchServer, type RunningServer } from '../../src/server/launch.js';
import { parseServerOptions } from '../../src/server/server-flags.js';
import { runtimeService } from '../../src/grpc/proto.js';
import { RemoteRuntime } from '../../src/runtime/remote-runtime.js';
import { RuntimeError, type GenerateItem } from '../../src/runtime/runtime-service.js';
import { fixtureModelDir, loadGolden, type GoldenGenerate } from '../helpers/fixtures.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const golden = loadGolden('qwen2-moe-tiny');
const L = 3;
const E = 8;
const OFF = 'expert distribution recording is off: launch with --expert-distribution-recorder-mode (stat, stat_approx, per_pass or per_token)';
const quiet = () => {};
const sink = { isTTY: false, write: () => true };
let engine: RunningServer; // qwen2-moe-tiny, stat, REST + gRPC
let gateway: RunningServer; // --grpc-target engine
let plain: RunningServer; // stories260k, no recorder mode, REST + gRPC
let remote: RemoteRuntime;
let plainRemote: RemoteRuntime;
const dumpDir = makeTempDir('sgl-expert-grpc-');

before(async () => {
  process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR = dumpDir;
  engine = await launchServer(
    parseServerOptions(['--model-path', fixtureModelDir('qwen2-moe-tiny'), '--port', '0', '--grpc-port', '0', '--page-size', '4', '--disable-radix-cache', '--expert-distribution-recorder-mode', 'stat'], {}),
    quiet, sink,
  );
  gateway = await launchServer(parseServerOptions(['--port', '0', '--grpc-target', `127.0.0.1:${engine.grpc!.port}`], {}), quiet, sink);
  plain = await launchServer(parseServerOptions(['--port', '0', '--grpc-port', '0', '--page-size', '4'], {}), quiet, sink);
  remote = new RemoteRuntime(`127.0.0.1:${engine.grpc!.port}`);
  plainRemote = new RemoteRuntime(`127.0.0.1:${plain.grpc!.port}`);
});

after(async () => {
  await remote?.close();
  await plainRemote?.close();
  await gateway?.close();
  await engine?.close();
  await plain?.close();
  delete process.env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR;
});

function goldenCounts(...gs: GoldenGenerate[]): number[][] {
  const c = Array.from({ length: L }, () => new Array<number>(E).fill(0));
  for (const g of gs) {
    g.prefill_router_topk!.forEach((perPos, l) => perPos.forEach((ks) => ks.forEach((e) => c[l]![e]!++)));
    for (const step of g.decode_router_topk!) step.forEach((ks, l) => ks.forEach((e) => c[l]![e]!++));
  }
  return c;
}

async function generateRemote(g: GoldenGenerate): Promise<void> {
  const { items } = await remote.generate({ input_ids: g.input_ids, sampling_params: { max_new_tokens: 24, temperature: 0, ignore_eos: true } });
  let last: GenerateItem | undefined;
  for await (const it of items) last = it;
  assert.deepEqual(last?.output.output_ids, g.greedy_ids);
}

test('RemoteRuntime: start, generate, stop, dump → the golden counts, files written by the engine and named in the reply', async () => {
  const g = golden.generate[1]!;
  assert.deepEqual(await remote.expertDistributionRecord('start'), { message: 'Start recording the expert distribution.\n' });
  await generateRemote(g);
  assert.deepEqual(await remote.expertDistributionRecord('stop'), { message: 'Stop recording the expert distribution.\n' });
  const res = await remote.expertDistributionRecord('dump');
  assert.equal(res.message, 'Dump expert distribution record.\n');
  const rec = res.record!;
  assert.equal(rec.mode, 'stat');
  assert.equal(rec.num_passes, 24);
  assert.deepEqual(rec.logical_count, goldenCounts(g));
  assert.equal(rec.files.length, 2);
  for (const f of rec.files) assert.ok(existsSync(f) && path.dirname(f) === dumpDir, f);
  assert.deepEqual(JSON.parse(readFileSync(rec.files[0]!, 'utf8')).logical_count, goldenCounts(g));
  // the dump cleared it
  const again = (await remote.expertDistributionRecord('dump')).record!;
  assert.equal(again.num_passes, 0);
  assert.deepEqual(again.logical_count, Array.from({ length: L }, () => new Array(E).fill(0)));
});

test('REST through the --grpc-target gateway answers the engine server\'s bodies; JSON records carry the same counts', async () => {
  const g = golden.generate[2]!;
  const bases = [`http://127.0.0.1:${engine.httpPort}`, `http://127.0.0.1:${gateway.httpPort}`];
  for (const base of bases) {
    for (const [op, body] of [['start', 'Start recording the expert distribution.\n'], ['stop', 'Stop recording the expert distribution.\n']] as const) {
      for (const method of ['GET', 'POST']) {
        const r = await fetch(`${base}/${op}_expert_distribution_record`, { method });
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
        assert.equal(await r.text(), body);
      }
    }
    await fetch(`${base}/start_expert_distribution_record`, { method: 'POST' });
    const gen = await fetch(`${base}/generate`, { method: 'POST', body: JSON.stringify({ input_ids: g.input_ids, sampling_params: { max_new_tokens: 24, temperature: 0, ignore_eos: true } }) });
    assert.deepEqual(((await gen.json()) as { output_ids: number[] }).output_ids, g.greedy_ids);
    const dump = await fetch(`${base}/dump_expert_distribution_record?format=json`, { method: 'POST' });
    assert.equal(dump.status, 200);
    const j = (await dump.json()) as { message: string; record: { logical_count: number[][]; recording: boolean; files: string[] } };
    assert.equal(j.message, 'Dump expert distribution record.');
    assert.equal(j.record.recording, true);
    assert.deepEqual(j.record.logical_count, goldenCounts(g), base);
    assert.ok(j.record.files.every((f) => existsSync(f)));
    await fetch(`${base}/stop_expert_distribution_record`, { method: 'POST' });
  }
  const info = (await (await fetch(`http://127.0.0.1:${gateway.httpPort}/server_info`)).json()) as Record<string, unknown>;
  assert.equal(info.expert_distribution_recorder_mode, 'stat', "the gateway reports the engine's server args");
});

test('a server without a recorder mode: INVALID_ARGUMENT over gRPC, 400 through RemoteRuntime, and it keeps serving', async () => {
  const { Client } = runtimeService();
  const raw = new Client(`127.0.0.1:${plain.grpc!.port}`, grpc.credentials.createInsecure()) as unknown as Record<string, Function> & grpc.Client;
  try {
    for (const rpc of ['StartExpertDistributionRecord', 'StopExpertDistributionRecord', 'DumpExpertDistributionRecord']) {
      const err = await new Promise<grpc.ServiceError>((resolve) => raw[rpc]!.call(raw, {}, new grpc.Metadata(), (e: grpc.ServiceError) => resolve(e)));
      assert.equal(err?.code, grpc.status.INVALID_ARGUMENT, rpc);
      assert.equal(err.details, OFF);
    }
  } finally {
    raw.close();
  }
  for (const op of ['start', 'stop', 'dump'] as const) {
    await assert.rejects(plainRemote.expertDistributionRecord(op), (e: unknown) => e instanceof RuntimeError && e.status === 400 && e.message === OFF);
  }
  const g = loadGolden('stories260k').generate[0]!;
  const { items } = await plainRemote.generate({ input_ids: g.input_ids, sampling_params: { max_new_tokens: 8, temperature: 0, ignore_eos: true } });
  let ids: number[] = [];
  for await (const it of items) ids = it.output.output_ids;
  assert.deepEqual(ids, g.greedy_ids.slice(0, 8));
});
