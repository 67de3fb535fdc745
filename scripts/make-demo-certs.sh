#!/usr/bin/env bash
# Makes the demo's TLS material under DIR (default examples/certs): a CA and certificates for
# www.example.test and api.example.test signed by it. Idempotent; keys are 0600 and never committed.
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
    -keyout ca.key -out ca.crt 2>/dev/null
fi
for name in www.example.test api.example.test; do
  [[ -f $name.crt ]] && continue
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$name" >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
done
chmod 644 ca.crt ./*.example.test.crt
