// TextTokenizer against transformers 5.17 AutoTokenizer: the golden.json input_ids of every
// fixture model, plus edge cases whose expected values were produced by transformers 5.17.
// Run `node dist/scripts/setup-test-fixtures.js` first: the Qwen/Llama tokenizer.json copies are
// not committed, and a missing one fails these tests.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

import { TextTokenizer } from '../../src/engine/tokenizer.js';
import { cleanUpTokenization } from '../../src/engine/tokenizer/cleanup.js';
import { NMT_REPLACEMENT, rewriteNmt } from '../../src/engine/tokenizer/compat.js';
import type { JsonObject } from '../../src/engine/tokenizer/json.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MODELS = join(ROOT, 'test/fixtures/models');
const STORIES = join(ROOT, 'src/builtin/stories260k');

function modelDir(name: string): string {
  const dir = name === 'stories260k' ? STORIES : join(MODELS, name);
  const file = join(dir, 'tokenizer.json');
  assert.ok(existsSync(file), `${file} is missing: run node dist/scripts/setup-test-fixtures.js`);
  return dir;
}

function readJsonFile<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

interface GenerateEntry {
  text: string;
  input_ids: number[];
  greedy_ids: number[];
  greedy_text?: string;
}
interface Golden {
  generate?: GenerateEntry[];
  score?: Array<{ query: string; item: string; item_first: boolean; input_ids: number[] }>;
  encode?: Array<{ text: string; input_ids: number[] }>;
  classify?: Array<{ text: string; input_ids: number[]; add_special_tokens: boolean }>;
  rerank?: Array<{ query: string; document: string; input_ids: number[] }>;
  from_bos_greedy_200?: { ids: number[]; text: string };
}
const golden = (name: string): Golden => readJsonFile<Golden>(join(MODELS, name, 'golden.json'));

const cache = new Map<string, Promise<TextTokenizer>>();
function load(name: string): Promise<TextTokenizer> {
  let t = cache.get(name);
  if (!t) {
    t = TextTokenizer.load(modelDir(name));
    cache.set(name, t);
  }
  return t;
}

describe('golden input_ids (transformers AutoTokenizer)', () => {
  for (const name of ['stories260k', 'qwen2-tiny', 'qwen2-moe-tiny']) {
    it(`${name}: generate prompts`, async () => {
      const tok = await load(name);
      const entries = golden(name).generate ?? [];
      assert.ok(entries.length > 0);
      for (const e of entries) assert.deepEqual(tok.encode(e.text), e.input_ids, e.text);
    });
  }

  it('stories260k: BOS comes from the post-processor (input_ids start with 1)', async () => {
    const tok = await load('stories260k');
    assert.equal(tok.encode('The cat')[0], 1);
    assert.deepEqual(tok.encode('The cat', { addSpecialTokens: false }), [291, 280, 294]);
  });

  it('qwen2-tiny: score (query and item concatenated in the given order)', async () => {
    const tok = await load('qwen2-tiny');
    const entries = golden('qwen2-tiny').score ?? [];
    assert.ok(entries.length > 0);
    for (const e of entries) {
      const text = e.item_first ? e.item + e.query : e.query + e.item;
      assert.deepEqual(tok.encode(text), e.input_ids, text);
    }
  });

  it('qwen2-tiny: encode (embedding) texts', async () => {
    const tok = await load('qwen2-tiny');
    const entries = golden('qwen2-tiny').encode ?? [];
    assert.ok(entries.length > 0);
    for (const e of entries) assert.deepEqual(tok.encode(e.text), e.input_ids);
  });

  it('llama31-reward-tiny: classify texts, tokenized without special tokens', async () => {
    const tok = await load('llama31-reward-tiny');
    const entries = golden('llama31-reward-tiny').classify ?? [];
    assert.ok(entries.length > 0);
    for (const e of entries) {
      assert.deepEqual(tok.encode(e.text, { addSpecialTokens: e.add_special_tokens }), e.input_ids);
    }
  });

  it('xlmr-reranker-tiny: rerank pairs use <s> A </s></s> B </s>', async () => {
    const tok = await load('xlmr-reranker-tiny');
    const entries = golden('xlmr-reranker-tiny').rerank ?? [];
    assert.ok(entries.length > 0);
    for (const e of entries) assert.deepEqual(tok.encodePair(e.query, e.document), e.input_ids, e.document);
  });
});

describe('decode', () => {
  for (const name of ['stories260k', 'qwen2-tiny', 'qwen2-moe-tiny']) {
    it(`${name}: decode(greedy_ids) equals golden greedy_text`, async () => {
      const tok = await load(name);
      for (const e of golden(name).generate ?? []) {
        assert.ok(e.greedy_text !== undefined);
        assert.equal(tok.decode(e.greedy_ids), e.greedy_text);
      }
    });
  }

  it('stories260k: from_bos_greedy_200 decodes to its golden text', async () => {
    const tok = await load('stories260k');
    const g = golden('stories260k').from_bos_greedy_200;
    assert.ok(g);
    assert.equal(tok.decode(g.ids), g.text);
  });

  it('byte-level tokenizers round-trip any text exactly', async () => {
    const texts = ['Grüße aus Zürich — 東京は晴れ 🌤️', '  two  spaces\tand\ttabs\r\n', '👨‍👩‍👧 \u00e9 \u0000\u0001 ﬁ'];
    for (const name of ['qwen2-tiny', 'llama31-reward-tiny']) {
      const tok = await load(name);
      for (const t of texts) assert.equal(tok.decode(tok.encode(t)), t, `${name}: ${t}`);
    }
  });

  it('stories260k round-trips text through byte fallback (decoder strips the dummy prefix space)', async () => {
    const tok = await load('stories260k');
    for (const t of ['Once upon a time', 'Grüße 東京 🌤️ café naïve', 'a\nb']) {
      assert.equal(tok.decode(tok.encode(t)), t);
    }
  });

  it('skipSpecialTokens (default true) drops special tokens, false keeps them', async () => {
    const qwen = await load('qwen2-tiny');
    const ids = qwen.encode('<|im_start|>user\nhi<|im_end|>');
    assert.deepEqual(ids, [151644, 872, 198, 6023, 151645]);
    assert.equal(qwen.decode(ids), 'user\nhi');
    assert.equal(qwen.decode(ids, { skipSpecialTokens: false }), '<|im_start|>user\nhi<|im_end|>');
    const stories = await load('stories260k');
    // transformers 5.17: decode([1, 1, 346, 306, 414, 2]) -> "<s><s> Hello</s>" / "Hello"
    assert.equal(stories.decode([1, 1, 346, 306, 414, 2], { skipSpecialTokens: false }), '<s><s> Hello</s>');
    assert.equal(stories.decode([1, 1, 346, 306, 414, 2]), 'Hello');
  });

  it('follows Rust tokenizers decoders where the JS library differs (values from transformers 5.17)', async () => {
    const stories = await load('stories260k');
    // An invalid byte-fallback run becomes one U+FFFD per byte token, even its valid first character.
    assert.equal(stories.decode([198, 172, 233, 160]), '\uFFFD'.repeat(4));
    assert.equal(stories.decode([198, 172]), 'é');
    assert.equal(stories.decode([243, 162]), '\uFFFD\uFFFD');
    assert.equal(stories.decode([410, 410, 444]), ' x');
    assert.equal(stories.decode([346, 198, 172, 410]), 'Heé ');
    assert.equal(stories.decode([35, 410]), ' ');
    const qwen = await load('qwen2-tiny');
    assert.equal(qwen.decode([11162]), ' \uFFFD');
    assert.equal(qwen.decode([11162, 234, 97]), ' 🌤');
    assert.equal(qwen.decode([30543, 11162]), '\uFE0F \uFFFD');
    const xlmr = await load('xlmr-reranker-tiny');
    // Metaspace decoder: every U+2581 of the first token is dropped, later ones become spaces.
    assert.equal(xlmr.decode([5, 5, 49]), ' x');
    assert.equal(xlmr.decode([49, 5]), 'x ');
    assert.equal(xlmr.decode([0, 5, 5, 49], { skipSpecialTokens: false }), '<s>  x');
  });
});

describe('edge cases checked against transformers 5.17', () => {
  it('stories260k (LlamaTokenizer rebuilds a Metaspace pipeline) handles spaces and inline special tokens', async () => {
    const tok = await load('stories260k');
    const cases: Array<[string, number[]]> = [
      ['', [1]],
      [' ', [1, 410]],
      [' Hello world', [1, 346, 306, 414, 263, 304, 341]],
      ['  double  spaces  ', [1, 410, 279, 277, 430, 305, 410, 262, 427, 412, 331, 419, 410, 410]],
      ['<s>Hello</s>', [1, 1, 346, 306, 414, 2]],
      ['Hello<s> world', [1, 346, 306, 414, 1, 263, 304, 341]],
      [' <s> x', [1, 410, 1, 410, 444]],
      ['ab <unk> c', [1, 261, 430, 410, 0, 280]],
      ['x </s> y', [1, 410, 444, 410, 2, 348]],
    ];
    for (const [text, ids] of cases) assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
  });

  it('LlamaTokenizer prepend scheme follows legacy / add_prefix_space', () => {
    const dir = modelDir('stories260k');
    const json = readJsonFile<JsonObject>(join(dir, 'tokenizer.json'));
    const config = readJsonFile<JsonObject>(join(dir, 'tokenizer_config.json'));
    // transformers 5 defaults legacy to false: "▁" is prepended to the first section only.
    const withoutLegacy = { ...config };
    delete withoutLegacy.legacy;
    const first = TextTokenizer.fromObjects(json, withoutLegacy);
    assert.deepEqual(first.encode('<s>Hello'), [1, 1, 440, 411, 306, 414]);
    assert.deepEqual(first.encode('Hello<s> world'), [1, 346, 306, 414, 1, 263, 304, 341]);
    assert.equal(first.decode([1, 1, 440, 411, 306, 414], { skipSpecialTokens: false }), '<s><s>Hello');
    // add_prefix_space false: never prepend, and the decoder keeps leading spaces.
    const never = TextTokenizer.fromObjects(json, { ...config, add_prefix_space: false });
    assert.deepEqual(never.encode('Hello<s> world'), [1, 440, 411, 306, 414, 1, 263, 304, 341]);
    assert.deepEqual(never.encode('a\nb'), [1, 412, 13, 430]);
    assert.equal(never.decode([1, 346, 306, 414, 263, 304, 341]), ' Hello world');
  });

  it('qwen2-tiny and llama31 handle control characters, tabs and inline special-token text', async () => {
    const qwen = await load('qwen2-tiny');
    assert.deepEqual(qwen.encode('tabs\tand\nnewlines\r\n'), [30993, 52477, 198, 931, 7969, 319]);
    assert.deepEqual(qwen.encode('<s>Hello</s>'), [44047, 79497, 522, 82, 29]);
    assert.deepEqual(qwen.encode('  double  spaces  '), [220, 1990, 220, 12621, 256]);
    const llama = await load('llama31-reward-tiny');
    assert.deepEqual(llama.encode('<|begin_of_text|>hi'), [128000, 128000, 6151]);
    assert.deepEqual(llama.encode('😀👍🏽 𝔘𝔫𝔦', { addSpecialTokens: false }), [
      76460, 222, 9468, 239, 235, 9468, 237, 121, 82350, 242, 246, 57352, 242, 104, 57352, 242, 99,
    ]);
  });

  it('text pairs with a template post-processor', async () => {
    const stories = await load('stories260k');
    assert.deepEqual(stories.encodePair('a b', 'c d'), [1, 261, 268, 1, 280, 279]);
    assert.deepEqual(stories.encodePair('a b', 'c d', { addSpecialTokens: false }), [261, 268, 280, 279]);
    const llama = await load('llama31-reward-tiny');
    assert.deepEqual(llama.encodePair('Hello', ' world'), [128000, 9906, 128000, 1917]);
    const xlmr = await load('xlmr-reranker-tiny');
    assert.deepEqual(xlmr.encodePair('a b', 'c d'), [0, 5, 12, 5, 58, 2, 2, 5, 24, 5, 16, 2]);
    assert.deepEqual(xlmr.encodePair('a b', 'c d', { addSpecialTokens: false }), [5, 12, 5, 58, 5, 24, 5, 16]);
  });

  it('special token ids, vocabulary size, model_max_length and chat template presence', async () => {
    const expect: Record<string, { bos?: number; eos?: number; pad?: number; unk?: number; all: number[]; len: number; max: number; chat: boolean }> = {
      stories260k: { bos: 1, eos: 2, unk: 0, all: [1, 2, 0], len: 512, max: 512, chat: false },
      'qwen2-tiny': {
        eos: 151645,
        pad: 151643,
        all: [151645, 151643, 151644, 151646, 151647, 151648, 151649, 151650, 151651, 151652, 151653, 151654, 151655, 151656],
        len: 151669,
        max: 131072,
        chat: true,
      },
      'llama31-reward-tiny': { bos: 128000, eos: 128009, all: [128000, 128009], len: 128256, max: 1e30, chat: true },
      'xlmr-reranker-tiny': { bos: 0, eos: 2, pad: 1, unk: 3, all: [0, 2, 3, 1, 4], len: 240, max: 512, chat: false },
    };
    for (const [name, e] of Object.entries(expect)) {
      const tok = await load(name);
      assert.equal(tok.bosTokenId, e.bos, `${name} bos`);
      assert.equal(tok.eosTokenId, e.eos, `${name} eos`);
      assert.equal(tok.padTokenId, e.pad, `${name} pad`);
      assert.equal(tok.unkTokenId, e.unk, `${name} unk`);
      assert.deepEqual(tok.allSpecialIds, e.all, `${name} all_special_ids`);
      assert.equal(tok.vocabSize, e.len, `${name} len(tokenizer)`);
      assert.equal(tok.modelMaxLength, e.max, `${name} model_max_length`);
      assert.equal(tok.chatTemplate !== undefined, e.chat, `${name} chat template`);
      for (const id of e.all) assert.ok(tok.isSpecialId(id));
    }
    const llama = await load('llama31-reward-tiny');
    // Added tokens marked special in tokenizer.json are skipped by decode too.
    assert.ok(llama.isSpecialId(128002));
    assert.equal(llama.tokenToId('<|eot_id|>'), 128009);
    assert.equal(llama.idToToken(128009), '<|eot_id|>');
    assert.equal(llama.idToToken(9906), 'Hello');
    assert.equal(llama.tokenToId('no such token'), undefined);
  });

  it('named special tokens that tokenizer.json lists only as vocabulary still act as special tokens', () => {
    const dir = modelDir('stories260k');
    const json = readJsonFile<JsonObject>(join(dir, 'tokenizer.json'));
    const config = readJsonFile<JsonObject>(join(dir, 'tokenizer_config.json'));
    const stripped = { ...json, added_tokens: (json.added_tokens as JsonObject[]).filter((t) => t.content !== '</s>') };
    const withoutConfigEntry = { ...config, added_tokens_decoder: {} };
    const tok = TextTokenizer.fromObjects(stripped, withoutConfigEntry);
    assert.deepEqual(tok.encode('x </s> y'), [1, 410, 444, 410, 2, 348]);
    assert.equal(tok.decode([1, 410, 444, 410, 2, 348]), 'x  y');
    assert.ok(tok.isSpecialId(2));
  });

  it('load fails loudly when tokenizer.json is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tok-missing-'));
    try {
      writeFileSync(join(dir, 'tokenizer_config.json'), '{}');
      await assert.rejects(TextTokenizer.load(dir), /tokenizer\.json/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('shims', () => {
  it('(a) Nmt normalizer is rewritten into two Replace normalizers', async () => {
    const rewritten = rewriteNmt({ type: 'Sequence', normalizers: [{ type: 'Nmt' }, { type: 'NFKC' }] }) as JsonObject;
    assert.deepEqual(rewritten.normalizers, [...NMT_REPLACEMENT, { type: 'NFKC' }]);
    const xlmr = await load('xlmr-reranker-tiny');
    // transformers 5.17: U+0001, U+000B, U+008F deleted; \t \n \r U+200B U+FEFF U+2028 U+1680 U+2581 U+FFFD \f -> space.
    const text = 'a\u0001b\u000bc\u200bd\ufeffe\u2028f\u00a0g\u0000h\u008fi\u1680j\u2581k\ufffdl\u000cm';
    assert.deepEqual(xlmr.encode(text), [0, 5, 12, 58, 24, 5, 16, 5, 6, 5, 30, 5, 21, 3, 9, 19, 5, 47, 5, 20, 5, 11, 5, 31, 2]);
    assert.deepEqual(xlmr.encode('tabs\tand\nnewlines\r\n'), [0, 5, 7, 12, 58, 8, 5, 22, 5, 10, 6, 18, 11, 26, 6, 8, 5, 2]);
  });

  it('(b) a ByteLevel post-processor has no pair template: the two encodings are concatenated', () => {
    const dir = modelDir('qwen2-tiny');
    const json = readJsonFile<JsonObject>(join(dir, 'tokenizer.json'));
    assert.equal((json.post_processor as JsonObject).type, 'ByteLevel');
    const tok = TextTokenizer.fromObjects(json, readJsonFile<JsonObject>(join(dir, 'tokenizer_config.json')));
    // transformers 5.17: tok("what is panda?", " hi") -> [12555, 374, 88222, 30, 15588]
    assert.deepEqual(tok.encodePair('what is panda?', ' hi'), [12555, 374, 88222, 30, 15588]);
    assert.deepEqual(tok.encodePair('The capital of France is', 'Paris'), [785, 6722, 315, 9625, 374, 59604]);
    // The library alone would drop the second text.
    const raw = new Tokenizer(json, {});
    assert.deepEqual(raw.encode('what is panda?', { text_pair: ' hi' }).ids, [12555, 374, 88222, 30]);
  });

  it('(c) decode([]) is ""', async () => {
    for (const name of ['stories260k', 'qwen2-tiny', 'llama31-reward-tiny', 'xlmr-reranker-tiny']) {
      const tok = await load(name);
      assert.equal(tok.decode([]), '');
      assert.equal(tok.decode([], { skipSpecialTokens: false }), '');
    }
    const json = readJsonFile<JsonObject>(join(modelDir('stories260k'), 'tokenizer.json'));
    assert.throws(() => new Tokenizer(json, {}).decode([]));
  });

  it('(d) clean_up_tokenization_spaces: transformers rules, applied for non-BPE models when the config says true', async () => {
    assert.equal(
      cleanUpTokenization("Hello , world . I 'm here ! Isn 't it ? You 're , they 've a ' b"),
      "Hello, world. I'm here! Isn 't it? You're, they've a'b",
    );
    const dir = modelDir('xlmr-reranker-tiny');
    const json = readJsonFile<JsonObject>(join(dir, 'tokenizer.json'));
    const config = readJsonFile<JsonObject>(join(dir, 'tokenizer_config.json'));
    const text = 'hi , there . yes ?';
    const plain = TextTokenizer.fromObjects(json, config);
    const cleaned = TextTokenizer.fromObjects(json, { ...config, clean_up_tokenization_spaces: true });
    const ids = plain.encode(text);
    assert.equal(plain.decode(ids), 'hi , there . yes ?');
    assert.equal(cleaned.decode(ids), 'hi, there. yes?');
    // transformers 5.17 ignores the flag for BPE models (llama31's config sets it true).
    const llama = await load('llama31-reward-tiny');
    assert.equal(llama.config.clean_up_tokenization_spaces, true);
    const s = "Hello , world . I 'm here ! Isn 't it ? You 're , they 've";
    assert.equal(llama.decode(llama.encode(s)), s);
  });
});
