// Alert text read by people: no control character passes, line breaks aside where lines are kept,
// and no bidirectional formatting character either (an override shows what follows reversed).
import t from 'tap';
import { oneLine, withoutControls } from '../../src/plain-text.js';

const BIDI = ['\u061c', '\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'];
const code = (c: string) => `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;

t.test('bidirectional formatting characters become spaces, in one line and in lines', async (t) => {
  for (const c of BIDI) {
    // messages name the code point only: the raw character would be passed to the TAP stream
    t.equal(oneLine(`Deployment/prod/${c}kcehc`), 'Deployment/prod/ kcehc', `oneLine: ${code(c)}`);
    t.equal(withoutControls(`a${c}b\nc`), 'a b\nc', `withoutControls: ${code(c)}`);
  }
});

t.test('what is not a control character stays as typed: letters of any script, emoji, joiners', async (t) => {
  for (const s of ['checkout', 'שלום', 'مرحبا', '日本', 'e\u0301', '👩\u200d👩\u200d👧', 'a\u200bb']) t.equal(oneLine(s), s);
});
