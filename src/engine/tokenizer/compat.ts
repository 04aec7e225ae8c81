// Load-time rewrites of tokenizer.json so that @huggingface/tokenizers (a JS port) produces the
// same ids as transformers 5 AutoTokenizer (Rust tokenizers underneath). Each rewrite is small,
// works on a private copy of the JSON, and says why it exists.
import { asObjectArray, isObject, type Json, type JsonObject } from './json.js';

const METASPACE = '\u2581';

function charClass(codes: Array<number | [number, number]>): string {
  // Literal characters (not escapes) so the library's Oniguruma-to-JS regex rewriting has nothing to reinterpret.
  const parts = codes.map((c) =>
    Array.isArray(c) ? `${String.fromCharCode(c[0])}-${String.fromCharCode(c[1])}` : String.fromCharCode(c),
  );
  return `[${parts.join('')}]`;
}

/**
 * Shim (a): the JS library has no `Nmt` normalizer (XLM-R / bge-reranker tokenizers use it).
 * Rust's Nmt deletes some control characters and maps some whitespace-like characters to a
 * space; two Replace normalizers do exactly that.
 */
export const NMT_REPLACEMENT: JsonObject[] = [
  {
    type: 'Replace',
    pattern: { Regex: charClass([[0x01, 0x08], 0x0b, [0x0e, 0x1f], 0x7f, 0x8f, 0x9f]) },
    content: '',
  },
  {
    type: 'Replace',
    pattern: {
      Regex: charClass([
        0x09, 0x0a, 0x0c, 0x0d, 0x1680, [0x200b, 0x200f], 0x2028, 0x2029, 0x2581, 0xfeff, 0xfffd,
      ]),
    },
    content: ' ',
  },
];

export function rewriteNmt(normalizer: Json | undefined): Json {
  if (!isObject(normalizer)) return normalizer ?? null;
  if (normalizer.type === 'Nmt') return { type: 'Sequence', normalizers: NMT_REPLACEMENT };
  if (normalizer.type === 'Sequence') {
    const inner = asObjectArray(normalizer.normalizers).flatMap((n) =>
      n.type === 'Nmt' ? NMT_REPLACEMENT : [rewriteNmt(n)],
    );
    return { ...normalizer, normalizers: inner };
  }
  return normalizer;
}

/**
 * The JS Metaspace pre-tokenizer ignores `split: true` (Rust splits on U+2581, keeping it at
 * the start of each piece). Add that split explicitly so Unigram/BPE see the same pieces.
 */
export function rewriteMetaspaceSplit(preTokenizer: Json | undefined): Json {
  if (!isObject(preTokenizer)) return preTokenizer ?? null;
  if (preTokenizer.type === 'Metaspace' && preTokenizer.split !== false) {
    const replacement = typeof preTokenizer.replacement === 'string' ? preTokenizer.replacement : METASPACE;
    const r = replacement.replace(/[\\^\]\-[]/g, '\\$&');
    return {
      type: 'Sequence',
      pretokenizers: [
        { ...preTokenizer, split: false },
        // invert: the JS Split then returns the pattern's matches, i.e. each piece starting at a U+2581.
        { type: 'Split', pattern: { Regex: `${r}[^${r}]*|[^${r}]+` }, behavior: 'MergedWithNext', invert: true },
      ],
    };
  }
  if (preTokenizer.type === 'Sequence') {
    return { ...preTokenizer, pretokenizers: asObjectArray(preTokenizer.pretokenizers).map(rewriteMetaspaceSplit) };
  }
  return preTokenizer;
}

function isSentencePieceBpe(json: JsonObject): boolean {
  const model = isObject(json.model) ? json.model : {};
  return model.type === 'BPE' && (model.byte_fallback === true || JSON.stringify(json.decoder ?? null).includes(METASPACE));
}

/**
 * transformers 5's LlamaTokenizer does not use tokenizer.json's normalizer/pre-tokenizer/decoder:
 * it keeps only vocab/merges (and the post-processor) and rebuilds the pipeline in its __init__:
 * no normalizer, a Metaspace pre-tokenizer (prepend "always" when legacy, else "first"; "never"
 * when add_prefix_space is false) and a Replace/ByteFallback/Fuse(/Strip) decoder. The old
 * Prepend+Replace normalizer differs for text after a special token and for leading spaces.
 * Only SentencePiece-style files are rebuilt; a ByteLevel file under this class name is left as is.
 */
export function rebuildLlamaPipeline(json: JsonObject, config: JsonObject): JsonObject {
  const cls = typeof config.tokenizer_class === 'string' ? config.tokenizer_class.replace(/Fast$/, '') : '';
  if (cls !== 'LlamaTokenizer' || !isSentencePieceBpe(json)) return json;
  const addPrefixSpace = config.add_prefix_space !== false;
  const legacy = config.legacy === true;
  const prependScheme = addPrefixSpace ? (legacy ? 'always' : 'first') : 'never';
  const decoders: JsonObject[] = [
    { type: 'Replace', pattern: { String: METASPACE }, content: ' ' },
    { type: 'ByteFallback' },
    { type: 'Fuse' },
  ];
  if (addPrefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  const model = isObject(json.model) ? json.model : {};
  return {
    ...json,
    model: { ...model, fuse_unk: true, byte_fallback: true },
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: METASPACE, prepend_scheme: prependScheme, split: false },
    decoder: { type: 'Sequence', decoders },
  };
}

/** True when the post-processor knows how to lay out a pair (otherwise the library drops text B). */
export function postProcessorHandlesPairs(postProcessor: Json | undefined): boolean {
  if (!isObject(postProcessor)) return false;
  switch (postProcessor.type) {
    case 'TemplateProcessing':
    case 'RobertaProcessing':
    case 'BertProcessing':
      return true;
    case 'Sequence':
      return asObjectArray(postProcessor.processors).some(postProcessorHandlesPairs);
    default:
      return false;
  }
}

/**
 * transformers also registers as (special) added tokens the tokens listed in tokenizer_config's
 * added_tokens_decoder and the named/additional special tokens, even when tokenizer.json lists
 * them only as ordinary vocabulary pieces. That makes the text "</s>" split off as one token and
 * makes decode(skip_special_tokens) drop it. Tokens absent from the vocabulary are not added
 * (they would get ids past the model's embedding table).
 */
export function mergeConfigAddedTokens(
  added: JsonObject[],
  vocab: ReadonlyMap<string, number>,
  config: JsonObject,
  specialContents: readonly string[],
): JsonObject[] {
  const out = [...added];
  const known = new Set(added.map((t) => t.content));
  const push = (entry: JsonObject): void => {
    known.add(entry.content as string);
    out.push(entry);
  };
  if (isObject(config.added_tokens_decoder)) {
    for (const [idText, entry] of Object.entries(config.added_tokens_decoder)) {
      const id = Number(idText);
      if (!isObject(entry) || typeof entry.content !== 'string' || known.has(entry.content) || !Number.isInteger(id)) continue;
      push({
        id,
        content: entry.content,
        single_word: entry.single_word === true,
        lstrip: entry.lstrip === true,
        rstrip: entry.rstrip === true,
        normalized: entry.normalized === true,
        special: entry.special === true,
      });
    }
  }
  for (const content of specialContents) {
    const id = vocab.get(content);
    if (known.has(content) || id === undefined) continue;
    push({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  return out;
}
