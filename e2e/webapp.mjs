// The reference web app in headless Chromium (Debian's package) through Playwright
// (playwright-core from the npm registry, installed by scripts/e2e-env): what people do on its
// pages, against the real stratos service, indexer and PDS that apps/webapp/tests/browser.rs
// starts. Every step leaves a screenshot in $SCREENS. Exit code 0 when every check held.
//
// Environment: WEBAPP_URL, STRATOS_URL, STRATOS_DID, STRATOS_ADMIN (operator password),
// PDS_URL, ACCOUNTS (JSON [{name, did, handle, password}] for alice, bob, carol), SCREENS,
// CHROMIUM (the browser binary).

import assert from 'node:assert/strict';
import path from 'node:path';

import { checkInstall, load, log } from './modules.mjs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};

const WEBAPP = env('WEBAPP_URL');
const STRATOS = env('STRATOS_URL');
const SERVICE_DID = env('STRATOS_DID');
const ADMIN = env('STRATOS_ADMIN');
const PDS = env('PDS_URL');
const SCREENS = env('SCREENS');
const accounts = Object.fromEntries(JSON.parse(env('ACCOUNTS')).map((a) => [a.name, a]));
const SWORDSMITH = `${SERVICE_DID}/swordsmith`;
const AEKEA = `${SERVICE_DID}/aekea`;

checkInstall();
const playwright = await load('playwright-core');
// A CommonJS package: its exports arrive as the default export.
const { chromium } = playwright.chromium ? playwright : playwright.default;

const shot = async (page, name) => {
  await page.screenshot({ path: path.join(SCREENS, `${name}.png`), fullPage: true });
  log(`screenshot ${name}`);
};

// Reloads `page` until `check` holds (the indexer and the PDS delivery are asynchronous).
async function eventually(page, what, check, { timeout = 30_000 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${what}: not within ${timeout} ms: ${last?.message ?? last}`);
    }
    await page.waitForTimeout(400);
    await page.reload();
  }
}

// The PDS's own pages (@atproto/oauth-provider): sign in when asked, then authorize.
async function pdsConsent(page, account) {
  await page.waitForURL((u) => u.href.startsWith(PDS), { timeout: 30_000 });
  const password = page.locator('input[type=password]');
  const authorize = page.getByRole('button', { name: /^authorize$/i });
  await Promise.race([
    password.waitFor({ state: 'visible', timeout: 30_000 }),
    authorize.waitFor({ state: 'visible', timeout: 30_000 }),
  ]);
  if (await password.isVisible()) {
    const username = page.locator('input[name=username], input[autocomplete=username]');
    if ((await username.count()) > 0 && (await username.first().isEditable())) {
      if ((await username.first().inputValue()) === '') {
        await username.first().fill(account.handle);
      }
    }
    await password.fill(account.password);
    await page.getByRole('button', { name: /^sign in$/i }).click();
  }
  await authorize.waitFor({ state: 'visible', timeout: 30_000 });
  await authorize.click();
}

async function signIn(browser, account) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => log(`page error (${account.name}): ${err.message}`));
  await page.goto(WEBAPP);
  await page.getByLabel('Handle, DID or PDS address').fill(account.did);
  if (account.name === 'alice') await shot(page, '01-sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (account.name === 'alice') {
    await page.waitForURL((u) => u.href.startsWith(PDS));
    await page.locator('input[type=password]').waitFor({ state: 'visible' });
    await shot(page, '02-pds-sign-in');
  }
  await pdsConsent(page, account);
  await page.waitForURL((u) => u.href.startsWith(WEBAPP), { timeout: 30_000 });
  await page.locator('#me').waitFor();
  assert.equal(await page.locator('#me').innerText(), `@${account.handle}`);
  return { context, page };
}

async function enroll(page, account) {
  await page.getByRole('link', { name: 'Enroll in Stratos' }).click();
  // The service sends the browser to the PDS (already signed in there: consent only).
  await pdsConsent(page, account);
  await page.waitForURL((u) => u.href.startsWith(WEBAPP), { timeout: 30_000 });
  await eventually(page, `${account.name} enrolled`, async () => {
    assert.equal(await page.locator('#service-status').innerText(), 'Enrolled');
  });
}

async function setBoundaries(account, boundaries) {
  const res = await fetch(`${STRATOS}/xrpc/zone.stratos.admin.setBoundaries`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ did: account.did, boundaries }),
  });
  assert.equal(res.status, 200, await res.text());
}

async function post(page, text, { boundary = null } = {}) {
  await page.getByLabel('Text').fill(text);
  const priv = page.getByLabel('Private');
  if (boundary === null) {
    if ((await priv.count()) > 0) await priv.uncheck();
  } else {
    await priv.check();
    await page.getByLabel('Boundary').selectOption(boundary);
  }
  await page.getByRole('button', { name: 'Post', exact: true }).click();
  await page.locator('.notice').waitFor();
  assert.equal(await page.locator('.notice').innerText(), 'Posted.');
}

// The feed as the page shows it: [{text, visibility, boundaries}].
async function feed(page) {
  return page.locator('#feed article').evaluateAll((nodes) =>
    nodes.map((n) => ({
      text: n.querySelector('.text')?.textContent ?? '',
      visibility: n.dataset.visibility,
      author: n.querySelector('.author')?.textContent ?? '',
      boundaries: [...n.querySelectorAll('.badge.boundary')].map((b) => b.textContent),
      uri: n.dataset.uri,
    })),
  );
}

const find = (items, text) => items.find((i) => i.text === text);

async function main() {
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM'),
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    // 1. alice and bob sign in and enroll; the operator gives them different boundaries.
    const alice = await signIn(browser, accounts.alice);
    await shot(alice.page, '03-signed-in');
    await enroll(alice.page, accounts.alice);
    const bob = await signIn(browser, accounts.bob);
    await enroll(bob.page, accounts.bob);
    await setBoundaries(accounts.alice, ['swordsmith']);
    await setBoundaries(accounts.bob, ['aekea']);
    await eventually(alice.page, 'alice holds swordsmith', async () => {
      assert.equal(await alice.page.locator('#your-boundaries').innerText(), 'swordsmith');
    });
    await eventually(bob.page, 'bob holds aekea', async () => {
      assert.equal(await bob.page.locator('#your-boundaries').innerText(), 'aekea');
    });
    // The enrollment record on the PDS is re-attested by the service and verifies.
    await eventually(alice.page, 'alice PDS record verified', async () => {
      assert.match(await alice.page.locator('#pds-record').innerText(), /attestation signature verified/);
    });
    // Only held boundaries can be picked.
    const options = await alice.page.locator('#boundary option').evaluateAll((o) => o.map((x) => x.value));
    assert.deepEqual(options, [SWORDSMITH]);
    await shot(alice.page, '04-enrolled');

    // 2. Posts: private into each one's boundary, and public ones.
    await post(alice.page, 'alice: forging plans (swordsmith only)', { boundary: SWORDSMITH });
    await post(alice.page, 'alice: hello, everyone');
    await post(bob.page, 'bob: aekea meeting notes', { boundary: AEKEA });
    await post(bob.page, 'bob: public hello');
    await shot(alice.page, '05-posted');

    // 3. alice sees her private post with its boundary, bob's as "private" without content.
    await eventually(alice.page, 'alice feed', async () => {
      const items = await feed(alice.page);
      const mine = find(items, 'alice: forging plans (swordsmith only)');
      assert.ok(mine, 'alice sees her private post');
      assert.equal(mine.visibility, 'private');
      assert.deepEqual(mine.boundaries, ['swordsmith']);
      assert.equal(find(items, 'bob: public hello')?.visibility, 'public');
      assert.ok(find(items, 'alice: hello, everyone'));
      const hidden = items.filter((i) => i.visibility === 'hidden');
      assert.equal(hidden.length, 1, `one hidden post (bob's): ${JSON.stringify(items)}`);
      assert.equal(hidden[0].author, '@bob.test');
      assert.ok(!items.some((i) => i.text.includes('aekea meeting')), 'bob\'s content never shows');
    });
    await shot(alice.page, '06-alice-feed');
    await eventually(bob.page, 'bob feed', async () => {
      const items = await feed(bob.page);
      assert.equal(find(items, 'bob: aekea meeting notes')?.visibility, 'private');
      assert.ok(!items.some((i) => i.text.includes('forging')), 'alice\'s content never shows');
      const hidden = items.filter((i) => i.visibility === 'hidden');
      assert.equal(hidden.length, 1);
      assert.equal(hidden[0].author, '@alice.test');
    });
    await shot(bob.page, '07-bob-feed');

    // 4. carol signs in without enrolling: public posts, and both private posts as stubs.
    const carol = await signIn(browser, accounts.carol);
    assert.equal(await carol.page.locator('#service-status').innerText(), 'Not enrolled');
    assert.equal(await carol.page.locator('#private').count(), 0, 'no private option');
    await eventually(carol.page, 'carol feed', async () => {
      const items = await feed(carol.page);
      assert.equal(find(items, 'alice: hello, everyone')?.visibility, 'public');
      assert.equal(find(items, 'bob: public hello')?.visibility, 'public');
      const hidden = items.filter((i) => i.visibility === 'hidden');
      assert.equal(hidden.length, 2, JSON.stringify(items));
      assert.ok(!items.some((i) => i.text.includes('forging') || i.text.includes('aekea meeting')));
    });
    await shot(carol.page, '08-carol-feed');
    // carol's public post reaches the others.
    await post(carol.page, 'carol: just looking around');

    // 5. A reply from alice to her private post stays private, in her boundary, under it.
    const privUri = (await feed(alice.page)).find((i) => i.text.startsWith('alice: forging')).uri;
    await alice.page.goto(`${WEBAPP}/?reply=${encodeURIComponent(privUri)}`);
    assert.match(await alice.page.locator('#replying').innerText(), /Replying to @alice\.test/);
    await alice.page.getByLabel('Text').fill('alice: the blade needs a week');
    await alice.page.getByRole('button', { name: 'Post', exact: true }).click();
    await alice.page.locator('.notice').waitFor();
    await eventually(alice.page, 'alice reply', async () => {
      const items = await feed(alice.page);
      const reply = find(items, 'alice: the blade needs a week');
      assert.ok(reply, 'the reply shows');
      assert.equal(reply.visibility, 'private');
      assert.deepEqual(reply.boundaries, ['swordsmith']);
      const article = alice.page.locator(`article[data-uri="${reply.uri}"]`);
      assert.match(await article.getAttribute('class'), /depth-1/);
      assert.ok(find(items, 'carol: just looking around'));
    });

    // 6. Delete: alice's private reply leaves her feed (Stratos, then the index), and her
    //    public post goes (the PDS).
    const replyCard = alice.page.locator('article', { hasText: 'alice: the blade needs a week' });
    await replyCard.getByRole('button', { name: /Delete/ }).click();
    await alice.page.locator('.notice').waitFor();
    await eventually(alice.page, 'private reply deleted', async () => {
      assert.equal(find(await feed(alice.page), 'alice: the blade needs a week'), undefined);
    });
    const pub = alice.page.locator('article', { hasText: 'alice: hello, everyone' });
    await pub.getByRole('button', { name: /Delete/ }).click();
    await alice.page.locator('.notice').waitFor();
    assert.equal(await alice.page.locator('.notice').innerText(), 'Deleted.');
    assert.equal(find(await feed(alice.page), 'alice: hello, everyone'), undefined);

    // 7. A boundary tab: alice's swordsmith tab has her private posts and public posts.
    await alice.page.getByRole('link', { name: 'swordsmith' }).click();
    const tab = await feed(alice.page);
    assert.ok(tab.every((i) => i.visibility !== 'hidden'));
    assert.ok(find(tab, 'alice: forging plans (swordsmith only)'));

    // 8. Keyboard: the skip link comes first and shows focus; the composer is reachable.
    await alice.page.goto(WEBAPP);
    await alice.page.keyboard.press('Tab');
    assert.equal(await alice.page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    const outline = await alice.page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'focus is visible');
    await alice.page.getByLabel('Text').focus();
    await alice.page.keyboard.type('typed from the keyboard');
    assert.equal(await alice.page.getByLabel('Text').inputValue(), 'typed from the keyboard');

    // 9. 375 px wide: nothing overflows sideways.
    await alice.page.setViewportSize({ width: 375, height: 812 });
    await alice.page.reload();
    const overflow = await alice.page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(overflow <= 375, `page is ${overflow} px wide at 375`);
    await shot(alice.page, '09-alice-375px');

    // 10. bob leaves the service from the page.
    await bob.page.reload();
    await bob.page.getByRole('button', { name: 'Leave Stratos' }).click();
    await bob.page.locator('.notice').waitFor();
    await eventually(bob.page, 'bob left', async () => {
      assert.equal(await bob.page.locator('#service-status').innerText(), 'Not enrolled');
      assert.ok(!(await feed(bob.page)).some((i) => i.text.includes('aekea meeting')));
    });
    await shot(bob.page, '10-bob-left');

    // 11. A form from another session is refused (CSRF).
    const res = await carol.page.request.post(`${WEBAPP}/post`, {
      form: { csrf: 'not-the-token', text: 'forged' },
      maxRedirects: 0,
    });
    assert.equal(res.status(), 403);

    process.stdout.write('webapp flow: all checks held\n');
  } finally {
    await browser.close();
  }
}

try {
  await main();
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
}
