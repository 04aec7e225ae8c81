// SGLang's Prometheus metrics (python/sglang/srt/metrics/collector.py: SchedulerMetricsCollector and
// TokenizerMetricsCollector), with the names SGLang's tests assert, each labelled model_name=<served model>.
// Gauges are read from the engine when scraped; counters and histograms are fed per finished sample.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface EngineLoad {
  running: number;
  waiting: number;
  usedTokens: number;
  totalTokens: number;
}

// SGLang's bucket bounds (collector.py), in seconds.
const TTFT_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400];
const ITL_BUCKETS = [0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8];
const E2E_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 800];

/** Window over which sglang:gen_throughput (and server_info's last_gen_throughput) is measured. */
const THROUGHPUT_WINDOW_MS = 10_000;

export class RuntimeMetrics {
  readonly registry = new Registry();
  private readonly labels: { model_name: string };
  private readonly promptTokens: Counter<'model_name'>;
  private readonly generationTokens: Counter<'model_name'>;
  private readonly cachedTokens: Counter<'model_name'>;
  private readonly numRequests: Counter<'model_name'>;
  private readonly ttft: Histogram<'model_name'>;
  private readonly itl: Histogram<'model_name'>;
  private readonly e2e: Histogram<'model_name'>;
  private promptTotal = 0;
  private cachedTotal = 0;
  /** [time ms, tokens] of recent generated tokens, oldest first. */
  private readonly recent: [number, number][] = [];
  private readonly startMs = Date.now();

  constructor(modelName: string, load: () => EngineLoad) {
    this.labels = { model_name: modelName };
    const registers = [this.registry];
    const labelNames = ['model_name'] as const;
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.set({ model_name: modelName }, read());
        },
      });
    gauge('sglang:num_running_reqs', 'The number of running requests.', () => load().running);
    gauge('sglang:num_used_tokens', 'The number of used tokens.', () => load().usedTokens);
    gauge('sglang:token_usage', 'The token usage.', () => {
      const l = load();
      return l.totalTokens > 0 ? l.usedTokens / l.totalTokens : 0;
    });
    gauge('sglang:gen_throughput', 'The generation throughput (token/s).', () => this.genThroughput());
    gauge('sglang:num_queue_reqs', 'The number of requests in the waiting queue.', () => load().waiting);
    gauge('sglang:num_grammar_queue_reqs', 'The number of requests in the grammar waiting queue.', () => 0);
    gauge('sglang:cache_hit_rate', 'The prefix cache hit rate.', () => (this.promptTotal > 0 ? this.cachedTotal / this.promptTotal : 0));
    gauge('sglang:spec_accept_length', 'The average acceptance length of speculative decoding.', () => 0);
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers });
    this.promptTokens = counter('sglang:prompt_tokens_total', 'Number of prefill tokens processed.');
    this.generationTokens = counter('sglang:generation_tokens_total', 'Number of generation tokens processed.');
    this.cachedTokens = counter('sglang:cached_tokens_total', 'Number of cached prompt tokens.');
    this.numRequests = counter('sglang:num_requests_total', 'Number of requests processed.');
    this.promptTokens.inc(this.labels, 0);
    this.generationTokens.inc(this.labels, 0);
    this.cachedTokens.inc(this.labels, 0);
    this.numRequests.inc(this.labels, 0);
    const histogram = (name: string, help: string, buckets: number[]) => new Histogram({ name, help, labelNames, registers, buckets });
    this.ttft = histogram('sglang:time_to_first_token_seconds', 'Histogram of time to first token in seconds.', TTFT_BUCKETS);
    this.itl = histogram('sglang:inter_token_latency_seconds', 'Histogram of inter-token latency in seconds.', ITL_BUCKETS);
    this.e2e = histogram('sglang:e2e_request_latency_seconds', 'Histogram of End-to-end request latency in seconds', E2E_BUCKETS);
    this.ttft.zero(this.labels);
    this.itl.zero(this.labels);
    this.e2e.zero(this.labels);
  }

  /** A sample produced its first token(s) `seconds` after its request arrived. */
  firstToken(seconds: number): void {
    this.ttft.observe(this.labels, seconds);
  }

  /** `tokens` new tokens arrived `seconds` after the sample's previous ones. */
  interToken(seconds: number, tokens: number): void {
    if (tokens <= 0) return;
    const per = seconds / tokens;
    for (let k = 0; k < tokens; k++) this.itl.observe(this.labels, per);
  }

  /** Generated tokens, for the throughput gauge. */
  generated(tokens: number): void {
    if (tokens <= 0) return;
    const now = Date.now();
    this.recent.push([now, tokens]);
    this.trim(now);
  }

  /** A sample finished. */
  finished(promptTokens: number, completionTokens: number, cachedTokens: number, e2eSeconds: number): void {
    this.promptTokens.inc(this.labels, promptTokens);
    this.generationTokens.inc(this.labels, completionTokens);
    this.cachedTokens.inc(this.labels, cachedTokens);
    this.numRequests.inc(this.labels, 1);
    this.promptTotal += promptTokens;
    this.cachedTotal += cachedTokens;
    this.e2e.observe(this.labels, e2eSeconds);
  }

  /** Generated tokens per second over the last 10 s (0 when idle). */
  genThroughput(): number {
    const now = Date.now();
    this.trim(now);
    let sum = 0;
    for (const [, n] of this.recent) sum += n;
    const span = Math.min(THROUGHPUT_WINDOW_MS, now - this.startMs) / 1000;
    return span > 0 ? sum / span : 0;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  private trim(now: number): void {
    while (this.recent.length > 0 && (this.recent[0] as [number, number])[0] < now - THROUGHPUT_WINDOW_MS) this.recent.shift();
  }
}
