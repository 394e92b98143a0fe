// The independent verifier of exported repositories: @atproto/repo's verifyRepoCar, the code
// the atproto reference implementation uses on repositories it receives.
//
//   node e2e/verify-car.mjs --did <did> --key <did:key> [--car <file>]   (CAR on stdin without --car)
//
// It checks that every block hashes to its CID, the CAR has exactly one root, the root commit
// names <did> and is signed by <did:key>, and the whole MST can be walked with every record
// block present. Prints one JSON line:
//   {"ok":true,"did","commit","rev","records":[{"collection","rkey","cid"}]}   exit 0
//   {"ok":false,"error":"…"}                                                  exit 1
// Usage errors exit 2.

import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

import { checkInstall, load } from './modules.mjs';

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node e2e/verify-car.mjs --did <did> --key <did:key> [--car <file>]\n`,
  );
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: { did: { type: 'string' }, key: { type: 'string' }, car: { type: 'string' } },
  }));
} catch (err) {
  usage(err.message);
}
if (!values.did?.startsWith('did:')) usage('--did <did> is required');
if (!values.key?.startsWith('did:key:')) usage('--key <did:key> is required');

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function verdict(value, code) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
  process.exitCode = code;
}

checkInstall();
const { verifyRepoCar } = await load('@atproto/repo');
const bytes = values.car === undefined ? await readStdin() : await readFile(values.car);
try {
  // verifyRepoCar checks the DID and the signature only when they are given: both always are.
  const repo = await verifyRepoCar(new Uint8Array(bytes), values.did, values.key);
  verdict(
    {
      ok: true,
      did: values.did,
      commit: repo.commit.cid.toString(),
      rev: repo.commit.rev,
      records: repo.creates.map((c) => ({
        collection: c.collection,
        rkey: c.rkey,
        cid: c.cid.toString(),
      })),
    },
    0,
  );
} catch (err) {
  verdict({ ok: false, error: String(err?.message ?? err) }, 1);
}
