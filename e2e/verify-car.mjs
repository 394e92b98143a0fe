// The independent verifier of exported repositories: @atproto/repo's verifyRepoCar, the code
// the atproto reference implementation uses on repositories it receives.
//
//   node e2e/verify-car.mjs --did <did> --key <did:key> [--car <file>]   (CAR on stdin without --car)
//   node e2e/verify-car.mjs --proof --did <did> --key <did:key>            (a com.atproto.sync.getRecord CAR)
//
// It checks that every block hashes to its CID, the CAR has exactly one root, the root commit
// names <did> and is signed by <did:key>, and the whole MST can be walked with every record
// block present. With --proof the CAR is a record proof and verifyRecords checks it instead (the
// signed commit, the MST path, the record block); "records" then lists the records it proves
// (collection, rkey and the record's `text` when it has one).
// Prints one JSON line:
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
    options: {
      did: { type: 'string' },
      key: { type: 'string' },
      car: { type: 'string' },
      proof: { type: 'boolean' },
    },
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
const { verifyRepoCar, verifyRecords } = await load('@atproto/repo');
const bytes = values.car === undefined ? await readStdin() : await readFile(values.car);
try {
  if (values.proof) {
    const claims = await verifyRecords(new Uint8Array(bytes), values.did, values.key);
    verdict(
      {
        ok: true,
        did: values.did,
        records: claims.map((c) => ({
          collection: c.collection,
          rkey: c.rkey,
          text: typeof c.record?.text === 'string' ? c.record.text : null,
        })),
      },
      0,
    );
    process.exit();
  }
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
