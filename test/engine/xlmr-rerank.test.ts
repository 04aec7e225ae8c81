// The XLM-RoBERTa cross-encoder (XLMRobertaForSequenceClassification) in the model core against transformers'
// rerank logits (golden.json of xlmr-reranker-tiny): each (query, document) pair alone, and all pairs of
// different lengths in one padding-free varlen step, at page sizes 1, 4 and 16.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadAddon } from '../../src/native/addon.js';
import { fixtureModelDir, loadGolden } from '../helpers/fixtures.js';

const addon = loadAddon();
const TOL = 1e-4;
interface RerankGolden { query: string; document: string; input_ids: number[]; logit: number }
const golden = loadGolden('xlmr-reranker-tiny');
const pairs = golden.rerank as RerankGolden[];

/** One encoder step over whole sequences; the logit row of each is its first token (<s>). */
function encode(model: InstanceType<ReturnType<typeof loadAddon>['NativeModel']>, pageSize: number, seqs: number[][]): Float32Array {
  const ids: number[] = [], qo = [0], kvp = [0], pages: number[] = [], lens: number[] = [], rows: number[] = [];
  let nextPage = 0;
  for (const s of seqs) {
    rows.push(ids.length);
    ids.push(...s);
    qo.push(ids.length);
    const np = Math.ceil(s.length / pageSize);
    for (let i = 0; i < np; i++) pages.push(nextPage++);
    kvp.push(pages.length);
    lens.push(s.length);
  }
  return model.forward({
    tokenIds: Int32Array.from(ids), qoIndptr: Int32Array.from(qo), kvIndptr: Int32Array.from(kvp),
    kvPageIndices: Int32Array.from(pages), kvLens: Int32Array.from(lens), logitRows: Int32Array.from(rows),
  });
}

for (const pageSize of [1, 4, 16]) {
  test(`xlmr-reranker-tiny (page size ${pageSize}): rerank logits match transformers, alone and batched`, () => {
    const model = new addon.NativeModel({ modelPath: fixtureModelDir('xlmr-reranker-tiny'), numPages: Math.ceil(1024 / pageSize), pageSize });
    try {
      assert.equal(model.info().architecture, 'XLMRobertaForSequenceClassification');
      for (const p of pairs) {
        const out = encode(model, pageSize, [p.input_ids]);
        assert.equal(out.length, 1, 'one label');
        assert.ok(Math.abs(out[0]! - p.logit) < TOL, `"${p.document.slice(0, 20)}": ${out[0]} vs ${p.logit}`);
      }
      const batched = encode(model, pageSize, pairs.map((p) => p.input_ids));
      pairs.forEach((p, i) => assert.ok(Math.abs(batched[i]! - p.logit) < TOL, `batched pair ${i}: ${batched[i]} vs ${p.logit}`));
      const padded = golden.batched_padded_logits as number[]; // transformers, the same pairs padded into one batch
      padded.forEach((want, i) => assert.ok(Math.abs(batched[i]! - want) < TOL, `padded-batch golden ${i}: ${batched[i]} vs ${want}`));
    } finally {
      model.close();
    }
  });
}

test('xlmr-reranker-tiny: a sequence split across steps is refused (an encoder step takes whole sequences)', () => {
  const model = new addon.NativeModel({ modelPath: fixtureModelDir('xlmr-reranker-tiny'), numPages: 64, pageSize: 16 });
  try {
    const s = pairs[0]!.input_ids;
    assert.throws(() => model.forward({
      tokenIds: Int32Array.from(s.slice(0, 4)), qoIndptr: Int32Array.from([0, 4]), kvIndptr: Int32Array.from([0, 1]),
      kvPageIndices: Int32Array.from([0]), kvLens: Int32Array.from([s.length]), logitRows: Int32Array.from([0]),
    }), /whole sequences/);
  } finally {
    model.close();
  }
});
