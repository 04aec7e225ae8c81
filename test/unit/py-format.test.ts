// Python's repr / type() as SGLang's messages print offending input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isInt, isIntList, pyRepr, pyTypeName } from '../../src/runtime/py-format.js';

test('pyRepr prints JSON values as Python repr() does', () => {
  assert.equal(pyRepr([3, 'x', null, true, 1.5]), "[3, 'x', None, True, 1.5]");
  assert.equal(pyRepr("it's"), '"it\'s"');
  assert.equal(pyRepr('say "hi" it\'s'), "'say \"hi\" it\\'s'");
  assert.equal(pyRepr('a\\b\n'), "'a\\\\b\\n'");
  assert.equal(pyRepr({ a: [1] }), "{'a': [1]}");
});

test('pyTypeName and the int checks', () => {
  assert.equal(pyTypeName('s'), "<class 'str'>");
  assert.equal(pyTypeName(2), "<class 'int'>");
  assert.equal(pyTypeName(2.5), "<class 'float'>");
  assert.equal(pyTypeName(null), "<class 'NoneType'>");
  assert.equal(pyTypeName({}), "<class 'dict'>");
  assert.ok(isInt(3) && !isInt(3.5) && !isInt('3'));
  assert.ok(isIntList([1, 2]) && !isIntList([1, 'a']) && !isIntList(5));
});
