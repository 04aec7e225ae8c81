// JSON bodies whose bulk is long number arrays (the pooled endpoints' embeddings: 1,536 numbers a row for
// gte-Qwen2-1.5B, ~0.22 ms of JSON.stringify each on the JS thread). The bytes are JSON.stringify's; each
// array of at least MIN_NATIVE numbers is written by the addon's formatNumberArray (std::to_chars' shortest
// round-trip digits laid out as Number.prototype.toString does: addon/util/number_text.cc): 157 instead of
// 243 µs for a whole /encode body (bench/embedding-json-bench.ts). test/unit/number-json.test.ts holds both
// to JSON.stringify's bytes.
import { randomBytes } from 'node:crypto';
import { loadAddon } from '../native/addon.js';

const MIN_NATIVE = 64;
const BYTES_PER_NUMBER = 27; // the longest number text (25 bytes) and its comma, rounded up

type Format = (values: Float64Array, out: Uint8Array) => number;
let format: Format | null | undefined;

function formatter(): Format | null {
  if (format === undefined) {
    try {
      const addon = loadAddon();
      format = typeof addon.formatNumberArray === 'function' ? addon.formatNumberArray.bind(addon) : null;
    } catch {
      format = null; // no addon (a gateway in front of a remote runtime): JSON.stringify alone
    }
  }
  return format;
}

// Stands for the i-th long array in the first pass's text; random per process, so no string a client sends
// can spell it.
const MARK = `sgl-numbers-${randomBytes(8).toString('hex')}:`;

function isNumberArray(v: unknown): v is number[] {
  if (!Array.isArray(v) || v.length < MIN_NATIVE) return false;
  for (let i = 0; i < v.length; i++) if (typeof v[i] !== 'number') return false;
  return true;
}

function numbersText(fmt: Format, v: number[]): Buffer {
  const out = Buffer.allocUnsafe(BYTES_PER_NUMBER * v.length + 2);
  const n = fmt(Float64Array.from(v), out);
  if (n < 0) throw new Error('formatNumberArray: the output buffer is too small');
  return out.subarray(0, n);
}

/** JSON.stringify(value), as a string or (when it has long number arrays and the addon is there) a Buffer. */
export function jsonBody(value: unknown): string | Buffer {
  const fmt = formatter();
  if (fmt === null) return JSON.stringify(value);
  const arrays: number[][] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (!isNumberArray(v)) return v;
    arrays.push(v);
    return MARK + (arrays.length - 1);
  });
  if (arrays.length === 0) return text;
  const parts: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < arrays.length; i++) {
    const mark = `"${MARK}${i}"`;
    const j = text.indexOf(mark, at);
    parts.push(Buffer.from(text.slice(at, j)), numbersText(fmt, arrays[i]!));
    at = j + mark.length;
  }
  parts.push(Buffer.from(text.slice(at)));
  return Buffer.concat(parts);
}
