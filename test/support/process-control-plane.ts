// A stand-in control plane for the process driver's crash test: opens the
// driver over argv[2], ensures and starts the spec read from stdin, prints the
// container's info as one JSON line, then idles until it is killed.
import { ProcessDriver } from '../../src/compute/process/driver.ts';
import type { ContainerSpec } from '../../src/core/compute.ts';
import { createLogger } from '../../src/observability/logger.ts';

let input = '';
for await (const chunk of process.stdin) input += String(chunk);
const spec = JSON.parse(input) as ContainerSpec;
const driver = await ProcessDriver.open({ root: process.argv[2]!, log: createLogger('silent'), pollMs: 100 });
await driver.ensure(spec);
const info = await driver.start(spec.name);
process.stdout.write(`${JSON.stringify(info)}\n`);
setInterval(() => undefined, 60_000);
