// Paths and golden data of the fixture models copied into test/fixtures (tests never read ../shared).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/native/addon.js';
import { builtinModelDir } from '../../src/engine/builtin-model.js';

export const fixturesDir = path.join(projectRoot(), 'test', 'fixtures', 'models');

/** The model directory of a fixture (stories260k's weights live in the built-in model folder). */
export function fixtureModelDir(name: string): string {
  return name === 'stories260k' ? builtinModelDir() : path.join(fixturesDir, name);
}

export interface GoldenGenerate {
  text: string;
  input_ids: number[];
  prompt_logprobs: (number | null)[];
  last_logits_top20: { ids: number[]; values: number[] };
  last_logsumexp: number;
  label_logprobs: Record<string, number>;
  greedy_ids: number[];
  greedy_logprobs: number[];
  greedy_top2_margin: number[];
  greedy_text?: string;
  /** MoE fixtures: the experts chosen (softmax top-k order), [layer][prompt position][k]. */
  prefill_router_topk?: number[][][];
  /** MoE fixtures: per decode step (the steps consuming greedy_ids[0..22]), [step][layer][k]. */
  decode_router_topk?: number[][][];
}

export interface Golden {
  generate: GoldenGenerate[];
  from_bos_greedy_200?: { ids: number[]; text: string };
  score?: { query: string; item: string; item_first: boolean; input_ids: number[]; label_logprobs: Record<string, number> }[];
  encode?: { text: string; input_ids: number[]; embedding: number[]; raw_last_hidden: number[] }[];
  [key: string]: unknown;
}

export function loadGolden(name: string): Golden {
  return JSON.parse(readFileSync(path.join(fixturesDir, name, 'golden.json'), 'utf8')) as Golden;
}
