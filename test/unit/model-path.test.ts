// --model-path resolution: local directories, Hub ids in the local Hugging Face cache, and SGLang's
// "(repository not found)" wording for anything else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hfHubCacheDir, resolveModelPath } from '../../src/engine/model-path.js';
import { makeTempDir } from '../helpers/temp-dir.js';

test('cache root: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub', () => {
  assert.equal(hfHubCacheDir({ HF_HUB_CACHE: '/a', HF_HOME: '/b' }), '/a');
  assert.equal(hfHubCacheDir({ HF_HOME: '/b' }), '/b/hub');
  assert.equal(hfHubCacheDir({}), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
});

test('a local directory is used as is; a Hub id resolves to refs/main in the cache; else repository not found', () => {
  const root = makeTempDir('sgl-hf-');
  const repo = path.join(root, 'models--Qwen--Tiny');
  mkdirSync(path.join(repo, 'snapshots', 'abc123'), { recursive: true });
  mkdirSync(path.join(repo, 'snapshots', 'old999'), { recursive: true });
  mkdirSync(path.join(repo, 'refs'), { recursive: true });
  writeFileSync(path.join(repo, 'refs', 'main'), 'abc123\n');
  const env = { HF_HUB_CACHE: root };
  assert.equal(resolveModelPath(root, env), root);
  assert.equal(resolveModelPath('Qwen/Tiny', env), path.join(repo, 'snapshots', 'abc123'));
  assert.throws(() => resolveModelPath('Qwen/Missing', env), { message: 'Qwen/Missing (repository not found)' });
  assert.throws(() => resolveModelPath('/no/such/dir', env), { message: '/no/such/dir (repository not found)' });
});
