#!/usr/bin/env node
// `npm start -- [--model-path DIR] [--prompt TEXT] [--max-new-tokens N]`: loads the model on the CPU
// backend and prints greedy text. With no --model-path the built-in stories260k is used. (The HTTP/gRPC
// server replaces this entry point's default action once it exists.)
import { loadAddon } from '../native/addon.js';
import { builtinModelDir } from '../engine/builtin-model.js';
import { PagePool } from '../engine/page-pool.js';
import { generateGreedy } from '../engine/step-runner.js';
import { TextTokenizer } from '../engine/tokenizer.js';

interface CliArgs {
  modelPath: string;
  prompt: string;
  maxNewTokens: number;
}

function parseArgs(argv: string[]): CliArgs {
  const args: CliArgs = { modelPath: builtinModelDir(), prompt: 'Once upon a time', maxNewTokens: 64 };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--model-path': args.modelPath = value(); break;
      case '--prompt': args.prompt = value(); break;
      case '--max-new-tokens': {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 0) throw new Error(`--max-new-tokens must be a non-negative integer`);
        args.maxNewTokens = n;
        break;
      }
      case '--help': case '-h':
        console.log('usage: npm start -- [--model-path DIR] [--prompt TEXT] [--max-new-tokens N]');
        process.exit(0);
      default:
        throw new Error(`unknown flag: ${flag}`);
    }
  }
  return args;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const addon = loadAddon();
  const tokenizer = await TextTokenizer.load(args.modelPath);
  const pageSize = 16;
  const model = new addon.NativeModel({ modelPath: args.modelPath, numPages: 256, pageSize });
  const info = model.info();
  const prompt = tokenizer.encode(args.prompt);
  const maxNew = Math.min(args.maxNewTokens, info.contextLength - prompt.length);
  if (maxNew < 0) throw new Error(`the prompt (${prompt.length} tokens) is longer than the model's context length (${info.contextLength} tokens)`);
  const started = performance.now();
  const out = generateGreedy(model, new PagePool(256), pageSize, prompt, { maxNewTokens: maxNew, stopIds: info.eosTokenIds });
  const secs = (performance.now() - started) / 1000;
  process.stdout.write(args.prompt + tokenizer.decode(out) + '\n');
  const took = secs < 1 ? `${(secs * 1000).toFixed(1)} ms` : `${secs.toFixed(2)} s`;
  console.error(`[${info.architecture} on ${info.backend}] ${prompt.length} prompt + ${out.length} generated tokens in ${took}`);
  model.close();
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
