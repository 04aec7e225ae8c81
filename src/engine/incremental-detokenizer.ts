// Streaming detokenization: token ids arrive a few at a time, text deltas go out.
//
// Decoding one token alone is wrong for SentencePiece models (the decoder strips the leading
// space of the first token) and for byte-level models (one character may span tokens). So each
// step decodes a short window of recent ids twice, with and without the new ones, and emits the
// difference: delta = decode(ids[prefix:]) minus decode(ids[prefix:read]). The window start
// (`prefix`) moves forward after each emission, so work per step stays small.
//
// Text is held back (nothing emitted, offsets kept) while:
//  - the window's text ends in U+FFFD: an incomplete UTF-8 character whose remaining bytes
//    are still to come;
//  - the last token is a `<0xNN>` byte-fallback token: Rust's ByteFallback decoder turns the
//    whole run of byte tokens into U+FFFDs if the run as a whole is not valid UTF-8, so text
//    from a run is only final once the run has ended.
// flush() emits whatever is held, so the concatenation of all deltas equals decode() of all ids.
import type { DecodeOptions } from './tokenizer.js';

/** What the detokenizer needs from a tokenizer (TextTokenizer satisfies it). */
export interface DetokenizerSource {
  decode(ids: readonly number[], options?: DecodeOptions): string;
  isByteToken(id: number): boolean;
}

export interface IncrementalDetokenizerOptions {
  /** Default true, like SGLang's sampling param. */
  skipSpecialTokens?: boolean;
  spacesBetweenSpecialTokens?: boolean;
  /**
   * Prompt ids to use as left context, so the first generated token keeps its leading space
   * (" there" rather than "there"). Only the last `contextTokens` of them are used.
   */
  promptIds?: readonly number[];
  /** How many prompt ids to keep as context (SGLang uses 5). */
  contextTokens?: number;
}

const REPLACEMENT_CHAR = '\uFFFD';

export class IncrementalDetokenizer {
  private readonly ids: number[];
  private readonly contextLength: number;
  private prefixOffset: number;
  private readOffset: number;
  private readonly decodeOptions: DecodeOptions;
  private emitted = '';

  constructor(
    private readonly tokenizer: DetokenizerSource,
    options: IncrementalDetokenizerOptions = {},
  ) {
    const keep = Math.max(0, options.contextTokens ?? 5);
    const prompt = options.promptIds ?? [];
    this.ids = keep > 0 ? prompt.slice(-keep) : [];
    this.contextLength = this.ids.length;
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
    this.decodeOptions = {
      skipSpecialTokens: options.skipSpecialTokens ?? true,
      spacesBetweenSpecialTokens: options.spacesBetweenSpecialTokens ?? true,
    };
  }

  /** All text emitted so far. */
  get text(): string {
    return this.emitted;
  }

  /** Generated ids fed so far (prompt context excluded). */
  get generatedIds(): readonly number[] {
    return this.ids.slice(this.contextLength);
  }

  /** Feeds one or more new token ids; returns the newly completed text (possibly ""). */
  push(newIds: number | readonly number[]): string {
    if (typeof newIds === 'number') this.ids.push(newIds);
    else this.ids.push(...newIds);
    if (this.readOffset === this.ids.length) return '';
    const last = this.ids[this.ids.length - 1] as number;
    if (this.tokenizer.isByteToken(last)) return '';
    return this.step(false);
  }

  /** Ends the stream: returns any held-back text, even an incomplete character (as U+FFFD). */
  flush(): string {
    if (this.readOffset === this.ids.length) return '';
    return this.step(true);
  }

  private step(final: boolean): string {
    const prefixText = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.decodeOptions);
    const newText = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.decodeOptions);
    if (!final && (newText.length <= prefixText.length || newText.endsWith(REPLACEMENT_CHAR))) return '';
    // Normally newText starts with prefixText; slicing by length is what vLLM/SGLang do too.
    const delta = newText.slice(prefixText.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.emitted += delta;
    return delta;
  }
}
