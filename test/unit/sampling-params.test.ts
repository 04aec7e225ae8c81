// sampling_params normalisation and SGLang's verify() messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeSamplingParams, SamplingParamsError } from '../../src/engine/sampling-params.js';

const V = 1000;
const bad = (raw: unknown, message: string) =>
  assert.throws(() => normalizeSamplingParams(raw, V), (e: Error) => e instanceof SamplingParamsError && e.message === message, message);

test('defaults are SGLang\'s; null means default; generation-config defaults apply under the request', () => {
  const p = normalizeSamplingParams(undefined, V);
  assert.equal(p.maxNewTokens, 128);
  assert.equal(p.temperature, 1);
  assert.equal(p.topK, -1);
  assert.deepEqual(p.stop, []);
  assert.equal(normalizeSamplingParams({ temperature: null, top_p: null }, V).topP, 1);
  const d = normalizeSamplingParams({ top_p: 0.5 }, V, { temperature: 0.7, top_p: 0.8, top_k: 20, repetition_penalty: 1.1 });
  assert.equal(d.temperature, 0.7);
  assert.equal(d.topP, 0.5);
  assert.equal(d.topK, 20);
  assert.equal(d.repetitionPenalty, 1.1);
});

test('temperature 0 is greedy: top_k 1 at temperature 1, as SGLang rewrites it', () => {
  const p = normalizeSamplingParams({ temperature: 0 }, V);
  assert.equal(p.topK, 1);
  assert.equal(p.temperature, 1);
});

test('stop and stop_token_ids are normalised to lists', () => {
  const p = normalizeSamplingParams({ stop: 'END', stop_token_ids: [5, 5, null, 7] }, V);
  assert.deepEqual(p.stop, ['END']);
  assert.deepEqual(p.stopTokenIds, [5, 7]);
  assert.deepEqual(normalizeSamplingParams({ logit_bias: { '12': -100 } }, V).logitBias, new Map([[12, -100]]));
});

test('out-of-range values give SGLang\'s messages', () => {
  bad({ temperature: -0.5 }, 'temperature must be a non-negative finite number, got -0.5.');
  bad({ top_p: 0 }, 'top_p must be in (0, 1], got 0.0.');
  bad({ top_p: 1.5 }, 'top_p must be in (0, 1], got 1.5.');
  bad({ min_p: 2 }, 'min_p must be in [0, 1], got 2.0.');
  bad({ top_k: 0 }, 'top_k must be -1 (disable) or at least 1, got 0.');
  bad({ top_k: -2 }, 'top_k must be -1 (disable) or at least 1, got -2.');
  bad({ frequency_penalty: 3 }, 'frequency_penalty must be in [-2, 2], got 3.0.');
  bad({ presence_penalty: -2.5 }, 'presence_penalty must be in [-2, 2], got -2.5.');
  bad({ repetition_penalty: 0 }, 'repetition_penalty must be in (0, 2] (1.0 = no penalty), got 0.0.');
  bad({ max_new_tokens: -1 }, 'max_new_tokens must be at least 0, got -1.');
  bad({ min_new_tokens: 5, max_new_tokens: 3 }, 'min_new_tokens must be in [0, max_new_tokens(3)], got 5.');
  bad({ min_new_tokens: -1 }, 'min_new_tokens must be in [0, max_new_tokens], got -1.');
  bad({ logit_bias: { '1000': 1 } }, 'logit_bias must has keys in [0, 999], got 1000.');
  bad({ regex: 'a+', json_schema: '{}' }, 'Only one of regex, json_schema, or ebnf can be set.');
});

test('unknown keys and wrong types name the field', () => {
  bad({ temprature: 0.5 }, "Unexpected keyword argument 'temprature' in sampling_params.");
  bad({ max_new_tokens: 'ten' }, 'max_new_tokens must be an integer, got str "ten".');
  bad({ max_new_tokens: 1.5 }, 'max_new_tokens must be an integer, got float 1.5.');
  bad({ temperature: '0.7' }, 'temperature must be a number, got str "0.7".');
  bad({ ignore_eos: 1 }, 'ignore_eos must be a boolean, got int 1.');
  bad({ stop: [1] }, 'stop must be a string or a list of strings.');
  bad([1], 'sampling_params must be an object, got list.');
});
