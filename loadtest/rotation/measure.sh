#!/usr/bin/env bash
# Rotation of a 100k-device batch on PostgreSQL: plan, progress, deadline (issue 15).
# N devices in two batches of 100k are filled by `fleet-load fill` into a fresh database,
# dropped at exit. Run from the workspace root after a build.
set -euo pipefail
BIN=${BIN:-target/debug/ca-service}   # build first: cargo build -p ca-service
FLEET=${FLEET:-target/release/fleet-load}   # cargo build --release -p fleet-load
D=/tmp/mrot; DB=measure_rotation
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
N=${N:-200000}
t0=$(date +%s.%N)
# Two batches of 100k (batch-0001, batch-0002), filled by fleet-load (see its README).
$FLEET fill --database-url "postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable" --config $D/c.toml --devices $N
t1=$(date +%s.%N)
echo "loaded: $(psql -h 127.0.0.1 -U postgres -d $DB -Atc 'select count(*) from certificates') certificates, $(psql -h 127.0.0.1 -U postgres -d $DB -Atc 'select count(*) from devices') devices in $(echo "$t1-$t0"|bc) s"
$C serve > $D/serve.log 2>&1 & SP=$!
trap 'kill $SP 2>/dev/null || true; sleep 1; psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $DB"' EXIT
for i in $(seq 60); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 1; done
sleep 3
TOKEN=$($C tokens create --name m --role admin | grep '^pki_' | tail -1)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
API=https://127.0.0.1:18443/api/v1
H="Authorization: Bearer $TOKEN"
echo "batch-0002: $(psql -h 127.0.0.1 -U postgres -d $DB -Atc "select count(*) from devices where batch='batch-0002' and state='active'") active devices"
# Plan: one rotation of batch-0002 (100k devices), deadline in 20 s, revoke at the deadline.
curl -sk -o $D/created -w '%{time_total}\n' -H "$H" -H 'Content-Type: application/json' \
  --data '{"batch":"batch-0002","by":"20s","after_deadline":"revoke","key_exposure":true,"reason":"measure"}' \
  $API/rotations > $D/t
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' $D/created)
printf '%-52s %7.1f ms  %s\n' "POST /rotations (plan + first progress count)" "$(awk '{print $1*1000}' $D/t)" "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ("devices","replaced","pending")})' $D/created)"
for r in $(seq 7); do curl -sk -o $D/out -w '%{time_total}\n' -H "$H" "$API/rotations/$ID?limit=1000"; done > $D/times
printf '%-52s %7.1f ms\n' "GET /rotations/ID (progress + 1000 pending), median" "$(median < $D/times | awk '{print $1*1000}')"
psql -h 127.0.0.1 -U postgres -d $DB -Atc "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*), coalesce(sum(CASE WHEN EXISTS (SELECT 1 FROM certificates n WHERE n.device_id = d.device_id AND n.status = 'valid' AND n.created_at >= 9999999999000000) THEN 1 ELSE 0 END), 0) FROM devices d WHERE d.batch = 'batch-0002' AND d.state = 'active'" | grep -E "Execution Time|Buffers: shared" | head -2
deadline=$(python3 -c 'import json,sys,datetime; print(int(datetime.datetime.fromisoformat(json.load(open(sys.argv[1]))["deadline"].replace("Z","+00:00")).timestamp()))' $D/created)
for i in $(seq 600); do   # at most 2 minutes
  curl -sk -o $D/out -H "$H" "$API/rotations/$ID?limit=1"
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["state"]=="closed" else 1)' $D/out && break
  [ $i = 600 ] && { echo "the deadline was not acted on within 2 minutes"; exit 1; }
  sleep 0.2
done
t=$(date +%s.%N)
printf '%-52s %7.1f s after the deadline, %s revoked\n' "deadline acted on (closed, visible over the API)" "$(echo "$t-$deadline"|bc)" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["revoked_at_deadline"])' $D/out)"
grep -E "rotation deadline" $D/serve.log | tail -1 || true
ps -o rss=,time= -p $SP | awk '{print "ca-service RSS " $1/1024 " MiB, CPU " $2}'
