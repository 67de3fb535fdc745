import { dump } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import type { AnyObject } from '../../src/api/v1alpha1/types.js';
import { describeIssue, parseDocuments } from '../../src/sources/parse.js';
import { mergeFiles } from '../../src/sources/snapshot.js';
import { lb, listener, member, monitor, pool } from './fixtures/objects.js';

const ids = (objects: AnyObject[]) => objects.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`);

describe('mergeFiles', () => {
  it('orders objects by kind, namespace and name, whatever the file order', () => {
    const a: AnyObject[] = [member('m2'), pool('app'), lb('web', {}, {}, 'zz'), lb('web')];
    const b: AnyObject[] = [monitor('hm'), member('m1'), listener('http'), lb('api', {}, {}, 'default')];
    const expected = [
      'LoadBalancer/default/api',
      'LoadBalancer/default/web',
      'LoadBalancer/zz/web',
      'Listener/default/http',
      'Pool/default/app',
      'Member/default/m1',
      'Member/default/m2',
      'HealthMonitor/default/hm',
    ];
    expect(
      ids(
        mergeFiles(
          new Map([
            ['a.yaml', a],
            ['b.yaml', b],
          ]),
        ).objects,
      ),
    ).toEqual(expected);
    expect(
      ids(
        mergeFiles(
          new Map([
            ['b.yaml', b],
            ['a.yaml', a],
          ]),
        ).objects,
      ),
    ).toEqual(expected);
  });

  it('keeps the copy from the lexicographically first file and reports the other', () => {
    const first = lb('web', { address: '192.0.2.1' });
    const second = lb('web', { address: '192.0.2.2' });
    for (const files of [
      new Map([
        ['b/x.yaml', [second]],
        ['a/y.yaml', [first]],
      ]),
      new Map([
        ['a/y.yaml', [first]],
        ['b/x.yaml', [second]],
      ]),
    ]) {
      const { objects, issues } = mergeFiles(files);
      expect(objects).toEqual([first]);
      expect(issues).toEqual([
        {
          file: 'b/x.yaml',
          document: 0,
          path: '/metadata/name',
          label: 'LoadBalancer web',
          message: 'duplicate LoadBalancer default/web: already defined in a/y.yaml, which is used; this copy is ignored',
        },
      ]);
    }
  });

  it('names the documents when the objects came from parseDocuments', () => {
    const a = parseDocuments('a.yaml', `---\n---\n${dump(lb('web'))}`).objects;
    const b = parseDocuments('b.yaml', `${dump(pool('app'))}---\n${dump(lb('web'))}`).objects;
    const { issues } = mergeFiles(
      new Map([
        ['b.yaml', b],
        ['a.yaml', a],
      ]),
    );
    expect(issues.map(describeIssue)).toEqual([
      'b.yaml: document 2 (LoadBalancer web): /metadata/name: duplicate LoadBalancer default/web: already defined in a.yaml document 2, which is used; this copy is ignored',
    ]);
  });

  it('treats the same name in another namespace or of another kind as distinct', () => {
    const { objects, issues } = mergeFiles(new Map([['a.yaml', [lb('web'), lb('web', {}, {}, 'other'), pool('web')]]]));
    expect(issues).toEqual([]);
    expect(objects).toHaveLength(3);
  });

  it('compares file names by code unit, not locale', () => {
    const { objects } = mergeFiles(
      new Map([
        ['a.yaml', [lb('web', { address: '192.0.2.2' })]],
        ['B.yaml', [lb('web')]],
      ]),
    );
    expect(objects[0]?.spec).toEqual(lb('web').spec);
  });
});
