// How far bf16 activation storage alone moves the fixtures' logprobs from transformers' float32 goldens:
// the CPU backend (float32) with every activation rounded to bf16 (the GPU's storage), optionally sparing
// some rounding points. Needs the addon built with llama-bf16-emulation.patch (run.sh does that in /tmp).
// Prints, per fixture, the largest |Δ logprob| over the prompt positions and over the greedy outputs that
// still follow the golden.
import { ServingEngine } from '../../src/engine/engine.js';
import { fixtureModelDir, loadGolden } from '../../test/helpers/fixtures.js';

async function main(): Promise<void> {
  const label = process.env.SGL_EMU_ALL ? `bf16 storage, except [${process.env.SGL_EMU_SKIP ?? ''}]` : 'float32';
  for (const fixture of ['qwen2-tiny', 'stories260k']) {
    const golden = loadGolden(fixture);
    const engine = await ServingEngine.create({ modelPath: fixtureModelDir(fixture), device: 'cpu', maxTotalTokens: 8192 });
    let prompt = 0;
    let output = 0;
    for (const g of golden.generate) {
      const [o] = await engine.generateAll({
        inputIds: g.input_ids,
        samplingParams: { temperature: 0, max_new_tokens: g.greedy_ids.length, ignore_eos: true },
        returnLogprob: true,
        logprobStartLen: 0,
      });
      o!.inputTokenLogprobs!.forEach(([lp], i) => {
        if (i > 0) prompt = Math.max(prompt, Math.abs((lp as number) - (g.prompt_logprobs[i] as number)));
      });
      for (const [i, [lp, id]] of o!.outputTokenLogprobs!.entries()) {
        if (id !== g.greedy_ids[i]) break; // past a divergence the golden's logprobs are for other tokens
        output = Math.max(output, Math.abs((lp as number) - g.greedy_logprobs[i]!));
      }
    }
    console.log(`EMU ${fixture} ${label}: max |dlogprob| prompt ${prompt.toFixed(4)} output ${output.toFixed(4)}`);
    await engine.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
