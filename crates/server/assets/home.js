// The home app: one stream of the signed-in user's whole document, rendered as it changes;
// writes go through the same data API (and rules) as any product's. No framework: the DOM is
// built with textContent only, so nothing from the document is ever parsed as HTML.
const root = document.getElementById('home');
const token = root.dataset.token;
const status = document.getElementById('status');
const homes = document.getElementById('homes');
let doc = null;
// A refused write's message, per control, until the next write of that control.
const refusals = new Map();

const MODES = ['heat', 'cool', 'heat-cool', 'eco', 'off'];

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k.startsWith('data-')) e.dataset[k.slice(5)] = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

async function write(path, body, key) {
  refusals.delete(key);
  let message = null;
  try {
    const r = await fetch(path, {
      method: 'PUT',
      headers: { 'Authorization': `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!r.ok) {
      const e = await r.json().catch(() => ({}));
      message = e.message || e.error || `The write was refused (${r.status}).`;
    }
  } catch (e) {
    message = 'Roost could not be reached; nothing was changed.';
  }
  if (message) refusals.set(key, message);
  // The stored value stays on screen; the stream brings the new one when a write lands.
  render();
}

function refusal(key) {
  const m = refusals.get(key);
  return el('p', { class: 'refused', role: 'alert', 'data-refusal': key }, m || '');
}

function thermostat(t) {
  const s = (t.temperature_scale || 'F').toLowerCase();
  const step = s === 'f' ? 1 : 0.5;
  const unit = `°${s.toUpperCase()}`;
  const name = t.name_long || t.name || t.device_id;
  const key = `t:${t.device_id}`;
  const path = `/devices/thermostats/${t.device_id}`;
  const state = t.hvac_state === 'heating' ? 'heating' : t.hvac_state === 'cooling' ? 'cooling' : '';
  const dial = el('div', { class: 'dial' });
  if (t.hvac_mode === 'heat-cool') {
    for (const end of ['low', 'high']) {
      const field = `target_temperature_${end}_${s}`;
      const v = t[field];
      dial.append(
        el('button', { 'aria-label': `Lower the ${end} end of ${name}`, 'data-key': `${key}:${end}:-`,
          onclick: () => write(path, { [field]: v - step }, key) }, '−'),
        el('span', { class: `target ${state}`, 'data-target': `${t.device_id}:${end}` }, `${v}${unit}`),
        el('button', { 'aria-label': `Raise the ${end} end of ${name}`, 'data-key': `${key}:${end}:+`,
          onclick: () => write(path, { [field]: v + step }, key) }, '+'));
    }
  } else {
    const field = `target_temperature_${s}`;
    const v = t[field];
    dial.append(
      el('button', { 'aria-label': `Lower the target of ${name}`, 'data-key': `${key}:-`,
        onclick: () => write(path, { [field]: v - step }, key) }, '−'),
      el('span', { class: `target ${state}`, 'data-target': t.device_id, 'aria-live': 'polite' }, `${v}${unit}`),
      el('button', { 'aria-label': `Raise the target of ${name}`, 'data-key': `${key}:+`,
        onclick: () => write(path, { [field]: v + step }, key) }, '+'));
  }
  const mode = el('select', { 'aria-label': `Mode of ${name}`, 'data-key': `${key}:mode`, 'data-mode': t.device_id,
    onchange: (e) => write(path, { hvac_mode: e.target.value }, key) });
  for (const m of MODES) mode.append(el('option', { value: m }, m));
  if (!MODES.includes(t.hvac_mode)) mode.append(el('option', { value: t.hvac_mode }, t.hvac_mode));
  mode.value = t.hvac_mode;
  dial.append(mode);
  const facts = [
    t.sync_state === 'pending' ? 'waiting for the device to apply the change' : null,
    `${t[`ambient_temperature_${s}`]}${unit} inside`,
    t.humidity !== undefined ? `humidity ${t.humidity} %` : null,
    state ? state : 'idle',
    t.is_using_emergency_heat ? 'emergency heat on' : null,
    t.fan_timer_active ? 'fan running' : null,
  ].filter(Boolean).join(' · ');
  return el('article', { class: 'device', 'aria-label': name },
    el('h3', {}, name, t.is_online === false ? el('span', { class: 'offline' }, ' — offline') : null),
    dial,
    el('p', { class: 'facts' }, facts),
    refusal(key));
}

function protect(p) {
  const name = p.name_long || p.name || p.device_id;
  return el('article', { class: 'device', 'aria-label': name },
    el('h3', {}, name, p.is_online === false ? el('span', { class: 'offline' }, ' — offline') : null),
    el('p', { class: 'facts' }, `smoke ${p.smoke_alarm_state} · CO ${p.co_alarm_state} · battery ${p.battery_health}`));
}

function camera(c) {
  const name = c.name_long || c.name || c.device_id;
  const last = c.last_event && c.last_event.start_time ? ` · last event ${c.last_event.start_time}` : '';
  return el('article', { class: 'device', 'aria-label': name },
    el('h3', {}, name),
    el('p', { class: 'facts' }, `${c.is_streaming ? 'streaming' : 'not streaming'}${last}`));
}

// History of a home, fetched when asked for: who changed what, newest first, a page at a time.
const histories = new Map();
const BOOKKEEPING = new Set(['intended_version', 'applied_version', 'sync_state']);

function byWhom(by) {
  switch (by.kind) {
    case 'user': return 'You';
    case 'product': return by.name || 'A product';
    case 'device': return 'The device';
    case 'service': return `Roost (${by.name})`;
    case 'operator': return 'The operator';
    default: return by.name || 'Someone';
  }
}

function leaves(value, path, out) {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) leaves(v, path.concat(k), out);
  } else if (!BOOKKEEPING.has(path[path.length - 1])) {
    out.push(`${path[path.length - 1]} ${JSON.stringify(value)}`);
  }
  return out;
}

function describe(entry) {
  if (entry.paths.length === 1 && entry.paths[0] === '/') return 'created the home';
  const set = leaves(entry.set, [], []);
  return set.length > 8 ? `${set.slice(0, 8).join(', ')} and ${set.length - 8} more` : set.join(', ');
}

async function loadHistory(sid, before) {
  const h = histories.get(sid) || { entries: [], next: null, error: null };
  const query = before ? `?limit=20&before=${before}` : '?limit=20';
  try {
    const r = await fetch(`/history/${encodeURIComponent(sid)}${query}`, { headers: { 'Authorization': `Bearer ${token}` } });
    const page = await r.json();
    if (!r.ok) throw new Error(page.message || r.statusText);
    h.entries = before ? h.entries.concat(page.entries) : page.entries;
    h.next = page.next_before;
    h.error = null;
  } catch (e) {
    h.error = `The history could not be read: ${e.message}`;
  }
  histories.set(sid, h);
  render();
}

function history(sid) {
  const h = histories.get(sid);
  if (!h) {
    return el('button', { 'data-key': `h:${sid}`, onclick: () => loadHistory(sid, null) }, 'Show history');
  }
  const list = el('ol', { class: 'history', 'aria-label': 'History' },
    ...h.entries.map((e) => el('li', { 'data-revision': e.revision },
      el('time', { datetime: e.at }, new Date(e.at).toLocaleString()), ' · ', byWhom(e.by), ': ', describe(e))));
  return el('div', {},
    el('h3', {}, 'History'),
    list,
    h.error ? el('p', { class: 'refused', role: 'alert' }, h.error) : null,
    el('button', { 'data-key': `h:${sid}:refresh`, onclick: () => loadHistory(sid, null) }, 'Refresh'),
    h.next ? el('button', { 'data-key': `h:${sid}:older`, onclick: () => loadHistory(sid, h.next) }, 'Older') : null);
}

function render() {
  if (!doc) return;
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  const devices = doc.devices || {};
  const of = (kind, sid) => Object.values(devices[kind] || {})
    .filter((d) => d.structure_id === sid)
    .sort((a, b) => String(a.name_long || a.name).localeCompare(String(b.name_long || b.name)));
  homes.replaceChildren();
  for (const [sid, st] of Object.entries(doc.structures || {})) {
    const alarms = of('smoke_co_alarms', sid).filter((p) => p.smoke_alarm_state !== 'ok' || p.co_alarm_state !== 'ok');
    const section = el('section', { class: 'home', 'aria-label': st.name || sid },
      el('h2', {}, st.name || sid),
      ...alarms.map((p) => el('p', { class: 'alarm', role: 'alert' },
        `${p.smoke_alarm_state !== 'ok' ? 'SMOKE' : 'CARBON MONOXIDE'} (${p.smoke_alarm_state !== 'ok' ? p.smoke_alarm_state : p.co_alarm_state}) — ${p.name_long || p.name}`)),
      el('p', { class: 'facts' }, `${st.away === 'home' ? 'Home' : st.away === 'away' ? 'Away' : st.away}` +
        (st.eta && st.eta.estimated_arrival_window_begin ? ` · someone arriving from ${st.eta.estimated_arrival_window_begin}` : '') +
        (st.wwn_security_state ? ` · security ${st.wwn_security_state}` : '')),
      ...of('thermostats', sid).map(thermostat),
      ...of('smoke_co_alarms', sid).map(protect),
      ...of('cameras', sid).map(camera),
      history(sid));
    homes.append(section);
  }
  if (focused) {
    const again = homes.querySelector(`[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

function connect() {
  // EventSource reconnects by itself, sending Last-Event-ID: the server resumes from there.
  const events = new EventSource(`/?auth=${encodeURIComponent(token)}`);
  events.addEventListener('put', (e) => {
    doc = JSON.parse(e.data).data;
    status.textContent = 'Live';
    render();
  });
  events.addEventListener('auth_revoked', () => {
    events.close();
    status.textContent = 'Signed out. Reload the page to sign in again.';
  });
  events.onerror = () => { status.textContent = 'Reconnecting…'; };
}

connect();
