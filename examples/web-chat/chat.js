// A chat over the hydrogen broker's broadcast application: each message is
// one chat line, {"name": ..., "text": ...} as JSON, sent to every other
// connected client. The page talks to the broker's WebSocket listener with
// the JavaScript client (served at /hydrogen/ by serve.js).

import { connect } from '/hydrogen/browser.js';

const params = new URLSearchParams(location.search);
const url = params.get('ws') ?? `ws://${location.hostname}:8080/`;
const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();

function line(cls, name, text) {
  const li = document.createElement('li');
  li.className = cls;
  if (name) {
    const b = document.createElement('b');
    b.textContent = name;
    li.append(b);
  }
  li.append(text);
  $('lines').append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

function status(text, up) {
  $('status').textContent = text;
  $('status').className = `status ${up ? 'up' : 'down'}`;
}

$('name').value = params.get('name') ?? localStorage.getItem('hydrogen-chat-name') ?? `guest-${Math.floor(Math.random() * 1000)}`;

let client;
try {
  client = await connect(url);
  status(`connected to ${url}`, true);
} catch (e) {
  status(`cannot connect to ${url}: ${e.message}`, false);
  throw e;
}

client.on('message', (payload) => {
  const raw = decoder.decode(payload);
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    msg = null;
  }
  if (msg && typeof msg.text === 'string') line('', typeof msg.name === 'string' ? msg.name : 'someone', msg.text);
  else line('', 'someone', raw); // plain text, or JSON of another shape, from another kind of client
  document.dispatchEvent(new CustomEvent('chat-line'));
});

client.on('close', (reason) => {
  status(`disconnected: ${reason.message}`, false);
  line('note', '', `connection closed (${reason.code})`);
});

$('say').addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  const name = $('name').value.trim() || 'guest';
  if (!text) return;
  localStorage.setItem('hydrogen-chat-name', name);
  try {
    await client.send(JSON.stringify({ name, text }));
    line('mine', name, text); // the broadcast goes to everyone else
    $('text').value = '';
  } catch (err) {
    line('note', '', `not sent: ${err.message}`);
  }
});

// Who is here: the broker's telemetry, over the same connection.
async function people() {
  try {
    const s = await client.stats(0.5);
    $('people').textContent = `${s.numClients} connected`;
  } catch {
    // closed, or the broker refused: the status line says why
  }
}
people();
const timer = setInterval(() => (client.closed ? clearInterval(timer) : people()), 5000);

// screenshot.sh: ?shot=N says the page's picture is ready once N lines
// arrived and it has said hello; until then an image held by serve.js
// keeps the load event (and so chromium's screenshot) waiting.
const shot = Number(params.get('shot') ?? 0);
if (shot > 0) {
  const hold = new Image();
  hold.src = '/hold';
  hold.hidden = true;
  document.body.append(hold);
  let seen = 0;
  document.addEventListener('chat-line', async () => {
    if (++seen !== shot) return;
    $('text').value = 'Hello from the browser!';
    $('say').requestSubmit();
    await people();
    setTimeout(() => fetch('/release'), 100);
  });
}
