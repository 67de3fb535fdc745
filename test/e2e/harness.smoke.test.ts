// Proves the e2e harness itself on this node, with no nslb involved: if this fails, every other e2e failure
// is about the machine (OVS, offloads, netns), not about nslb.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createHost,
  deleteHost,
  httpGet,
  httpGetMany,
  keepAliveRequests,
  listNetns,
  MemberHosts,
  openLongConnection,
  ovsPorts,
  startHttpServer,
  uniqueRun,
  waitFor,
  type Host,
  type HttpServerHandle,
  type LongConnection,
} from './harness.js';

const run = uniqueRun(1);
const hosts = new MemberHosts(run, 1);
const BRIDGE = hosts.bridge;
const memberName = run.name('m1');
const clientName = run.name('c');

describe('e2e harness', () => {
  let member: Host;
  let client: Host;
  let server: HttpServerHandle | undefined;
  let connection: LongConnection | undefined;

  beforeAll(async () => {
    await hosts.create();
    member = hosts.member(1);
    client = hosts.client;
    server = hosts.servers.get('member m1');
  });

  // Each step is guarded on its own so one failure does not leave the rest behind.
  afterAll(async () => {
    await connection?.close().catch(() => {});
    await server?.stop().catch(() => {});
    await hosts.remove();
  });

  it('plugs hosts into the bridge', async () => {
    expect(await listNetns()).toEqual(expect.arrayContaining([memberName, clientName]));
    expect(await ovsPorts(BRIDGE)).toEqual(expect.arrayContaining([`${memberName}-h`, `${clientName}-h`]));
  });

  it('serves the member name over the bridge', async () => {
    const response = await httpGet(client, `http://${member.address}:8080/`);
    expect(response).toMatchObject({ status: 200, body: 'member m1\n', error: null });
    expect(response.headers['x-member']).toEqual(['member m1']);
  });

  it('reports a refused connection as status 0, not a throw', async () => {
    const response = await httpGet(client, `http://${member.address}:8081/`, { timeoutMs: 2000 });
    expect(response.status).toBe(0);
    expect(response.error).toMatch(/refused|connect/i);
  });

  it('sends many requests on separate connections and on one kept-alive connection', async () => {
    expect(await httpGetMany(client, `http://${member.address}:8080/`, 5)).toEqual(Array(5).fill('member m1'));
    expect(await keepAliveRequests(client, `http://${member.address}:8080/x`, 10)).toEqual(Array(10).fill('member m1'));
  });

  it('toggles the member health endpoint', async () => {
    await server!.setHealthy(false);
    expect((await httpGet(client, `http://${member.address}:8080/healthz`)).status).toBe(503);
    await server!.setHealthy(true);
    expect((await httpGet(client, `http://${member.address}:8080/healthz`)).status).toBe(200);
  });

  it('holds a long connection open and notices when it closes', async () => {
    connection = await openLongConnection(client, member.address, 8080, { intervalMs: 100 });
    await waitFor(() => connection!.responses().length >= 5, { timeoutMs: 5000, message: '5 responses' });
    expect(connection.closed()).toBe(false);
    expect(new Set(connection.responses())).toEqual(new Set(['member m1']));
    expect(connection.localPort).toBeGreaterThan(0);

    // Killing the member must show up as a closed connection, or the survival tests could never fail.
    await server!.stop();
    await waitFor(() => connection!.closed(), { timeoutMs: 5000, message: 'long connection to notice the close' });
  });

  // The client's neighbour cache still holds the old host's MAC; a stable MAC makes that entry still right.
  it('reaches a host recreated with the same address at once', async () => {
    await deleteHost(memberName);
    member = await createHost({ name: memberName, bridge: BRIDGE, address: run.cidr(11) });
    server = await startHttpServer(member, { port: 8080, name: 'member m1 again' });
    const response = await httpGet(client, `${server.url}/`, { timeoutMs: 2000 });
    expect(response).toMatchObject({ status: 200, body: 'member m1 again\n' });
  });
});
