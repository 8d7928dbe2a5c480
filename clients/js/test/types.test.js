// index.d.ts declares exactly what the entry points export (the types
// themselves are checked by `npm run typecheck`).

import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as node from '../src/node.js';
import * as browser from '../src/browser.js';

const dts = readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8');
const declared = [...dts.matchAll(/^export (?:const|function|class) (\w+)/gm)].map((m) => m[1]).sort();

test('index.d.ts declares every value the Node and browser entries export, and no other', () => {
  assert.deepEqual(Object.keys(node).sort(), declared);
  assert.deepEqual(Object.keys(browser).sort(), declared);
});

test('the declared Client methods exist on both entries', () => {
  const methods = ['send', 'receive', 'stats', 'close', 'on', 'once', 'off', 'addListener', 'removeListener', 'removeAllListeners', 'listenerCount'];
  for (const C of [node.Client, browser.Client]) {
    for (const m of methods) assert.equal(typeof C.prototype[m], 'function', m);
    assert.equal(typeof C.prototype[Symbol.asyncIterator], 'function');
  }
});
