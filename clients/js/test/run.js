// npm test: builds the broker once (unless HYDROGEN_BROKER names one) and
// runs every test file with node --test against it.

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { brokerBinary } from './helpers.js';

const dir = path.dirname(fileURLToPath(import.meta.url));
const sub = process.argv[2] ?? '.';
const flags = process.argv.slice(3);
const files = readdirSync(path.join(dir, sub)).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join(dir, sub, f));
const env = { ...process.env, HYDROGEN_BROKER: brokerBinary() };
const r = spawnSync(process.execPath, [...flags, '--test', '--test-concurrency=1', ...files], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
