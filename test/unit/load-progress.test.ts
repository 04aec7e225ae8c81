// Loading progress: the weight files a checkpoint names, reading them all once, and the bar (TTY) or
// quarter lines (a log) drawn from the bytes read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { listWeightFiles, prefetchWeights } from '../../src/engine/weight-prefetch.js';
import { createProgress } from '../../src/server/load-progress.js';
import { fixtureModelDir } from '../helpers/fixtures.js';

test('listWeightFiles: model.safetensors, or the shards of the index once each; unreadable: none', () => {
  const single = listWeightFiles(fixtureModelDir('stories260k'));
  assert.equal(single.length, 1);
  assert.equal(path.basename(single[0]!.path), 'model.safetensors');
  assert.ok(single[0]!.bytes > 0);
  const dir = mkdtempSync(path.join(tmpdir(), 'sgl-prefetch-'));
  try {
    writeFileSync(path.join(dir, 'a.safetensors'), Buffer.alloc(10_000_000, 1));
    writeFileSync(path.join(dir, 'b.safetensors'), Buffer.alloc(123, 2));
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'b.safetensors', y: 'a.safetensors', z: 'a.safetensors' } }));
    const files = listWeightFiles(dir);
    assert.deepEqual(files.map((f) => [path.basename(f.path), f.bytes]), [['a.safetensors', 10_000_000], ['b.safetensors', 123]]);
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{oops');
    assert.deepEqual(listWeightFiles(dir), []);
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'missing.safetensors' } }));
    assert.deepEqual(listWeightFiles(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('prefetchWeights reads every byte and reports monotone progress ending at the total', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sgl-prefetch-'));
  try {
    writeFileSync(path.join(dir, 'a.safetensors'), Buffer.alloc(20_000_001, 1));
    writeFileSync(path.join(dir, 'b.safetensors'), Buffer.alloc(5, 2));
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { x: 'a.safetensors', y: 'b.safetensors' } }));
    const seen: Array<[number, number]> = [];
    await prefetchWeights(listWeightFiles(dir), (d, t) => seen.push([d, t]));
    assert.deepEqual(seen[0], [0, 20_000_006]);
    assert.deepEqual(seen.at(-1), [20_000_006, 20_000_006]);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i]![0] > seen[i - 1]![0]);
    assert.ok(seen.length >= 4, 'several blocks');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('createProgress: quarter lines on a log, in-place bar on a TTY (throttled), one final line', () => {
  let t = 0;
  const lines: string[] = [];
  const log = createProgress('Reading weights', 4000, { stream: { isTTY: false, write: () => assert.fail('no bar on a log') }, log: (m) => lines.push(m), now: () => t });
  for (let d = 0; d <= 4000; d += 500) {
    t += 250;
    log.update(d);
  }
  log.finish();
  assert.deepEqual(lines.slice(0, 3), [
    'Reading weights: 25% (1.0 kB/4.0 kB)',
    'Reading weights: 50% (2.0 kB/4.0 kB)',
    'Reading weights: 75% (3.0 kB/4.0 kB)',
  ]);
  assert.equal(lines[3], 'Reading weights: done, 4.0 kB in 2.25 s');
  assert.equal(lines.length, 4);

  t = 0;
  const frames: string[] = [];
  const tlines: string[] = [];
  const bar = createProgress('Reading weights', 1e9, { stream: { isTTY: true, write: (s: string) => frames.push(s) }, log: (m) => tlines.push(m), now: () => t });
  bar.update(0);
  t = 50;
  bar.update(1e8); // within 100 ms of the last frame: not drawn
  t = 1000;
  bar.update(5e8);
  bar.finish();
  assert.equal(frames.length, 3);
  assert.ok(frames.every((f) => f.startsWith('\r\x1b[2K')));
  assert.match(frames[1]!, /\[#{15}\.{15}\]  50% 500\.0 MB\/1\.00 GB 500\.0 MB\/s$/);
  assert.ok(frames[2]!.endsWith('\n'));
  assert.deepEqual(tlines, ['Reading weights: done, 500.0 MB in 1.00 s']);
});
