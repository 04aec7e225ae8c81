// IncrementalDetokenizer: streamed deltas must add up to decode(all ids) and must never carry
// half a character. Runs on every golden greedy_ids sequence and on tricky strings.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { IncrementalDetokenizer, type IncrementalDetokenizerOptions } from '../../src/engine/incremental-detokenizer.js';
import { TextTokenizer } from '../../src/engine/tokenizer.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DIRS: Record<string, string> = {
  stories260k: join(ROOT, 'src/builtin/stories260k'),
  'qwen2-tiny': join(ROOT, 'test/fixtures/models/qwen2-tiny'),
  'qwen2-moe-tiny': join(ROOT, 'test/fixtures/models/qwen2-moe-tiny'),
  'llama31-reward-tiny': join(ROOT, 'test/fixtures/models/llama31-reward-tiny'),
  'xlmr-reranker-tiny': join(ROOT, 'test/fixtures/models/xlmr-reranker-tiny'),
};

const cache = new Map<string, Promise<TextTokenizer>>();
function load(name: string): Promise<TextTokenizer> {
  const dir = DIRS[name];
  assert.ok(dir, name);
  assert.ok(existsSync(join(dir, 'tokenizer.json')), `${dir}/tokenizer.json is missing: run node dist/scripts/setup-test-fixtures.js`);
  let t = cache.get(name);
  if (!t) {
    t = TextTokenizer.load(dir);
    cache.set(name, t);
  }
  return t;
}

interface Golden {
  generate: Array<{ text: string; input_ids: number[]; greedy_ids: number[] }>;
  from_bos_greedy_200?: { ids: number[]; text: string };
}
function golden(name: string): Golden {
  return JSON.parse(readFileSync(join(ROOT, 'test/fixtures/models', name, 'golden.json'), 'utf8')) as Golden;
}

const FFFD = '\uFFFD';
const countFffd = (s: string): number => s.split(FFFD).length - 1;

/** Streams ids in chunks of `chunk`; returns the deltas, the last one from flush(). */
function stream(tok: TextTokenizer, ids: readonly number[], chunk = 1, options: IncrementalDetokenizerOptions = {}): string[] {
  const det = new IncrementalDetokenizer(tok, options);
  const deltas: string[] = [];
  for (let i = 0; i < ids.length; i += chunk) deltas.push(det.push(ids.slice(i, i + chunk)));
  deltas.push(det.flush());
  assert.equal(det.text, deltas.join(''));
  return deltas;
}

/** The streaming contract: deltas concatenate to the full decode, with no U+FFFD the full text lacks. */
function assertStreams(tok: TextTokenizer, ids: readonly number[], label: string, skipSpecialTokens = true): void {
  const full = tok.decode(ids, { skipSpecialTokens });
  for (const chunk of [1, 2, 3]) {
    const deltas = stream(tok, ids, chunk, { skipSpecialTokens });
    assert.equal(deltas.join(''), full, `${label} (chunk ${chunk})`);
    const streamed = deltas.slice(0, -1).join('');
    assert.ok(countFffd(streamed) <= countFffd(full), `${label}: U+FFFD emitted mid-stream`);
  }
}

describe('incremental detokenizer on golden greedy_ids', () => {
  for (const name of ['stories260k', 'qwen2-tiny', 'qwen2-moe-tiny']) {
    it(name, async () => {
      const tok = await load(name);
      const entries = golden(name).generate;
      assert.ok(entries.length > 0);
      for (const e of entries) {
        assertStreams(tok, e.greedy_ids, `${name}: ${e.text.slice(0, 30)}`);
        assertStreams(tok, e.greedy_ids, `${name} (specials kept): ${e.text.slice(0, 30)}`, false);
      }
    });
  }

  it('stories260k from_bos_greedy_200 streams to its golden text', async () => {
    const tok = await load('stories260k');
    const g = golden('stories260k').from_bos_greedy_200;
    assert.ok(g);
    assert.equal(stream(tok, g.ids).join(''), g.text);
  });

  it('prompt context keeps the leading space of the first generated token (SentencePiece)', async () => {
    const tok = await load('stories260k');
    for (const e of golden('stories260k').generate) {
      const deltas = stream(tok, e.greedy_ids, 1, { promptIds: e.input_ids });
      const expected = tok.decode([...e.input_ids, ...e.greedy_ids]).slice(tok.decode(e.input_ids).length);
      assert.equal(deltas.join(''), expected);
    }
    // "The cat" + "▁and ..." streams " and a boy ..." (decode(greedy_ids) alone gives "and a boy ...").
    const cat = golden('stories260k').generate.find((e) => e.text === 'The cat');
    assert.ok(cat);
    assert.ok(stream(tok, cat.greedy_ids, 1, { promptIds: cat.input_ids }).join('').startsWith(' and a boy'));
    assert.ok(tok.decode(cat.greedy_ids).startsWith('and a boy'));
  });
});

describe('incremental detokenizer on tricky text', () => {
  const texts = [
    'Grüße aus Zürich — 東京は晴れ 🌤️; café naïve résumé',
    '😀👍🏽 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 👨‍👩‍👧‍👦 🇫🇷',
    '中文字符和日本語のテキスト、한국어 텍스트',
    'e\u0301 a\u0308 combining marks',
    '  leading and trailing spaces  ',
    "Hello, world! I'm here.\n\nNew paragraph\twith tab.",
  ];
  for (const name of Object.keys(DIRS)) {
    it(name, async () => {
      const tok = await load(name);
      for (const text of texts) {
        const ids = tok.encode(text, { addSpecialTokens: false });
        assertStreams(tok, ids, `${name}: ${text}`);
        // With the post-processor's special tokens, kept or skipped.
        assertStreams(tok, tok.encode(text), `${name}+special: ${text}`, false);
        assertStreams(tok, tok.encode(text), `${name}+special skipped: ${text}`, true);
      }
    });
  }

  it('emits each multi-byte character only once it is complete (byte-level BPE)', async () => {
    const tok = await load('qwen2-tiny');
    const ids = tok.encode(' 🌤', { addSpecialTokens: false });
    assert.deepEqual(ids, [11162, 234, 97]); // " \xF0", "\x9F\x8C", "\xA4"
    const deltas = stream(tok, ids);
    assert.deepEqual(deltas, ['', '', ' 🌤', '']);
    assert.ok(!deltas.join('').includes(FFFD));
  });

  it('holds a byte-fallback run until it ends (SentencePiece <0xNN> tokens)', async () => {
    const tok = await load('stories260k');
    // "é" = <0xC3><0xA9>, then "▁" (a normal token) ends the run.
    const det = new IncrementalDetokenizer(tok);
    assert.equal(det.push(198), '');
    assert.equal(det.push(172), '');
    assert.equal(det.push(410), 'é ');
    assert.equal(det.flush(), '');
    // A run that turns invalid later: Rust's ByteFallback makes every byte of the run U+FFFD,
    // so nothing of it may be emitted early.
    const ids = [198, 172, 233, 160];
    const deltas = stream(tok, ids);
    assert.deepEqual(deltas.slice(0, -1), ['', '', '', '']);
    assert.equal(deltas.join(''), tok.decode(ids));
    assert.equal(tok.decode(ids), FFFD.repeat(4));
  });

  it('flush() emits an unfinished character as U+FFFD, matching decode()', async () => {
    const tok = await load('qwen2-tiny');
    const ids = tok.encode('ok 🌤', { addSpecialTokens: false }).slice(0, -1);
    const deltas = stream(tok, ids);
    assert.ok(!deltas.slice(0, -1).join('').includes(FFFD));
    assert.ok(deltas[deltas.length - 1]?.endsWith(FFFD));
    assert.equal(deltas.join(''), tok.decode(ids));
  });

  it('respects skipSpecialTokens for special tokens in the middle of the stream', async () => {
    const tok = await load('qwen2-tiny');
    const ids = tok.encode('<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nok');
    assert.equal(stream(tok, ids, 1, { skipSpecialTokens: true }).join(''), 'assistant\nHi there\nuser\nok');
    assert.equal(stream(tok, ids, 1, { skipSpecialTokens: false }).join(''), '<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nok');
  });

  it('push with nothing new and flush on an empty stream return ""', async () => {
    const tok = await load('qwen2-tiny');
    const det = new IncrementalDetokenizer(tok);
    assert.equal(det.push([]), '');
    assert.equal(det.flush(), '');
    assert.deepEqual(det.generatedIds, []);
  });
});
