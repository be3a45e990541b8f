// The OAuth flows in a real browser: login -> consent (screenshot) -> PIN page, then the
// web flow -> redirect with code and state. Prints one JSON line.
// Usage: node consent.mjs URL LOGIN PASSWORD PIN_CLIENT_ID WEB_CLIENT_ID REDIRECT_URI SCREENSHOT
import { launch } from './launch.mjs';

const [url, login, password, pinClient, webClient, redirectUri, screenshot] = process.argv.slice(2);
const browser = await launch();
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  // PIN flow.
  await page.goto(`${url}/login/oauth2?client_id=${pinClient}&state=STATE`);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  const consentText = await page.textContent('body');
  await page.screenshot({ path: screenshot, fullPage: true });
  await Promise.all([page.waitForNavigation(), page.click('button[value=allow]')]);
  const pin = (await page.textContent('#pin')).trim();
  // Web flow: the browser is sent to the product's redirect URI (nothing listens there; the
  // request itself is what we check).
  await page.goto(`${url}/login/oauth2?client_id=${webClient}&state=xyz&redirect_uri=${encodeURIComponent(redirectUri)}`);
  const [request] = await Promise.all([
    page.waitForRequest((r) => r.url().startsWith(redirectUri)),
    page.click('button[value=allow]'),
  ]);
  const landed = new URL(request.url());
  console.log(JSON.stringify({
    consent_lists_permissions: consentText.includes('It will be able to'),
    consent_lists_home: consentText.includes('Demo Home'),
    pin,
    code: landed.searchParams.get('code'),
    state: landed.searchParams.get('state'),
  }));
} finally {
  await browser.close();
}
