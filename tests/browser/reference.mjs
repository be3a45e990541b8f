// The API reference in a real browser (its CSP enforced): a PUT, a GET and a stream tried
// from the page with a token, and the document browsed as a tree; screenshots at desktop
// and phone width. Prints one JSON line.
// Usage: node reference.mjs URL TOKEN THERMOSTAT_PATH ARTIFACTS_DIR
import { launch } from './launch.mjs';

const [url, token, thermostat, artifacts] = process.argv.slice(2);
const browser = await launch();
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${url}/reference`);
  const fields = await page.$$eval('[data-field]', (rows) => rows.map((r) => r.dataset.field));
  await page.fill('#token', token);
  await page.fill('#location', thermostat);
  await page.fill('#body', '{"target_temperature_f": 70}');
  await page.click('#put');
  await page.waitForFunction(() => document.getElementById('answer-status').textContent.includes('→'));
  const putStatus = await page.textContent('#answer-status');
  const putAnswer = JSON.parse(await page.textContent('#answer'));
  await page.fill('#location', `${thermostat}/target_temperature_f`);
  await page.click('#get');
  await page.waitForFunction(() => document.getElementById('answer-status').textContent.startsWith('GET'));
  const got = JSON.parse(await page.textContent('#answer'));
  await page.fill('#location', thermostat);
  await page.click('#stream');
  await page.waitForFunction(() => document.getElementById('answer').textContent.includes('event: put'));
  const streamed = (await page.textContent('#answer')).includes('"target_temperature_f":70');
  await page.click('#tree');
  await page.waitForSelector('#tree-view details');
  const tree = (await page.textContent('#tree-view')).includes('thermostats');
  await page.screenshot({ path: `${artifacts}/reference-desktop.png` });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${artifacts}/reference-phone.png` });
  console.log(JSON.stringify({ fields, put_status: putStatus, put_answer: putAnswer, got, streamed, tree, errors }));
} finally {
  await browser.close();
}
