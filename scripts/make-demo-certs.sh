#!/usr/bin/env bash
# Makes the demo's TLS material under DIR (default examples/certs): a CA, certificates for www.example.test
# and api.example.test signed by it, a client certificate (client.example.test) for the listener's client
# authentication, and a CRL of that CA (ca.crl; it revokes nothing). Idempotent; keys are 0600 and never
# committed.
#
#   scripts/make-demo-certs.sh [DIR]
set -euo pipefail
dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/examples/certs}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077

if [[ ! -f ca.crt ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=nslb demo CA' \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout ca.key -out ca.crt 2>/dev/null
fi
issue() { # NAME USAGE [DNS]
  local name=$1 usage=$2
  [[ -f $name.crt ]] && return 0
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
  { [[ $usage == serverAuth ]] && printf 'subjectAltName=DNS:%s\n' "$name"; printf 'extendedKeyUsage=%s\n' "$usage"; } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}
issue www.example.test serverAuth
issue api.example.test serverAuth
issue client.example.test clientAuth
if [[ ! -f ca.crl ]]; then
  touch ca-index.txt
  [[ -f ca-crlnumber ]] || echo 01 >ca-crlnumber
  printf '[ca]\ndefault_ca = d\n[d]\ndatabase = ca-index.txt\ncrlnumber = ca-crlnumber\ndefault_md = sha256\ndefault_crl_days = 825\n' >ca.cnf
  openssl ca -gencrl -config ca.cnf -keyfile ca.key -cert ca.crt -out ca.crl 2>/dev/null
fi
chmod 644 ca.crt ca.crl ./*.example.test.crt
