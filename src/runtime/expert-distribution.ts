// SGLang's expert distribution recorder API over the native recorder (addon/engine/expert_recorder.h): the
// responses of http_server.py's /start_expert_distribution_record, /stop_expert_distribution_record and
// /dump_expert_distribution_record, the record as JSON, and the files a dump writes.
//
// SGLang sources mirrored (sgl-project/sglang, python/sglang/srt/):
//  - entrypoints/http_server.py: GET and POST for each route, 200 with the plain-text bodies below;
//  - eplb/expert_distribution.py: start_record clears the record (_reset) and records; stop_record keeps it;
//    dump_record dumps, then clears (_reset: the recording state stays); _dump_to_file writes into
//    SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR (default /tmp; created when missing). The stat modes
//    (_StatAccumulator) write expert_distribution_recorder_{time.time()}.pt = {rank, logical_count
//    [passes, layers, experts], average_utilization_rate_over_window}; per_pass / per_token
//    (_DetailAccumulator) write expert_distribution_recorder_{time.time()}_{rank}.pt = {records: [{forward_pass_id,
//    rank, gatherer_key, global_physical_count [layers, experts], (per_token) topk_ids_of_layer ...}],
//    last_physical_to_logical_map}; earlier versions wrote a CSV, layer_id,expert_id,count.
//
// What is written here instead (no torch): the same keys as JSON, in a file of the same name with .json for
// .pt (logical_count summed over the passes, [layers][experts]: the engine keeps the window's sum; SGLang's
// --init-expert-location reads a .json with logical_count, 2-D included), plus the record's own keys, and
// beside it a CSV of the same stem with SGLang's earlier rows, layer_id,expert_id,count, for every expert of
// every MoE layer (zeros included).
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

import type { NativeExpertRecord } from '../native/addon.js';
import type { ExpertDistributionOp, ExpertDistributionRecord, ExpertPassRecord } from './runtime-service.js';

/** http_server.py's response bodies. */
export const EXPERT_DISTRIBUTION_MESSAGES: Record<ExpertDistributionOp, string> = {
  start: 'Start recording the expert distribution.\n',
  stop: 'Stop recording the expert distribution.\n',
  dump: 'Dump expert distribution record.\n',
};

/** The dump directory: SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR, else /tmp (read at each dump, as SGLang does). */
export function expertDistributionDir(env: NodeJS.ProcessEnv = process.env): string {
  const d = env.SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR;
  return d !== undefined && d !== '' ? d : '/tmp';
}

/** Python's str(time.time()): seconds since the epoch with the sub-second digits. */
export function timeStamp(ms: number = performance.timeOrigin + performance.now()): string {
  return String(ms / 1000);
}

const isDetail = (mode: string): boolean => mode === 'per_pass' || mode === 'per_token';

/** [rows * cols] row-major → rows × cols. */
function rows(a: ArrayLike<number>, offset: number, n: number, cols: number): number[][] {
  const out: number[][] = [];
  for (let r = 0; r < n; r++) {
    const row: number[] = new Array(cols);
    for (let c = 0; c < cols; c++) row[c] = a[offset + r * cols + c] as number;
    out.push(row);
  }
  return out;
}

/** The native dump as the JSON record (files still empty). */
export function expertRecordFromNative(raw: NativeExpertRecord, moeLayerIds: readonly number[], bufferSize: number): ExpertDistributionRecord {
  const L = raw.numLayers;
  const E = raw.numExperts;
  const K = raw.topK;
  const record: ExpertDistributionRecord = {
    mode: raw.mode,
    recording: raw.recording,
    num_layers: L,
    num_experts: E,
    top_k: K,
    moe_layer_ids: [...moeLayerIds],
    buffer_size: bufferSize,
    num_passes: raw.numPasses,
    logical_count: rows(raw.logicalCount, 0, L, E),
  } as ExpertDistributionRecord;
  if (isDetail(raw.mode)) {
    const records: ExpertPassRecord[] = [];
    const perToken = raw.mode === 'per_token';
    let at = 0; // into topkIds
    for (let p = 0; p < raw.passIds.length; p++) {
      const r: ExpertPassRecord = { forward_pass_id: raw.passIds[p] as number, rank: 0, gatherer_key: 'primary', global_physical_count: rows(raw.passCounts, p * L * E, L, E) };
      if (perToken) {
        const T = raw.passTokens[p] as number;
        r.num_tokens = T;
        const layers: number[][][] = [];
        for (let l = 0; l < L; l++, at += T * K) layers.push(rows(raw.topkIds, at, T, K));
        r.topk_ids_of_layer = layers;
      }
      records.push(r);
    }
    record.records = records;
  }
  record.files = []; // last: the key order of the proto message
  return record;
}

/** The record's own keys, written after SGLang's in each JSON file. */
function recordKeys(r: ExpertDistributionRecord): Record<string, unknown> {
  return {
    mode: r.mode,
    recording: r.recording,
    num_layers: r.num_layers,
    num_experts: r.num_experts,
    top_k: r.top_k,
    moe_layer_ids: r.moe_layer_ids,
    buffer_size: r.buffer_size,
    num_passes: r.num_passes,
  };
}

/** JSON with one top-level key a line and one row (or record) a line below it: valid JSON, readable. */
function readableJson(obj: Record<string, unknown>): string {
  const value = (v: unknown): string => {
    if (Array.isArray(v) && v.length > 0 && v.every((x) => Array.isArray(x) || (typeof x === 'object' && x !== null))) {
      return `[\n    ${v.map((x) => JSON.stringify(x)).join(',\n    ')}\n  ]`;
    }
    return JSON.stringify(v);
  };
  const lines = Object.entries(obj).map(([k, v]) => `  ${JSON.stringify(k)}: ${value(v)}`);
  return `{\n${lines.join(',\n')}\n}\n`;
}

/** SGLang's earlier CSV: layer_id,expert_id,count for every expert of every MoE layer. */
export function expertDistributionCsv(r: ExpertDistributionRecord): string {
  let out = 'layer_id,expert_id,count\n';
  for (const l of r.moe_layer_ids) {
    const row = r.logical_count[l] ?? [];
    for (let e = 0; e < r.num_experts; e++) out += `${l},${e},${row[e] ?? 0}\n`;
  }
  return out;
}

/**
 * The files of one dump, names and contents: stat / stat_approx → expert_distribution_recorder_<time>.json
 * {rank, logical_count, average_utilization_rate_over_window: null, ...}; per_pass / per_token →
 * expert_distribution_recorder_<time>_0.json {records, last_physical_to_logical_map (identity), logical_count,
 * ...}; each with the CSV of the same stem.
 */
export function expertDistributionFiles(r: ExpertDistributionRecord, stamp: string = timeStamp()): { name: string; content: string }[] {
  const detail = isDetail(r.mode);
  const stem = `expert_distribution_recorder_${stamp}${detail ? '_0' : ''}`;
  const identity = Array.from({ length: r.num_layers }, () => Array.from({ length: r.num_experts }, (_, e) => e));
  const json = detail
    ? { records: r.records ?? [], last_physical_to_logical_map: identity, logical_count: r.logical_count, ...recordKeys(r) }
    : { rank: 0, logical_count: r.logical_count, average_utilization_rate_over_window: null, ...recordKeys(r) };
  return [
    { name: `${stem}.json`, content: readableJson(json) },
    { name: `${stem}.csv`, content: expertDistributionCsv(r) },
  ];
}

/** Writes the dump's files into `dir` (created when missing); returns their paths (JSON, then CSV). */
export async function writeExpertDistributionFiles(r: ExpertDistributionRecord, dir: string = expertDistributionDir(), stamp?: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const f of expertDistributionFiles(r, stamp)) {
    const p = path.resolve(dir, f.name);
    await writeFile(p, f.content, { flag: 'wx' }); // never over an earlier dump
    paths.push(p);
  }
  return paths;
}
