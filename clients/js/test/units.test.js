// Unit tests of the codec and the reply rules; no network.
// Conformance cases: C1 (decoder side), C3 (decoder side), C7 (the rule).

import test from 'node:test';
import assert from 'node:assert/strict';
import { FrameDecoder, encodeFrame, telemetryRequest, isTelemetryRequest, recogniseReply, MAX_PAYLOAD } from '../src/node.js';
import { toStats } from '../src/stats.js';
import { parseAddress, readOptions } from '../src/connect.js';
import { notReplies } from './helpers.js';

const payloads = [new Uint8Array(0), Uint8Array.of(0x01, 0x17, 0x0d, 0x00, 0x17), new Uint8Array(300).map((_, i) => i * 7), Uint8Array.of(0x0d, 0, 0, 0)];
const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));

function decodeAll(chunks, max) {
  const dec = new FrameDecoder(max);
  const got = [];
  for (const c of chunks) dec.feed(c, (p) => got.push(p));
  return { got, dec };
}

test('C1: a stream split at every byte decodes to the same frames', () => {
  for (let k = 0; k <= stream.length; k++) {
    const { got, dec } = decodeAll([stream.subarray(0, k), stream.subarray(k)]);
    assert.deepEqual(got.map((p) => [...p]), payloads.map((p) => [...p]), `split at ${k}`);
    assert.equal(dec.buffered, 0);
  }
  const bytes = [];
  for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
  assert.deepEqual(decodeAll(bytes).got.map((p) => [...p]), payloads.map((p) => [...p]), 'one byte at a time');
});

test('C1: decoded payloads are copies, not views of the chunk', () => {
  const chunk = Buffer.from(encodeFrame(Buffer.from('abc')));
  const { got } = decodeAll([chunk]);
  chunk.fill(0);
  assert.equal(Buffer.from(got[0]).toString(), 'abc');
});

test('C1: a partial frame is reported as buffered', () => {
  const dec = new FrameDecoder();
  dec.feed(stream.subarray(0, 6), () => {});
  assert.ok(dec.buffered > 0);
});

test('C3: bad start, bad end and an over-long length are protocol errors', () => {
  const cases = [
    ['bad start', Buffer.from([0x17, 0, 1, 0x78, 0x17]), /bad start byte 0x17 at byte 6/],
    ['bad end', Buffer.from([0x01, 0, 1, 0x78, 0x18]), /bad end byte 0x18 at byte 10/],
    ['bad end of an empty frame', Buffer.from([0x01, 0, 0, 0x01]), /bad end byte 0x01 at byte 9/],
  ];
  for (const [name, raw, re] of cases) {
    for (let k = 0; k <= raw.length; k++) {
      const dec = new FrameDecoder();
      const got = [];
      assert.throws(() => { dec.feed(Buffer.concat([Buffer.from(encodeFrame(Buffer.from('ok'))), raw.subarray(0, k)]), (p) => got.push(p)); dec.feed(raw.subarray(k), (p) => got.push(p)); },
        (e) => e.code === 'PROTOCOL' && re.test(e.message), `${name} split at ${k}`);
      assert.equal(got.length, 1, 'the good frame before it is delivered');
      assert.throws(() => dec.feed(Buffer.from([1]), () => {}), { code: 'PROTOCOL' }, 'stays failed');
    }
  }
  const dec = new FrameDecoder(10);
  assert.throws(() => dec.feed(Buffer.from([0x01, 0, 11]), () => {}), (e) => e.code === 'PROTOCOL' && /11 payload bytes, over the maximum of 10/.test(e.message));
  assert.throws(() => new FrameDecoder(MAX_PAYLOAD + 1), { code: 'INVALID_ARGUMENT' });
});

test('the telemetry request is 0x0D and a big-endian float32', () => {
  assert.deepEqual([...telemetryRequest(1)], [0x0d, 0x3f, 0x80, 0, 0]);
  assert.deepEqual([...telemetryRequest(0.5)], [0x0d, 0x3f, 0x00, 0, 0]);
  assert.ok(isTelemetryRequest(telemetryRequest(2)));
  assert.ok(!isTelemetryRequest(Uint8Array.of(0x0d, 0, 0, 0)));
  assert.ok(!isTelemetryRequest(Uint8Array.of(0x0d, 0, 0, 0, 0, 0)));
});

test('C7: the recognition rule takes replies and refusals, nothing else', () => {
  for (const s of notReplies) assert.equal(recogniseReply(Buffer.from(s, s.startsWith('\xff') ? 'latin1' : 'utf8')), undefined, s);
  assert.ok(recogniseReply(Buffer.from('{"up_time":1}')));
  assert.ok(recogniseReply(Buffer.from(' {"error" : "too many"} ')));
  assert.equal(recogniseReply(Buffer.from([0xff, 0x7b])), undefined);
});

export const reply = '{"up_time":42,"bytes_recv":1000,"bytes_sent":2000,"msg_recv":10,"msg_sent":20,"num_clients":3,'
  + '"resources":{"ram":{"bytes_used":1024,"bytes_available":4096},"cpu_overall":0.5,'
  + '"cpu_per_core":[{"core":0,"using":0.75},{"core":1,"using":0.25}]},'
  + '"process":{"rss_bytes":12345,"goroutines":7},"protocol_errors":2}';

test('C6: a reply becomes typed Stats with extras kept', () => {
  const s = toStats(JSON.parse(reply), reply);
  assert.deepEqual(s, {
    upTime: 42, bytesRecv: 1000, bytesSent: 2000, msgRecv: 10, msgSent: 20, numClients: 3,
    resources: { ram: { bytesUsed: 1024, bytesAvailable: 4096 }, cpuOverall: 0.5, cpuPerCore: [{ core: 0, using: 0.75 }, { core: 1, using: 0.25 }] },
    extra: { process: { rss_bytes: 12345, goroutines: 7 }, protocol_errors: 2 },
    raw: reply,
  });
});

test('C6: a reply missing a field or with a wrong type is BAD_REPLY', () => {
  const base = JSON.parse(reply);
  const mutations = [
    ['up_time missing', (o) => { delete o.up_time; o.x = 1; }, /up_time is missing/],
    ['msg_recv a string', (o) => { o.msg_recv = '10'; }, /msg_recv is "10"/],
    ['bytes_sent fractional', (o) => { o.bytes_sent = 1.5; }, /bytes_sent is 1.5/],
    ['num_clients negative', (o) => { o.num_clients = -1; }, /num_clients/],
    ['num_clients null', (o) => { o.num_clients = null; }, /num_clients is null/],
    ['resources an array', (o) => { o.resources = []; }, /resources is \[\]/],
    ['ram missing', (o) => { delete o.resources.ram; }, /resources.ram is missing/],
    ['bytes_used missing', (o) => { delete o.resources.ram.bytes_used; }, /resources.ram.bytes_used/],
    ['cpu_overall a string', (o) => { o.resources.cpu_overall = '0.5'; }, /cpu_overall/],
    ['cpu_per_core an object', (o) => { o.resources.cpu_per_core = {}; }, /cpu_per_core is \{\}/],
    ['core entry not an object', (o) => { o.resources.cpu_per_core[1] = 3; }, /cpu_per_core\[1\] is 3/],
    ['core index fractional', (o) => { o.resources.cpu_per_core[0].core = 0.5; }, /cpu_per_core\[0\].core/],
    ['using missing', (o) => { delete o.resources.cpu_per_core[0].using; }, /cpu_per_core\[0\].using is missing/],
  ];
  for (const [name, mutate, re] of mutations) {
    const o = structuredClone(base);
    mutate(o);
    if (!('up_time' in o)) continue; // no longer a reply at all: recogniseReply passes it on
    assert.throws(() => toStats(o, JSON.stringify(o)), (e) => e.code === 'BAD_REPLY' && re.test(e.message), name);
  }
  assert.throws(() => toStats({ error: 'span 0 is outside (0, 60]' }, ''), (e) => e.code === 'BROKER_REFUSED' && e.reason === 'span 0 is outside (0, 60]');
});

test('C18: addresses and options are checked', () => {
  assert.deepEqual(parseAddress('127.0.0.1:1337'), { kind: 'tcp', host: '127.0.0.1', port: 1337 });
  assert.deepEqual(parseAddress('[::1]:1337'), { kind: 'tcp', host: '::1', port: 1337 });
  assert.deepEqual(parseAddress('tls://example.com:443'), { kind: 'tls', host: 'example.com', port: 443 });
  assert.deepEqual(parseAddress({ host: 'h', port: 1 }), { kind: 'tcp', host: 'h', port: 1 });
  assert.equal(parseAddress('ws://127.0.0.1:8080/x').url, 'ws://127.0.0.1:8080/x');
  for (const bad of ['', 'nohost', 'h:0', 'h:65536', 'h:x', 'http://h:1', 'ws://', 42, null, { host: '', port: 1 }, { host: 'h', port: 1.5 }]) {
    assert.throws(() => parseAddress(bad), { code: 'INVALID_ARGUMENT' }, JSON.stringify(bad));
  }
  for (const bad of [{ timeout: 0 }, { timeout: -1 }, { timeout: 'x' }, { maxPayload: 65536 }, { recvBuffer: 0 }, { credential: '' },
    { credential: 'x'.repeat(65536) }, { credential: '\rabcd' }, { credential: 7 }, { tls: 'yes' }, { credentials: 'typo' }, 'x']) {
    assert.throws(() => readOptions(bad), { code: 'INVALID_ARGUMENT' }, JSON.stringify(bad));
  }
});
