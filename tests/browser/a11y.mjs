// axe-core on every page a person sees: the sign-in form, the home app, connected products,
// developer, the API reference, the consent page and the PIN page. Prints one JSON line:
// each page's serious or critical violations. The pages' CSP is bypassed in this context
// only so that axe's script can be injected; reference.mjs and home.mjs run with it enforced.
// Each page is also saved as a screenshot at both widths in ARTIFACTS_DIR.
// Usage: node a11y.mjs URL LOGIN PASSWORD PIN_CLIENT_ID ARTIFACTS_DIR
import { createRequire } from 'module';
import { launch } from './launch.mjs';

const require = createRequire(import.meta.url);
const axePath = require.resolve('axe-core/axe.min.js');
const [url, login, password, pinClient, artifacts] = process.argv.slice(2);
const browser = await launch();
const results = {};
async function check(page, name) {
  const file = name.replace(/^\//, '').replace(/[^a-z0-9@-]/gi, '-');
  await page.screenshot({ path: `${artifacts}/page-${file}.png`, fullPage: true });
  await page.addScriptTag({ path: axePath });
  const r = await page.evaluate(async () => await window.axe.run(document));
  results[name] = r.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join('; ')}`);
}
try {
  for (const width of [1280, 390]) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, bypassCSP: true, viewport: { width, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${url}/home`);
    await check(page, `sign-in@${width}`);
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', password);
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    await page.waitForSelector('[data-target]');
    await page.click('button:has-text("Show history")');
    await page.waitForSelector('ol.history li');
    await check(page, `home@${width}`);
    for (const path of ['/connections', '/developer', '/reference']) {
      await page.goto(`${url}${path}`);
      await check(page, `${path}@${width}`);
    }
    await page.goto(`${url}/login/oauth2?client_id=${pinClient}&state=S`);
    await check(page, `consent@${width}`);
    await Promise.all([page.waitForNavigation(), page.click('button[value=allow]')]);
    await check(page, `pin@${width}`);
    await context.close();
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
}
