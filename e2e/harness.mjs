// A real atproto network for Stratos' end-to-end tests: an in-memory PLC directory
// (@did-plc/server) and a PDS (@atproto/pds, SQLite in a temporary directory), both on free
// loopback ports, with accounts created through the PDS's own createAccount.
//
//   node e2e/harness.mjs [--accounts N | --handles alice,bob] [--ignore-stdin]
//
// When everything is up it prints ONE line of JSON to stdout:
//   {"ready":true,"plcUrl":…,"pdsUrl":…,"pdsDid":…,"pdsAdminPassword":…,
//    "accounts":[{"did","handle","email","password","signingKey"}]}
// (signingKey is the account's atproto did:key as the PLC directory publishes it). Nothing else
// goes to stdout; diagnostics go to stderr. It stops cleanly — servers closed, temporary
// directory removed — on SIGTERM, SIGINT, or when stdin closes, so a parent that dies without
// cleaning up (even by SIGKILL) still takes the harness with it. --ignore-stdin turns the stdin
// watch off for runs from a shell in the background.
//
// The PDS runs in dev mode (http://localhost:<port>, handles under .test), without invite codes,
// rate limits or e-mail, and with its SSRF protection off: every service it talks to here is on
// loopback, which that protection exists to refuse.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { checkInstall, load, log } from './modules.mjs';

const LOOPBACK = '127.0.0.1';
const NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'];

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node e2e/harness.mjs [--accounts N | --handles alice,bob] [--ignore-stdin]\n`,
  );
  process.exit(2);
}

function handlesFromArgs() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        accounts: { type: 'string' },
        handles: { type: 'string' },
        'ignore-stdin': { type: 'boolean', default: false },
      },
    }));
  } catch (err) {
    usage(err.message);
  }
  if (values.accounts !== undefined && values.handles !== undefined) {
    usage('--accounts and --handles exclude each other');
  }
  let names;
  if (values.handles !== undefined) {
    names = values.handles.split(',').filter(Boolean);
  } else {
    const n = values.accounts === undefined ? 2 : Number(values.accounts);
    if (!Number.isInteger(n) || n < 0 || n > 1000) usage('--accounts takes a whole number up to 1000');
    names = Array.from({ length: n }, (_, i) => NAMES[i] ?? `user${i + 1}`);
  }
  for (const name of names) {
    if (!/^[a-z][a-z0-9-]{2,17}$/.test(name)) usage(`not a usable handle label: ${name}`);
  }
  return { names, ignoreStdin: values['ignore-stdin'] };
}

// A port the OS reports free on loopback. The PDS must know its port before it starts (its public
// URL, OAuth issuer and account DID documents name it), so it cannot simply listen on port 0.
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, LOOPBACK, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// Both servers call `app.listen(port)`, which binds every interface; the tests need loopback only.
function listenOnLoopback(app) {
  const listen = app.listen.bind(app);
  app.listen = (port, ...rest) => listen(port, LOOPBACK, ...rest);
}

// The PDS's PLC rotation key: a secp256k1 private key as 64 hex digits.
function k256PrivateKeyHex() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  return Buffer.from(privateKey.export({ format: 'jwk' }).d, 'base64url').toString('hex');
}

async function main() {
  const { names, ignoreStdin } = handlesFromArgs();
  checkInstall();
  // PDS and PLC log through pino to stdout when LOG_ENABLED is set; stdout carries the ready line.
  process.env.LOG_DESTINATION ??= '/dev/stderr';

  let plc = null;
  let pds = null;
  let dataDir = null;
  let stopping = null;
  const stop = (why, code = 0) => {
    stopping ??= (async () => {
      log(`stopping (${why})`);
      for (const [name, server] of [
        ['PDS', pds],
        ['PLC', plc],
      ]) {
        try {
          await server?.destroy();
        } catch (err) {
          log(`${name} did not stop cleanly: ${err?.stack ?? err}`);
        }
      }
      if (dataDir !== null) await rm(dataDir, { recursive: true, force: true });
      process.exit(code);
    })();
    return stopping;
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (!ignoreStdin) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }

  try {
    const { PlcServer, Database } = await load('@did-plc/server');
    const { PDS, envToCfg, envToSecrets } = await load('@atproto/pds');
    const { AtpAgent } = await load('@atproto/api');

    const plcPort = await freePort();
    plc = PlcServer.create({ db: Database.mock(), port: plcPort });
    listenOnLoopback(plc.app);
    await plc.start();
    const plcUrl = `http://${LOOPBACK}:${plcPort}`;

    dataDir = await mkdtemp(path.join(os.tmpdir(), 'stratos-e2e-pds-'));
    const pdsPort = await freePort();
    const adminPassword = randomBytes(16).toString('hex');
    const env = {
      port: pdsPort,
      hostname: 'localhost',
      devMode: true,
      dataDirectory: dataDir,
      blobstoreDiskLocation: path.join(dataDir, 'blobs'),
      didPlcUrl: plcUrl,
      serviceHandleDomains: ['.test'],
      inviteRequired: false,
      rateLimitsEnabled: false,
      disableSsrfProtection: true,
      jwtSecret: randomBytes(32).toString('hex'),
      dpopSecret: randomBytes(32).toString('hex'),
      adminPassword,
      plcRotationKeyK256PrivateKeyHex: k256PrivateKeyHex(),
    };
    pds = await PDS.create(envToCfg(env), envToSecrets(env));
    listenOnLoopback(pds.app);
    await pds.start();
    const pdsUrl = pds.ctx.cfg.service.publicUrl;

    const agent = new AtpAgent({ service: pdsUrl });
    const accounts = [];
    for (const name of names) {
      const handle = `${name}.test`;
      const email = `${name}@example.com`;
      const password = `${name}-${randomBytes(8).toString('hex')}`;
      const { data } = await agent.com.atproto.server.createAccount({ handle, email, password });
      // The key the world sees: what the PLC directory publishes, not what the PDS holds.
      const res = await fetch(`${plcUrl}/${encodeURIComponent(data.did)}/data`);
      if (!res.ok) throw new Error(`PLC has no data for ${data.did}: ${res.status}`);
      const signingKey = (await res.json()).verificationMethods?.atproto;
      if (typeof signingKey !== 'string') throw new Error(`no atproto key for ${data.did}`);
      accounts.push({ did: data.did, handle, email, password, signingKey });
    }

    process.stdout.write(
      `${JSON.stringify({
        ready: true,
        plcUrl,
        pdsUrl,
        pdsDid: pds.ctx.cfg.service.did,
        pdsAdminPassword: adminPassword,
        accounts,
      })}\n`,
    );
    log(`ready: PLC ${plcUrl}, PDS ${pdsUrl}, ${accounts.length} account(s)`);
    if (!ignoreStdin) {
      // Commands, one per line: `pds-down` closes the PDS's listener and every open connection
      // (an outage as a client sees it: connections refused); `pds-up` listens again on the
      // same port. Each is acknowledged on stderr.
      let pending = '';
      process.stdin.on('data', (chunk) => {
        pending += chunk.toString();
        let nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const command = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (command === 'pds-down') {
            pds.server.close();
            pds.server.closeAllConnections();
            log('PDS down');
          } else if (command === 'pds-up') {
            pds.server.listen(pdsPort, LOOPBACK, () => log('PDS up'));
          } else if (command !== '') {
            log(`unknown command: ${command}`);
          }
        }
      });
    }
  } catch (err) {
    log(`start-up failed: ${err?.stack ?? err}`);
    await stop('start-up failed', 1);
  }
}

await main();
