// JSON bodies whose bulk is long number arrays (the pooled endpoints' embeddings: 1,536 numbers a row for
// gte-Qwen2-1.5B). Each array of at least MIN_NATIVE numbers is written by the addon's formatNumberArray
// (addon/util/number_text.cc: shortest round-trip digits laid out as Number.prototype.toString lays them out),
// the rest of the body by JSON.stringify. An array whose every element is finite and float32-exact
// (Math.fround(x) === x: l2Normalize's embeddings, classifier rows, what the gRPC API's `repeated float`
// decodes to) is written with the shortest digits that round-trip to its float32, as numpy and orjson print a
// float32 ("0.1", not JSON.stringify's "0.10000000149011612"): the same values in three fifths of the bytes.
// Any other array gets JSON.stringify's bytes exactly. A whole /encode body (one 1,536-number row, fresh
// rows each time; `node dist/bench/embedding-json-bench.js` on the 2-core dev box, µs a body, three runs):
//   rows of doubles:        JSON.stringify 241, jsonBody 108 (157 before the layout lost its atoi and
//                           char-by-char copies), 32.7 kB
//   float32-exact rows:     JSON.stringify 238 (what a gateway without the addon writes), jsonBody 65, 19.3 kB
// Without the addon (a gateway in front of a remote runtime) the whole body is JSON.stringify's: the values
// are the same float32-exact numbers, only their digits are the longer double ones.
// test/unit/number-json.test.ts holds the double mode to JSON.stringify's bytes and the float32 mode to
// float32 round trips with the shortest digits.
import { randomBytes } from 'node:crypto';
import { loadAddon } from '../native/addon.js';

const MIN_NATIVE = 64;
const BYTES_PER_NUMBER = 27; // the longest number text (25 bytes) and its comma, rounded up

// float32: write each value's float32 with float32's shortest digits (an addon without the argument ignores
// it and writes JSON.stringify's digits: still the same values).
type Format = (values: Float64Array, out: Uint8Array, float32: boolean) => number;
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

const NOT_NUMBERS = 0; // not an array of at least MIN_NATIVE numbers
const DOUBLES = 1; // one: JSON.stringify's digits
const FLOAT32S = 2; // one whose every element is finite and float32-exact: float32's shortest digits

function numberArrayKind(v: unknown): number {
  if (!Array.isArray(v) || v.length < MIN_NATIVE) return NOT_NUMBERS;
  let f32 = true;
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== 'number') return NOT_NUMBERS;
    if (f32 && (Math.fround(x) !== x || !Number.isFinite(x))) f32 = false;
  }
  return f32 ? FLOAT32S : DOUBLES;
}

function numbersText(fmt: Format, v: number[], float32: boolean): Buffer {
  const out = Buffer.allocUnsafe(BYTES_PER_NUMBER * v.length + 2);
  const n = fmt(Float64Array.from(v), out, float32);
  if (n < 0) throw new Error('formatNumberArray: the output buffer is too small');
  return out.subarray(0, n);
}

/**
 * JSON.stringify(value), as a string or (when it has long number arrays and the addon is there) a Buffer;
 * float32-exact long arrays in float32's shortest digits (the same values as JSON.stringify's text).
 */
export function jsonBody(value: unknown): string | Buffer {
  const fmt = formatter();
  if (fmt === null) return JSON.stringify(value);
  const arrays: number[][] = [];
  const float32: boolean[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    const kind = numberArrayKind(v);
    if (kind === NOT_NUMBERS) return v;
    arrays.push(v as number[]);
    float32.push(kind === FLOAT32S);
    return MARK + (arrays.length - 1);
  });
  if (arrays.length === 0) return text;
  const parts: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < arrays.length; i++) {
    const mark = `"${MARK}${i}"`;
    const j = text.indexOf(mark, at);
    parts.push(Buffer.from(text.slice(at, j)), numbersText(fmt, arrays[i]!, float32[i]!));
    at = j + mark.length;
  }
  parts.push(Buffer.from(text.slice(at)));
  return Buffer.concat(parts);
}
