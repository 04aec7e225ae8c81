// launch_server flags: SGLang's names, each also from an SGL_* environment variable (the command line wins),
// and errors that name the flag.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServerOptions } from '../../src/server/server-flags.js';

test('defaults, flags, environment variables and precedence', () => {
  const d = parseServerOptions([], {});
  assert.equal(d.port, 30000);
  assert.equal(d.host, '127.0.0.1');
  assert.equal(d.grpcPort, null);
  assert.equal(d.apiKey, null);
  const o = parseServerOptions(
    ['--port', '8000', '--page-size=4', '--disable-radix-cache', '--schedule-policy', 'lpm', '--preferred-sampling-params', '{"temperature":0.5}'],
    { SGL_PORT: '9000', SGL_MAX_TOTAL_TOKENS: '4096', SGL_API_KEY: 'k', SGL_ENABLE_METRICS: 'true' },
  );
  assert.equal(o.port, 8000, 'the command line wins over the environment');
  assert.equal(o.engine.maxTotalTokens, 4096);
  assert.equal(o.engine.pageSize, 4);
  assert.equal(o.engine.disableRadixCache, true);
  assert.equal(o.engine.schedulePolicy, 'lpm');
  assert.equal(o.apiKey, 'k');
  assert.equal(o.enableMetrics, true);
  assert.deepEqual(o.preferredSamplingParams, { temperature: 0.5 });
});

test('unknown flags and bad values are errors naming them', () => {
  assert.throws(() => parseServerOptions(['--nope'], {}), { message: 'unknown flag: --nope' });
  assert.throws(() => parseServerOptions(['--port', 'x'], {}), /--port must be an integer/);
  assert.throws(() => parseServerOptions([], { SGL_PORT: 'x' }), /SGL_PORT \(--port\) must be an integer/);
  assert.throws(() => parseServerOptions(['--device', 'tpu'], {}), /--device must be one of auto, cpu, cuda/);
  assert.throws(() => parseServerOptions(['--mem-fraction-static', '2'], {}), /--mem-fraction-static must be in \(0, 1\)/);
  assert.throws(() => parseServerOptions(['--preferred-sampling-params', '[1]'], {}), /must be a JSON object/);
});
