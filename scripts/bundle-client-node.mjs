// Part of `npm run build`, after tsc: replaces DIST/kube/client-node.js (tsc's re-export of the
// @kubernetes/client-node names rollguard uses, src/kube/client-node.ts) with one file bundled
// from it by esbuild, tree-shaken to what those names reach. The library's own entry loads every
// generated API and model it has, and V8 keeps each module's source text in the heap: about 40 MB
// of RSS for a process that uses six of its classes (docs/benchmarks.md, "Footprint").
//
//   node scripts/bundle-client-node.mjs [DIST]     (DIST: default dist)
//
// Run again on a bundle already made (tsc did not emit the module again), it leaves it as it is.
// Identifiers are kept (only whitespace and syntax are minified), so the library's stack frames
// and error names read as in the library; its licence comments are kept at the end of the file.
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const MARK = '// rollguard: @kubernetes/client-node bundled by scripts/bundle-client-node.mjs';
const dist = resolve(process.argv[2] ?? 'dist');
const file = join(dist, 'kube', 'client-node.js');

let text;
try {
  text = readFileSync(file, 'utf8');
} catch (err) {
  console.error(`bundle-client-node: ${file} is missing (run tsc -p tsconfig.build.json first): ${err.message}`);
  process.exit(1);
}
if (text.startsWith(MARK)) process.exit(0);
if (!/from '@kubernetes\/client-node'/.test(text)) {
  console.error(`bundle-client-node: ${file} does not re-export @kubernetes/client-node; it is not tsc's output of src/kube/client-node.ts`);
  process.exit(1);
}

await build({
  entryPoints: [file],
  outfile: file,
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'eof',
  // the library's CommonJS dependencies call require(): an ES module has none, so one is made
  banner: { js: `${MARK}\nimport { createRequire as __rollguardCreateRequire } from 'node:module';\nconst require = __rollguardCreateRequire(import.meta.url);` },
  logLevel: 'warning',
});
// tsc's source map was of the re-export: nothing points to it any more
rmSync(`${file}.map`, { force: true });
console.error(`bundle-client-node: ${file} (${Math.round(statSync(file).size / 1024)} KiB)`);
