// Pure: whether an L7 rule's REGEX value is one HAProxy's PCRE2 will compile. The schema keeps the value to
// printable ASCII without whitespace, quotes, "#" or backslash, so there are no escapes to handle; but
// "(", "[z-a]" or "x**" still pass the schema and would only fail at `haproxy -c`, long after the user
// could have been told which field is wrong.
//
// This is a parser for a conservative subset of PCRE2: everything it accepts, PCRE2 compiles (the property
// test checks that against the real haproxy); a few rare PCRE2 constructs it does not know (callouts,
// recursion, verbs, conditionals, quantified lookaround) are refused with a message that says so.

const POSIX_CLASSES = new Set(['alnum', 'alpha', 'ascii', 'blank', 'cntrl', 'digit', 'graph', 'lower', 'print', 'punct', 'space', 'upper', 'word', 'xdigit']);
/** PCRE2's limit on a {n,m} count. */
const MAX_REPEAT = 65535;
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;

class RegexSyntaxError extends Error {}

/** Undefined if PCRE2 compiles `pattern`; otherwise what is wrong, to complete "is not a regular expression HAProxy can compile: …". */
export function regexProblem(pattern: string): string | undefined {
  try {
    new Parser(pattern).parse();
    return undefined;
  } catch (err) {
    if (err instanceof RegexSyntaxError) return err.message;
    throw err;
  }
}

class Parser {
  readonly #s: string;
  #i = 0;
  readonly #names = new Set<string>();

  constructor(s: string) {
    this.#s = s;
  }

  parse(): void {
    this.#alternation(false);
    if (this.#i < this.#s.length) this.#fail(`")" at position ${this.#i + 1} closes no group`);
  }

  #fail(message: string): never {
    throw new RegexSyntaxError(message);
  }

  #peek(offset = 0): string | undefined {
    return this.#s[this.#i + offset];
  }

  /** Branches separated by "|", up to an unmatched ")" or the end. In a lookbehind every item has a fixed length. */
  #alternation(lookbehind: boolean): void {
    for (;;) {
      this.#sequence(lookbehind);
      if (this.#peek() !== '|') return;
      this.#i++;
    }
  }

  #sequence(lookbehind: boolean): void {
    for (;;) {
      const c = this.#peek();
      if (c === undefined || c === '|' || c === ')') return;
      const repeatable = this.#atom(lookbehind);
      if (this.#quantifier()) {
        if (!repeatable) this.#fail(`a quantifier at position ${this.#i} follows nothing it can repeat`);
        if (lookbehind) this.#fail('a lookbehind must have a fixed length: no quantifiers in it');
        // A second quantifier ("x**", "x+*", "a{1,2}{3}") is an error in PCRE2.
        if (this.#quantifier()) this.#fail(`two quantifiers in a row at position ${this.#i}`);
      }
    }
  }

  /** One atom; returns whether a quantifier may follow it. */
  #atom(lookbehind: boolean): boolean {
    const c = this.#peek();
    switch (c) {
      case '(':
        return this.#group(lookbehind);
      case '[':
        this.#class();
        return true;
      case '^':
      case '$':
        this.#i++;
        return false;
      case '*':
      case '+':
      case '?':
        return this.#fail(`"${c}" at position ${this.#i + 1} follows nothing it can repeat`);
      default:
        // "{" that does not make a quantifier, "]" and "}" outside a class are literals, as is everything else.
        if (c === '{' && this.#countAt(this.#i) !== undefined) this.#fail(`"{" at position ${this.#i + 1} follows nothing it can repeat`);
        this.#i++;
        return true;
    }
  }

  #group(lookbehind: boolean): boolean {
    const start = this.#i;
    // PCRE2 refuses a lookbehind whose branches nest groups of different lengths; refusing any group in a
    // lookbehind keeps the rule simple (top-level "|" of fixed-length branches is fine).
    if (lookbehind) this.#fail(`no groups inside a lookbehind (position ${start + 1})`);
    this.#i++;
    let repeatable = true;
    let inner = false;
    if (this.#peek() === '*') this.#fail(`PCRE2 verbs such as "(*FAIL)" are not supported (position ${start + 1})`);
    if (this.#peek() === '?') {
      const rest = this.#s.slice(this.#i + 1);
      const named = /^P?<([^>]*)>/.exec(rest);
      const options = /^[imnsxU-]*[):]/.exec(rest);
      if (rest.startsWith(':') || rest.startsWith('|') || rest.startsWith('>')) {
        this.#i += 2;
      } else if (rest.startsWith('=') || rest.startsWith('!')) {
        this.#i += 2;
        repeatable = false;
      } else if (rest.startsWith('<=') || rest.startsWith('<!')) {
        this.#i += 3;
        repeatable = false;
        inner = true;
      } else if (named !== null) {
        const name = named[1] ?? '';
        if (!NAME.test(name)) this.#fail(`group name "${name}" must be a letter or "_" followed by letters, digits or "_"`);
        if (this.#names.has(name)) this.#fail(`two groups are named "${name}"`);
        this.#names.add(name);
        this.#i += 1 + named[0].length;
      } else if (options !== null && /^-?[imnsxU]/.test(rest) && !/-.*-/.test(options[0])) {
        this.#i += options[0].length;
        if (options[0].endsWith(')')) {
          // "(?i)": changes options for the rest of the group; it is not an atom of its own.
          this.#i++;
          return false;
        }
      } else {
        this.#fail(`"(?" at position ${start + 1} starts a group construct that is not supported`);
      }
    }
    this.#alternation(inner);
    if (this.#peek() !== ')') this.#fail(`"(" at position ${start + 1} is never closed`);
    this.#i++;
    // Quantified lookaround is legal PCRE2 but pointless; refusing it keeps this parser simple.
    return repeatable;
  }

  #class(): void {
    const start = this.#i;
    this.#i++;
    // PCRE2 reads "[:…:]", "[.….]" and "[=…=]" right after a class's "[" as a POSIX class outside a class and
    // refuses the pattern ("[=({=]]" included), so the same test as its check_posix_syntax() refuses them here.
    if (posixSyntaxAt(this.#s, this.#i))
      this.#fail(`"[${this.#peek() ?? ''}" at position ${start + 1} reads as a POSIX class outside a class; write it inside one, as in "[[:alpha:]]"`);
    if (this.#peek() === '^') this.#i++;
    let first = true;
    let previous: string | undefined;
    for (;;) {
      const c = this.#peek();
      if (c === undefined) this.#fail(`"[" at position ${start + 1} is never closed`);
      if (c === ']' && !first) {
        this.#i++;
        return;
      }
      first = false;
      if (c === '[' && /^[:.=]/.test(this.#peek(1) ?? '')) {
        const m = /^\[:\^?([a-z]+):\]/.exec(this.#s.slice(this.#i));
        if (m === null || !POSIX_CLASSES.has(m[1] ?? ''))
          this.#fail(`"[${this.#peek(1) ?? ''}" at position ${this.#i + 1} is not a POSIX class such as [:alpha:]`);
        this.#i += m[0].length;
        if (this.#peek() === '-' && this.#peek(1) !== ']') this.#fail('a POSIX class cannot start a range');
        previous = undefined;
        continue;
      }
      if (c === '-' && previous !== undefined && this.#peek(1) !== undefined && this.#peek(1) !== ']') {
        const to = this.#peek(1) ?? '';
        if (to === '[' && this.#peek(2) === ':') this.#fail('a POSIX class cannot end a range');
        if (to < previous) this.#fail(`range "${previous}-${to}" in a class runs backwards`);
        this.#i += 2;
        previous = undefined;
        continue;
      }
      previous = c;
      this.#i++;
    }
  }

  /** Consumes a quantifier (with its lazy "?" or possessive "+"), if one is next. */
  #quantifier(): boolean {
    const c = this.#peek();
    if (c === '*' || c === '+' || c === '?') {
      this.#i++;
    } else if (c === '{') {
      const count = this.#countAt(this.#i);
      if (count === undefined) return false;
      const [min, max, length] = count;
      if (min > MAX_REPEAT || (max !== undefined && max > MAX_REPEAT)) this.#fail(`a repeat count above ${MAX_REPEAT}`);
      if (max !== undefined && max < min) this.#fail(`{${min},${max}} counts backwards`);
      this.#i += length;
    } else {
      return false;
    }
    if (this.#peek() === '?' || this.#peek() === '+') this.#i++;
    return true;
  }

  /** `{n}`, `{n,}` or `{n,m}` at position i: [n, m, length]. PCRE2 10.42 reads anything else as literals. */
  #countAt(i: number): [number, number | undefined, number] | undefined {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(this.#s.slice(i));
    if (m === null) return undefined;
    const min = Number(m[1]);
    const max = m[2] === undefined ? min : m[3] === '' ? undefined : Number(m[3]);
    return [min, max, m[0].length];
  }
}

/**
 * PCRE2's check_posix_syntax(): does s[i] (":", "." or "=") start "[:…:]"-style syntax, that is, is it followed
 * by the same character and "]" before any "]" or "[" + that character? A backslash before "]" or "\\" skips both.
 */
function posixSyntaxAt(s: string, i: number): boolean {
  const terminator = s[i];
  if (terminator !== ':' && terminator !== '.' && terminator !== '=') return false;
  for (let p = i + 1; s.length - p >= 2; p++) {
    if (s[p] === '\\' && (s[p + 1] === ']' || s[p + 1] === '\\')) p++;
    else if ((s[p] === '[' && s[p + 1] === terminator) || s[p] === ']') return false;
    else if (s[p] === terminator && s[p + 1] === ']') return true;
  }
  return false;
}
