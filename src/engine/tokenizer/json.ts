// Minimal JSON typing helpers for tokenizer.json / tokenizer_config.json handling.
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asObjectArray(value: unknown): JsonObject[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

/** Deep copy, so load-time rewrites never touch the caller's objects. */
export function cloneJson<T extends Json>(value: T): T {
  return structuredClone(value);
}
