// What the engine front streams back for a /generate request: plain data, shaped so that the HTTP layer
// maps it one to one onto SGLang's response ({"text", "output_ids", "meta_info": {...}}, see CONTRACT.md).

/**
 * SGLang's meta_info.finish_reason (schedule_batch.FINISH_*.to_json):
 *  - {type: 'stop', matched: <token id>} when an EOS id or one of stop_token_ids ended it,
 *  - {type: 'stop', matched: '<stop string>'} when a stop string did,
 *  - {type: 'length', length: N} at max_new_tokens (or the context length), N = completion tokens,
 *  - {type: 'abort', message, status_code, err_type} when aborted (status_code/err_type null unless known).
 */
export type FinishReason =
  | { type: 'stop'; matched: number | string }
  | { type: 'length'; length: number }
  | { type: 'abort'; message: string; status_code: number | null; err_type: string | null };

/**
 * SGLang's logprob triple `[logprob, token_id, text]`: text is the token decoded alone (special tokens
 * kept) when return_text_in_logprobs, else null; logprob is null for the first prompt position.
 */
export type LogprobTriple = [number | null, number, string | null];

/**
 * One update of one sample (index) of a request. In a stream there is one chunk per sample per engine step
 * that brought new data (steps merge into one chunk while the consumer lags behind); the last chunk of a
 * sample has finishReason set. Everything is cumulative except `delta` and `newIds`, as SGLang's default
 * (non --stream-output) chunks are.
 */
export interface GenerateChunk {
  /** Sample index (0..n-1); SGLang's "index" in batch/n>1 streams and the list position otherwise. */
  index: number;
  /** This sample's request id: SGLang's meta_info.id. */
  rid: string;
  /** Output text so far (stop string trimmed unless no_stop_trim); equals the concatenation of the deltas. */
  text: string;
  /** Text new since this sample's previous chunk. Never shows a stop string the final text trims. */
  delta: string;
  /**
   * Generated ids so far (SGLang's output_ids), including the EOS / stop token that ended the request
   * (the text leaves it out unless no_stop_trim), and every token up to the one completing a stop string.
   */
  outputIds: number[];
  /** Ids new since this sample's previous chunk. */
  newIds: number[];
  finishReason: FinishReason | null;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  /** With return_logprob: prompt positions [logprob_start_len, prompt_len); empty when logprob_start_len is -1. */
  inputTokenLogprobs?: LogprobTriple[];
  /** With return_logprob: one triple per output id. */
  outputTokenLogprobs?: LogprobTriple[];
  /** With return_logprob and top_logprobs_num > 0: per prompt position, the top triples (null at position 0). */
  inputTopLogprobs?: (LogprobTriple[] | null)[];
  /** With return_logprob and top_logprobs_num > 0: per output position, the top triples, highest first. */
  outputTopLogprobs?: LogprobTriple[][];
  /** With return_logprob and token_ids_logprob: per prompt position, a triple per requested id (null at position 0). */
  inputTokenIdsLogprobs?: (LogprobTriple[] | null)[];
  /** With return_logprob and token_ids_logprob: per output position, a triple per requested id in request order. */
  outputTokenIdsLogprobs?: LogprobTriple[][];
}

/** Where one engine step's time went (microseconds), for benchmarks: the native parts and the JS callback. */
export interface StepTiming {
  scheduleUs: number;
  forwardUs: number;
  sampleUs: number;
  /** Time spent in the front's onStep handler (event dispatch, detokenization, stop matching, queueing). */
  callbackUs: number;
  batchSize: number;
  numTokens: number;
  /** The native loop's previous forward-running iteration, whole (see NativeStepOutput.prevLoopUs). */
  prevLoopUs: number;
  /** Events in this step. */
  events: number;
}
