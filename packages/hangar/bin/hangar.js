#!/usr/bin/env node
// Loads TypeScript (Hangar's own source and the app's agents and config) with
// no build step, then hands over to the CLI.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
