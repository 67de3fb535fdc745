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
 * The fields of a data line at the given column indexes (distinct, ascending), without
 * splitting the whole line: a row of `show stat` has about a hundred columns and the engine reads twelve, for every
 * HAProxy every second (the stats poll). A line with a quote in it (a check description with a comma) takes the
 * full parse.
 */
function pickFields(line: string, wanted: readonly number[]): (string | undefined)[] {
  if (line.includes('"')) {
    const all = splitCsvLine(line);
    return wanted.map((i) => all[i]);
  }
  const out: (string | undefined)[] = new Array(wanted.length).fill(undefined);
  let col = 0;
  let start = 0;
  let w = 0;
  while (w < wanted.length) {
    const end = line.indexOf(',', start);
    if (col === wanted[w]) out[w++] = end < 0 ? line.slice(start) : line.slice(start, end);
    if (end < 0) break;
    start = end + 1;
    col++;
  }
  return out;
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
  const named = { iPx, iSv, iStatus, iWeight, iCheck, iType, iScur, iSlim, iStot, iBin, iBout, iCheckDesc, iLastChk };
  const order = Object.values(named)
    .filter((i) => i >= 0)
    .sort((a, b) => a - b);
  const position = new Map(order.map((column, k) => [column, k]));
  const at = (values: (string | undefined)[], i: number): string | undefined => values[position.get(i) ?? -1];
  const rows: StatRow[] = [];
  for (const line of lines) {
    if (line === '' || line.startsWith('#')) continue;
    const v = pickFields(line, order);
    const type = TYPES[at(v, iType) ?? ''];
    if (type === undefined) continue;
    const row: StatRow = { pxname: at(v, iPx) ?? '', svname: at(v, iSv) ?? '', status: at(v, iStatus) ?? '', type };
    const weight = numberOf(at(v, iWeight));
    if (weight !== undefined) row.weight = weight;
    const check = at(v, iCheck);
    // "* L7OK" is HAProxy's "a check is running now; the last one gave L7OK": the status is the last result.
    const lastCheck = check?.replace(/^\*\s*/, '');
    if (lastCheck !== undefined && lastCheck !== '') row.checkStatus = lastCheck;
    const sessions = numberOf(at(v, iScur));
    if (sessions !== undefined) row.sessions = sessions;
    const limit = numberOf(at(v, iSlim));
    if (limit !== undefined) row.sessionLimit = limit;
    const total = numberOf(at(v, iStot));
    if (total !== undefined) row.totalSessions = total;
    const bytesIn = numberOf(at(v, iBin));
    if (bytesIn !== undefined) row.bytesIn = bytesIn;
    const bytesOut = numberOf(at(v, iBout));
    if (bytesOut !== undefined) row.bytesOut = bytesOut;
    const desc = at(v, iCheckDesc);
    if (desc !== undefined && desc !== '') row.checkDescription = desc;
    const last = at(v, iLastChk);
    if (last !== undefined && last !== '') row.lastCheck = last;
    rows.push(row);
  }
  return rows;
}
