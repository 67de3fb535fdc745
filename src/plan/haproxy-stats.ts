// What HAProxy reports about the config plan/haproxy-config.ts rendered: `show stat` parsed into rows (pure).
// Columns are found by the header's names, not by position, because HAProxy appends new columns between
// releases. Here, not in the HAProxy driver, because status/ (operating status, member figures) reads the rows
// as much as the driver fetches them; the socket round trip is drivers/haproxy/runtime-api.ts.

export type StatType = 'frontend' | 'backend' | 'server' | 'listener';

export interface StatRow {
  pxname: string;
  svname: string;
  /** As HAProxy prints it: OPEN, FULL, STOP, UP, DOWN, "UP 1/3", "MAINT (via pool.x/y)", "no check", … */
  status: string;
  weight?: number;
  /** The last finished check's result code (L4OK, L7STS), also while the next one runs ("* L4CON" in HAProxy's CSV); absent without checks. */
  checkStatus?: string;
  type: StatType;
  /** scur: current sessions. */
  sessions?: number;
  /** slim: the configured session limit (a frontend's maxconn). */
  sessionLimit?: number;
  /** stot: sessions since the process started (a reload starts a new count). */
  totalSessions?: number;
  /** bin / bout: bytes received from clients / sent to them, since the process started. */
  bytesIn?: number;
  bytesOut?: number;
  /** check_desc and last_chk: what the last check found ("Layer4 connection problem", "Connection refused"). */
  checkDescription?: string;
  lastCheck?: string;
}

/** `show stat` printed something that is not its CSV: the caller asked the wrong thing. */
export class ShowStatError extends Error {
  override readonly name = 'ShowStatError';
}

const TYPES: Record<string, StatType> = { '0': 'frontend', '1': 'backend', '2': 'server', '3': 'listener' };

// HAProxy writes a field in double quotes (with "" for a quote) when it contains a comma or a quote,
// e.g. a check description; everything else is bare.
function splitCsvLine(line: string): string[] {
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line.charAt(i);
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') {
        quoted = false;
      } else {
        cur += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      fields.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  fields.push(cur);
  return fields;
}

/**
 * The fields of a data line, by column index, for the columns wanted (ascending) only: a row of `show stat` has about
 * a hundred columns and the engine reads twelve, for every HAProxy every second (the stats poll). A line with a
 * quote in it (a check description with a comma) takes the full parse.
 */
function pickFields(line: string, wanted: readonly number[]): (string | undefined)[] {
  if (line.includes('"')) return splitCsvLine(line);
  const fields: (string | undefined)[] = [];
  let col = 0;
  let start = 0;
  let w = 0;
  while (w < wanted.length) {
    const end = line.indexOf(',', start);
    if (col === wanted[w]) {
      fields[col] = end < 0 ? line.slice(start) : line.slice(start, end);
      w++;
    }
    if (end < 0) break;
    start = end + 1;
    col++;
  }
  return fields;
}

function numberOf(v: string | undefined): number | undefined {
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** Parses the CSV of `show stat`. Throws if the header is missing: the caller asked the wrong thing. */
export function parseShowStat(csv: string): StatRow[] {
  // CRLF too (a line's last field keeps no \r): split on \n, then trim each line's end below.
  const lines = csv.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const headerLine = lines.find((l) => l.startsWith('# '));
  if (headerLine === undefined) {
    const first = lines.find((l) => l.trim() !== '') ?? '';
    throw new ShowStatError(`show stat: no "# pxname,..." header in output starting ${JSON.stringify(first.slice(0, 80))}`);
  }
  const header = headerLine.includes('"') ? splitCsvLine(headerLine.slice(2)) : headerLine.slice(2).split(',');
  const col = (name: string): number => header.indexOf(name);
  const iPx = col('pxname');
  const iSv = col('svname');
  const iStatus = col('status');
  const iWeight = col('weight');
  const iCheck = col('check_status');
  const iType = col('type');
  const iScur = col('scur');
  const iSlim = col('slim');
  const iStot = col('stot');
  const iBin = col('bin');
  const iBout = col('bout');
  const iCheckDesc = col('check_desc');
  const iLastChk = col('last_chk');
  if (iPx < 0 || iSv < 0 || iStatus < 0 || iType < 0) {
    throw new ShowStatError('show stat: header lacks pxname, svname, status or type');
  }

  // The columns read, in the order of the line (pickFields walks it once).
  const wanted = [iPx, iSv, iStatus, iWeight, iCheck, iType, iScur, iSlim, iStot, iBin, iBout, iCheckDesc, iLastChk]
    .filter((i) => i >= 0)
    .sort((a, b) => a - b);
  const rows: StatRow[] = [];
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    const f = pickFields(line, wanted);
    const type = TYPES[f[iType] ?? ''];
    if (type === undefined) continue;
    const row: StatRow = { pxname: f[iPx] ?? '', svname: f[iSv] ?? '', status: f[iStatus] ?? '', type };
    const weight = numberOf(f[iWeight]);
    if (weight !== undefined) row.weight = weight;
    const check = f[iCheck];
    // "* L7OK" is HAProxy's "a check is running now; the last one gave L7OK": the status is the last result.
    const lastCheck = check?.replace(/^\*\s*/, '');
    if (lastCheck !== undefined && lastCheck !== '') row.checkStatus = lastCheck;
    const sessions = numberOf(f[iScur]);
    if (sessions !== undefined) row.sessions = sessions;
    const limit = numberOf(f[iSlim]);
    if (limit !== undefined) row.sessionLimit = limit;
    const total = numberOf(f[iStot]);
    if (total !== undefined) row.totalSessions = total;
    const bytesIn = numberOf(f[iBin]);
    if (bytesIn !== undefined) row.bytesIn = bytesIn;
    const bytesOut = numberOf(f[iBout]);
    if (bytesOut !== undefined) row.bytesOut = bytesOut;
    const desc = f[iCheckDesc];
    if (desc !== undefined && desc !== '') row.checkDescription = desc;
    const last = f[iLastChk];
    if (last !== undefined && last !== '') row.lastCheck = last;
    rows.push(row);
  }
  return rows;
}
