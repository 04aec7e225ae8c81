// Loads the compiled addon (build/Release/sglang_native.node, built by cmake-js at npm install) and types it.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface ModelInfo {
  architecture: string;
  architectures: string[];
  modelType: string;
  dtype: string;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  contextLength: number;
  bosTokenId: number; // -1 when absent
  padTokenId: number; // -1 when absent
  eosTokenIds: number[];
  ropeType: string;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  configJson: string;
  generationConfigJson: string | null;
  weightBytes: number;
  kvBytes: number;
  numPages: number;
  pageSize: number;
  backend: string;
}

/** One varlen step; see addon/models/forward_batch.h for the exact semantics. */
export interface ForwardBatch {
  tokenIds: Int32Array; // [T] tokens of seq 0, then seq 1, ...
  qoIndptr: Int32Array; // [B+1] token offsets per sequence
  kvIndptr: Int32Array; // [B+1] offsets into kvPageIndices
  kvPageIndices: Int32Array; // page ids of each sequence in position order
  kvLens: Int32Array; // [B] cached tokens after this step, this step's included
  logitRows: Int32Array; // [R] step token indices whose next-token logits are returned
}

export interface NativeModel {
  info(): ModelInfo;
  /** Returns logits [R * V] (float32). Throws RangeError for an inconsistent batch. */
  forward(batch: ForwardBatch): Float32Array;
  close(): void;
}

export interface NativeAddon {
  NativeModel: new (opts: { modelPath: string; numPages: number; pageSize?: number }) => NativeModel;
  /** memcpy of a `bytes` buffer across the CPU threads, GB/s of bytes copied (each byte counted once). */
  cpuMemcpyBandwidthGBs(bytes: number, iters?: number): number;
  /** Read-only sweep of a `bytes` buffer across the CPU threads, GB/s of bytes read. */
  cpuReadBandwidthGBs(bytes: number, iters?: number): number;
  cudaCompiled: boolean;
  cudaDeviceCount?: () => number;
  cudaDeviceName?: () => string | null;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** The project root, found by walking up to package.json (works from src/ under tsx and from dist/src/). */
export function projectRoot(): string {
  let dir = here;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'CMakeLists.txt'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the project root above ${here}`);
    dir = up;
  }
}

let cached: NativeAddon | undefined;

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const root = projectRoot();
  const candidates = [
    process.env.SGL_ADDON_PATH,
    path.join(root, 'build', 'Release', 'sglang_native.node'),
    path.join(root, 'build', 'Debug', 'sglang_native.node'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`native addon not built (looked in ${candidates.join(', ')}): run \`npm install\` or \`npm run build\``);
  }
  const require = createRequire(import.meta.url);
  cached = require(found) as NativeAddon;
  return cached;
}
