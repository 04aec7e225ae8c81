// The pooled endpoints' JSON (src/http/number-json.ts): the addon's formatNumberArray must write exactly the
// bytes JSON.stringify writes for every double (shortest round-trip digits, ECMAScript's fixed / exponent
// layout, -0 as 0, NaN and infinities as null), and jsonBody(value) must equal JSON.stringify(value) but for
// float32-exact long arrays, written with float32's shortest round-trip digits (the same float32 values).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadAddon } from '../../src/native/addon.js';
import { jsonBody } from '../../src/http/number-json.js';
import { l2Normalize } from '../../src/engine/pooled.js';

const addon = loadAddon();

/** A xorshift64* stream of 64-bit values from seed. */
function xorshift64star(seed: bigint): () => bigint {
  let s = seed;
  return () => {
    s ^= s >> 12n;
    s ^= (s << 25n) & 0xffffffffffffffffn;
    s ^= s >> 27n;
    return (s * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn;
  };
}

/** xorshift64* doubles: random bit patterns (every exponent), unit-scale normals, f32 values, integers. */
function sampleDoubles(n: number, seed: bigint): number[] {
  const next = xorshift64star(seed);
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

// Float32 mode: an array of at least 64 numbers, every one finite and float32-exact (Math.fround(x) === x:
// l2Normalize's embeddings), is written with the shortest digits that round-trip to its float32 (as numpy
// prints a float32), in Number.prototype.toString's layout.

/** float32 values: Math.fround of doubles over 1e-10..1e10, every float exponent, subnormals, any float bits. */
function sampleFloat32s(n: number, seed: bigint): number[] {
  const next = xorshift64star(seed);
  const f32 = new DataView(new ArrayBuffer(4));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = next();
    const u = Number(r >> 11n) / 2 ** 53;
    const kind = i % 6;
    let x: number;
    if (kind === 0) x = (u - 0.5) * 10 ** (Number(r % 21n) - 10); // 1e-10 .. 1e10, both signs
    else if (kind === 1) x = (u - 0.5) * 2 ** (Number(r % 280n) - 150); // every exponent, subnormals too
    else if (kind === 2) {
      f32.setUint32(0, Number(r & 0xffffffffn));
      x = f32.getFloat32(0); // any float bit pattern
      if (!Number.isFinite(x)) x = u;
    } else if (kind === 3) x = (u - 0.5) * 0.1; // an embedding's scale
    else if (kind === 4) x = Math.round((u - 0.5) * 2 ** Number(r % 40n)); // integers (past 2^24 too)
    else x = (r & 1n ? -1 : 1) * 2 ** (Number(r % 277n) - 149); // powers of two, 2^-149 .. 2^127
    out.push(Math.fround(x));
  }
  return out;
}

const float32Edges = [
  0, -0, 1, -1, 1e-45, -1e-45, 2 ** -149, 2 ** -126, 1.1754942106924411e-38, 3.4028234663852886e38,
  -3.4028234663852886e38, 16777216, 16777217, 2 ** 31, 1e21, 1e20, 9.999999e20, 1.5e21, 1e-6, 1e-7, 1.2e-7,
  0.1, -0.1, 1 / 3, 0.3, 100, 123456789, 1e10, 1e-10, 4.35, 0.000123, 2 ** 24 + 2, 2 ** 90, 2 ** -90,
].map(Math.fround);

/** The element texts of the (only) long array in jsonBody({ embedding: values }), written in float32 mode. */
function float32Texts(values: number[]): string[] {
  const body = jsonBody({ embedding: values });
  assert.ok(Buffer.isBuffer(body), 'a float32 array goes through the addon');
  const text = body.toString('latin1');
  const open = '{"embedding":[';
  assert.ok(text.startsWith(open) && text.endsWith(']}'), text.slice(0, 40));
  return text.slice(open.length, -2).split(',');
}

/** The significant digits of a JS number text ("-0.00012300" -> "123", "1.5e+21" -> "15", "100" -> "1"). */
function significant(t: string): string {
  const mant = t.replace(/^-/, '').replace(/e.*$/, '').replace('.', '');
  return mant.replace(/^0+/, '').replace(/0+$/, '') || '0';
}

/** x lies exactly halfway between two numbers of k significant digits (x's exact decimal digits, then "5"). */
function isTie(x: number, k: number): boolean {
  const digits = significant(x.toPrecision(100)); // exact for any float32 of fewer than 100 digits
  return digits.length === k + 1 && digits.endsWith('5');
}

function isPowerOfTwo32(x: number): boolean {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, x);
  return (dv.getUint32(0) & 0x7fffff) === 0;
}

test('float32 mode: each number round-trips to its float32 with the fewest digits, laid out as Number#toString', (t) => {
  const xs = [...float32Edges, ...sampleFloat32s(200_000, 0x2545f4914f6cdd1dn)];
  let ties = 0;
  let powersOfTwo = 0;
  for (let i = 0; i < xs.length; i += 2000) {
    const chunk = xs.slice(i, i + 2000);
    if (chunk.length < 64) chunk.push(...float32Edges, ...float32Edges); // the long-array threshold
    const texts = float32Texts(chunk);
    assert.equal(texts.length, chunk.length);
    for (let j = 0; j < chunk.length; j++) {
      const x = chunk[j]!;
      const t = texts[j]!;
      assert.ok(Math.fround(Number(t)) === x, `${x}: "${t}" does not round-trip to its float32`); // (-0 as "0")
      let k = 1; // the fewest significant digits that round-trip (toPrecision rounds correctly)
      while (k < 9 && Math.fround(Number(x.toPrecision(k))) !== x) k++;
      const ref = String(Number(x.toPrecision(k)));
      assert.ok(significant(t).length <= k, `${x}: "${t}" has more than ${k} significant digits (${ref})`);
      if (Math.fround(Number(ref)) === x && t !== ref) {
        // Two shortest candidates may both round-trip. At an exact tie toPrecision rounds up, toString (and
        // numpy, orjson) to the even digit; at a power of two (the lower neighbour half as far) the one nearer in
        // decimal can lie outside the rounding interval's narrow side, and another one of k digits is written.
        if (isTie(x, k)) {
          assert.ok(significant(t).length === k && /[02468]$/.test(significant(t)), `${x}: a tie, "${t}"`);
          ties++;
        } else {
          assert.ok(isPowerOfTwo32(x), `${x}: "${t}", Number#toString of the same digits: "${ref}"`);
          powersOfTwo++;
        }
      }
    }
  }
  t.diagnostic(`${ties} ties and ${powersOfTwo} powers of two of ${xs.length} values differ from toPrecision's digits`);
  // A few by name (numpy.float32's repr digits).
  assert.deepEqual(float32Texts([...float32Edges, ...float32Edges]).slice(0, float32Edges.length), [
    '0', '0', '1', '-1', '1e-45', '-1e-45', '1e-45', '1.1754944e-38', '1.1754942e-38', '3.4028235e+38',
    '-3.4028235e+38', '16777216', '16777216', '2147483600', '1e+21', '100000000000000000000', '999999900000000000000',
    '1.5e+21', '0.000001', '1e-7', '1.2e-7', '0.1', '-0.1', '0.33333334', '0.3', '100', '123456790', '10000000000',
    '1e-10', '4.35', '0.000123', '16777218', '1.2379401e+27', '8.077936e-28',
  ]);
  const format = addon.formatNumberArray as (v: Float64Array, out: Uint8Array, float32?: unknown) => number;
  const out = new Uint8Array(27 * 6 + 2);
  const n = format(Float64Array.from([0.1, NaN, -Infinity, 1e39, -0, 1e-46]), out, true);
  assert.equal(Buffer.from(out.subarray(0, n)).toString('latin1'), '[0.1,null,null,null,0,0]', 'float() of each value');
  assert.equal(format(Float64Array.from([1, 2, 3]), new Uint8Array(10), true), -1, 'too small a buffer');
  assert.throws(() => format(Float64Array.from([1]), out, 1), TypeError);
});

test('float32 mode only for float32-exact finite arrays: others keep JSON.stringify\'s bytes', () => {
  const f32 = sampleFloat32s(100, 7n);
  const cases: unknown[] = [
    { embedding: Array.from({ length: 100 }, (_, i) => (i === 0 ? 0.1 : Math.fround(i / 7))) }, // 0.1 is not a float32
    { embedding: [...f32.slice(0, 99), 1 / 3] },
    { embedding: [...f32.slice(0, 99), NaN] }, // not finite: double mode (null either way)
    { embedding: [...f32.slice(0, 99), Infinity] },
    { embedding: Array.from({ length: 64 }, () => 0.1) },
  ];
  for (const c of cases) {
    const body = jsonBody(c);
    assert.ok(Buffer.isBuffer(body));
    assert.equal(body.toString('utf8'), JSON.stringify(c));
  }
  const short = { embedding: f32.slice(0, 63) }; // below the threshold: JSON.stringify
  assert.equal(jsonBody(short), JSON.stringify(short));
});

test('an /encode body of l2Normalize rows parses to the same float32 values, in fewer bytes', () => {
  const row = (seed: number) => {
    const v = new Float32Array(1536);
    let s = seed;
    for (let i = 0; i < v.length; i++) {
      s = (s * 1103515245 + 12345) % 2 ** 31;
      v[i] = (s / 2 ** 31 - 0.5) * (i % 97 === 0 ? 40 : 0.1);
    }
    return l2Normalize(v);
  };
  const meta = { id: 'abc', finish_reason: { type: 'length', length: 0 }, prompt_tokens: 500, weight_version: 'default', total_retractions: 0, e2e_latency: 0.0051 };
  const cases = [
    { embedding: row(1), meta_info: meta },
    [{ embedding: row(2), meta_info: meta }, { embedding: row(3), meta_info: { ...meta, id: 'x"y\\z\u0001' } }],
    { data: [{ embedding: row(4), index: 0, object: 'embedding' }], model: 'm', object: 'list', usage: { prompt_tokens: 3, total_tokens: 3 } },
  ];
  const asFloat32 = (_key: string, v: unknown) => (typeof v === 'number' ? Math.fround(v) : v);
  for (const c of cases) {
    const body = jsonBody(c);
    assert.ok(Buffer.isBuffer(body), 'an embedding response goes through the addon');
    const text = body.toString('utf8');
    assert.deepEqual(JSON.parse(text, asFloat32), JSON.parse(JSON.stringify(c), asFloat32));
    const embeddings = JSON.stringify(c).match(/\[[-0-9.e+,]{1000,}\]/g)!;
    assert.ok(embeddings.length > 0);
    for (const e of embeddings) {
      const want = (JSON.parse(e) as number[]).map(Math.fround);
      assert.deepEqual(want, JSON.parse(e), 'l2Normalize returns float32-exact values');
    }
    assert.ok(text.length < 0.75 * JSON.stringify(c).length, `${text.length} bytes vs ${JSON.stringify(c).length}`);
  }
  const parsed = JSON.parse(jsonBody(cases[0]).toString()) as { embedding: number[] };
  const norm = Math.hypot(...parsed.embedding);
  assert.ok(Math.abs(norm - 1) < 1e-6, `unit length after the float32 text (${norm})`);
});
