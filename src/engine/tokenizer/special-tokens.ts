// Resolves the named special tokens (bos/eos/unk/pad/...) the way transformers does:
// tokenizer_config.json values, overridden by special_tokens_map.json where that file has one.
import { isObject, type JsonObject } from './json.js';

/** transformers' SPECIAL_TOKENS_ATTRIBUTES order, which all_special_ids follows. */
export const NAMED_SPECIAL_TOKENS = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const;
export type NamedSpecialToken = (typeof NAMED_SPECIAL_TOKENS)[number];

/** A token may be written as a plain string or as an AddedToken object `{content: ...}`. */
export function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return undefined;
}

export interface SpecialTokenNames {
  named: Partial<Record<NamedSpecialToken, string>>;
  /** additional_special_tokens (transformers 4) / extra_special_tokens (transformers 5). */
  additional: string[];
}

function tokenList(value: unknown): string[] {
  if (Array.isArray(value)) {
    return value.map(tokenContent).filter((t): t is string => t !== undefined);
  }
  // transformers 5 may write extra_special_tokens as a {name: token} mapping.
  if (isObject(value)) {
    return Object.values(value)
      .map(tokenContent)
      .filter((t): t is string => t !== undefined);
  }
  return [];
}

export function resolveSpecialTokenNames(
  config: JsonObject,
  specialTokensMap: JsonObject | undefined,
): SpecialTokenNames {
  const named: Partial<Record<NamedSpecialToken, string>> = {};
  for (const key of NAMED_SPECIAL_TOKENS) {
    const fromMap = specialTokensMap ? tokenContent(specialTokensMap[key]) : undefined;
    const value = fromMap ?? tokenContent(config[key]);
    if (value !== undefined) named[key] = value;
  }
  const additional: string[] = [];
  for (const source of [config, specialTokensMap ?? {}]) {
    for (const key of ['additional_special_tokens', 'extra_special_tokens']) {
      for (const token of tokenList(source[key])) {
        if (!additional.includes(token)) additional.push(token);
      }
    }
  }
  return { named, additional };
}
