// A module customization hook (node --import this file): every module URL the process resolves
// is appended, one per line, to the file named by $MODULES_LOADED_OUT. Tests read it to see what a
// real process loaded (test/integration/serve-footprint.test.ts).
import { register } from 'node:module';

if (process.env.MODULES_LOADED_OUT) register('./modules-loaded-hooks.mjs', import.meta.url, { data: { out: process.env.MODULES_LOADED_OUT } });
