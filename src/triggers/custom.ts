import { z } from 'zod';
import { parseTemplate } from '../rules/template.js';
import { renderCustomQuery, scanCustomQuery } from './promql.js';
import { TriggerFieldError, type TriggerKind } from './types.js';

/**
 * custom: any PromQL expression, compared with `op` and `threshold`. `{{ $labels.x }}` placeholders
 * must sit inside double-quoted strings, not in a `#` comment nor in label_replace's regex argument;
 * their values are escaped (and regex-escaped inside =~ / !~).
 * Write the expression without the comparison: `op: ">"` and `threshold: 0.1` do that, so a dip is
 * visible as a value rather than as missing data.
 */
export const custom: TriggerKind = {
  kind: 'custom',
  summary: 'any PromQL expression with a comparison',
  fields: {
    query: z.string().min(1, 'expected a PromQL expression'),
  },
  compile(f) {
    const q = f.query as string;
    let t;
    let contexts;
    try {
      t = parseTemplate(q);
      contexts = scanCustomQuery(q);
    } catch (e) {
      throw new TriggerFieldError('query', (e as Error).message);
    }
    if (contexts.length !== t.parts.filter((p) => 'label' in p).length) {
      throw new TriggerFieldError('query', 'could not place every {{ $labels.x }} placeholder; put each inside a double-quoted string');
    }
    const placed = contexts;
    return (labels) => renderCustomQuery(t, labels, placed);
  },
};
