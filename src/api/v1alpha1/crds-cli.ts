// `npm run gen:crds`: writes the rendered CRDs to crds/ and, byte-identical, to charts/nslb/crds/ (Helm
// installs whatever that directory holds before the templates). Stale files of a renamed or removed kind
// are deleted so that neither directory can keep serving a CRD the schemas no longer define.
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { renderCrdsYaml } from './crds.js';

// dist/api/v1alpha1/crds-cli.js → the repository root, wherever npm was started from.
const root = resolve(import.meta.dirname, '..', '..', '..');
const targets = [join(root, 'crds'), join(root, 'charts', 'nslb', 'crds')];

const files = renderCrdsYaml();
for (const dir of targets) {
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) {
    if (name.endsWith('.nslb.dev.yaml') && !files.has(name)) await rm(join(dir, name));
  }
  for (const [name, text] of files) await writeFile(join(dir, name), text);
  process.stdout.write(`${relative(root, dir)}/: ${files.size} CustomResourceDefinitions\n`);
}
