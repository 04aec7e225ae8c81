// Reads a checkpoint's safetensors files once, front to back, before the engine maps them, so that the page
// cache holds them: the engine's memory map then serves the first forward without stalling on disk, and the
// load can show real progress (bytes read). The file list is the one the C++ Checkpoint uses (the shards
// named by model.safetensors.index.json, else model.safetensors); a directory it cannot list is left to the
// engine, whose load reports the precise error.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';

export interface WeightFile {
  path: string;
  bytes: number;
}

/** The safetensors files of `dir` (empty when there are none or the index cannot be read). */
export function listWeightFiles(dir: string): WeightFile[] {
  const index = path.join(dir, 'model.safetensors.index.json');
  let names: string[];
  if (existsSync(index)) {
    try {
      const map = (JSON.parse(readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      names = [...new Set(Object.values(map))].sort();
    } catch {
      return [];
    }
  } else {
    names = ['model.safetensors'];
  }
  const files: WeightFile[] = [];
  for (const name of names) {
    const p = path.join(dir, name);
    try {
      files.push({ path: p, bytes: statSync(p).size });
    } catch {
      return [];
    }
  }
  return files;
}

/** Reads every file of `files` once; `onProgress(bytesRead, totalBytes)` after each block. */
export async function prefetchWeights(files: WeightFile[], onProgress: (done: number, total: number) => void): Promise<void> {
  const total = files.reduce((s, f) => s + f.bytes, 0);
  const block = Buffer.allocUnsafe(8 << 20);
  let done = 0;
  onProgress(0, total);
  for (const f of files) {
    const fh = await open(f.path, 'r');
    try {
      for (;;) {
        const { bytesRead } = await fh.read(block, 0, block.length, null);
        if (bytesRead === 0) break;
        done += bytesRead;
        onProgress(done, total);
      }
    } finally {
      await fh.close();
    }
  }
}
