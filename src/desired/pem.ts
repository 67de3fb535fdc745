// PEM as TLS material comes in: the blocks of a file (certificates, keys, CRLs), and a CRL's nextUpdate read from
// its DER (Node has no CRL parser). Pure.

export interface PemBlock {
  type: string;
  pem: string;
  der: Buffer;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;

export function pemBlocks(content: string): PemBlock[] {
  return [...content.matchAll(PEM_BLOCK)].map((m) => ({
    type: m[1] ?? '',
    pem: m[0],
    der: Buffer.from((m[2] ?? '').replace(/\s+/g, ''), 'base64'),
  }));
}

/**
 * nextUpdate of a DER CertificateList (RFC 5280 §5.1): null when it has none, undefined when the bytes are not
 * a CertificateList. Node has no CRL parser; this reads just far enough.
 */
export function crlNextUpdate(der: Buffer): Date | null | undefined {
  const element = (at: number): { tag: number; start: number; end: number } | undefined => {
    if (at + 2 > der.length) return undefined;
    const tag = der[at] ?? 0;
    let length = der[at + 1] ?? 0;
    let start = at + 2;
    if (length & 0x80) {
      const bytes = length & 0x7f;
      if (bytes < 1 || bytes > 4 || start + bytes > der.length) return undefined;
      length = 0;
      for (let i = 0; i < bytes; i++) length = length * 256 + (der[start + i] ?? 0);
      start += bytes;
    }
    return start + length > der.length ? undefined : { tag, start, end: start + length };
  };
  const list = element(0);
  const tbs = list?.tag === 0x30 ? element(list.start) : undefined;
  if (list?.tag !== 0x30 || tbs?.tag !== 0x30) return undefined;
  let at = tbs.start;
  const fields: { tag: number; start: number; end: number }[] = [];
  while (at < tbs.end && fields.length < 6) {
    const e = element(at);
    if (e === undefined) return undefined;
    fields.push(e);
    at = e.end;
  }
  // version (INTEGER) is optional; then signature, issuer, thisUpdate, nextUpdate?
  const rest = fields[0]?.tag === 0x02 ? fields.slice(1) : fields;
  const [signature, issuer, thisUpdate, nextUpdate] = rest;
  const isTime = (e: { tag: number } | undefined) => e?.tag === 0x17 || e?.tag === 0x18;
  if (signature?.tag !== 0x30 || issuer?.tag !== 0x30 || !isTime(thisUpdate)) return undefined;
  if (nextUpdate === undefined || !isTime(nextUpdate)) return null;
  const text = der.subarray(nextUpdate.start, nextUpdate.end).toString('latin1');
  // UTCTime YYMMDDHHMMSSZ (years 1950-2049), GeneralizedTime YYYYMMDDHHMMSSZ.
  const m = /^(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (m === null) return undefined;
  const year = m[1]!.length === 2 ? (Number(m[1]) < 50 ? 2000 : 1900) + Number(m[1]) : Number(m[1]);
  return new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
}

export function firstBlock(content: string, type: string): string | undefined {
  return pemBlocks(content).find((b) => b.type === type)?.pem;
}
