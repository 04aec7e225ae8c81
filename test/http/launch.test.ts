// The launched server (`npm start -- [flags]`): the engine with REST and gRPC, then a second process-shape
// launch with --grpc-target in front of it (the Kubernetes sidecar shape) answering REST identically, and
// --api-key on both doors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchServer } from '../../src/server/launch.js';
import { parseServerOptions } from '../../src/server/server-flags.js';
import { loadGolden } from '../helpers/fixtures.js';

const quiet = () => {};

test('engine server and a --grpc-target gateway answer REST the same; --api-key guards both', async () => {
  const g = loadGolden('stories260k').generate[0]!;
  const logged: string[] = [];
  const engine = await launchServer(parseServerOptions(['--port', '0', '--grpc-port', '0', '--page-size', '4', '--api-key', 'k'], {}), (m) => logged.push(m), { isTTY: false, write: () => true });
  assert.ok(logged.some((m) => /^Reading weights \(1 file\): done, [\d.]+ (kB|MB) in [\d.]+ s$/.test(m)), logged.join('\n'));
  assert.ok(logged.indexOf('Warm-up generation done') > logged.findIndex((m) => m.startsWith('Reading weights')));
  const gateway = await launchServer(parseServerOptions(['--port', '0', '--grpc-target', `127.0.0.1:${engine.grpc!.port}`, '--api-key', 'k'], {}), quiet);
  try {
    const auth = { authorization: 'Bearer k', 'content-type': 'application/json' };
    const body = JSON.stringify({ input_ids: g.input_ids, sampling_params: { temperature: 0, max_new_tokens: g.greedy_ids.length, ignore_eos: true } });
    const outs = [];
    for (const s of [engine, gateway]) {
      const base = `http://127.0.0.1:${s.httpPort}`;
      assert.equal((await fetch(`${base}/generate`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })).status, 401);
      const r = await fetch(`${base}/generate`, { method: 'POST', body, headers: auth });
      assert.equal(r.status, 200);
      const j = (await r.json()) as { output_ids: number[]; text: string };
      assert.deepEqual(j.output_ids, g.greedy_ids);
      outs.push(j.text);
      const info = await (await fetch(`${base}/get_model_info`, { headers: auth })).json();
      outs.push(JSON.stringify(info));
      const bad = await fetch(`${base}/generate`, { method: 'POST', body: JSON.stringify({ text: 'hi', sampling_params: { top_p: 2 } }), headers: auth });
      outs.push(`${bad.status} ${await bad.text()}`);
    }
    assert.deepEqual(outs.slice(3), outs.slice(0, 3), 'the gateway answers like the engine server');
    assert.match(outs[2]!, /^400 \{"error":\{"message":"top_p must be in \(0, 1\]/);
  } finally {
    await gateway.close();
    await engine.close();
  }
});

test('launch refuses what it cannot serve, naming the flag', async () => {
  await assert.rejects(launchServer(parseServerOptions(['--model-path', 'org/not-cached-model'], {}), quiet), /org\/not-cached-model \(repository not found\)/);
  await assert.rejects(launchServer(parseServerOptions(['--context-length', '100000'], {}), quiet), /--context-length 100000 must be in \[1, /);
  await assert.rejects(launchServer(parseServerOptions(['--dtype', 'bfloat16'], {}), quiet), /--dtype bfloat16: the CPU backend uses the weights as stored/);
});
