import { describe, expect, it } from 'vitest';
import { JsonStream } from '../../src/drivers/ovs/monitor.js';

describe('JsonStream (OVSDB sends JSON texts back to back)', () => {
  it('splits concatenated values, across chunks, with braces and quotes inside strings', () => {
    const s = new JsonStream();
    expect(s.push('{"id":1,"result":{"a":"}{\\"x"}}{"method":"upd')).toEqual([{ id: 1, result: { a: '}{"x' } }]);
    expect(s.push('ate","params":[null,{}]}  \n{"id":"echo"')).toEqual([{ method: 'update', params: [null, {}] }]);
    expect(s.push(',"method":"echo","params":[]}')).toEqual([{ id: 'echo', method: 'echo', params: [] }]);
  });
});
