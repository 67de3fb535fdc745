// The import rules between the folders of src/ (README "Architecture" draws them; DESIGN §4 is the model).
// `npm run lint` runs this; a violation fails the tests. Each rule says which folder may not import which, and why.
/** @type {import('dependency-cruiser').IConfiguration} */

/** A folder of src/ as a path pattern. */
const folder = (name) => `^src/${name}/`;
/** Any of these folders. */
const folders = (...names) => `^src/(${names.join('|')})/`;
/** The rule most folders follow: code in `from` (a folder, or several) imports only from them and from `allowed`. */
const importsOnly = (from, allowed, { name, comment }) => {
  const own = Array.isArray(from) ? from : [from];
  return { name, comment, severity: 'error', from: { path: folders(...own) }, to: { path: '^src/', pathNot: folders(...own, ...allowed) } };
};

module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      comment: 'A cycle, even of types only, means two modules are one: merge them or move what both need lower.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    importsOnly('api', [], {
      name: 'api-is-the-bottom',
      comment: 'api/ is the contract (types, schemas, CRDs, Kubernetes names): it depends on no other folder.',
    }),
    importsOnly('desired', ['api'], {
      name: 'desired-is-pure',
      comment: 'desired/ turns objects into the desired model and names what nslb makes on the node: api/ only.',
    }),
    importsOnly('plan', ['api', 'desired'], {
      name: 'plan-is-pure',
      comment: 'plan/ is pure (plan, render, the observed model, the node-driver contract): api/ and desired/ only.',
    }),
    importsOnly('import', ['api'], {
      name: 'import-is-pure',
      comment: 'import/ converts other systems\' objects into ours: api/ only.',
    }),
    importsOnly('sources', ['api', 'desired', 'kube', 'loop', 'log'], {
      name: 'sources-feed-the-engine',
      comment: 'sources/ read desired objects (files, informers); they know nothing of the node, the engine or status.',
    }),
    importsOnly('drivers', ['api', 'desired', 'plan', 'exec', 'loop', 'log'], {
      name: 'drivers-only-do',
      comment: 'drivers/ observe and change the node as plan/ says; they never decide, publish or read sources.',
    }),
    importsOnly(['exec', 'log'], [], {
      name: 'exec-and-log-are-leaves',
      comment: 'exec/ (the only module that starts processes) and log/ import no project module but each other.',
    }),
    importsOnly('kube', ['api', 'log'], {
      name: 'kube-is-plumbing',
      comment: 'kube/ is the Kubernetes client plumbing shared by sources, status writers and the provider.',
    }),
    importsOnly('loop', [], {
      name: 'loop-is-generic',
      comment: 'loop/ is what every loop here is built from (the keyed work queue, waitUntil): it knows no nslb object.',
    }),
    importsOnly('status', ['api', 'desired', 'plan', 'kube', 'loop', 'log'], {
      name: 'status-is-computed-not-driven',
      comment: 'status/ computes and writes status from what the engine reports; it never touches the node or the engine.',
    }),
    importsOnly('controller', ['api', 'desired', 'plan', 'sources', 'status', 'loop', 'exec', 'log'], {
      name: 'controller-talks-to-the-node-through-an-interface',
      comment: 'controller/ gets its node driver injected (plan/node-driver.ts); it never imports a concrete driver or the CLI.',
    }),
    importsOnly('metrics', ['api', 'status', 'controller', 'exec', 'plan'], {
      name: 'metrics-read-the-engine',
      comment: 'metrics/ reads what the engine and the exec counters report when scraped; it changes nothing.',
    }),
    importsOnly('provider', ['api', 'desired', 'kube', 'loop', 'log'], {
      name: 'provider-is-a-translator',
      comment: 'provider/ turns Services into nslb objects through the API server: never the engine, the node or sources.',
    }),
    {
      name: 'schedule-is-pure',
      comment: 'schedule/schedule.ts and membership.ts decide where load balancers run from what they are given: api/ only.',
      severity: 'error',
      from: { path: '^src/schedule/(schedule|membership)\\.ts$' },
      to: { path: '^src/', pathNot: folder('api') },
    },
    importsOnly('schedule', ['api', 'kube', 'loop', 'log'], {
      name: 'schedule-writes-placements-only',
      comment: 'schedule/ watches Leases, Nodes and LoadBalancers and records placements: never the engine, the node or sources.',
    }),
    {
      name: 'nobody-imports-the-cli',
      comment: 'cli/ is the composition root and the commands: everything may be imported by it, it by nothing else.',
      severity: 'error',
      from: { pathNot: folder('cli') },
      to: { path: folder('cli') },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
