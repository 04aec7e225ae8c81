// --model-path: a local directory, or a Hugging Face Hub id ("Qwen/Qwen2.5-0.5B-Instruct") resolved offline
// in the local Hugging Face cache. Nothing is downloaded. Cache root: HF_HUB_CACHE, else HF_HOME/hub, else
// ~/.cache/huggingface/hub; a repo lives in models--ORG--NAME/snapshots/<the commit in refs/main>.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class ModelPathError extends Error {}

export function hfHubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  return path.join(os.homedir(), '.cache', 'huggingface', 'hub');
}

const isDir = (p: string) => existsSync(p) && statSync(p).isDirectory();

/**
 * The directory to load for `given`: itself when it is a directory, else the cached snapshot of the Hub id
 * (refs/main's commit, or the only / newest snapshot when refs/main is absent). Throws ModelPathError with
 * SGLang's wording "<given> (repository not found)" when neither exists.
 */
export function resolveModelPath(given: string, env: NodeJS.ProcessEnv = process.env): string {
  if (isDir(given)) return given;
  const parts = given.split('/');
  if (parts.length === 2 && parts.every((p) => p.length > 0 && p !== '.' && p !== '..')) {
    const repo = path.join(hfHubCacheDir(env), `models--${parts[0]}--${parts[1]}`);
    const snapshots = path.join(repo, 'snapshots');
    if (isDir(snapshots)) {
      const ref = path.join(repo, 'refs', 'main');
      if (existsSync(ref)) {
        const snap = path.join(snapshots, readFileSync(ref, 'utf8').trim());
        if (isDir(snap)) return snap;
      }
      const all = readdirSync(snapshots)
        .map((d) => path.join(snapshots, d))
        .filter(isDir)
        .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
      if (all.length > 0) return all[0]!;
    }
  }
  throw new ModelPathError(`${given} (repository not found)`);
}
