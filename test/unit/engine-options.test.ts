// Device resolution and GPU defaults of the engine options: --device auto picks CUDA when there is a GPU,
// SGL_DEVICE sets the default (npm test pins the CPU), cuda without a GPU is an error, and on the GPU the
// KV pool is sized from memory unless --max-total-tokens fixes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveEngineOptions } from '../../src/engine/engine-options.js';

function withEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.SGL_DEVICE;
  if (value === undefined) delete process.env.SGL_DEVICE;
  else process.env.SGL_DEVICE = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.SGL_DEVICE;
    else process.env.SGL_DEVICE = saved;
  }
}

test('device: auto picks CUDA only when a GPU is there; SGL_DEVICE sets the default; cuda without a GPU is refused', () => {
  withEnv(undefined, () => {
    assert.equal(resolveEngineOptions({}, true).device, 'cuda');
    assert.equal(resolveEngineOptions({}, false).device, 'cpu');
    assert.equal(resolveEngineOptions({ device: 'cpu' }, true).device, 'cpu');
    assert.throws(() => resolveEngineOptions({ device: 'cuda' }, false), /no CUDA device/);
    assert.throws(() => resolveEngineOptions({ device: 'tpu' as 'cpu' }, true), /device must be/);
  });
  withEnv('cpu', () => assert.equal(resolveEngineOptions({}, true).device, 'cpu'));
  withEnv('cpu', () => assert.equal(resolveEngineOptions({ device: 'cuda' }, true).device, 'cuda'));
});

test('GPU defaults: the KV pool from memory (numPages 0) unless --max-total-tokens, 256 running requests, graphs on', () => {
  withEnv(undefined, () => {
    const gpu = resolveEngineOptions({ pageSize: 16 }, true);
    assert.equal(gpu.numPages, 0);
    assert.equal(gpu.maxRunningRequests, 256);
    assert.equal(gpu.memFractionStatic, 0.85);
    assert.equal(gpu.cudaGraphMaxBs, 256);
    assert.equal(gpu.disableCudaGraph, false);
    const fixed = resolveEngineOptions({ pageSize: 16, maxTotalTokens: 4096 }, true);
    assert.equal(fixed.numPages, 256);
    const cpu = resolveEngineOptions({}, false);
    assert.equal(cpu.numPages, 16384);
    assert.equal(cpu.maxRunningRequests, 64);
    assert.throws(() => resolveEngineOptions({ memFractionStatic: 1.5 }, true), /memFractionStatic must be in \(0, 1\)/);
    assert.throws(() => resolveEngineOptions({ cudaGraphMaxBs: 0 }, true), /cudaGraphMaxBs must be a positive integer/);
  });
});
