// Text tokenizer loaded from a Hugging Face model directory (tokenizer.json + tokenizer_config.json
// [+ special_tokens_map.json]). Encoding runs on @huggingface/tokenizers; the pipeline is first
// adjusted (tokenizer/compat.ts) so ids match transformers 5 AutoTokenizer. Decoding is done here
// with Rust-tokenizers semantics (tokenizer/decoder.ts) because streaming depends on its details.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

import { cleanUpTokenization } from './tokenizer/cleanup.js';
import {
  mergeConfigAddedTokens,
  postProcessorHandlesPairs,
  rebuildLlamaPipeline,
  rewriteMetaspaceSplit,
  rewriteNmt,
} from './tokenizer/compat.js';
import { buildDecodeChain, type DecodeChain } from './tokenizer/decoder.js';
import { asObjectArray, cloneJson, isObject, type JsonObject } from './tokenizer/json.js';
import { NAMED_SPECIAL_TOKENS, resolveSpecialTokenNames, type NamedSpecialToken } from './tokenizer/special-tokens.js';

const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

export interface EncodeOptions {
  /** Add the post-processor's special tokens (e.g. BOS). Default true, like transformers. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (added tokens marked special plus the named/additional special tokens). Default true. */
  skipSpecialTokens?: boolean;
  /**
   * Accepted for SGLang API parity. transformers' tokenizers backed by tokenizer.json ignore it
   * (only the old Python "slow" tokenizers used it), so it has no effect here either.
   */
  spacesBetweenSpecialTokens?: boolean;
}

async function readJson(path: string): Promise<JsonObject> {
  const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
  if (!isObject(parsed)) throw new Error(`${path}: expected a JSON object`);
  return parsed;
}

async function readJsonIfExists(path: string): Promise<JsonObject | undefined> {
  try {
    return await readJson(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** chat_template may be a string or a list of {name, template}; transformers uses "default". */
function pickChatTemplate(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  const named = asObjectArray(value);
  const chosen = named.find((t) => t.name === 'default') ?? named[0];
  return typeof chosen?.template === 'string' ? chosen.template : undefined;
}

export class TextTokenizer {
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly padToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly padTokenId: number | undefined;
  readonly unkTokenId: number | undefined;
  /** transformers' all_special_ids: named special tokens then additional ones, deduplicated. */
  readonly allSpecialIds: readonly number[];
  /** Every id that decode(skipSpecialTokens) drops: all_special_ids plus added tokens marked special. */
  readonly specialTokenIds: ReadonlySet<number>;
  /** Number of ids (base vocabulary plus added tokens), transformers' len(tokenizer). */
  readonly vocabSize: number;
  /** tokenizer_config's model_max_length (transformers' "no limit" is ~1e30). */
  readonly modelMaxLength: number;
  readonly chatTemplate: string | undefined;
  /** Named special tokens (bos_token, eos_token, ...) as resolved from the config files. */
  readonly specialTokens: Readonly<Partial<Record<NamedSpecialToken, string>>>;
  readonly config: Readonly<JsonObject>;

  /** The decoder turns `<0xNN>` tokens into bytes (SentencePiece byte fallback). */
  readonly usesByteFallback: boolean;

  private readonly tok: Tokenizer;
  private readonly decodeChain: DecodeChain | null;
  private readonly pairViaConcat: boolean;
  private readonly cleanUpSpaces: boolean;
  private readonly idToTokenMap: Map<number, string>;
  private readonly tokenToIdMap: Map<string, number>;

  private constructor(tokenizerJson: JsonObject, config: JsonObject, specialTokensMap?: JsonObject, chatTemplateFile?: string) {
    this.config = config;
    const names = resolveSpecialTokenNames(config, specialTokensMap);
    this.specialTokens = names.named;

    let json = cloneJson(tokenizerJson);
    json.normalizer = rewriteNmt(json.normalizer);
    json = rebuildLlamaPipeline(json, config);
    json.pre_tokenizer = rewriteMetaspaceSplit(json.pre_tokenizer);

    // Vocabulary: model vocab (BPE/WordPiece map, or Unigram [piece, score] list) plus added tokens.
    const tokenToIdMap = new Map<string, number>();
    this.tokenToIdMap = tokenToIdMap;
    const model = isObject(json.model) ? json.model : {};
    if (Array.isArray(model.vocab)) {
      model.vocab.forEach((entry, id) => {
        const piece = Array.isArray(entry) ? entry[0] : entry;
        if (typeof piece === 'string') tokenToIdMap.set(piece, id);
      });
    } else if (isObject(model.vocab)) {
      for (const [piece, id] of Object.entries(model.vocab)) if (typeof id === 'number') tokenToIdMap.set(piece, id);
    }
    const namedContents = [...NAMED_SPECIAL_TOKENS.map((k) => names.named[k]), ...names.additional].filter(
      (t): t is string => t !== undefined,
    );
    const added = mergeConfigAddedTokens(asObjectArray(json.added_tokens), tokenToIdMap, config, namedContents);
    json.added_tokens = added;
    for (const t of added) {
      if (typeof t.content === 'string' && typeof t.id === 'number') tokenToIdMap.set(t.content, t.id);
    }
    this.idToTokenMap = new Map();
    for (const [piece, id] of tokenToIdMap) if (!this.idToTokenMap.has(id)) this.idToTokenMap.set(id, piece);
    // Added tokens win over a model piece with the same id.
    for (const t of added) {
      if (typeof t.content === 'string' && typeof t.id === 'number') this.idToTokenMap.set(t.id, t.content);
    }
    this.vocabSize = this.idToTokenMap.size;

    const idOf = (token: string | undefined): number | undefined =>
      token === undefined ? undefined : tokenToIdMap.get(token);
    this.bosToken = names.named.bos_token;
    this.eosToken = names.named.eos_token;
    this.padToken = names.named.pad_token;
    this.unkToken = names.named.unk_token;
    this.bosTokenId = idOf(this.bosToken);
    this.eosTokenId = idOf(this.eosToken);
    this.padTokenId = idOf(this.padToken);
    this.unkTokenId = idOf(this.unkToken);

    const allSpecial: number[] = [];
    for (const token of namedContents) {
      const id = idOf(token);
      if (id !== undefined && !allSpecial.includes(id)) allSpecial.push(id);
    }
    this.allSpecialIds = allSpecial;
    const skip = new Set(allSpecial);
    for (const t of added) if (t.special === true && typeof t.id === 'number') skip.add(t.id);
    this.specialTokenIds = skip;

    // Special tokens come only from tokenizer.json's post-processor: transformers 5.17 ignores
    // tokenizer_config's add_bos_token / add_eos_token (checked: flipping either changes nothing,
    // and a file without post-processor gets no BOS even with add_bos_token true).
    this.pairViaConcat = !postProcessorHandlesPairs(json.post_processor);

    this.tok = new Tokenizer(json, {
      // The library reads only token strings from its config (Unigram uses eos_token).
      bos_token: this.bosToken,
      eos_token: this.eosToken,
      unk_token: this.unkToken,
      pad_token: this.padToken,
    });
    this.decodeChain = buildDecodeChain(json.decoder);
    this.usesByteFallback = JSON.stringify(json.decoder ?? null).includes('"ByteFallback"');

    // transformers 5.17 applies clean_up_tokenization_spaces only to non-BPE models (it logs
    // "Ignoring clean_up_tokenization_spaces=True for BPE tokenizer"), unless a config flag forces it.
    this.cleanUpSpaces =
      config.clean_up_tokenization_spaces === true &&
      (model.type !== 'BPE' || config.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output === true);

    const limit = config.model_max_length;
    this.modelMaxLength = typeof limit === 'number' ? limit : Number.POSITIVE_INFINITY;
    this.chatTemplate = pickChatTemplate(config.chat_template) ?? chatTemplateFile;
  }

  /** Loads from a model directory. Throws when tokenizer.json is missing. */
  static async load(dir: string): Promise<TextTokenizer> {
    const tokenizerJson = await readJson(join(dir, 'tokenizer.json'));
    const config = (await readJsonIfExists(join(dir, 'tokenizer_config.json'))) ?? {};
    const specialTokensMap = await readJsonIfExists(join(dir, 'special_tokens_map.json'));
    // transformers 5 may save the template beside the config instead of inside it.
    const chatTemplateFile = await readTextIfExists(join(dir, 'chat_template.jinja'));
    return new TextTokenizer(tokenizerJson, config, specialTokensMap, chatTemplateFile);
  }

  /** Builds from already-parsed files (tests, or callers that keep files in memory). */
  static fromObjects(tokenizerJson: JsonObject, config: JsonObject = {}, specialTokensMap?: JsonObject): TextTokenizer {
    return new TextTokenizer(tokenizerJson, config, specialTokensMap);
  }

  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Encodes a text pair (cross-encoder input) with the post-processor's pair template. */
  encodePair(a: string, b: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    if (this.pairViaConcat) {
      // Shim (b): a ByteLevel post-processor has no pair template and the library drops text B;
      // the Rust post-processor just concatenates both encodings.
      return [...this.encode(a, { addSpecialTokens }), ...this.encode(b, { addSpecialTokens })];
    }
    return this.tok.encode(a, { text_pair: b, add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: readonly number[], { skipSpecialTokens = true }: DecodeOptions = {}): string {
    // Shim (c): the library throws on an empty list; transformers returns "".
    if (ids.length === 0) return '';
    const tokens: string[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && this.specialTokenIds.has(id)) continue;
      const token = this.idToTokenMap.get(id);
      if (token !== undefined) tokens.push(token); // unknown ids are dropped, as in Rust
    }
    let text: string;
    if (tokens.length === 0) text = '';
    else if (this.decodeChain) text = this.decodeChain(tokens).join('');
    else if (this.tok.decoder) text = this.tok.decoder.decode(tokens);
    else text = tokens.join(' ');
    return this.cleanUpSpaces ? cleanUpTokenization(text) : text;
  }

  idToToken(id: number): string | undefined {
    return this.idToTokenMap.get(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tokenToIdMap.get(token);
  }

  isSpecialId(id: number): boolean {
    return this.specialTokenIds.has(id);
  }

  /** True for a `<0xNN>` byte-fallback token (only when the decoder does byte fallback). */
  isByteToken(id: number): boolean {
    if (!this.usesByteFallback) return false;
    const token = this.idToTokenMap.get(id);
    return token !== undefined && BYTE_TOKEN.test(token);
  }
}
