// Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation), as used for what rollguard
// reads from alert labels and API bodies: a value that is not a valid name of its kind names nothing.
import { z } from 'zod';

export type NameKind = 'label' | 'subdomain' | 'service' | 'helm' | 'labelKey' | 'labelValue';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** Returns why `value` is not a valid name of this kind, or undefined when it is. */
export function invalidName(kind: NameKind, value: string): string | undefined {
  switch (kind) {
    case 'label':
      return value.length <= 63 && DNS1123_LABEL.test(value) ? undefined : 'a DNS-1123 label (lower-case letters, digits and "-", at most 63)';
    case 'subdomain':
      return value.length <= 253 && DNS1123_SUBDOMAIN.test(value) ? undefined : 'a DNS-1123 subdomain (lower-case letters, digits, "-" and ".", at most 253)';
    case 'service':
      return value.length <= 63 && DNS1035_LABEL.test(value) ? undefined : 'a DNS-1035 label (a Service name: starts with a letter, at most 63)';
    case 'helm':
      return value.length <= 53 && DNS1123_SUBDOMAIN.test(value) ? undefined : 'a Helm release name (DNS-1123, at most 53)';
    case 'labelKey':
      return value.length <= 317 && LABEL_KEY.test(value) ? undefined : 'a Kubernetes label key';
    case 'labelValue':
      return value.length <= 63 && LABEL_VALUE.test(value) ? undefined : 'a Kubernetes label value';
  }
}

/** A zod string that must be a valid name of this kind ("expected a DNS-1123 subdomain (…), got "X""). */
export function nameSchema(kind: NameKind) {
  return z.string().superRefine((v, ctx) => {
    const why = invalidName(kind, v);
    if (why) ctx.addIssue({ code: 'custom', message: `expected ${why}, got ${JSON.stringify(v)}` });
  });
}
