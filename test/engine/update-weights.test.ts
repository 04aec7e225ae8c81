// update_weights_from_disk through the engine: a checkpoint of the same architecture is swapped in between
// steps (running requests finish first, queued ones wait, the radix cache is emptied); a bad path or a
// different architecture fails with the loader's message and the old weights keep serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { ServingEngine } from '../../src/engine/engine.js';
import { builtinModelDir } from '../../src/engine/builtin-model.js';
import { writeSafetensors } from '../../src/util/safetensors-writer.js';
import { readSafetensors } from '../helpers/safetensors-reader.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';
import { makeTempDir } from '../helpers/temp-dir.js';

/** A copy of stories260k whose final norm weights are scaled: same shapes, other logits. */
function alteredCopy(): string {
  const src = builtinModelDir();
  const dir = makeTempDir('sgl-uw-');
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(src)) if (f !== 'model.safetensors') copyFileSync(path.join(src, f), path.join(dir, f));
  const tensors = readSafetensors(path.join(src, 'model.safetensors')).map((t) => {
    if (t.name !== 'model.norm.weight') return t;
    const data = new Uint8Array(t.data as Uint8Array);
    const f32 = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
    for (let i = 0; i < f32.length; i++) f32[i] = f32[i]! * (i % 2 ? 3 : -1);
    return { ...t, data };
  });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return dir;
}

test('updateWeights swaps weights between steps, queued requests wait, failures keep the old weights', async () => {
  const g = loadGolden('stories260k').generate[0]!;
  const engine = await ServingEngine.create({ pageSize: 4, maxTotalTokens: 2048 });
  const greedy = async (n = g.greedy_ids.length) =>
    (await engine.generateAll({ inputIds: g.input_ids, samplingParams: { temperature: 0, max_new_tokens: n, ignore_eos: true } }))[0]!;
  try {
    assert.deepEqual((await greedy()).outputIds, g.greedy_ids);
    const altered = alteredCopy();
    // A long request runs while the update is asked for; a request queued after it waits for the swap.
    const running = greedy(300);
    await new Promise((r) => setTimeout(r, 2));
    const update = engine.updateWeights(altered);
    const queued = greedy();
    const [r, u, q] = await Promise.all([running, update, queued]);
    assert.equal(r.completionTokens, 300, 'the running request finished on the old weights');
    assert.deepEqual(r.outputIds.slice(0, g.greedy_ids.length), g.greedy_ids);
    assert.deepEqual(u, { success: true, message: '' });
    assert.notDeepEqual(q.outputIds, g.greedy_ids, 'the queued request ran on the new weights');
    assert.equal(q.cachedTokens, 0, 'the radix cache was emptied by the update');

    const missing = await engine.updateWeights('/nonexistent/model-dir');
    assert.equal(missing.success, false);
    assert.match(missing.message, /\/nonexistent\/model-dir/);
    const other = await engine.updateWeights(fixtureModelDir('qwen2-tiny'));
    assert.equal(other.success, false);
    assert.match(other.message, /different architecture or shape/);
    assert.deepEqual((await greedy()).outputIds, q.outputIds, 'failed updates keep the served weights');

    assert.deepEqual(await engine.updateWeights(builtinModelDir()), { success: true, message: '' });
    assert.deepEqual((await greedy()).outputIds, g.greedy_ids, 'back to the original weights');
    const st = engine.stats();
    assert.equal(st.livePages, 0);
  } finally {
    await engine.close();
  }
});
