// LoopSpin (src/engine/loop-spin.ts): after touch() the event loop keeps turning (setImmediate chain) until
// holdMs after the last touch, then stops; which backends get one, and the SGL_LOOP_SPIN switch.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { LoopSpin, loopSpinFor } from '../../src/engine/loop-spin.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

test('LoopSpin keeps the loop turning for holdMs after the last touch, then stops', async () => {
  const spin = new LoopSpin(200); // wide margins: timers run late on a loaded CI machine
  assert.equal(spin.active, false);
  spin.touch();
  assert.equal(spin.active, true);
  await sleep(10);
  assert.equal(spin.active, true);
  spin.touch(); // extends the deadline
  await sleep(20);
  assert.equal(spin.active, true, 'still spinning 20 ms after a touch with a 200 ms hold');
  await sleep(400);
  assert.equal(spin.active, false, 'stopped once the hold ran out');
});

test('loopSpinFor: on for device backends, off for the CPU unless SGL_LOOP_SPIN=1; SGL_LOOP_SPIN=0 turns it off', () => {
  const saved = process.env.SGL_LOOP_SPIN;
  try {
    delete process.env.SGL_LOOP_SPIN;
    assert.ok(loopSpinFor('cuda') instanceof LoopSpin);
    assert.equal(loopSpinFor('cpu'), null);
    process.env.SGL_LOOP_SPIN = '1';
    assert.ok(loopSpinFor('cpu') instanceof LoopSpin);
    process.env.SGL_LOOP_SPIN = '0';
    assert.equal(loopSpinFor('cuda'), null);
  } finally {
    if (saved === undefined) delete process.env.SGL_LOOP_SPIN;
    else process.env.SGL_LOOP_SPIN = saved;
  }
});
