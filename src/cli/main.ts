#!/usr/bin/env node
// `npm start -- [flags]`: the server (SGLang's launch_server flags, see src/server/server-flags.ts).
// `npm start -- [engine flags] --prompt TEXT [--max-new-tokens N] [--temperature T]`: one request through
// the serving engine, its text streamed to stdout. With no --model-path the built-in stories260k is used.
import { ServingEngine } from '../engine/engine.js';
import { ENGINE_FLAGS, engineOptionsFrom, flagsHelp, parseFlags, type FlagSpec } from './engine-flags.js';
import { launchServer } from '../server/launch.js';
import { parseServerOptions, serverHelp } from '../server/server-flags.js';

const REQUEST_FLAGS: FlagSpec[] = [
  { flag: '--prompt', kind: 'str', help: 'the prompt (default "Once upon a time")', apply: () => {} },
  { flag: '--max-new-tokens', kind: 'int', help: 'tokens to generate at most (default 64; stops early at EOS)', apply: () => {} },
  { flag: '--temperature', kind: 'str', help: 'sampling temperature (default 0 = greedy)', apply: () => {} },
  { flag: '--help', kind: 'bool', help: 'this text', apply: () => {} },
];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (!argv.some((a) => a === '--prompt' || a.startsWith('--prompt='))) return serve(argv);
  const specs = [...ENGINE_FLAGS, ...REQUEST_FLAGS];
  const values = parseFlags(process.argv.slice(2), specs);
  if (values.get('--help')) {
    console.log(`usage: npm start -- [flags]\n${flagsHelp(specs)}`);
    return;
  }
  const prompt = (values.get('--prompt') as string | undefined) ?? 'Once upon a time';
  const temperature = Number(values.get('--temperature') ?? 0);
  if (!Number.isFinite(temperature)) throw new Error('--temperature must be a number');
  const engine = await ServingEngine.create(engineOptionsFrom(values));
  try {
    const started = performance.now();
    const stream = engine.generate({ text: prompt, samplingParams: { max_new_tokens: values.get('--max-new-tokens') ?? 64, temperature } });
    process.stdout.write(prompt);
    let last = null;
    for await (const chunk of stream) {
      process.stdout.write(chunk.delta);
      last = chunk;
    }
    process.stdout.write('\n');
    const secs = (performance.now() - started) / 1000;
    const took = secs < 1 ? `${(secs * 1000).toFixed(1)} ms` : `${secs.toFixed(2)} s`;
    const info = engine.info;
    console.error(`[${info.architecture} on ${info.backend}] ${last?.promptTokens} prompt + ${last?.completionTokens} generated tokens in ${took} (finish: ${last?.finishReason?.type})`);
  } finally {
    await engine.close();
  }
}

/** The server (the default action): SGLang's launch_server flags; SIGINT / SIGTERM close it cleanly. */
async function serve(argv: string[]): Promise<void> {
  const opts = parseServerOptions(argv);
  if (opts.help) {
    console.log(serverHelp());
    return;
  }
  const server = await launchServer(opts);
  const stop = () => {
    server.close().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((e: Error) => {
  console.error(`error: ${e.message}`);
  process.exit(1);
});
