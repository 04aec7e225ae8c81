// Writes a tiny random Llama checkpoint into a temp directory, with hooks to break it in specific ways.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeSafetensors, type TensorSpec, type SafetensorsDtype } from '../../src/util/safetensors-writer.js';
import { makeTempDir } from './temp-dir.js';

export const tinyConfig = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  vocab_size: 32,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
  bos_token_id: 1,
  eos_token_id: 2,
};

export function tinyTensors(dtype: SafetensorsDtype = 'F32'): TensorSpec[] {
  const C = 8, I = 16, V = 32, D = 4, H = 2, Hkv = 1;
  const t = (name: string, shape: number[]): TensorSpec => ({
    name,
    dtype,
    shape,
    data: (out: Uint8Array) => {
      // deterministic small values
      for (let i = 0; i < out.length; i++) out[i] = (i * 37 + 11) & 0x3f;
    },
  });
  const p = 'model.layers.0.';
  return [
    t('model.embed_tokens.weight', [V, C]),
    t('model.norm.weight', [C]),
    t('lm_head.weight', [V, C]),
    t(p + 'input_layernorm.weight', [C]),
    t(p + 'post_attention_layernorm.weight', [C]),
    t(p + 'self_attn.q_proj.weight', [H * D, C]),
    t(p + 'self_attn.k_proj.weight', [Hkv * D, C]),
    t(p + 'self_attn.v_proj.weight', [Hkv * D, C]),
    t(p + 'self_attn.o_proj.weight', [C, H * D]),
    t(p + 'mlp.gate_proj.weight', [I, C]),
    t(p + 'mlp.up_proj.weight', [I, C]),
    t(p + 'mlp.down_proj.weight', [C, I]),
  ];
}

/** A model dir with config.json and model.safetensors built from (possibly edited) tensors. */
export function writeTinyModel(opts: { config?: object; tensors?: TensorSpec[]; noWeights?: boolean } = {}): string {
  const dir = makeTempDir('sgl-tiny-');
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(opts.config ?? tinyConfig));
  if (!opts.noWeights) writeSafetensors(path.join(dir, 'model.safetensors'), opts.tensors ?? tinyTensors());
  return dir;
}
