// JSON values checked and printed the way SGLang's Python messages see them: int checks, and type() / repr()
// as its f-strings quote the offending input ("<class 'str'>", "['x', 1]").

export const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);
export const isIntList = (x: unknown): x is number[] => Array.isArray(x) && x.every(isInt);

/** Python's type() of a JSON value as str() prints it: "<class 'str'>". */
export function pyTypeName(v: unknown): string {
  const name = v === null || v === undefined ? 'NoneType' : typeof v === 'string' ? 'str' : typeof v === 'boolean' ? 'bool'
    : typeof v === 'number' ? (Number.isInteger(v) ? 'int' : 'float') : Array.isArray(v) ? 'list' : 'dict';
  return `<class '${name}'>`;
}

/** Python's repr() of a string: single quotes, or double quotes when it holds a ' and no ". */
function pyStrRepr(s: string): string {
  const body = s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t');
  if (s.includes("'") && !s.includes('"')) return `"${body}"`;
  return `'${body.replace(/'/g, "\\'")}'`;
}

/** Python's repr() of a JSON value (lists, dicts and scalars). */
export function pyRepr(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'string') return pyStrRepr(v);
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `[${v.map(pyRepr).join(', ')}]`;
  return `{${Object.entries(v as Record<string, unknown>).map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(', ')}}`;
}
