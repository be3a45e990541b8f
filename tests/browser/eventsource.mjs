// A browser's EventSource against a running Roost: the initial put, a put after a write,
// and resume with ?last_event_id= after a missed change. Prints one JSON line of results.
// Usage: node eventsource.mjs URL TOKEN THERMOSTAT_ID
import { launch } from './launch.mjs';

const [url, token, thermostat] = process.argv.slice(2);
const browser = await launch();
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`${url}/healthz`);
  const result = await page.evaluate(async ({ token, thermostat }) => {
    const path = `/devices/thermostats/${thermostat}`;
    const put = (body) => fetch(`${path}?auth=${token}`, { method: 'PUT', body: JSON.stringify(body) });
    // Resolves with the data of the next n put events of a new EventSource.
    const collect = (src, n) => new Promise((resolve, reject) => {
      const es = new EventSource(src);
      const got = [];
      const timer = setTimeout(() => { es.close(); reject(new Error(`timeout after ${got.length} events`)); }, 10000);
      es.addEventListener('put', (e) => {
        got.push({ id: e.lastEventId, data: JSON.parse(e.data).data });
        if (got.length === n) { clearTimeout(timer); es.close(); resolve(got); }
      });
    });
    const live = collect(`${path}?auth=${token}`, 2);
    await new Promise((r) => setTimeout(r, 300));
    await put({ target_temperature_f: 72 });
    const [first, second] = await live;
    // Missed while away: one change; resume from the last id gets exactly it.
    await put({ target_temperature_f: 73 });
    const [resumed] = await collect(`${path}?auth=${token}&last_event_id=${encodeURIComponent(second.id)}`, 1);
    return {
      first: first.data.target_temperature_f,
      second: second.data.target_temperature_f,
      resumed: resumed.data.target_temperature_f,
      ids_increase: first.id < second.id || first.id.length < second.id.length,
    };
  }, { token, thermostat });
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
