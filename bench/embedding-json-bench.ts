// What an /encode response's embedding costs on the JS side (CPU only): l2Normalize (src/engine/pooled.ts)
// against the Array.from-with-a-callback form it replaced, and JSON.stringify against Array.prototype.join
// of `--rows` fresh rows of `--dim` floats (fresh: V8 caches number-to-string results, so serialising one
// array repeatedly flatters join), and a whole /encode body through JSON.stringify and through jsonBody
// (src/http/number-json.ts: the addon writes the numbers): rows of doubles (l2Normalize without its float32
// rounding: JSON.stringify's digits, the addon's double mode) and of float32-exact values (l2Normalize's own:
// the addon's float32 mode; JSON.stringify of them is what a gateway without the addon writes).
// Prints `EMB <what> us <mean per row>`.
// Usage: node dist/bench/embedding-json-bench.js [--dim 1536] [--rows 256]
import { l2Normalize } from '../src/engine/pooled.js';
import { jsonBody } from '../src/http/number-json.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}
const dim = Number(arg('dim', '1536'));
const rows = Number(arg('rows', '256'));
const fresh = () => Array.from({ length: rows }, () => new Float32Array(dim).map(() => (Math.random() - 0.5) * 0.1));

function arrayFromNormalize(v: Float32Array): number[] {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += (v[i] as number) * (v[i] as number);
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  return Array.from(v, (x) => x * inv);
}

/** l2Normalize without its float32 rounding: a row of doubles (what l2Normalize returned before). */
function doubleNormalize(v: Float32Array): number[] {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += (v[i] as number) * (v[i] as number);
  const inv = ss > 0 ? 1 / Math.sqrt(ss) : 0;
  const out: number[] = [];
  for (let i = 0; i < v.length; i++) out.push((v[i] as number) * inv);
  return out;
}

function perRow(f: (i: number) => unknown): number {
  const t0 = performance.now();
  for (let i = 0; i < rows; i++) f(i);
  return ((performance.now() - t0) / rows) * 1000;
}

for (let round = 0; round < 2; round++) {  // the first round warms the JIT; the second is reported
  const input = fresh();
  const a = perRow((i) => l2Normalize(input[i]!));
  const b = perRow((i) => arrayFromNormalize(input[i]!));
  const normalized = fresh().map((r) => doubleNormalize(r));
  const c = perRow((i) => JSON.stringify(normalized[i]));
  const again = fresh().map((r) => doubleNormalize(r));
  const d = perRow((i) => again[i]!.join(','));
  // a whole /encode body: JSON.stringify against jsonBody (the addon writes the numbers), fresh rows each;
  // rows of doubles, then rows of float32-exact values (l2Normalize's)
  const meta = { id: 'abc', finish_reason: { type: 'length', length: 0 }, prompt_tokens: 500, weight_version: 'default', total_retractions: 0, e2e_latency: 0.005 };
  const bodies1 = fresh().map((r) => ({ embedding: doubleNormalize(r), meta_info: meta }));
  const e = perRow((i) => JSON.stringify(bodies1[i]));
  const bodies2 = fresh().map((r) => ({ embedding: doubleNormalize(r), meta_info: meta }));
  const f = perRow((i) => jsonBody(bodies2[i]));
  const bodies3 = fresh().map((r) => ({ embedding: l2Normalize(r), meta_info: meta }));
  const g = perRow((i) => JSON.stringify(bodies3[i]));
  const bodies4 = fresh().map((r) => ({ embedding: l2Normalize(r), meta_info: meta }));
  const h = perRow((i) => jsonBody(bodies4[i]));
  const bytes = (b: string | Buffer) => (typeof b === 'string' ? Buffer.byteLength(b) : b.length);
  const doubleBytes = bytes(jsonBody(bodies2[0]));
  const f32Bytes = bytes(jsonBody(bodies4[0]));
  if (round === 1) {
    console.log(`EMB l2Normalize dim ${dim} us ${a.toFixed(1)}`);
    console.log(`EMB array-from-normalize dim ${dim} us ${b.toFixed(1)}`);
    console.log(`EMB json-stringify-fresh dim ${dim} us ${c.toFixed(1)}`);
    console.log(`EMB join-fresh dim ${dim} us ${d.toFixed(1)}`);
    console.log(`EMB encode-body-json-stringify dim ${dim} us ${e.toFixed(1)}`);
    console.log(`EMB encode-body-jsonBody dim ${dim} us ${f.toFixed(1)} bytes ${doubleBytes}`);
    console.log(`EMB encode-body-json-stringify-f32 dim ${dim} us ${g.toFixed(1)}`);
    console.log(`EMB encode-body-jsonBody-f32 dim ${dim} us ${h.toFixed(1)} bytes ${f32Bytes}`);
  }
}
