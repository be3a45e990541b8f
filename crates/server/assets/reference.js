// The API reference's "Try it": GET, PUT and stream any location with the token typed in,
// and browse the live document as a tree. Answers are shown as text, never parsed as HTML.
const $ = (id) => document.getElementById(id);
const answer = $('answer');
const status = $('answer-status');
let stream = null;

function token() { return $('token').value.trim(); }
function location_() {
  const l = $('location').value.trim() || '/';
  return l.startsWith('/') ? l : `/${l}`;
}

async function call(method) {
  if (stream) { stream.close(); stream = null; }
  const init = { method, headers: { 'Authorization': `Bearer ${token()}` } };
  if (method === 'PUT') {
    init.headers['Content-Type'] = 'application/json';
    init.body = $('body').value;
  }
  try {
    const r = await fetch(location_(), init);
    const text = await r.text();
    status.textContent = `${method} ${location_()} → ${r.status}`;
    try { answer.textContent = JSON.stringify(JSON.parse(text), null, 2); } catch { answer.textContent = text; }
  } catch (e) {
    status.textContent = `${method} failed: ${e.message}`;
  }
}

function openStream() {
  if (stream) stream.close();
  answer.textContent = '';
  stream = new EventSource(`${location_()}?auth=${encodeURIComponent(token())}`);
  status.textContent = `Stream of ${location_()}: connecting…`;
  const show = (name) => (e) => {
    status.textContent = `Stream of ${location_()}: ${name}`;
    answer.textContent = `event: ${name}\nid: ${e.lastEventId}\ndata: ${e.data}\n\n` + answer.textContent.slice(0, 20000);
  };
  for (const name of ['put', 'patch', 'keep-alive', 'auth_revoked', 'resync', 'error']) {
    stream.addEventListener(name, show(name));
  }
}

function node(name, value, path) {
  if (value && typeof value === 'object') {
    const d = document.createElement('details');
    const s = document.createElement('summary');
    s.textContent = name;
    d.append(s);
    for (const [k, v] of Object.entries(value)) d.append(node(k, v, `${path}/${k}`));
    return d;
  }
  const leaf = document.createElement('div');
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = `${name}: ${JSON.stringify(value)}`;
  b.className = 'leaf';
  b.addEventListener('click', () => { $('location').value = path; });
  leaf.append(b);
  return leaf;
}

async function browse() {
  const r = await fetch('/', { headers: { 'Authorization': `Bearer ${token()}` } });
  const doc = await r.json();
  status.textContent = `GET / → ${r.status}`;
  $('tree-view').replaceChildren(r.ok ? node('/', doc, '') : document.createTextNode(doc.message || ''));
}

$('get').addEventListener('click', () => call('GET'));
$('put').addEventListener('click', () => call('PUT'));
$('stream').addEventListener('click', openStream);
$('tree').addEventListener('click', browse);
