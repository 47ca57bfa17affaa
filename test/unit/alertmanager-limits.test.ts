import t from 'tap';
import { keptAnnotations } from '../../src/alertmanager/limits.js';

t.test('kept annotations are cut to the byte limit without splitting a character', async (t) => {
  const l = { annotations: ['summary', 'description'], maxAnnotationBytes: 5 };
  t.same(keptAnnotations({ summary: 'abcdefgh', other: 'x' }, l), { summary: 'abcde' }, 'cut, and the others dropped');
  t.same(keptAnnotations({ summary: 'ab€cd' }, l), { summary: 'ab€' }, '€ is 3 bytes: 5 bytes exactly');
  t.same(keptAnnotations({ summary: 'abc€' }, l), { summary: 'abc' }, 'a character that does not fit is left out whole');
  t.same(keptAnnotations({ description: 'short' }, l), { description: 'short' });
});
