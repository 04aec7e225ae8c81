// Reads a safetensors file's tensors as raw bytes (tests build variants of fixture checkpoints with it).
import { readFileSync } from 'node:fs';
import type { SafetensorsDtype, TensorSpec } from '../../src/util/safetensors-writer.js';

export function readSafetensors(path: string): TensorSpec[] {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: SafetensorsDtype; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + headerLen;
  return Object.entries(header)
    .filter(([name]) => name !== '__metadata__')
    .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(buf.subarray(base + t.data_offsets[0], base + t.data_offsets[1])) }));
}
