// The pooled endpoints' JSON (src/http/number-json.ts): the addon's formatNumberArray must write exactly the
// bytes JSON.stringify writes for every double (shortest round-trip digits, ECMAScript's fixed / exponent
// layout, -0 as 0, NaN and infinities as null), and jsonBody(value) must equal JSON.stringify(value).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadAddon } from '../../src/native/addon.js';
import { jsonBody } from '../../src/http/number-json.js';

const addon = loadAddon();

/** xorshift64* doubles: random bit patterns (every exponent), unit-scale normals, f32 values, integers. */
function sampleDoubles(n: number, seed: bigint): number[] {
  let s = seed;
  const next = () => {
    s ^= s >> 12n;
    s ^= (s << 25n) & 0xffffffffffffffffn;
    s ^= s >> 27n;
    return (s * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn;
  };
  const buf = new DataView(new ArrayBuffer(8));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = next();
    buf.setBigUint64(0, r);
    const kind = i % 5;
    const u = Number(r >> 11n) / 2 ** 53;
    if (kind === 0) out.push(buf.getFloat64(0)); // any bit pattern: NaN, infinities, subnormals, huge
    else if (kind === 1) out.push((u - 0.5) * 0.1); // an embedding's scale
    else if (kind === 2) out.push(Math.fround((u - 0.5) * 2 ** (Number(r & 63n) - 40))); // f32 values
    else if (kind === 3) out.push(Math.round((u - 0.5) * 2 ** Number(r & 80n))); // integers up to 2^80
    else out.push((u - 0.5) * 10 ** (Number(r % 50n) - 25)); // around the fixed / exponent boundaries
  }
  return out;
}

const edges = [
  0, -0, 1, -1, 0.1, -0.1, 1e21, 1e20, 123456789012345680000, 1.5e21, 9.999999999999999e20, 1e-6, 1e-7,
  9.999999999999999e-7, 0.000001234, -0.0000012345678901234567, 5e-324, -5e-324, 2.2250738585072014e-308,
  1.7976931348623157e308, -1.7976931348623157e308, NaN, Infinity, -Infinity, 0.1 + 0.2, 100, 1e-5, 123e-20,
  Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 4.35, 0.000123, 1 / 3,
];

function formatted(values: number[]): string {
  const out = new Uint8Array(27 * values.length + 2);
  const n = addon.formatNumberArray(Float64Array.from(values), out);
  assert.ok(n > 0, 'formatNumberArray wrote nothing');
  return Buffer.from(out.subarray(0, n)).toString('latin1');
}

test('formatNumberArray writes what JSON.stringify writes, for edge values and 200,000 random doubles', () => {
  assert.equal(formatted(edges), JSON.stringify(edges));
  const xs = sampleDoubles(200_000, 0x9e3779b97f4a7c15n);
  for (let i = 0; i < xs.length; i += 1000) {
    const chunk = xs.slice(i, i + 1000);
    const got = formatted(chunk);
    const want = JSON.stringify(chunk);
    if (got !== want) {
      const g = JSON.parse(got.replace(/null/g, '"null"')) as unknown[];
      const bad = chunk.findIndex((x, k) => String(g[k]) !== (Number.isFinite(x) ? String(x) : 'null'));
      assert.fail(`value ${chunk[bad]}: got ${String(g[bad])}, JSON.stringify ${JSON.stringify(chunk[bad])}`);
    }
  }
  assert.equal(addon.formatNumberArray(Float64Array.from([1, 2, 3]), new Uint8Array(10)), -1, 'too small a buffer');
  assert.throws(() => addon.formatNumberArray([1, 2] as unknown as Float64Array, new Uint8Array(100)), TypeError);
});

test('jsonBody gives JSON.stringify\'s bytes for pooled responses (single, batch, OpenAI shape, odd strings)', () => {
  const row = (seed: bigint) => sampleDoubles(1536, seed).map((x) => (Number.isFinite(x) ? x : 0.5));
  const meta = { id: 'abc', finish_reason: { type: 'length', length: 0 }, prompt_tokens: 500, weight_version: 'default', total_retractions: 0, e2e_latency: 0.0051 };
  const cases: unknown[] = [
    { embedding: row(1n), meta_info: meta },
    [{ embedding: row(2n), meta_info: meta }, { embedding: row(3n), meta_info: { ...meta, id: 'x"y\\z\u0001' } }],
    { data: [{ embedding: row(4n), index: 0, object: 'embedding' }], model: 'm', object: 'list', usage: { prompt_tokens: 3, total_tokens: 3 } },
    { embedding: [0.25], meta_info: meta }, // a reward: short arrays stay with JSON.stringify
    { embedding: [...row(5n).slice(0, 100), NaN, -0, Infinity], note: 'sgl-numbers-0000000000000000:0' },
    { mixed: [...Array(100).keys()].map((i) => (i === 50 ? 'a' : i)) }, // not all numbers: JSON.stringify's
    { list: Array.from({ length: 80 }, (_, i) => ({ i })) },
  ];
  for (const c of cases) {
    const body = jsonBody(c);
    assert.equal(typeof body === 'string' ? body : body.toString('utf8'), JSON.stringify(c));
  }
  assert.ok(Buffer.isBuffer(jsonBody(cases[0])), 'an embedding response goes through the addon');
});
