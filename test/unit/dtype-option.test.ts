// --dtype plumbing: the server flag reaches ServingEngineOptions.dtype, resolveEngineOptions checks it, the
// native engine and model receive it (select_backend rejects an unknown value), and on the CPU float32 keeps
// working as before (the CPU backend computes in f32 on the weights as stored; on a GPU float32 picks the
// float32 CUDA backend, checked by test/gpu/model-parity.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ServingEngine } from '../../src/engine/engine.js';
import { isFloat32Dtype, resolveEngineOptions } from '../../src/engine/engine-options.js';
import { loadAddon } from '../../src/native/addon.js';
import { parseServerOptions } from '../../src/server/server-flags.js';
import { fixtureModelDir } from '../helpers/fixtures.js';

test('--dtype reaches the engine options; absent it stays auto', () => {
  assert.equal(parseServerOptions([], {}).dtype, 'auto');
  assert.equal(parseServerOptions([], {}).engine.dtype, undefined);
  for (const d of ['float32', 'float', 'bfloat16', 'auto']) {
    const o = parseServerOptions(['--dtype', d], {});
    assert.equal(o.dtype, d);
    assert.equal(o.engine.dtype, d);
  }
  assert.equal(parseServerOptions([], { SGL_DTYPE: 'float32' }).engine.dtype, 'float32', 'from the environment too');
  assert.throws(() => parseServerOptions(['--dtype', 'fp64'], {}), /--dtype must be one of/);
});

test('resolveEngineOptions: dtype defaults to auto, keeps the value, rejects unknown ones', () => {
  assert.equal(resolveEngineOptions({}, false).dtype, 'auto');
  assert.equal(resolveEngineOptions({ dtype: 'float32' }, false).dtype, 'float32');
  assert.equal(resolveEngineOptions({ dtype: 'float', device: 'cpu' }, true).dtype, 'float');
  assert.throws(() => resolveEngineOptions({ dtype: 'fp64' as 'float' }, false), /dtype must be one of/);
  assert.ok(isFloat32Dtype('float32') && isFloat32Dtype('float'));
  assert.ok(!isFloat32Dtype('auto') && !isFloat32Dtype('bfloat16') && !isFloat32Dtype('half'));
});

test('the native engine and model receive dtype: an unknown value is refused by the backend selection', () => {
  const addon = loadAddon();
  const modelPath = fixtureModelDir('stories260k');
  assert.throws(
    () =>
      new addon.NativeEngine({
        modelPath, numPages: 64, pageSize: 1, device: 'cpu', dtype: 'fp64' as 'float', chunkedPrefillSize: -1, maxPrefillTokens: 1024,
        maxRunningRequests: 4, disableRadixCache: false, schedulePolicy: 'fcfs', onStep: () => {},
      }),
    /dtype must be 'auto', 'bfloat16', 'float16', 'float32', 'half' or 'float', got 'fp64'/,
  );
  assert.throws(() => new addon.NativeModel({ modelPath, numPages: 16, pageSize: 1, device: 'cpu', dtype: 'fp64' as 'float' }), /dtype must be/);
  const model = new addon.NativeModel({ modelPath, numPages: 16, pageSize: 1, device: 'cpu', dtype: 'float32' });
  try {
    assert.equal(model.info().backend, 'cpu');
    assert.equal(model.info().activationDtype, 'float32');
  } finally {
    model.close();
  }
});

test('float32 with device cpu: the CPU backend as before, same greedy output as auto', async () => {
  const modelPath = fixtureModelDir('stories260k');
  const run = async (dtype: 'auto' | 'float32' | 'float') => {
    const engine = await ServingEngine.create({ modelPath, device: 'cpu', dtype, maxTotalTokens: 1024, randomSeed: 1 });
    try {
      assert.equal(engine.info.backend, 'cpu');
      assert.equal(engine.info.activationDtype, 'float32');
      assert.equal(engine.options.dtype, dtype);
      const [out] = await engine.generateAll({ inputIds: [1, 403, 407, 261], samplingParams: { temperature: 0, max_new_tokens: 6, ignore_eos: true }, returnLogprob: true });
      return { ids: out!.outputIds, lps: out!.outputTokenLogprobs!.map((t) => t[0] as number) };
    } finally {
      await engine.close();
    }
  };
  const base = await run('auto');
  for (const d of ['float32', 'float'] as const) assert.deepEqual(await run(d), base, `dtype ${d} on the CPU`);
});
