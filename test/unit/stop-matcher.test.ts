// Stop-string matching on streamed text: found across pieces, earliest wins, and the held-back tail keeps
// streamed text free of anything the final text trims.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StopMatcher } from '../../src/engine/stop-matcher.js';

/**
 * Feeds text in pieces the way the engine does; returns the streamed deltas, the final text (trimmed unless
 * noStopTrim) and the matched stop string.
 */
function run(stops: string[], pieces: string[], noStopTrim = false): { deltas: string[]; text: string; matched: string | null } {
  const m = new StopMatcher(stops);
  let decoded = '';
  let checked = 0;
  let shown = '';
  const deltas: string[] = [];
  for (const p of pieces) {
    decoded += p;
    const hit = m.find(decoded, checked);
    checked = decoded.length;
    if (hit) {
      const text = noStopTrim ? decoded : decoded.slice(0, hit.index);
      assert.ok(text.startsWith(shown), 'final text extends what was shown');
      deltas.push(text.slice(shown.length));
      return { deltas, text, matched: hit.stop };
    }
    const safe = Math.max(shown.length, m.safeLength(decoded));
    const next = decoded.slice(0, safe);
    deltas.push(next.slice(shown.length));
    shown = next;
  }
  deltas.push(decoded.slice(shown.length));
  return { deltas, text: decoded, matched: null };
}

test('a stop string split across pieces is found and trimmed; no delta shows part of it', () => {
  const r = run(['STOP'], ['Hello S', 'T', 'O', 'P and more']);
  assert.equal(r.matched, 'STOP');
  assert.equal(r.text, 'Hello ');
  assert.equal(r.deltas.join(''), r.text);
  for (const d of r.deltas) assert.ok(!d.includes('S'), `delta ${JSON.stringify(d)} shows part of the stop string`);
});

test('a held-back prefix that does not continue into the stop string is released', () => {
  const r = run(['STOP'], ['a ST', 'ART', ' end']);
  assert.equal(r.matched, null);
  assert.deepEqual(r.deltas, ['a ', 'START', ' end', '']);
  assert.equal(r.text, 'a START end');
});

test('several stop strings: the earliest in the text wins, whatever the list order', () => {
  const r = run(['world', 'lo'], ['hello world']);
  assert.equal(r.matched, 'lo');
  assert.equal(r.text, 'hel');
  const m = new StopMatcher(['b', 'abc']);
  assert.deepEqual(m.find('xabc'), { index: 1, stop: 'abc' });
  // Same start: the shorter one (it completed first).
  assert.deepEqual(new StopMatcher(['abc', 'ab']).find('zabcd'), { index: 1, stop: 'ab' });
});

test('overlapping stop strings and self-overlap: the pending tail is the longest prefix', () => {
  const m = new StopMatcher(['aab', 'abab']);
  assert.equal(m.pendingTail('xaa'), 2); // "aa" of "aab"
  assert.equal(m.pendingTail('xaba'), 3); // "aba" of "abab"
  assert.equal(m.pendingTail('xab'), 2);
  assert.equal(m.pendingTail('xyz'), 0);
  const r = run(['abab'], ['ab', 'a', 'bab']);
  assert.equal(r.matched, 'abab');
  assert.equal(r.text, '');
  const r2 = run(['aab'], ['a', 'a', 'a', 'b!']);
  assert.equal(r2.text, 'a');
  assert.equal(r2.deltas.join(''), 'a');
});

test('only new text is searched, but a match straddling the previous end is still found', () => {
  const m = new StopMatcher(['xyz']);
  assert.equal(m.find('abcxy', 0), null);
  assert.deepEqual(m.find('abcxyz', 5), { index: 3, stop: 'xyz' });
  // An earlier occurrence that was already checked is not reported again from a later position.
  assert.equal(new StopMatcher(['ab']).find('ab--', 4)?.index ?? null, null);
});

test('unicode: multi-unit characters in stop strings and text', () => {
  const r = run(['🙂 bye'], ['hi 🙂', ' b', 'ye now']);
  assert.equal(r.matched, '🙂 bye');
  assert.equal(r.text, 'hi ');
  assert.deepEqual(r.deltas, ['hi ', '', '']);
  const r2 = run(['ß'], ['Straße']);
  assert.equal(r2.text, 'Stra');
  const r3 = run(['日本'], ['今日', 'は日', '本です']);
  assert.equal(r3.text, '今日は');
  assert.equal(r3.deltas.join(''), '今日は');
});

test('no_stop_trim keeps the stop string and whatever the last piece decoded after it', () => {
  const r = run(['STOP'], ['Hello S', 'TOP!'], true);
  assert.equal(r.matched, 'STOP');
  assert.equal(r.text, 'Hello STOP!');
  assert.equal(r.deltas.join(''), r.text);
});

test('empty and duplicate stop strings are ignored', () => {
  const m = new StopMatcher(['', 'a', 'a']);
  assert.deepEqual(m.stops, ['a']);
  assert.ok(new StopMatcher(['']).empty);
  assert.equal(new StopMatcher([]).find('anything'), null);
  assert.equal(new StopMatcher([]).safeLength('anything'), 8);
});
