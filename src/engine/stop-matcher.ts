// Stop strings (SGLang's sampling_params `stop`), matched on the detokenized output text.
//
// SGLang checks the tail of the decoded text after every token (schedule_batch.Req.check_finished) and the
// detokenizer then cuts the text at the first occurrence of the matched string (trim_matched_stop). Here the
// whole output text is searched incrementally, so a stop string split across any number of tokens is found,
// and among several stop strings present the earliest one in the text wins (at the same start, the shortest,
// the one that completed first); SGLang takes the first one in list order that it finds.
//
// For streaming, `safeLength` says how much of the text can be shown without ever showing a stop string the
// final text would trim: the text minus its longest tail that is a proper prefix of some stop string.
// Everything before that tail can never become part of a match (a match starting there would have to
// contain the tail and so would already be complete or be a longer prefix), so emitted text only grows.

export interface StopMatch {
  /** UTF-16 index in the text where the stop string starts. */
  index: number;
  /** The stop string (SGLang's finish_reason.matched). */
  stop: string;
}

export class StopMatcher {
  readonly stops: readonly string[];
  private readonly maxLen: number;

  /** Empty strings are ignored (they would match before any output). */
  constructor(stops: readonly string[]) {
    this.stops = [...new Set(stops.filter((s) => s.length > 0))];
    this.maxLen = this.stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  get empty(): boolean {
    return this.stops.length === 0;
  }

  /**
   * The earliest stop string in `text` that ends after `checkedLength` (the text length at the previous
   * call: anything wholly before it was already looked at). Null when none.
   */
  find(text: string, checkedLength = 0): StopMatch | null {
    if (this.maxLen === 0) return null;
    const from = Math.max(0, checkedLength - this.maxLen + 1);
    let best: StopMatch | null = null;
    for (const stop of this.stops) {
      const at = text.indexOf(stop, from);
      if (at < 0) continue;
      if (best === null || at < best.index || (at === best.index && stop.length < best.stop.length)) {
        best = { index: at, stop };
      }
    }
    return best;
  }

  /** Length of the longest tail of `text` that is a proper prefix of some stop string (0 when none). */
  pendingTail(text: string): number {
    let hold = 0;
    for (const stop of this.stops) {
      // Longest k < stop.length with text.endsWith(stop.slice(0, k)); only longer k than found so far matter.
      for (let k = Math.min(stop.length - 1, text.length); k > hold; k--) {
        if (text.startsWith(stop.slice(0, k), text.length - k)) {
          hold = k;
          break;
        }
      }
    }
    return hold;
  }

  /** How much of `text` (with no complete stop string in it) can be shown now. */
  safeLength(text: string): number {
    return text.length - this.pendingTail(text);
  }
}
