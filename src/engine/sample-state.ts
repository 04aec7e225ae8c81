// Per-sample state of a running request in the engine front: output ids, incremental detokenization, stop
// string matching and the logprob lists, built from the native engine's step events.
//
// SGLang behaviours mirrored (python/sglang/srt/managers/detokenizer_manager.py, schedule_batch.py):
//  - output_ids keep every generated id, including the EOS / stop token that ended the request; the text
//    leaves that token out unless no_stop_trim (trim_matched_stop on the ids before decoding);
//  - a stop string ends the request with {type: 'stop', matched: '<string>'}; the text is cut where the
//    string starts (trim_matched_stop on the text), or kept whole as decoded with no_stop_trim;
//  - when the token that ends the request natively (max_new_tokens / context length / EOS / stop id) also
//    completes a stop string, the native reason wins and nothing is trimmed, as Req.check_finished checks
//    length, then tokens, then strings;
//  - logprob triples carry the token decoded alone (special tokens kept) only with return_text_in_logprobs.
import type { NativeStepOutput } from '../native/addon.js';
import type { FinishReason, GenerateChunk, LogprobTriple } from './engine-output.js';
import type { GenerateStream } from './generate-stream.js';
import { IncrementalDetokenizer, type DetokenizerSource } from './incremental-detokenizer.js';
import type { StopMatcher } from './stop-matcher.js';

export const FINISH_NONE = 0;
export const FINISH_STOP = 1;
export const FINISH_LENGTH = 2;
export const FINISH_ABORT = 3;

/** What a sample needs from the engine front. */
export interface SampleHost {
  /** Aborts a numeric rid in the native engine. */
  nativeAbort(rid: number): void;
  /** The message of a native abort event for this sample. */
  abortMessage(s: SampleState): { message: string; statusCode: number | null };
  /** The text of one token for logprob triples (decoded alone, special tokens kept). */
  tokenText(id: number): string;
  /** Called once when the sample has finished (for the request's bookkeeping). */
  sampleFinished(s: SampleState): void;
}

/** Request-level settings shared by the samples of one generate() call. */
export interface SampleConfig {
  promptIds: readonly number[];
  stream: boolean;
  noStopTrim: boolean;
  stopMatcher: StopMatcher | null;
  skipSpecialTokens: boolean;
  spacesBetweenSpecialTokens: boolean;
  returnLogprob: boolean;
  returnTextInLogprobs: boolean;
  topLogprobsNum: number;
  tokenIdsLogprob: readonly number[] | null;
}

export class SampleState {
  finished = false;
  /** Set when the front asked the native engine to abort this sample (client abort). */
  abortRequested = false;
  /** The front's bookkeeping object for this sample's request. */
  owner: unknown = null;
  /** Step stamp of the last chunk scheduling (dedupes several events of one sample in a step). */
  stamp = -1;

  private readonly detok: IncrementalDetokenizer;
  private decoded = ''; // detokenized output so far (nothing trimmed)
  private checked = 0; // decoded length already searched for stop strings
  private shown = 0; // text length handed out in chunks so far
  private text = ''; // the text of the next chunk (a prefix of decoded, or the final text)
  private readonly outputIds: number[] = [];
  private sentIds = 0;
  private finishReason: FinishReason | null = null;
  private promptTokens: number;
  private completionTokens = 0;
  private cachedTokens = 0;
  private dirty = false; // something new since the last chunk

  private readonly inLp: LogprobTriple[] | undefined;
  private readonly outLp: LogprobTriple[] | undefined;
  private readonly inTop: (LogprobTriple[] | null)[] | undefined;
  private readonly outTop: LogprobTriple[][] | undefined;
  private readonly inIds: (LogprobTriple[] | null)[] | undefined;
  private readonly outIds: LogprobTriple[][] | undefined;

  constructor(
    readonly rid: string,
    readonly numRid: number,
    readonly index: number,
    private readonly cfg: SampleConfig,
    private readonly stream: GenerateStream,
    private readonly host: SampleHost,
    detokSource: DetokenizerSource,
  ) {
    this.promptTokens = cfg.promptIds.length;
    this.detok = new IncrementalDetokenizer(detokSource, {
      skipSpecialTokens: cfg.skipSpecialTokens,
      spacesBetweenSpecialTokens: cfg.spacesBetweenSpecialTokens,
      promptIds: cfg.promptIds,
    });
    if (cfg.returnLogprob) {
      this.inLp = [];
      this.outLp = [];
      if (cfg.topLogprobsNum > 0) {
        this.inTop = [];
        this.outTop = [];
      }
      if (cfg.tokenIdsLogprob !== null) {
        this.inIds = [];
        this.outIds = [];
      }
    }
  }

  /** Applies event i of a step. Returns true when a chunk should be emitted for this step. */
  applyEvent(out: NativeStepOutput, i: number): boolean {
    if (this.finished) return false;
    const finish = out.finish[i] as number;
    const tok = out.token[i] as number;
    this.promptTokens = out.promptTokens[i] as number;
    this.completionTokens = out.completionTokens[i] as number;
    this.cachedTokens = out.cachedTokens[i] as number;
    if (this.inLp !== undefined && (out.inputStart[i] as number) >= 0) this.readInputLogprobs(out, i);
    if (tok >= 0) {
      this.outputIds.push(tok);
      if (this.outLp !== undefined) this.readOutputLogprobs(out, i, tok);
      // The matched EOS / stop id is left out of the text unless no_stop_trim (SGLang trims it from the ids).
      if (!(finish === FINISH_STOP && !this.cfg.noStopTrim)) this.decoded += this.detok.push(tok);
    }
    this.dirty = true;
    if (finish !== FINISH_NONE) {
      this.decoded += this.detok.flush();
      this.text = this.decoded;
      this.finish(this.nativeReason(finish, out.matchedStop[i] as number));
      return true;
    }
    const m = this.cfg.stopMatcher;
    if (m !== null) {
      const hit = m.find(this.decoded, this.checked);
      this.checked = this.decoded.length;
      if (hit !== null) {
        // Ended by a stop string: stop the native request, ignore its later events.
        this.host.nativeAbort(this.numRid);
        this.text = this.cfg.noStopTrim ? this.decoded + this.detok.flush() : this.decoded.slice(0, hit.index);
        this.finish({ type: 'stop', matched: hit.stop });
        return true;
      }
      // Hold back a tail that may be the start of a stop string (only chunks in between need it).
      if (this.cfg.stream) {
        const safe = m.safeLength(this.decoded);
        if (safe > this.text.length) this.text = this.decoded.slice(0, safe);
      }
    } else {
      this.text = this.decoded;
    }
    return true;
  }

  /** Ends the sample from the front (client abort, engine shutdown, fatal error). */
  abort(message: string, statusCode: number | null = null, errType: string | null = null): void {
    if (this.finished) return;
    this.decoded += this.detok.flush();
    this.text = this.decoded;
    this.dirty = true;
    this.finish({ type: 'abort', message, status_code: statusCode, err_type: errType });
  }

  /** Ends the sample silently (the consumer went away: nothing more is delivered). */
  drop(): void {
    if (this.finished) return;
    this.finished = true;
    this.finishReason = { type: 'abort', message: 'Aborted', status_code: null, err_type: null };
    this.host.sampleFinished(this);
  }

  /** Pushes a chunk with what is new (streaming), or the final chunk only (non-streaming). */
  emit(): void {
    if (!this.dirty) return;
    if (!this.cfg.stream && this.finishReason === null) return;
    this.dirty = false;
    const text = this.text;
    const delta = text.slice(this.shown);
    this.shown = text.length;
    const ids = this.outputIds;
    const newIds = ids.slice(this.cfg.stream ? this.sentIds : 0);
    this.sentIds = ids.length;
    const chunk: GenerateChunk = {
      index: this.index,
      rid: this.rid,
      text,
      delta,
      outputIds: ids.slice(),
      newIds,
      finishReason: this.finishReason,
      promptTokens: this.promptTokens,
      completionTokens: this.completionTokens,
      cachedTokens: this.cachedTokens,
    };
    if (this.inLp !== undefined) {
      chunk.inputTokenLogprobs = this.inLp.slice();
      chunk.outputTokenLogprobs = (this.outLp as LogprobTriple[]).slice();
      if (this.inTop !== undefined) {
        chunk.inputTopLogprobs = this.inTop.slice();
        chunk.outputTopLogprobs = (this.outTop as LogprobTriple[][]).slice();
      }
      if (this.inIds !== undefined) {
        chunk.inputTokenIdsLogprobs = this.inIds.slice();
        chunk.outputTokenIdsLogprobs = (this.outIds as LogprobTriple[][]).slice();
      }
    }
    this.stream.push(chunk);
  }

  private finish(reason: FinishReason): void {
    this.finishReason = reason;
    this.finished = true;
    this.host.sampleFinished(this);
  }

  private nativeReason(finish: number, matched: number): FinishReason {
    if (finish === FINISH_STOP) return { type: 'stop', matched };
    if (finish === FINISH_LENGTH) return { type: 'length', length: this.completionTokens };
    const { message, statusCode } = this.host.abortMessage(this);
    return { type: 'abort', message, status_code: statusCode, err_type: null };
  }

  private triple(lp: number, id: number): LogprobTriple {
    return [Number.isNaN(lp) ? null : lp, id, this.cfg.returnTextInLogprobs ? this.host.tokenText(id) : null];
  }

  private readOutputLogprobs(out: NativeStepOutput, i: number, tok: number): void {
    (this.outLp as LogprobTriple[]).push(this.triple(out.logprob[i] as number, tok));
    if (this.outTop !== undefined) {
      const row: LogprobTriple[] = [];
      for (let k = out.topIndptr[i] as number, e = out.topIndptr[i + 1] as number; k < e; k++) {
        row.push(this.triple(out.topLogprobs[k] as number, out.topIds[k] as number));
      }
      this.outTop.push(row);
    }
    if (this.outIds !== undefined) {
      const want = this.cfg.tokenIdsLogprob as readonly number[];
      const row: LogprobTriple[] = [];
      const base = out.idsIndptr[i] as number;
      for (let k = 0; k < want.length; k++) row.push(this.triple(out.idsLogprobs[base + k] as number, want[k] as number));
      this.outIds.push(row);
    }
  }

  private readInputLogprobs(out: NativeStepOutput, i: number): void {
    const start = out.inputStart[i] as number;
    const b = out.inputIndptr[i] as number;
    const npos = (out.inputIndptr[i + 1] as number) - b;
    const prompt = this.cfg.promptIds;
    const inLp = this.inLp as LogprobTriple[];
    for (let j = 0; j < npos; j++) {
      const pos = start + j;
      inLp.push(this.triple(out.inputLogprobs[b + j] as number, prompt[pos] as number));
    }
    if (this.inTop !== undefined) {
      const k = this.cfg.topLogprobsNum;
      let t = out.inputTopIndptr[i] as number;
      for (let j = 0; j < npos; j++, t += k) {
        if (start + j === 0) {
          this.inTop.push(null);
          continue;
        }
        const row: LogprobTriple[] = [];
        for (let r = 0; r < k; r++) row.push(this.triple(out.inputTopLogprobs[t + r] as number, out.inputTopIds[t + r] as number));
        this.inTop.push(row);
      }
    }
    if (this.inIds !== undefined) {
      const want = this.cfg.tokenIdsLogprob as readonly number[];
      let t = out.inputIdsIndptr[i] as number;
      for (let j = 0; j < npos; j++, t += want.length) {
        if (start + j === 0) {
          this.inIds.push(null);
          continue;
        }
        const row: LogprobTriple[] = [];
        for (let r = 0; r < want.length; r++) row.push(this.triple(out.inputIdsLogprobs[t + r] as number, want[r] as number));
        this.inIds.push(row);
      }
    }
  }
}
