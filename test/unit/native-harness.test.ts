// Runs the C++ kernel parity harnesses (test/kernels/*_test.cc, built beside the addon by cmake-js):
// every CPU op against a plain scalar reference on random inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/native/addon.js';

const root = projectRoot();
const harnesses = readdirSync(path.join(root, 'test', 'kernels'))
  .filter((f) => f.endsWith('_test.cc'))
  .map((f) => f.replace(/\.cc$/, ''));

for (const name of harnesses) {
  test(`C++ harness ${name}`, () => {
    const exe = [path.join(root, 'build', name), path.join(root, 'build', 'Release', name)].find((p) => existsSync(p));
    assert.ok(exe, `${name} was not built (run npm install / npm run build)`);
    const res = spawnSync(exe, [], { encoding: 'utf8', timeout: 600_000 });
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(res.stdout);
    assert.ok(summary, `no summary line from ${name}:\n${res.stdout}\n${res.stderr}`);
    assert.equal(res.status, 0, `${name} failed:\n${res.stdout.split('\n').filter((l) => /FAIL/i.test(l)).join('\n')}`);
    assert.equal(Number(summary[2]), 0);
    assert.ok(Number(summary[1]) > 0, 'the harness ran no checks');
  });
}
