// llama3 rope scaling against transformers: llama31-reward-tiny (Llama-3.1 rope, GQA) scored through the
// causal path. Its `score` head [1, C] becomes row 0 of an otherwise-zero lm_head, so logit 0 at the last
// token is the reward that LlamaForSequenceClassification computed in the golden.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadAddon } from '../../src/native/addon.js';
import { PagePool } from '../../src/engine/page-pool.js';
import { SequenceKv, runStep } from '../../src/engine/step-runner.js';
import { writeSafetensors } from '../../src/util/safetensors-writer.js';
import { fixturesDir } from '../helpers/fixtures.js';
import { readSafetensors } from '../helpers/safetensors-reader.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const src = path.join(fixturesDir, 'llama31-reward-tiny');

function rewardAsCausalLm(ropeParameters?: object): string {
  const dir = makeTempDir('sgl-reward-');
  const config = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8'));
  config.architectures = ['LlamaForCausalLM'];
  if (ropeParameters) config.rope_parameters = ropeParameters;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const tensors = readSafetensors(path.join(src, 'model.safetensors'));
  const score = tensors.find((t) => t.name === 'score.weight')!;
  const [V, C] = [config.vocab_size as number, config.hidden_size as number];
  const lmHead = new Uint8Array(V * C * 2);
  lmHead.set(score.data as Uint8Array, 0);
  writeSafetensors(path.join(dir, 'model.safetensors'), [
    ...tensors.filter((t) => t !== score),
    { name: 'lm_head.weight', dtype: score.dtype, shape: [V, C], data: lmHead },
  ]);
  copyFileSync(path.join(src, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  return dir;
}

function scores(dir: string): number[] {
  const golden = JSON.parse(readFileSync(path.join(src, 'golden.json'), 'utf8')) as { classify: { input_ids: number[] }[] };
  const model = new (loadAddon().NativeModel)({ modelPath: dir, numPages: 64, pageSize: 16 });
  const pool = new PagePool(64);
  const V = model.info().numLabels || model.info().vocabSize;
  const out = golden.classify.map((c) => {
    const seq = new SequenceKv(pool, 16);
    const [row] = runStep(model, V, [{ seq, tokens: c.input_ids, logits: 'last' }])[0];
    seq.release();
    return row[0];
  });
  model.close();
  return out;
}

test('llama3 rope scaling: reward scores equal transformers within 1e-4', () => {
  const golden = JSON.parse(readFileSync(path.join(src, 'golden.json'), 'utf8')) as { classify: { score: number }[] };
  const got = scores(rewardAsCausalLm());
  got.forEach((s, i) => assert.ok(Math.abs(s - golden.classify[i].score) < 1e-4, `text ${i}: ${s} vs ${golden.classify[i].score}`));
  // The check can fail: without the llama3 scaling the same model scores differently.
  const plain = scores(rewardAsCausalLm({ rope_type: 'default', rope_theta: 500000.0 }));
  assert.ok(plain.some((s, i) => Math.abs(s - golden.classify[i].score) > 1e-3), `default rope should not match: ${plain}`);
});

test('LlamaForSequenceClassification served natively: the score head at the last token equals the golden rewards', () => {
  const golden = JSON.parse(readFileSync(path.join(src, 'golden.json'), 'utf8')) as { classify: { score: number }[] };
  const info = new (loadAddon().NativeModel)({ modelPath: src, numPages: 8, pageSize: 16 });
  assert.equal(info.info().numLabels, 1);
  info.close();
  const got = scores(src);
  got.forEach((s, i) => assert.ok(Math.abs(s - golden.classify[i].score) < 1e-4, `text ${i}: ${s} vs ${golden.classify[i].score}`));
});
