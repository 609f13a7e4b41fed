#!/usr/bin/env bash
# Report query times and /metrics scrape latency on PostgreSQL at N (default 1M) devices and
# certificates, filled by `fleet-load fill` (reports read index columns only).
# Usage: [N=devices] loadtest/reports/measure.sh   (2 % of devices never enrolled, 10 % revoked)
set -euo pipefail
BIN=${BIN:-target/debug/ca-service}   # build first: cargo build -p ca-service
FLEET=${FLEET:-target/release/fleet-load}   # cargo build --release -p fleet-load
D=/tmp/m1m; DB=measure_1m
rm -rf $D; mkdir -p $D; chmod 700 $D
psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
cat > $D/c.toml <<TOML
data_dir = "$D"
public_base_url = "http://127.0.0.1:18080"
[server]
http = "127.0.0.1:18080"
https = "127.0.0.1:18443"
tls_names = ["127.0.0.1"]
[storage]
url = "postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
[key_stores.default]
type = "software"
dir = "$D/keys"
passphrase_env = "PKI_KEYSTORE_PASSPHRASE"
[models.generic]
oid = "1.3.6.1.4.1.59999.1.1"
TOML
export PKI_KEYSTORE_PASSPHRASE=$(openssl rand -hex 32)
C="$BIN --config $D/c.toml"
$C init >/dev/null
N=${N:-1000000}
t0=$(date +%s.%N)
# The fleet: batches of 100k (batch-0001 …), one certificate per enrolled device, 10 % revoked
# (fleet-load's README describes the rows).
$FLEET fill --database-url "postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" --config $D/c.toml --devices $N
t1=$(date +%s.%N)
echo "loaded: $(psql -h 127.0.0.1 -U postgres -d $DB -Atc 'select count(*) from certificates') certificates, $(psql -h 127.0.0.1 -U postgres -d $DB -Atc 'select count(*) from devices') devices in $(echo "$t1-$t0"|bc) s"
$C serve > $D/serve.log 2>&1 & SP=$!
trap 'kill $SP 2>/dev/null || true; sleep 1; psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB"' EXIT
for i in $(seq 60); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 1; done
sleep 3
TOKEN=$($C tokens create --name m --role auditor | grep '^pki_' | tail -1)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_it() { # label, url, reps
  local label=$1 url=$2 reps=${3:-7}; local ts=()
  for r in $(seq $reps); do curl -sk -o $D/out -w '%{time_total}\n' -H "Authorization: Bearer $TOKEN" "$url" ; done > $D/times
  printf '%-55s median %7.1f ms  max %7.1f ms  (%s bytes)\n' "$label" "$(median < $D/times | awk '{print $1*1000}')" "$(sort -n $D/times | tail -1 | awk '{print $1*1000}')" "$(wc -c < $D/out)"
}
time_it "GET /metrics" http://127.0.0.1:18080/metrics 21
A=https://127.0.0.1:18443/api/v1/reports
time_it "counts" "$A/counts"
time_it "expiring within=30d limit=1000" "$A/expiring?within=30d&limit=1000"
time_it "expiring within=30d group_by=batch" "$A/expiring?within=30d&group_by=batch"
time_it "expiring within=30d batch=batch-0007 limit=1000" "$A/expiring?within=30d&batch=batch-0007&limit=1000"
time_it "stale limit=1000" "$A/stale?limit=1000"
time_it "stale batch=batch-0007 limit=1000" "$A/stale?batch=batch-0007&limit=1000"
time_it "never-enrolled limit=1000" "$A/never-enrolled?limit=1000"
time_it "expiring format=csv limit=10000" "$A/expiring?within=90d&limit=10000&format=csv"
grep -c 'sampler\|count' $D/serve.log || true
