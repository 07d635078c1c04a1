#!/usr/bin/env bash
# Makes a throwaway CA and a server certificate for the national-cloud Graph hosts,
# so a local fake Graph (nginx) can be reached with real host names and TLS checks.
# Usage: make-certs.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"; cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=bench test CA" \
  -keyout ca.key -out ca.pem >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=graph.microsoft.com" \
  -keyout graph.key -out graph.csr >/dev/null 2>&1
printf 'subjectAltName=DNS:graph.microsoft.com,DNS:graph.microsoft.us,DNS:dod-graph.microsoft.us,DNS:microsoftgraph.chinacloudapi.cn\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
openssl x509 -req -in graph.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
  -extfile ext.cnf -out graph.pem >/dev/null 2>&1
cp "$here"/fake-graph.conf "$here"/nginx-anchor.conf . 2>/dev/null || true
echo "made $PWD: ca.pem graph.pem graph.key fake-graph.conf nginx-anchor.conf"
