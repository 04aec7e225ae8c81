// Writes safetensors files (used by the error-case tests and by the benchmarks' random-weight models).
import { closeSync, openSync, writeSync } from 'node:fs';

export type SafetensorsDtype = 'F32' | 'BF16' | 'F16' | 'I32';

export interface TensorSpec {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** The tensor's bytes; or a function filling a buffer of the right size (for large random tensors). */
  data: Uint8Array | ((out: Uint8Array) => void);
}

const dtypeBytes: Record<SafetensorsDtype, number> = { F32: 4, BF16: 2, F16: 2, I32: 4 };

export function tensorBytes(t: Pick<TensorSpec, 'dtype' | 'shape'>): number {
  return t.shape.reduce((a, b) => a * b, 1) * dtypeBytes[t.dtype];
}

/** Writes `tensors` in order; streams data so multi-GB files need little memory. */
export function writeSafetensors(path: string, tensors: TensorSpec[], metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const n = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8); // align the data section to 8 bytes
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, len);
    writeSync(fd, headerBytes);
    for (const t of tensors) {
      if (typeof t.data === 'function') {
        const chunkRows = Math.max(1, Math.floor((64 << 20) / Math.max(1, tensorBytes({ ...t, shape: t.shape.slice(1) }))));
        const rows = t.shape[0] ?? 1;
        const rowBytes = tensorBytes(t) / Math.max(1, rows);
        for (let r = 0; r < rows; r += chunkRows) {
          const buf = new Uint8Array(Math.min(chunkRows, rows - r) * rowBytes);
          t.data(buf);
          writeSync(fd, buf);
        }
      } else {
        if (t.data.length !== tensorBytes(t)) throw new Error(`tensor ${t.name}: ${t.data.length} bytes, shape needs ${tensorBytes(t)}`);
        writeSync(fd, t.data);
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** float32 -> bf16 bits, round to nearest even. */
export function f32ToBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}
