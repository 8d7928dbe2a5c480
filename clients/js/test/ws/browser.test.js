// The browser transport in headless Chromium: a page (test/ws/page.html)
// connects to the broker over WebSocket, exchanges frames with a TCP
// client driven by this test, and writes its results into the DOM, which
// `chromium --headless --dump-dom` prints. Run with `npm run test:ws`.

import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { connect } from '../../src/node.js';
import { startWsBroker, staticServer, dumpDom, CHROMIUM } from './support.js';

test('chromium is installed', () => {
  const r = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${CHROMIUM} --version failed; scripts/test-clients --ws installs it (apt-get install chromium)`);
});

test('C4/C5/C6/C11/C13/WS in a browser: a page exchanges frames with a TCP client', { timeout: 90000 }, async () => {
  const b = await startWsBroker('--app', 'broadcast');
  const web = await staticServer();
  const tcp = await connect(b.addr);
  try {
    const url = `${web.origin}/test/ws/page.html?ws=${encodeURIComponent(b.ws)}`;
    const dom = dumpDom(url);
    const ready = await tcp.receive({ timeout: 30000 });
    assert.equal(Buffer.from(ready).toString(), 'browser ready');
    await tcp.send('from the tcp client');
    const big = Buffer.from(await tcp.receive({ timeout: 15000 }));
    assert.equal(big.length, 65535, 'the 65,535-byte payload from the browser');
    for (let i = 0; i < big.length; i++) assert.equal(big[i], (i * 7) & 0xff, `byte ${i}`);
    assert.equal(Buffer.from(await tcp.receive({ timeout: 15000 })).toString(), 'from the browser');
    const html = await dom;
    const m = /<pre id="result">([^<]*)<\/pre>/.exec(html);
    assert.ok(m, `no result in the page:\n${html}`);
    const result = JSON.parse(m[1].replace(/&quot;/g, '"').replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
    assert.equal(result.error, undefined, `the page failed: ${result.error}`);
    assert.deepEqual(result.steps, ['tcp refused: INVALID_ARGUMENT', 'connected']);
    assert.equal(result.fromTcp, 'from the tcp client');
    assert.deepEqual(result.stats, { numClients: 2, upTimeIsInteger: true, cores: result.stats.cores });
    assert.ok(result.stats.cores >= 1);
    assert.equal(result.tooLarge, 'PAYLOAD_TOO_LARGE');
    assert.equal(result.closeReason, 'CLOSED');
  } finally {
    await tcp.close();
    await web.close();
    await b.stop();
  }
});
