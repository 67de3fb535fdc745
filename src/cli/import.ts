// `nslb import octavia FILE… [-o FILE] [--namespace NS]`: Octavia's JSON to nslb YAML (see src/import/octavia.ts).
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import yaml from 'js-yaml';
import type { AnyObject } from '../api/v1alpha1/types.js';
import { importOctavia } from '../import/octavia.js';
import { OctaviaInputError, parseOctaviaJson, type OctaviaInput } from '../import/octavia-read.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Multi-document YAML, one object per document, in the order they were built (parents first). */
export function renderManifests(objects: readonly AnyObject[], header: string[]): string {
  const docs = objects.map((o) => yaml.dump(o, { noRefs: true, lineWidth: -1, sortKeys: false }).trimEnd());
  return `${header.map((l) => `# ${l}`).join('\n')}\n${docs.map((d) => `---\n${d}`).join('\n')}\n`;
}

export async function importOctaviaFiles(files: readonly string[], flags: { namespace: string; output?: string }): Promise<number> {
  if (!DNS_LABEL.test(flags.namespace) || flags.namespace.length > 63) {
    process.stderr.write(`nslb: --namespace ${JSON.stringify(flags.namespace)} must be a DNS-1123 label (lowercase letters, digits and "-")\n`);
    return 1;
  }
  const inputs: OctaviaInput[] = [];
  try {
    for (const file of files) {
      let text: string;
      try {
        text = file === '-' ? readFileSync(0, 'utf8') : await readFile(file, 'utf8');
      } catch (err) {
        throw new OctaviaInputError(file, '', `cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      inputs.push({ file, value: parseOctaviaJson(file, text) });
    }
    const result = importOctavia(inputs, { namespace: flags.namespace });
    for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
    const out = renderManifests(result.objects, [
      `Imported from Octavia by \`nslb import octavia\` (${files.join(' ')}): ${result.objects.length} objects.`,
      'Review the warnings it printed: fields nslb cannot carry, and TLS files to put in place.',
    ]);
    if (flags.output === undefined) process.stdout.write(out);
    else await writeFile(flags.output, out);
    process.stderr.write(
      `${result.objects.length} objects${flags.output === undefined ? '' : ` written to ${flags.output}`}, ${result.warnings.length} warnings` +
        `${result.skipped > 0 ? `, ${result.skipped} Octavia objects not imported` : ''}\n`,
    );
    return result.skipped > 0 || result.objects.length === 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof OctaviaInputError) {
      process.stderr.write(`nslb: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
