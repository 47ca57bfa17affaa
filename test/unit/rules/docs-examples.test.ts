// The complete rule files shown in docs/rules.md load with the rule loader, so the docs cannot rot:
// a ```yaml block whose first line is `# rule file…` is a whole file and must load without an
// error; any other block holding a top-level `rules:` must carry that marker (or it would escape
// the check). Errors are reported at the docs' own line numbers.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { formatRuleError, parseRuleFile } from '../../../src/rules/loader.js';
import { ROOT } from '../../support/serve.js';

const DOC = 'docs/rules.md';
const MARKER = /^# rule file\b/;

interface Block {
  /** the line of the block's first line in the markdown (1-based) */
  line: number;
  text: string;
}

/** The ```yaml blocks of a markdown text. */
function yamlBlocks(md: string): Block[] {
  const blocks: Block[] = [];
  let open: { line: number; lines: string[] } | null = null;
  md.split('\n').forEach((l, i) => {
    if (!open && /^```ya?ml\s*$/.test(l)) open = { line: i + 2, lines: [] };
    else if (open && /^```\s*$/.test(l)) {
      blocks.push({ line: open.line, text: open.lines.join('\n') });
      open = null;
    } else if (open) open.lines.push(l);
  });
  return blocks;
}

/** Loads the marked blocks as rule files, with the markdown's line numbers in the errors. */
function loadExamples(file: string, md: string) {
  return yamlBlocks(md)
    .filter((b) => MARKER.test(b.text))
    .map((b) => ({ ...b, ...parseRuleFile(file, '\n'.repeat(b.line - 1) + b.text) }));
}

t.test(`every complete rule file in ${DOC} loads`, async (t) => {
  const md = readFileSync(join(ROOT, DOC), 'utf8');
  const examples = loadExamples(DOC, md);
  t.ok(examples.length >= 3, `${DOC} shows complete rule files (found ${examples.length})`);
  for (const ex of examples) {
    t.same(ex.errors.map(formatRuleError), [], `the rule file at ${DOC}:${ex.line} loads`);
    t.ok(ex.rules.length > 0, `${DOC}:${ex.line} holds rules`);
  }
  const unmarked = yamlBlocks(md).filter((b) => !MARKER.test(b.text) && /^rules:/m.test(b.text));
  t.same(unmarked.map((b) => `${DOC}:${b.line}`), [], `a block with a top-level rules: starts with "# rule file" (so that it is checked)`);
});

t.test('the check itself: a broken marked example fails at its line in the markdown; unmarked fragments are not loaded', async (t) => {
  const md = [
    '# Doc', // 1
    '', // 2
    '```yaml', // 3
    '# rule file', // 4
    'rules:', // 5
    '  - name: x', // 6
    '    guards: { ... }', // 7
    '```', // 8
    '```yaml', // 9
    'match: { alertname: A }', // 10
    '```', // 11
  ].join('\n');
  const [ex, ...rest] = loadExamples('doc.md', md);
  t.same(rest, [], 'only the marked block');
  t.equal(ex!.line, 4);
  const errors = ex!.errors.map(formatRuleError);
  t.ok(errors.length > 0, 'the broken example does not load');
  t.ok(errors.every((e) => /^doc\.md:[4-7]: /.test(e)), `errors at the markdown's lines: ${errors.join(' | ')}`);
  t.ok(errors.some((e) => e.startsWith('doc.md:7: rules[0].guards')), 'the bad guards line is named');
});
