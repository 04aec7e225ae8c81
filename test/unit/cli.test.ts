// The command line (`npm start`): one request through the serving engine, text streamed to stdout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../../src/native/addon.js';
import { loadGolden } from '../helpers/fixtures.js';

const main = path.join(projectRoot(), 'dist', 'src', 'cli', 'main.js');

test('npm start -- --prompt prints the built-in model greedy continuation (golden)', () => {
  const g = loadGolden('stories260k').generate[0]!;
  const out = execFileSync(process.execPath, [main, '--prompt', g.text, '--max-new-tokens', String(g.greedy_ids.length), '--page-size', '4'], { encoding: 'utf8' });
  assert.equal(out, `${g.text}${g.greedy_text}\n`);
});

test('an unknown flag or a bad value is an error naming it', () => {
  const r = spawnSync(process.execPath, [main, '--bogus'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown flag: --bogus/);
  const r2 = spawnSync(process.execPath, [main, '--schedule-policy', 'random'], { encoding: 'utf8' });
  assert.equal(r2.status, 1);
  assert.match(r2.stderr, /--schedule-policy must be one of fcfs, lpm/);
});
