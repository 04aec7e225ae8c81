/**
 * Shim (d): transformers' `clean_up_tokenization` (removes the space that word-piece style
 * decoding leaves before punctuation and English contractions), applied in this exact order.
 */
const CLEANUP_RULES: ReadonlyArray<readonly [string, string]> = [
  [' .', '.'],
  [' ?', '?'],
  [' !', '!'],
  [' ,', ','],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

export function cleanUpTokenization(text: string): string {
  let out = text;
  for (const [from, to] of CLEANUP_RULES) out = out.replaceAll(from, to);
  return out;
}
