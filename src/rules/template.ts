/**
 * Label templates for rule files: text with `{{ $labels.NAME }}` placeholders, the same spelling
 * Prometheus alerting rules use in their annotations. Only `$labels.<label name>` is allowed inside
 * the braces (no functions, no pipelines): a template is parsed when the rule file loads, so a typo
 * is a load error, and rendering never runs code.
 *
 * Rendering a template for an alert that lacks a referenced label is an error for that alert
 * (MissingLabelError), never an empty string, so a rule cannot silently name the wrong object.
 */

export type TemplatePart = { text: string } | { label: string };

export interface Template {
  source: string;
  parts: TemplatePart[];
  /** label names referenced, in order of first use */
  labels: string[];
  /** true when the template has no placeholder */
  literal: boolean;
}

export class TemplateSyntaxError extends Error {
  override name = 'TemplateSyntaxError';
}

export class MissingLabelError extends Error {
  constructor(
    readonly label: string,
    readonly template: string,
  ) {
    super(`alert has no label "${label}" (needed by "${template}")`);
    this.name = 'MissingLabelError';
  }
}

const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * The property names every JavaScript object has (`__proto__`, `constructor`, `toString`, …). Rule
 * files cannot use them as a label name or a map key: a `__proto__` key vanished from a selector
 * (every namespace), and `{{ $labels.constructor }}` read Object's own function, not a label.
 */
const PROTOTYPE_NAMES = new Set(Object.getOwnPropertyNames(Object.prototype));

/** Why a label name or map key of a rule file is refused, or undefined when it is not one of PROTOTYPE_NAMES. */
export function prototypeName(name: string): string | undefined {
  return PROTOTYPE_NAMES.has(name)
    ? `"${name}" is the name of a property every JavaScript object has, which a rule file cannot use as a label name or key; use another name (relabel the alert's label if it really is called that)`
    : undefined;
}

/** An alert label's value: its own property only, never one of Object.prototype's. */
export function ownLabel(labels: Record<string, string>, name: string): string | undefined {
  if (!Object.hasOwn(labels, name)) return undefined;
  const v: unknown = labels[name];
  return typeof v === 'string' ? v : undefined;
}
const PLACEHOLDER = /^\s*\$labels\.([^\s}]+)\s*$/;

export function parseTemplate(source: string): Template {
  const parts: TemplatePart[] = [];
  const labels: string[] = [];
  let pos = 0;
  while (pos < source.length) {
    const open = source.indexOf('{{', pos);
    if (open === -1) {
      parts.push({ text: source.slice(pos) });
      break;
    }
    if (open > pos) parts.push({ text: source.slice(pos, open) });
    const close = source.indexOf('}}', open + 2);
    if (close === -1) throw new TemplateSyntaxError(`unclosed "{{" in template "${source}"`);
    const inner = source.slice(open + 2, close);
    const m = PLACEHOLDER.exec(inner);
    if (!m) {
      throw new TemplateSyntaxError(
        `template "${source}": expected {{ $labels.<label name> }} inside the braces, got "{{${inner}}}"`,
      );
    }
    const label = m[1]!;
    if (!LABEL_NAME.test(label)) {
      throw new TemplateSyntaxError(`template "${source}": "${label}" is not a valid label name`);
    }
    const proto = prototypeName(label);
    if (proto) throw new TemplateSyntaxError(`template "${source}": ${proto}`);
    parts.push({ label });
    if (!labels.includes(label)) labels.push(label);
    pos = close + 2;
  }
  if (source.includes('}}') && labels.length === 0 && parts.length <= 1 && source.indexOf('{{') === -1) {
    throw new TemplateSyntaxError(`template "${source}": "}}" without "{{"`);
  }
  return { source, parts, labels, literal: labels.length === 0 };
}

/**
 * Renders a template against alert labels. `escape` is applied to each substituted label value
 * (never to the template's own text), e.g. PromQL string escaping.
 */
export function renderTemplate(
  t: Template,
  labels: Record<string, string>,
  escape: (value: string) => string = (v) => v,
): string {
  let out = '';
  for (const p of t.parts) {
    if ('text' in p) out += p.text;
    else {
      const v = ownLabel(labels, p.label);
      if (v === undefined || v === '') throw new MissingLabelError(p.label, t.source);
      out += escape(v);
    }
  }
  return out;
}
