#!/usr/bin/env bash
# Report query times and /metrics scrape latency on PostgreSQL at N (default 1M) synthetic
# certificates and devices (rows inserted by SQL; reports read index columns only).
# Usage: [N=devices] loadtest/reports/measure.sh   (95 % of devices get one certificate)
set -euo pipefail
BIN=${BIN:-target/debug/ca-service}   # build first: cargo build -p ca-service
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
N=${N:-1052632}
now=$(date +%s)
t0=$(date +%s.%N)
psql -h 127.0.0.1 -U postgres -d $DB -q <<SQL
INSERT INTO devices (device_id, model, class, batch, state, created_at, updated_at)
SELECT 'dev-'||lpad(i::text,8,'0'), 'generic', 'default', 'batch-'||(i%200),
       CASE WHEN i%20=0 THEN 'expected' WHEN i%97=0 THEN 'revoked' ELSE 'active' END,
       ${now}000000, ${now}000000
FROM generate_series(1,$N) i;
INSERT INTO certificates (issuer, serial_hex, subject, device_id, profile, not_before, not_after,
  status, revoked_at, revocation_reason, fingerprint, public_key_sha256, der, created_at)
SELECT 'device', md5(i::text), 'CN=dev-'||lpad(i::text,8,'0'), 'dev-'||lpad(i::text,8,'0'), 'device',
       $now - (i % 800)*86400, $now - (i % 800)*86400 + 825*86400,
       CASE WHEN i%97=0 THEN 'revoked' ELSE 'valid' END,
       CASE WHEN i%97=0 THEN $now END, CASE WHEN i%97=0 THEN 1 END,
       md5(i::text||'f'), md5(i::text||'k'), '\x00'::bytea, ${now}000000
FROM generate_series(1,$N) i WHERE i%20<>0;
ANALYZE;
SQL
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
time_it "expiring within=30d batch=batch-7 limit=1000" "$A/expiring?within=30d&batch=batch-7&limit=1000"
time_it "stale limit=1000" "$A/stale?limit=1000"
time_it "stale batch=batch-7 limit=1000" "$A/stale?batch=batch-7&limit=1000"
time_it "never-enrolled limit=1000" "$A/never-enrolled?limit=1000"
time_it "expiring format=csv limit=10000" "$A/expiring?within=90d&limit=10000&format=csv"
grep -c 'sampler\|count' $D/serve.log || true
