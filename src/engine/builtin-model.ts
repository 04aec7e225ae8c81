import path from 'node:path';
import { projectRoot } from '../native/addon.js';

/** The model served when no --model-path is given: karpathy's TinyStories 260K (MIT), committed in src/builtin. */
export function builtinModelDir(): string {
  return path.join(projectRoot(), 'src', 'builtin', 'stories260k');
}
