import { describe, expect, it } from 'vitest';
import { JsonStream, concernsUs } from '../../src/drivers/ovs/monitor.js';

describe('JsonStream (OVSDB sends JSON texts back to back)', () => {
  it('splits concatenated values, across chunks, with braces and quotes inside strings', () => {
    const s = new JsonStream();
    expect(s.push('{"id":1,"result":{"a":"}{\\"x"}}{"method":"upd')).toEqual([{ id: 1, result: { a: '}{"x' } }]);
    expect(s.push('ate","params":[null,{}]}  \n{"id":"echo"')).toEqual([{ method: 'update', params: [null, {}] }]);
    expect(s.push(',"method":"echo","params":[]}')).toEqual([{ id: 'echo', method: 'echo', params: [] }]);
  });
});

describe('concernsUs', () => {
  it('ignores ports and interfaces that are not named like ours, never bridges', () => {
    expect(concernsUs([null, { Interface: { u1: { new: { name: 'veth-h' } } }, Port: { u2: { old: { name: 'veth-h' } } } }])).toBe(false);
    expect(concernsUs([null, { Interface: { u1: { new: { name: 'nslb0123456789a' } } } }])).toBe(true);
    expect(concernsUs([null, { Interface: { u1: { old: { error: 'x' } } } }])).toBe(true);
    expect(concernsUs([null, { Bridge: { u1: { new: { name: 'br-x' } } } }])).toBe(true);
    expect(concernsUs([null, { Bridge: { u1: { old: { name: 'br-x' }, new: { name: 'br-y' } } } }])).toBe(true);
    // Only its port list changed (someone else's port): not ours to care about.
    expect(concernsUs([null, { Bridge: { u1: { old: { ports: [] }, new: { name: 'br-x', ports: [] } } } }])).toBe(false);
    expect(concernsUs(undefined)).toBe(true);
  });
});
