// Token-string -> text decoders with the semantics of Rust `tokenizers` (which transformers uses).
// The JS library's versions differ in details that matter for streaming and exact output:
// its ByteFallback emits one U+FFFD per invalid byte *run* and drops a leading BOM (Rust: one
// U+FFFD per byte token, BOM kept), and its Metaspace decoder strips only one leading U+2581 of
// the first token (Rust: every U+2581 of the first token). Unsupported decoder types return
// null so the caller can fall back to the library's decoder.
import { asObjectArray, isObject, type Json } from './json.js';

export type DecodeChain = (tokens: string[]) => string[];

/** GPT-2 byte <-> printable character table (bytes_to_unicode), inverted for decoding. */
const CHAR_TO_BYTE: ReadonlyMap<string, number> = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const code = printable.includes(b) ? b : 256 + extra++;
    map.set(String.fromCodePoint(code), b);
  }
  return map;
})();

// fatal: false gives U+FFFD per maximal invalid subsequence, like Rust's from_utf8_lossy.
const lossyUtf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const textEncoder = new TextEncoder();

const byteLevel: DecodeChain = (tokens) => {
  const bytes: number[] = [];
  for (const token of tokens) {
    const mapped: number[] = [];
    let ok = true;
    for (const ch of token) {
      const b = CHAR_TO_BYTE.get(ch);
      if (b === undefined) {
        ok = false;
        break;
      }
      mapped.push(b);
    }
    // A token with a character outside the byte alphabet (e.g. an added token) is taken as raw UTF-8.
    if (ok) bytes.push(...mapped);
    else bytes.push(...textEncoder.encode(token));
  }
  return [lossyUtf8.decode(Uint8Array.from(bytes))];
};

const BYTE_TOKEN = /^<0x([0-9A-Fa-f]{2})>$/;

const byteFallback: DecodeChain = (tokens) => {
  const out: string[] = [];
  let pending: number[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    try {
      out.push(strictUtf8.decode(Uint8Array.from(pending)));
    } catch {
      for (let i = 0; i < pending.length; i++) out.push('\uFFFD');
    }
    pending = [];
  };
  for (const token of tokens) {
    const m = BYTE_TOKEN.exec(token);
    if (m) {
      pending.push(parseInt(m[1] as string, 16));
    } else {
      flush();
      out.push(token);
    }
  }
  flush();
  return out;
};

const fuse: DecodeChain = (tokens) => [tokens.join('')];

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function replaceDecoder(config: { [k: string]: Json }): DecodeChain | null {
  const pattern = isObject(config.pattern) ? config.pattern : {};
  const content = typeof config.content === 'string' ? config.content : '';
  let re: RegExp;
  if (typeof pattern.String === 'string') {
    re = new RegExp(escapeRegExp(pattern.String), 'gu');
  } else if (typeof pattern.Regex === 'string') {
    try {
      re = new RegExp(pattern.Regex, 'gu');
    } catch {
      return null;
    }
  } else {
    return null;
  }
  return (tokens) => tokens.map((t) => t.replace(re, () => content));
}

function stripDecoder(config: { [k: string]: Json }): DecodeChain {
  const content = typeof config.content === 'string' ? config.content : ' ';
  const start = typeof config.start === 'number' ? config.start : 0;
  const stop = typeof config.stop === 'number' ? config.stop : 0;
  return (tokens) =>
    tokens.map((token) => {
      const chars = [...token];
      let from = 0;
      while (from < start && from < chars.length && chars[from] === content) from++;
      let to = chars.length;
      while (chars.length - to < stop && to > from && chars[to - 1] === content) to--;
      return chars.slice(from, to).join('');
    });
}

function metaspaceDecoder(config: { [k: string]: Json }): DecodeChain {
  const replacement = typeof config.replacement === 'string' ? config.replacement : '\u2581';
  // Older files say add_prefix_space instead of prepend_scheme.
  const scheme =
    typeof config.prepend_scheme === 'string'
      ? config.prepend_scheme
      : config.add_prefix_space === false
        ? 'never'
        : 'always';
  return (tokens) =>
    tokens.map((token, i) => {
      const dropAll = i === 0 && scheme !== 'never';
      let out = '';
      for (const ch of token) {
        if (ch === replacement) out += dropAll ? '' : ' ';
        else out += ch;
      }
      return out;
    });
}

/** Builds the decode chain for a tokenizer.json `decoder`, or null when a part is unsupported. */
export function buildDecodeChain(config: Json | undefined): DecodeChain | null {
  if (!isObject(config)) return null;
  switch (config.type) {
    case 'ByteLevel':
      return byteLevel;
    case 'ByteFallback':
      return byteFallback;
    case 'Fuse':
      return fuse;
    case 'Replace':
      return replaceDecoder(config);
    case 'Strip':
      return stripDecoder(config);
    case 'Metaspace':
      return metaspaceDecoder(config);
    case 'Sequence': {
      const parts = asObjectArray(config.decoders).map(buildDecodeChain);
      if (parts.some((p) => p === null)) return null;
      const chain = parts as DecodeChain[];
      return (tokens) => chain.reduce((acc, step) => step(acc), tokens);
    }
    default:
      return null;
  }
}
