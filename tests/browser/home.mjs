// The home app in a real browser: sign in, the demo home live, a write from the dial, a change
// made elsewhere, a rule's refusal, screenshots at desktop and phone width. Prints one JSON line.
// Usage: node home.mjs URL LOGIN PASSWORD TOKEN THERMOSTAT_ID ARTIFACTS_DIR PROTECT_TOKEN PROTECT_ID
import { launch } from './launch.mjs';

const [url, login, password, token, tid, artifacts, protectToken, protectId] = process.argv.slice(2);
const browser = await launch();
const shown = (sel, prefix) => (el) => el && el.textContent.startsWith(prefix);
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The refused write's 400 is expected; anything else logged as an error is not.
  page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('status of 400')) errors.push(m.text()); });
  await page.goto(`${url}/home`);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  const signedIn = Date.now();
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const target = `[data-target="${tid}"]`;
  await page.waitForSelector(target);
  const interactiveMs = Date.now() - signedIn;
  const first = (await page.textContent(target)).trim();
  const homeText = await page.textContent('#homes');

  // The dial: raise the target by one step; the page shows what was stored.
  await page.click(`article:has(${target}) button[aria-label^="Raise the target"]`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith('69'), target);
  const raised = (await page.textContent(target)).trim();

  // By keyboard: Tab to the other thermostat's + and press Enter; the stored value changes
  // and, after the page redraws, the focus is still on that button.
  const other = await page.$$eval('[data-target]', (els, tid) => els.map((e) => e.dataset.target).find((t) => t !== tid), tid);
  const otherRaise = `article:has([data-target="${other}"]) button[aria-label^="Raise the target"]`;
  await page.focus(`article:has([data-target="${other}"]) button[aria-label^="Lower the target"]`);
  await page.keyboard.press('Tab');
  const tabbedTo = await page.evaluate(() => document.activeElement.getAttribute('aria-label'));
  const otherBefore = parseInt(await page.textContent(`[data-target="${other}"]`), 10);
  await page.keyboard.press('Enter');
  await page.waitForFunction(([sel, want]) => document.querySelector(sel)?.textContent.startsWith(String(want)),
    [`[data-target="${other}"]`, otherBefore + 1]);
  const keyboard = {
    tabbed_to: tabbedTo,
    before: otherBefore,
    after: parseInt(await page.textContent(`[data-target="${other}"]`), 10),
    focus_kept: await page.evaluate((sel) => document.activeElement === document.querySelector(sel), otherRaise),
  };

  // A change made elsewhere (as curl would, with the demo token) appears without a reload.
  const before = Date.now();
  const put = await context.request.put(`${url}/devices/thermostats/${tid}`, {
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    data: JSON.stringify({ target_temperature_f: 72 }),
  });
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith('72'), target);
  const elsewhereMs = Date.now() - before;

  // A refused write: the rule's own message next to the control, the control back to the stored mode.
  const modeBefore = await page.$eval(`[data-mode="${tid}"]`, (e) => e.value);
  await page.selectOption(`[data-mode="${tid}"]`, 'cool');
  const refusal = `[data-refusal="t:${tid}"]`;
  await page.waitForFunction((sel) => (document.querySelector(sel)?.textContent || '').length > 0, refusal);
  const refused = (await page.textContent(refusal)).trim();
  const modeAfter = await page.$eval(`[data-mode="${tid}"]`, (e) => e.value);

  // The device side raises an alarm (the Protect's own credential): it cannot be missed.
  const alarmAt = Date.now();
  const alarmPut = await context.request.put(`${url}/devices/smoke_co_alarms/${protectId}`, {
    headers: { Authorization: `Bearer ${protectToken}`, 'Content-Type': 'application/json' },
    data: JSON.stringify({ smoke_alarm_state: 'emergency' }),
  });
  await page.waitForSelector('p.alarm[role=alert]');
  const alarmMs = Date.now() - alarmAt;
  const alarm = (await page.textContent('p.alarm[role=alert]')).trim();
  await page.screenshot({ path: `${artifacts}/home-alarm.png` });
  await context.request.put(`${url}/devices/smoke_co_alarms/${protectId}`, {
    headers: { Authorization: `Bearer ${protectToken}`, 'Content-Type': 'application/json' },
    data: JSON.stringify({ smoke_alarm_state: 'ok' }),
  });
  await page.waitForSelector('p.alarm[role=alert]', { state: 'detached' });

  // The history: the newest change first (the alarm's clearing, by the device).
  await page.click('button:has-text("Show history")');
  await page.waitForSelector('ol.history li');
  const historyFirst = (await page.textContent('ol.history li')).trim();
  const historyText = await page.textContent('ol.history');

  await page.screenshot({ path: `${artifacts}/home-desktop.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${artifacts}/home-phone.png`, fullPage: true });
  const bytes = await page.evaluate(() => performance.getEntriesByType('navigation')
    .concat(performance.getEntriesByType('resource'))
    .reduce((sum, e) => sum + (e.transferSize || 0), 0));
  const products = (await page.textContent('#products')).trim();

  // Signing out ends the session and revokes the page's own token.
  const appToken = await page.$eval('#home', (e) => e.dataset.token);
  const liveBefore = (await context.request.get(`${url}/metadata`, { headers: { Authorization: `Bearer ${appToken}` } })).status();
  await Promise.all([page.waitForNavigation(), page.click('nav button:has-text("Sign out")')]);
  const signedOutPage = await page.isVisible('input[name=login]');
  const liveAfter = (await context.request.get(`${url}/metadata`, { headers: { Authorization: `Bearer ${appToken}` } })).status();
  console.log(JSON.stringify({
    first, raised, put_status: put.status(), elapsed_elsewhere_ms: elsewhereMs,
    lists_home: homeText.includes('Demo Home'), mode_before: modeBefore, refused, mode_after: modeAfter,
    errors, transferred_bytes: bytes, interactive_ms: interactiveMs, history_first: historyFirst,
    keyboard, products, token_before_sign_out: liveBefore, token_after_sign_out: liveAfter, signed_out_page: signedOutPage,
    alarm_status: alarmPut.status(), alarm, alarm_ms: alarmMs, history_text: historyText,
  }));
} finally {
  await browser.close();
}
