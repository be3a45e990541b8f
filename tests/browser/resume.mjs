// The home app across a server restart: signed in and live, it prints READY; the test
// restarts the server on the same address and writes a new target; the page, never
// reloaded, reconnects its stream by itself and shows it. Prints one JSON line.
// Usage: node resume.mjs URL LOGIN PASSWORD THERMOSTAT_ID
import { launch } from './launch.mjs';

const [url, login, password, tid] = process.argv.slice(2);
const browser = await launch();
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const statuses = new Set();
  await page.exposeFunction('sawStatus', (s) => statuses.add(s));
  await page.goto(`${url}/home`);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const target = `[data-target="${tid}"]`;
  await page.waitForSelector(target);
  await page.evaluate(() => {
    window.stillTheSamePage = true;
    const s = document.getElementById('status');
    new MutationObserver(() => window.sawStatus(s.textContent)).observe(s, { childList: true, characterData: true, subtree: true });
  });
  const before = (await page.textContent(target)).trim();
  console.log('READY');
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent.startsWith('75'), target, { timeout: 60000 });
  console.log(JSON.stringify({ before, after: (await page.textContent(target)).trim(), statuses: [...statuses],
    reloaded: await page.evaluate(() => window.stillTheSamePage !== true) }));
} finally {
  await browser.close();
}
