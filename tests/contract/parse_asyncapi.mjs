// Parse an AsyncAPI document with the AsyncAPI Initiative's own parser (@asyncapi/parser) and
// print what tests/contract/test_asyncapi.py checks, as JSON on stdout:
//   {"diagnostics": [{severity, code, message, path}], "document": <the parsed document, every
//    $ref resolved> | null}
// Usage: node parse_asyncapi.mjs docs/asyncapi.yaml   (exit 0 even when the document is invalid:
// the test reads the diagnostics; exit 2 when the parser itself cannot run).
import { Parser, fromFile } from '@asyncapi/parser';

const path = process.argv[2];
if (!path) {
  console.error('usage: node parse_asyncapi.mjs <asyncapi.yaml>');
  process.exit(2);
}
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, path).parse();
const out = {
  diagnostics: diagnostics.map((d) => ({ severity: d.severity, code: d.code, message: d.message, path: d.path })),
  document: document ? document.json() : null,
};
process.stdout.write(JSON.stringify(out, (key, value) => (typeof value === 'bigint' ? Number(value) : value)));
