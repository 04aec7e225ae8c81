// SGLang's `sampling_params` object: validated and normalised at the edge, with SGLang's own error messages
// (python/sglang/srt/sampling/sampling_params.py: __post_init__ and verify()). The engine receives the
// normalised camelCase struct; snake_case lives only here and in the HTTP/proto layers.

/** Thrown for a bad request; the HTTP layer answers 400 with `{"error": {"message": ...}}`. */
export class SamplingParamsError extends Error {}

export interface SamplingParams {
  maxNewTokens: number | null; // null = up to the context length
  minNewTokens: number;
  temperature: number; // 1 when greedy (SGLang keeps temperature 1 and sets top_k 1)
  topP: number;
  topK: number; // -1 = whole vocabulary
  minP: number;
  frequencyPenalty: number;
  presencePenalty: number;
  repetitionPenalty: number;
  stop: string[];
  stopTokenIds: number[];
  stopRegex: string[];
  ignoreEos: boolean;
  skipSpecialTokens: boolean;
  spacesBetweenSpecialTokens: boolean;
  noStopTrim: boolean;
  n: number;
  jsonSchema: string | null;
  regex: string | null;
  ebnf: string | null;
  structuralTag: string | null;
  logitBias: Map<number, number> | null;
  samplingSeed: number | null;
  streamInterval: number | null;
  customParams: Record<string, unknown> | null;
}

/** Request-independent defaults: SGLang's, overridden by the model's generation_config.json or
 * --preferred-sampling-params (temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens, ...). */
export type SamplingDefaults = Partial<Record<keyof typeof KEYS, unknown>>;

const SAMPLING_EPS = 1e-6;

// snake_case key -> camelCase field, and its type check.
const KEYS = {
  max_new_tokens: 'int?',
  min_new_tokens: 'int',
  temperature: 'num',
  top_p: 'num',
  top_k: 'int',
  min_p: 'num',
  frequency_penalty: 'num',
  presence_penalty: 'num',
  repetition_penalty: 'num',
  stop: 'strs',
  stop_token_ids: 'ints',
  stop_regex: 'strs',
  ignore_eos: 'bool',
  skip_special_tokens: 'bool',
  spaces_between_special_tokens: 'bool',
  no_stop_trim: 'bool',
  n: 'int',
  json_schema: 'str?',
  regex: 'str?',
  ebnf: 'str?',
  structural_tag: 'str?',
  logit_bias: 'bias',
  sampling_seed: 'int?',
  stream_interval: 'int?',
  custom_params: 'obj?',
} as const;

const SGLANG_DEFAULTS: Record<keyof typeof KEYS, unknown> = {
  max_new_tokens: 128, min_new_tokens: 0, temperature: 1.0, top_p: 1.0, top_k: -1, min_p: 0.0,
  frequency_penalty: 0.0, presence_penalty: 0.0, repetition_penalty: 1.0, stop: null, stop_token_ids: null,
  stop_regex: null, ignore_eos: false, skip_special_tokens: true, spaces_between_special_tokens: true,
  no_stop_trim: false, n: 1, json_schema: null, regex: null, ebnf: null, structural_tag: null, logit_bias: null,
  sampling_seed: null, stream_interval: null, custom_params: null,
};

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'list' : typeof v === 'number' ? (Number.isInteger(v) ? 'int' : 'float') : typeof v === 'string' ? 'str' : typeof v === 'boolean' ? 'bool' : 'dict';
}

function fail(msg: string): never {
  throw new SamplingParamsError(msg);
}

function check(key: string, kind: string, v: unknown): unknown {
  const isInt = (x: unknown) => typeof x === 'number' && Number.isInteger(x);
  switch (kind) {
    case 'int?':
    case 'int':
      if (v === null && kind === 'int?') return null;
      if (!isInt(v)) fail(`${key} must be an integer, got ${typeName(v)} ${JSON.stringify(v)}.`);
      return v;
    case 'num':
      if (typeof v !== 'number') fail(`${key} must be a number, got ${typeName(v)} ${JSON.stringify(v)}.`);
      return v;
    case 'bool':
      if (typeof v !== 'boolean') fail(`${key} must be a boolean, got ${typeName(v)} ${JSON.stringify(v)}.`);
      return v;
    case 'str?':
      if (v !== null && typeof v !== 'string') fail(`${key} must be a string, got ${typeName(v)}.`);
      return v;
    case 'strs':
      if (v === null) return [];
      if (typeof v === 'string') return [v];
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) fail(`${key} must be a string or a list of strings.`);
      return v;
    case 'ints':
      if (v === null) return [];
      if (!Array.isArray(v) || !v.every((x) => x === null || isInt(x))) fail(`${key} must be a list of integers.`);
      return [...new Set((v as (number | null)[]).filter((x): x is number => x !== null))];
    case 'obj?':
      if (v !== null && (typeof v !== 'object' || Array.isArray(v))) fail(`${key} must be an object.`);
      return v;
    case 'bias':
      if (v === null) return null;
      if (typeof v !== 'object' || Array.isArray(v)) fail(`${key} must be an object of token id -> bias.`);
      return new Map(
        Object.entries(v as Record<string, unknown>).map(([id, b]) => {
          if (!/^-?\d+$/.test(id)) fail(`${key} keys must be token ids, got ${JSON.stringify(id)}.`);
          if (typeof b !== 'number') fail(`${key}[${id}] must be a number.`);
          return [Number(id), b];
        }),
      );
  }
  return v;
}

/**
 * Validates one request's sampling_params (an object, or null/undefined for all defaults) against the
 * vocabulary size, applying `defaults` for absent or null keys. Throws SamplingParamsError with SGLang's
 * message for the first problem.
 */
export function normalizeSamplingParams(raw: unknown, vocabSize: number, defaults: SamplingDefaults = {}): SamplingParams {
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) fail(`sampling_params must be an object, got ${typeName(raw)}.`);
  const given = (raw ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(key in KEYS)) fail(`Unexpected keyword argument '${key}' in sampling_params.`);
  }
  const v = {} as Record<keyof typeof KEYS, unknown>;
  for (const key of Object.keys(KEYS) as (keyof typeof KEYS)[]) {
    // None means "use the default" for every key, as SGLang's __post_init__ does.
    const value = given[key] ?? defaults[key] ?? SGLANG_DEFAULTS[key];
    v[key] = check(key, KEYS[key], value);
  }
  const p: SamplingParams = {
    maxNewTokens: v.max_new_tokens as number | null,
    minNewTokens: v.min_new_tokens as number,
    temperature: v.temperature as number,
    topP: v.top_p as number,
    topK: v.top_k as number,
    minP: v.min_p as number,
    frequencyPenalty: v.frequency_penalty as number,
    presencePenalty: v.presence_penalty as number,
    repetitionPenalty: v.repetition_penalty as number,
    stop: v.stop as string[],
    stopTokenIds: v.stop_token_ids as number[],
    stopRegex: v.stop_regex as string[],
    ignoreEos: v.ignore_eos as boolean,
    skipSpecialTokens: v.skip_special_tokens as boolean,
    spacesBetweenSpecialTokens: v.spaces_between_special_tokens as boolean,
    noStopTrim: v.no_stop_trim as boolean,
    n: v.n as number,
    jsonSchema: v.json_schema as string | null,
    regex: v.regex as string | null,
    ebnf: v.ebnf as string | null,
    structuralTag: v.structural_tag as string | null,
    logitBias: v.logit_bias as Map<number, number> | null,
    samplingSeed: v.sampling_seed as number | null,
    streamInterval: v.stream_interval as number | null,
    customParams: v.custom_params as Record<string, unknown> | null,
  };
  // SGLang: a temperature in [0, 1e-6) is greedy, expressed as top_k = 1 at temperature 1.
  if (p.temperature >= 0 && p.temperature < SAMPLING_EPS) {
    p.temperature = 1.0;
    p.topK = 1;
  }
  verify(p, vocabSize);
  return p;
}

const fmt = (x: number): string => (Number.isInteger(x) && Math.abs(x) < 1e16 ? x.toFixed(1) : String(x)); // Python float repr

function verify(p: SamplingParams, vocabSize: number): void {
  if (!Number.isFinite(p.temperature) || p.temperature < 0) fail(`temperature must be a non-negative finite number, got ${fmt(p.temperature)}.`);
  if (!(p.topP > 0 && p.topP <= 1)) fail(`top_p must be in (0, 1], got ${fmt(p.topP)}.`);
  if (!(p.minP >= 0 && p.minP <= 1)) fail(`min_p must be in [0, 1], got ${fmt(p.minP)}.`);
  if (p.topK < 1 && p.topK !== -1) fail(`top_k must be -1 (disable) or at least 1, got ${p.topK}.`);
  if (!(p.frequencyPenalty >= -2 && p.frequencyPenalty <= 2)) fail(`frequency_penalty must be in [-2, 2], got ${fmt(p.frequencyPenalty)}.`);
  if (!(p.presencePenalty >= -2 && p.presencePenalty <= 2)) fail(`presence_penalty must be in [-2, 2], got ${fmt(p.presencePenalty)}.`);
  if (!(p.repetitionPenalty > 0 && p.repetitionPenalty <= 2)) fail(`repetition_penalty must be in (0, 2] (1.0 = no penalty), got ${fmt(p.repetitionPenalty)}.`);
  if (!(p.minNewTokens >= 0)) fail(`min_new_tokens must be in [0, max_new_tokens], got ${p.minNewTokens}.`);
  if (p.maxNewTokens !== null) {
    if (p.maxNewTokens < 0) fail(`max_new_tokens must be at least 0, got ${p.maxNewTokens}.`);
    if (p.minNewTokens > p.maxNewTokens) fail(`min_new_tokens must be in [0, max_new_tokens(${p.maxNewTokens})], got ${p.minNewTokens}.`);
  }
  if (p.logitBias) {
    for (const id of p.logitBias.keys()) if (!(id >= 0 && id < vocabSize)) fail(`logit_bias must has keys in [0, ${vocabSize - 1}], got ${id}.`);
  }
  if ([p.jsonSchema, p.regex, p.ebnf].filter((x) => x !== null).length > 1) fail('Only one of regex, json_schema, or ebnf can be set.');
  if (!(p.n >= 1)) fail(`n must be at least 1, got ${p.n}.`);
}
