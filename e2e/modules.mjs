// Where the harness's npm packages live, and how the scripts in e2e/ load them.
//
// scripts/e2e-env installs them under target/e2e (or $STRATOS_E2E_DIR), not beside these scripts,
// so bare `import '@atproto/pds'` would not find them: ES module resolution starts from the
// importing file, never from the working directory or NODE_PATH.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export const installDir = process.env.STRATOS_E2E_DIR
  ? path.resolve(process.env.STRATOS_E2E_DIR)
  : path.resolve(here, '..', 'target', 'e2e');

// An install made from another lock file would test other package versions than the ones this
// checkout pins, so it is refused rather than used.
export function checkInstall() {
  const want = readFileSync(path.join(here, 'package-lock.json'));
  let have = null;
  try {
    have = readFileSync(path.join(installDir, 'package-lock.json'));
  } catch {
    // missing: reported below
  }
  if (have === null || !want.equals(have)) {
    throw new Error(
      `no current e2e install in ${installDir} (missing, or made from another e2e/package-lock.json): run scripts/e2e-env`,
    );
  }
}

const requireFromInstall = createRequire(path.join(installDir, 'package.json'));

export async function load(name) {
  return import(pathToFileURL(requireFromInstall.resolve(name)).href);
}

export function log(message) {
  process.stderr.write(`[e2e] ${message}\n`);
}
