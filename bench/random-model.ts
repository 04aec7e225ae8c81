// Writes a model directory with a published model's exact architecture and random bf16 weights (norms 1.0,
// everything else ~N(0, 0.02)), as ../shared/fixtures/tools/make_random_model.py does with torch, for speed
// work on machines without Python/torch. Shapes are the published config.json values.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeSafetensors, type TensorSpec } from '../src/util/safetensors-writer.js';

export const SHAPES: Record<string, Record<string, unknown>> = {
  'qwen2.5-0.5b-instruct': {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_size: 896, intermediate_size: 4864,
    num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2, vocab_size: 151936,
    max_position_embeddings: 32768, rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: true,
    hidden_act: 'silu', bos_token_id: 151643, eos_token_id: 151645, sliding_window: 32768, use_sliding_window: false,
    torch_dtype: 'bfloat16',
  },
};

/** Fills bf16 values ~N(0, std) using a fast xorshift and a sum-of-uniforms normal approximation. */
function randomBf16Filler(seed: number, std: number): (out: Uint8Array) => void {
  let s = seed >>> 0 || 1;
  // Precomputed table of bf16 bit patterns of normal samples; indexing it randomly is fast and the
  // distribution is what matters for speed work (value ranges, no denormals).
  const table = new Uint16Array(65536);
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (let i = 0; i < table.length; i++) {
    let acc = 0;
    for (let k = 0; k < 4; k++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      acc += s / 4294967296;
    }
    f[0] = (acc - 2) * Math.sqrt(3) * std; // 4 uniforms: variance 4/12
    table[i] = u[0] >>> 16;
  }
  return (out: Uint8Array) => {
    const words = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >> 1);
    for (let i = 0; i < words.length; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      words[i] = table[s & 0xffff];
    }
  };
}

const onesBf16 = (out: Uint8Array) => new Uint16Array(out.buffer, out.byteOffset, out.byteLength >> 1).fill(0x3f80);

/** Writes (once) the random model of `shape` under dir and returns the directory. */
export function ensureRandomModel(shape: string, dir: string): string {
  const cfg = SHAPES[shape];
  if (!cfg) throw new Error(`unknown shape ${shape} (have: ${Object.keys(SHAPES).join(', ')})`);
  if (existsSync(path.join(dir, 'model.safetensors'))) return dir;
  mkdirSync(dir, { recursive: true });
  const C = cfg.hidden_size as number, I = cfg.intermediate_size as number, L = cfg.num_hidden_layers as number;
  const H = cfg.num_attention_heads as number, Hkv = cfg.num_key_value_heads as number, V = cfg.vocab_size as number;
  const D = C / H;
  const qkvBias = cfg.model_type === 'qwen2';
  let seed = 1;
  const w = (name: string, shape: number[]): TensorSpec => ({ name, dtype: 'BF16', shape, data: randomBf16Filler(seed++, 0.02) });
  const ones = (name: string, shape: number[]): TensorSpec => ({ name, dtype: 'BF16', shape, data: onesBf16 });
  const tensors: TensorSpec[] = [w('model.embed_tokens.weight', [V, C]), ones('model.norm.weight', [C])];
  if (!cfg.tie_word_embeddings) tensors.push(w('lm_head.weight', [V, C]));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    tensors.push(ones(p + 'input_layernorm.weight', [C]), ones(p + 'post_attention_layernorm.weight', [C]));
    tensors.push(w(p + 'self_attn.q_proj.weight', [H * D, C]), w(p + 'self_attn.k_proj.weight', [Hkv * D, C]));
    tensors.push(w(p + 'self_attn.v_proj.weight', [Hkv * D, C]), w(p + 'self_attn.o_proj.weight', [C, H * D]));
    if (qkvBias) {
      tensors.push(w(p + 'self_attn.q_proj.bias', [H * D]), w(p + 'self_attn.k_proj.bias', [Hkv * D]), w(p + 'self_attn.v_proj.bias', [Hkv * D]));
    }
    tensors.push(w(p + 'mlp.gate_proj.weight', [I, C]), w(p + 'mlp.up_proj.weight', [I, C]), w(p + 'mlp.down_proj.weight', [C, I]));
  }
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  return dir;
}
