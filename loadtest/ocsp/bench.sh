#!/usr/bin/env bash
# OCSP throughput benchmark: ca-service's responder against `openssl ocsp -index … -port …`
# and Debian's `cfssl ocspserve`, all three answering for the same certificates, measured
# with wrk (keep-alive, 64 connections) in one run. See loadtest/ocsp/README.md.
#
#   loadtest/ocsp/bench.sh [--bin PATH] [options]      (--help for the options)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LUA="$HERE/ocsp.lua"

# ---------------------------------------------------------------- options
BIN=${CA_SERVICE_BIN:-}
CERTS=1000          # device certificates issued (and served by all three responders)
REQUESTS=500        # distinct OCSP requests wrk cycles through (the first REQUESTS certs)
REVOKE_EVERY=10     # every K-th certificate is revoked
DURATION=20s        # measured wrk run, per server and method
WARMUP=3s           # unmeasured wrk run before each measured one (fills ca-service's cache)
CONNECTIONS=64
THREADS=2
METHODS="get post"
ISSUE=est           # est: one keep-alive EST connection (fast); cli: `ca-service issue` per cert
SERVE_LOG=""        # CA_LOG for `ca-service serve`; empty = the service's default (info)
WORK=""
KEEP=0
PERF=0
ENFORCE=0
RESULTS=""
TARGET_RPS=50000
TARGET_RATIO=6

usage() {
    cat <<EOF
Usage: $0 [options]
  --bin PATH          ca-service binary (default: \$CA_SERVICE_BIN, else
                      cargo build --release -p ca-service in $ROOT)
  --certs N           certificates to issue                      (default $CERTS)
  --requests N        distinct OCSP requests cycled by wrk        (default $REQUESTS)
  --revoke-every K    revoke every K-th certificate               (default $REVOKE_EVERY)
  --duration D        measured wrk run per server/method          (default $DURATION)
  --warmup D          unmeasured wrk run before each measurement  (default $WARMUP)
  --connections C     wrk connections (keep-alive)                (default $CONNECTIONS)
  --threads T         wrk threads                                 (default $THREADS)
  --methods "M..."    get and/or post                             (default "$METHODS")
  --issue est|cli     how certificates are issued                 (default $ISSUE)
  --serve-log FILTER  CA_LOG for serve (default: the service's default, info)
  --work-dir DIR      use DIR (must be empty or absent) instead of a temp dir; kept
  --keep              keep the temp dir (logs, certificates, requests, responses)
  --results FILE      also write the results table (TSV) to FILE
  --perf              after the runs, profile ca-service under GET load with perf
  --enforce-target    exit 3 if ca-service misses $TARGET_RPS/s or ${TARGET_RATIO}x cfssl
EOF
}

while (($#)); do
    case $1 in
        --bin) BIN=$2; shift 2 ;;
        --certs) CERTS=$2; shift 2 ;;
        --requests) REQUESTS=$2; shift 2 ;;
        --revoke-every) REVOKE_EVERY=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --connections) CONNECTIONS=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --methods) METHODS=$2; shift 2 ;;
        --issue) ISSUE=$2; shift 2 ;;
        --serve-log) SERVE_LOG=$2; shift 2 ;;
        --work-dir) WORK=$2; KEEP=1; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --results) RESULTS=$2; shift 2 ;;
        --perf) PERF=1; shift ;;
        --enforce-target) ENFORCE=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "bench.sh: FAIL: $*" >&2; exit 1; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

((REQUESTS <= CERTS)) || die "--requests ($REQUESTS) must not exceed --certs ($CERTS)"
((REVOKE_EVERY >= 2)) || die "--revoke-every must be >= 2"
[[ $ISSUE == est || $ISSUE == cli ]] || die "--issue must be est or cli"
for m in $METHODS; do [[ $m == get || $m == post ]] || die "--methods: get and/or post, not '$m'"; done

for tool in wrk openssl cfssl curl ss awk sed od base64; do
    command -v "$tool" >/dev/null || die "$tool is required (Debian: apt-get install wrk openssl golang-cfssl curl iproute2)"
done
if ((PERF)); then command -v perf >/dev/null || die "--perf needs perf (linux-perf)"; fi

# ---------------------------------------------------------------- binary
if [[ -z $BIN ]]; then
    log "building ca-service (cargo build --release -p ca-service --locked)"
    (cd "$ROOT" && cargo build --release -p ca-service --locked >&2)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/ca-service"
fi
[[ -x $BIN ]] || die "ca-service binary not found: $BIN"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
# Only what this script sets applies to ca-service: drop the caller's CA_* variables.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^CA_' || true)

# ---------------------------------------------------------------- work dir, processes
if [[ -z $WORK ]]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/ocsp-bench.XXXXXX")
else
    mkdir -p "$WORK"
    [[ -z $(ls -A "$WORK") ]] || die "--work-dir $WORK is not empty"
    WORK=$(cd "$WORK" && pwd)
fi
SERVE_PID="" OSSL_PID="" CFSSL_PID=""
cleanup() {
    local rc=$?
    for pid in $SERVE_PID $OSSL_PID $CFSSL_PID; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if ((KEEP)); then
        log "work dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$WORK"
mkdir -p csr p7 certs req logs peer

CLK_TCK=$(getconf CLK_TCK)
USED_PORTS=" "
# pick_port VAR: a port nothing listens on, below the ephemeral range (32768+) so that
# wrk's client ports cannot take it. Checked with ss, never by connecting (see openssl).
pick_port() {
    local p
    for _ in $(seq 500); do
        p=$((20000 + RANDOM % 12000))
        if [[ $USED_PORTS != *" $p "* && -z $(ss -Hltn "sport = :$p") ]]; then
            USED_PORTS+="$p "
            printf -v "$1" %s "$p"
            return
        fi
    done
    die "no free port found"
}
wait_listen() { # port pid what
    for _ in $(seq 200); do
        [[ -n $(ss -Hltn "sport = :$1") ]] && return
        kill -0 "$2" 2>/dev/null || die "$3 exited during start (see $WORK/logs)"
        sleep 0.05
    done
    die "$3 does not listen on port $1"
}
pick_port HTTP_PORT
pick_port HTTPS_PORT
pick_port OSSL_PORT
pick_port CFSSL_PORT
OURS_URL="http://127.0.0.1:$HTTP_PORT"
OSSL_URL="http://127.0.0.1:$OSSL_PORT"
CFSSL_URL="http://127.0.0.1:$CFSSL_PORT"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
log "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load average $(loadavg)"
log "ca-service: $BIN"
log "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(openssl version); cfssl $(cfssl version | awk '/^Version/{print $2}')"

# ---------------------------------------------------------------- 1. hierarchy + certificates
export CA_LOG=warn # CLI commands; serve gets its own setting below
log "ca-service init (embedded default: SQLite + software keys in $WORK/pki-data)"
"$BIN" init >logs/init.log 2>&1 || { cat logs/init.log >&2; die "ca-service init"; }

start_serve() {
    local env=(CA_SERVER__HTTP="127.0.0.1:$HTTP_PORT" CA_SERVER__HTTPS="127.0.0.1:$HTTPS_PORT"
        CA_PUBLIC_BASE_URL="$OURS_URL")
    if [[ -n $SERVE_LOG ]]; then env+=(CA_LOG="$SERVE_LOG"); fi
    env -u CA_LOG "${env[@]}" "$BIN" serve </dev/null >logs/serve.log 2>&1 &
    SERVE_PID=$!
    for _ in $(seq 300); do
        curl -sf "$OURS_URL/healthz" >/dev/null 2>&1 && return
        kill -0 "$SERVE_PID" 2>/dev/null || { tail -20 logs/serve.log >&2; die "ca-service serve exited"; }
        sleep 0.1
    done
    die "ca-service serve not healthy within 30 s"
}
start_serve
curl -sf "$OURS_URL/ca/identity-root.pem" >root.pem
curl -sf "$OURS_URL/ca/device.pem" >device-ca.pem
# The devices share one key: OCSP answers per serial, and one key saves 1000 keygens.
openssl ecparam -name prime256v1 -genkey -noout -out device.key 2>/dev/null
IDS=()
for ((n = 1; n <= CERTS; n++)); do IDS+=("$(printf 'OCSPB-%06d' "$n")"); done

log "issuing $CERTS device certificates ($ISSUE)"
t0=$SECONDS
if [[ $ISSUE == est ]]; then
    # Device registry + a provisioning station, then every enrollment over one
    # keep-alive TLS connection (one curl process, one config entry per device).
    printf '%s,generic\n' "${IDS[@]}" >devices.csv
    "$BIN" devices import --batch ocsp-bench devices.csv >logs/devices.log 2>&1 ||
        { cat logs/devices.log >&2; die "devices import"; }
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout station.key \
        -subj "/CN=ocsp-bench-station" -out station.csr 2>/dev/null
    "$BIN" stations add --csr station.csr --out station.pem >logs/station.log 2>&1 ||
        { cat logs/station.log >&2; die "stations add"; }
    first=1
    for id in "${IDS[@]}"; do
        openssl req -new -key device.key -subj "/CN=$id" -outform DER 2>/dev/null | base64 -w0 >"csr/$id.b64"
        ((first)) || echo next
        first=0
        printf 'url = "https://127.0.0.1:%s/.well-known/est/simpleenroll"\n' "$HTTPS_PORT"
        printf 'cacert = "root.pem"\ncert = "station.pem"\nkey = "station.key"\n'
        printf 'header = "Content-Type: application/pkcs10"\ndata-binary = "@csr/%s.b64"\n' "$id"
        printf 'output = "p7/%s.b64"\nsilent\nshow-error\nwrite-out = "%%{http_code}\\n"\n' "$id"
    done >enroll.curlrc
    curl -K enroll.curlrc >logs/enroll.codes 2>logs/enroll.err || true
    bad=$(grep -cv '^200$' logs/enroll.codes || true)
    good=$(grep -c '^200$' logs/enroll.codes || true)
    ((bad == 0 && good == CERTS)) || die "EST enrollment: $good x 200, $bad other (logs/enroll.*)"
    for id in "${IDS[@]}"; do
        base64 -di "p7/$id.b64" | openssl pkcs7 -inform DER -print_certs 2>/dev/null |
            sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' >"certs/$id.pem"
    done
else
    openssl req -new -key device.key -subj "/CN=device" -out device.csr 2>/dev/null
    for id in "${IDS[@]}"; do
        "$BIN" issue --profile device --csr device.csr --device-id "$id" --out "certs/$id-chain.pem" \
            >>logs/issue.log 2>&1 || { tail -5 logs/issue.log >&2; die "ca-service issue $id"; }
        awk '/-----BEGIN/{n++} n==1' "certs/$id-chain.pem" | sed '/-----END CERTIFICATE-----/q' >"certs/$id.pem"
    done
fi
log "issued $CERTS certificates in $((SECONDS - t0)) s"

# Serial, notAfter (index.txt form YYMMDDHHMMSSZ) and subject of each certificate.
declare -A SERIAL EXPIRY SUBJECT STATUS
for id in "${IDS[@]}"; do
    meta=$(openssl x509 -in "certs/$id.pem" -noout -serial -enddate -dateopt iso_8601 -subject -nameopt compat) ||
        die "certs/$id.pem is not a certificate"
    SERIAL[$id]=$(sed -n 's/^serial=//p' <<<"$meta")
    EXPIRY[$id]=$(sed -n 's/^notAfter=..\(..\)-\(..\)-\(..\) \(..\):\(..\):\(..\)Z$/\1\2\3\4\5\6Z/p' <<<"$meta")
    SUBJECT[$id]=$(sed -n 's/^subject=//p' <<<"$meta")
    [[ -n ${SERIAL[$id]} && -n ${EXPIRY[$id]} ]] || die "cannot read serial/notAfter of certs/$id.pem"
    STATUS[$id]=good
done

log "revoking every ${REVOKE_EVERY}th certificate (ca-service revoke --issuer device --serial …)"
REVOKED_AT=$(date -u +%y%m%d%H%M%SZ)
REVOKED_DAY=$(date -u +%Y-%m-%d)
REASON=cessationOfOperation REASON_CODE=5
nrev=0
for ((n = REVOKE_EVERY; n <= CERTS; n += REVOKE_EVERY)); do
    id=${IDS[n - 1]}
    "$BIN" revoke --issuer device --serial "${SERIAL[$id]}" --reason "$REASON" >>logs/revoke.log 2>&1 ||
        { tail -5 logs/revoke.log >&2; die "revoke $id"; }
    STATUS[$id]=revoked
    nrev=$((nrev + 1))
done
log "revoked $nrev of $CERTS"
GOOD_ID=${IDS[0]}
REVOKED_ID=${IDS[REVOKE_EVERY - 1]}

# ---------------------------------------------------------------- 2. requests
log "building $REQUESTS OCSP requests (openssl ocsp -no_nonce -reqout; SHA-1 CertID, as RFC 5019 clients send)"
: >requests.txt
for ((n = 0; n < REQUESTS; n++)); do
    id=${IDS[n]}
    openssl ocsp -issuer device-ca.pem -cert "certs/$id.pem" -no_nonce -reqout "req/$id.der" >/dev/null 2>&1 ||
        die "openssl ocsp -reqout for $id"
    enc=$(base64 -w0 "req/$id.der" | sed 's/+/%2B/g; s,/,%2F,g; s/=/%3D/g')
    hex=$(od -An -v -tx1 "req/$id.der" | tr -d ' \n')
    printf '%s %s %s\n' "$enc" "$hex" "${STATUS[$id]}" >>requests.txt
done

# ---------------------------------------------------------------- 3. the peers' data
# Our OCSP signer's key stays in ca-service's encrypted key store, so the peers sign
# with their own delegated-responder stand-in: a self-signed P-256 certificate with
# EKU OCSPSigning (clients trust it with -VAfile). Same curve and signature algorithm
# as ours; each response also carries the responder certificate, as ours does.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -keyout peer/responder.key -out peer/responder.pem -subj "/CN=OCSP benchmark peer responder" \
    -addext extendedKeyUsage=OCSPSigning 2>/dev/null

log "openssl index.txt and cfssl ocspsign responses for all $CERTS certificates"
: >peer/index.txt
: >peer/cfssl-responses.txt
for id in "${IDS[@]}"; do
    if [[ ${STATUS[$id]} == revoked ]]; then
        printf 'R\t%s\t%s,%s\t%s\tunknown\t%s\n' "${EXPIRY[$id]}" "$REVOKED_AT" "$REASON" "${SERIAL[$id]}" \
            "${SUBJECT[$id]}" >>peer/index.txt
        extra=(-status revoked -reason "$REASON_CODE" -revoked-at "$REVOKED_DAY")
    else
        printf 'V\t%s\t\t%s\tunknown\t%s\n' "${EXPIRY[$id]}" "${SERIAL[$id]}" "${SUBJECT[$id]}" >>peer/index.txt
        extra=(-status good)
    fi
    cfssl ocspsign -ca device-ca.pem -responder peer/responder.pem -responder-key peer/responder.key \
        -cert "certs/$id.pem" -interval 24h "${extra[@]}" 2>>logs/cfssl-ocspsign.log |
        sed -n 's/.*"ocspResponse":"\([^"]*\)".*/\1/p' >>peer/cfssl-responses.txt
done
((${#IDS[@]} == $(wc -l <peer/cfssl-responses.txt))) || die "cfssl ocspsign (logs/cfssl-ocspsign.log)"

# openssl ocsp answers one connection at a time, signs every response, and never keeps
# a connection alive; a connection that sends nothing (port probe, or one wrk leaves
# behind at the end of a run) makes it spin at 100 % CPU forever. So: a fresh process
# before every client run, readiness checked with ss, killed right after.
start_openssl() {
    stop_openssl
    openssl ocsp -index peer/index.txt -port "$OSSL_PORT" -rsigner peer/responder.pem \
        -rkey peer/responder.key -CA device-ca.pem -nmin 60 -ignore_err >logs/openssl-ocsp.log 2>&1 &
    OSSL_PID=$!
    wait_listen "$OSSL_PORT" "$OSSL_PID" "openssl ocsp"
}
stop_openssl() {
    if [[ -n $OSSL_PID ]]; then
        kill "$OSSL_PID" 2>/dev/null || true
        wait "$OSSL_PID" 2>/dev/null || true
        OSSL_PID=""
    fi
}
start_cfssl() {
    cfssl ocspserve -address 127.0.0.1 -port "$CFSSL_PORT" -responses peer/cfssl-responses.txt \
        >logs/cfssl-ocspserve.log 2>&1 &
    CFSSL_PID=$!
    wait_listen "$CFSSL_PORT" "$CFSSL_PID" "cfssl ocspserve"
    grep -q "Read $CERTS OCSP responses" logs/cfssl-ocspserve.log ||
        die "cfssl ocspserve did not load $CERTS responses: $(head -3 logs/cfssl-ocspserve.log)"
}

# ---------------------------------------------------------------- correctness
# verify SERVER URL POST_PATH GET_PREFIX TRUST...: openssl's client (POST) says good /
# revoked with a verified signature; a GET response verifies the same way. Sets
# VERIFY_GET to "get-ok" or "get-broken <http code>".
verify() {
    local server=$1 url=$2 post_path=$3 get_prefix=$4
    shift 4
    local id want out code enc
    for id in "$GOOD_ID" "$REVOKED_ID"; do
        want=${STATUS[$id]}
        out=$(openssl ocsp -issuer device-ca.pem -cert "certs/$id.pem" -url "$url$post_path" -no_nonce \
            "$@" -resp_text 2>&1) || die "$server: openssl ocsp -url failed for $id:\n$out"
        grep -q "Response verify OK" <<<"$out" || die "$server: response for $id does not verify:\n$out"
        grep -q "certs/$id.pem: $want" <<<"$out" || die "$server: $id is not '$want':\n$out"
    done
    log "$server: POST: openssl ocsp says $GOOD_ID good, $REVOKED_ID revoked, signature verified"
    id=$REVOKED_ID
    enc=$(awk -v n="$REVOKE_EVERY" 'NR==n{print $1}' requests.txt)
    code=$(curl -s -o "logs/$server-get.der" -w '%{http_code}' "$url$get_prefix$enc")
    if [[ $code != 200 ]]; then
        VERIFY_GET="get-broken $code"
        return
    fi
    out=$(openssl ocsp -respin "logs/$server-get.der" -reqin "req/$id.der" -issuer device-ca.pem \
        -cert "certs/$id.pem" "$@" 2>&1) || die "$server: GET response for $id:\n$out"
    grep -q "Response verify OK" <<<"$out" && grep -q "certs/$id.pem: revoked" <<<"$out" ||
        die "$server: GET response for $id is not a verified 'revoked':\n$out"
    log "$server: GET: $id revoked, signature verified"
    VERIFY_GET=get-ok
}

# ---------------------------------------------------------------- wrk
parse_ms() { # "8.84ms" / "912.00us" / "1.20s" / "2.00m" -> milliseconds
    awk -v v="$1" 'BEGIN{u=v; sub(/^[0-9.]+/,"",u); x=v+0;
        if(u=="us")x/=1000; else if(u=="s")x*=1000; else if(u=="m")x*=60000; printf "%.2f", x}'
}
proc_ticks() { [[ -r /proc/$1/stat ]] && awk '{print $14+$15}' "/proc/$1/stat" || echo 0; }
busy_ticks() { awk '$1=="cpu"{print $2+$3+$4+$7+$8}' /proc/stat; } # user nice system irq softirq, all CPUs
thread_ticks() { # pid -> "tid<TAB>comm<TAB>ticks" per thread
    local f line comm rest
    for f in /proc/"$1"/task/*/stat; do
        line=$(<"$f") 2>/dev/null || continue
        comm=${line#*(}
        comm=${comm%)*}
        rest=${line##*) }
        read -r -a a <<<"$rest"
        f=${f%/stat}
        printf '%s\t%s\t%s\n' "${f##*/}" "${comm// /_}" $((a[11] + a[12]))
    done
}

# check SERVER METHOD URL PATH: every request once on one connection, each response
# must be HTTP 200 + successful OCSPResponse + the expected certStatus.
check_run() {
    local server=$1 method=$2 url=$3 path=$4 secs out line
    secs=$(((REQUESTS + 499) / 500 + 1))
    if [[ $server == openssl ]]; then start_openssl; fi
    out=$(wrk -t1 -c1 -d"${secs}s" -s "$LUA" "$url" -- "$WORK/requests.txt" "$method" "$path" check 2>&1) ||
        die "$server $method check: wrk failed:\n$out"
    if [[ $server == openssl ]]; then stop_openssl; fi
    line=$(grep '^CHECK ' <<<"$out") || die "$server $method check: no CHECK line:\n$out"
    local responses ok bad
    responses=$(sed -n 's/.*responses=\([0-9]*\).*/\1/p' <<<"$line")
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
    bad=$(sed -n 's/.* bad=\([0-9]*\).*/\1/p' <<<"$line")
    BODY_BYTES[$server-$method]=$(sed -n 's/.*body_bytes=\([0-9]*\).*/\1/p' <<<"$line")
    ((bad == 0)) || die "$server $method: wrong answers: $line"
    ((responses >= REQUESTS)) || die "$server $method: only $responses of $REQUESTS requests checked in ${secs}s"
    log "$server $method: all $REQUESTS requests answered 200 + correct status ($ok responses checked, ${BODY_BYTES[$server-$method]} bytes each)"
}

# load_run SERVER METHOD URL PATH PID_VAR: warm-up, then the measured run; appends a row.
declare -A BODY_BYTES RPS PER_CPU
ROWS=()
FAILED=0
load_run() {
    local server=$1 method=$2 url=$3 path=$4 pidvar=$5 out la pid t0 t1 b0 b1 dur
    local -a wrk_args=(-t"$THREADS" -c"$CONNECTIONS" -s "$LUA" "$url" -- "$WORK/requests.txt" "$method" "$path")
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
        if [[ $server == openssl ]]; then start_openssl; fi
        wrk -d"$WARMUP" "${wrk_args[@]}" >"logs/wrk-$server-$method-warmup.txt" 2>&1 ||
            die "$server $method warm-up: wrk failed: $(cat "logs/wrk-$server-$method-warmup.txt")"
    fi
    if [[ $server == openssl ]]; then start_openssl; fi
    pid=${!pidvar}
    la=$(loadavg)
    log "$server $method: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency (load average $la)"
    t0=$(proc_ticks "$pid")
    b0=$(busy_ticks)
    if [[ $server == ca-service ]]; then thread_ticks "$pid" >"logs/threads-$method.before"; fi
    TIMEFORMAT='%U %S'
    { time wrk -d"$DURATION" --latency "${wrk_args[@]}" >"logs/wrk-$server-$method.txt" 2>&1; } 2>"logs/wrk-$server-$method.time" ||
        die "$server $method: wrk failed: $(cat "logs/wrk-$server-$method.txt")"
    t1=$(proc_ticks "$pid")
    b1=$(busy_ticks)
    if [[ $server == ca-service ]]; then thread_ticks "$pid" >"logs/threads-$method.after"; fi
    if [[ $server == openssl ]]; then stop_openssl; fi
    out=$(cat "logs/wrk-$server-$method.txt")
    local rps p50 p99 non2xx sockerr total
    rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
    total=$(awk '/requests in/{print $1}' <<<"$out")
    dur=$(awk '/requests in/{sub(/s,$/,"",$4); print $4}' <<<"$out")
    p50=$(parse_ms "$(awk '$1=="50%"{print $2}' <<<"$out")")
    p99=$(parse_ms "$(awk '$1=="99%"{print $2}' <<<"$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/{print $NF}' <<<"$out")
    non2xx=${non2xx:-0}
    sockerr=$(awk '/Socket errors:/{gsub(/,/,""); print $4+$6+$8+$10}' <<<"$out")
    sockerr=${sockerr:-0}
    local srv_cpu wrk_cpu other_cpu per_cpu
    srv_cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v d="$dur" 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')
    wrk_cpu=$(awk -v w="$(cat "logs/wrk-$server-$method.time")" -v d="$dur" 'BEGIN{split(w,x," "); printf "%.0f", (x[1]+x[2])/d*100}')
    # Everything else on the machine (other users' compilers, …) during the run.
    other_cpu=$(awk -v a="$t0" -v b="$t1" -v b0="$b0" -v b1="$b1" -v hz="$CLK_TCK" -v d="$dur" \
        -v w="$(cat "logs/wrk-$server-$method.time")" \
        'BEGIN{split(w,x," "); o=((b1-b0)-(b-a))/hz-(x[1]+x[2]); if(o<0)o=0; printf "%.0f", o/d*100}')
    # Responses per CPU-second the server itself used: comparable across runs with
    # different background load, unlike req/s.
    per_cpu=$(awk -v r="$rps" -v c="$srv_cpu" 'BEGIN{ if (c > 0) printf "%.0f", r / (c / 100); else print "-" }')
    RPS[$server-$method]=$rps
    PER_CPU[$server-$method]=$per_cpu
    ROWS+=("$server	$method	$rps	$p50	$p99	$non2xx	$sockerr	$total	$srv_cpu	$wrk_cpu	$other_cpu	$per_cpu	${BODY_BYTES[$server-$method]:-?}	$la")
    if ((non2xx > 0 || sockerr > 0)) || [[ -z $total || $total == 0 ]]; then
        echo "bench.sh: FAIL: $server $method: $non2xx non-2xx responses, $sockerr socket errors, $total requests:" >&2
        echo "$out" >&2
        FAILED=1
    fi
}

thread_split() { # method -> per thread-name CPU % of ca-service during the measured run
    local dur=$1 m=$2
    awk -F'\t' -v hz="$CLK_TCK" -v d="$dur" 'NR==FNR{b[$1]=$3; next}
        {x=$3-b[$1]; if(x>0){s[$2]+=x; if(x/hz/d>=0.01)c[$2]++}}
        END{for(k in s) printf "    %-24s %3d busy thread(s) %6.0f %%\n", k, c[k], s[k]/hz/d*100}' \
        "logs/threads-$m.before" "logs/threads-$m.after" | sort -k5 -nr
}

# ---------------------------------------------------------------- 4. run
START_UPTIME=$(uptime)
log "uptime at start: $START_UPTIME"
declare -A GET_OK
# ca-service
verify ca-service "$OURS_URL" /ocsp /ocsp/ -CAfile root.pem
[[ $VERIFY_GET == get-ok ]] || die "ca-service GET /ocsp/…: $VERIFY_GET"
GET_OK[ca-service]=1
# openssl
start_openssl
verify openssl "$OSSL_URL" / / -VAfile peer/responder.pem
stop_openssl
if [[ $VERIFY_GET == get-ok ]]; then GET_OK[openssl]=1; else log "openssl: GET not usable ($VERIFY_GET)"; fi
# cfssl
start_cfssl
verify cfssl "$CFSSL_URL" / / -VAfile peer/responder.pem
r=$VERIFY_GET
if [[ $r == get-ok ]]; then
    GET_OK[cfssl]=1
else
    log "cfssl: GET not usable (${r#get-broken }: $(grep -m1 'Error decoding' logs/cfssl-ocspserve.log | sed 's/^.*\] //'))"
    CFSSL_GET_NOTE="HTTP ${r#get-broken }"
fi

for method in $METHODS; do
    M=${method^^}
    p_ours=/ocsp
    [[ $M == GET ]] && p_ours=/ocsp/
    check_run ca-service "$M" "$OURS_URL" "$p_ours"
    load_run ca-service "$M" "$OURS_URL" "$p_ours" SERVE_PID
    if [[ $M == POST || -n ${GET_OK[openssl]:-} ]]; then
        check_run openssl "$M" "$OSSL_URL" /
        load_run openssl "$M" "$OSSL_URL" / OSSL_PID
    fi
    if [[ $M == POST || -n ${GET_OK[cfssl]:-} ]]; then
        check_run cfssl "$M" "$CFSSL_URL" /
        load_run cfssl "$M" "$CFSSL_URL" / CFSSL_PID
    else
        ROWS+=("cfssl	GET	n/a	-	-	-	-	-	-	-	-	-	-	GET broken in this cfssl (${CFSSL_GET_NOTE:-?}); see README")
    fi
done

if ((PERF)); then
    # DWARF call graphs: the release profile has debug info but no frame pointers.
    log "perf: profiling ca-service under GET load (perf record --call-graph dwarf, 6 s)"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d10s -s "$LUA" "$OURS_URL" -- "$WORK/requests.txt" GET /ocsp/ \
        >logs/wrk-perf.txt 2>&1 &
    wrk_pid=$!
    sleep 2
    perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVE_PID" -o perf.data -- sleep 6 \
        >logs/perf-record.log 2>&1 || log "perf record failed: $(tail -2 logs/perf-record.log)"
    wait "$wrk_pid" || true
    perf report -i perf.data --stdio --no-children --sort symbol -g none --percent-limit 1.5 2>/dev/null |
        grep -E '^ +[0-9.]+%' | sed -E 's/[ -]+$//' | cut -c1-120 | head -25 >perf-self.txt || true
    perf report -i perf.data --stdio --children --sort symbol -g none --percent-limit 0.05 2>/dev/null |
        grep -E '^ +[0-9.]+%' >perf-children.txt || true
    KEEP=1
fi
END_UPTIME=$(uptime)

# ---------------------------------------------------------------- 5. report
ratio() { # a b -> a/b with one decimal, or -
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN{ if (a+0 > 0 && b+0 > 0) printf "%.1fx", a/b; else printf "-" }'
}
echo
echo "OCSP responses/s — wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, keep-alive (openssl closes"
echo "every connection), $CERTS certs ($nrev revoked), $REQUESTS distinct requests, $(nproc) CPUs shared by"
echo "server and wrk; CPU % = CPU time / wall time (200 % = both cores); others = all other processes;"
echo "req/CPU-s = responses per CPU-second of the server process"
printf '%-10s %-4s %10s %7s %7s %7s %7s %8s %7s %7s %7s %9s %5s  %s\n' \
    server method "req/s" "p50 ms" "p99 ms" non-2xx sockerr requests "srv CPU" "wrk CPU" "others" "req/CPU-s" bytes \
    "load avg before run"
for row in "${ROWS[@]}"; do
    IFS=$'\t' read -r s m rps p50 p99 n2 se tot sc wc oc pc bb la <<<"$row"
    printf '%-10s %-4s %10s %7s %7s %7s %7s %8s %6s%% %6s%% %6s%% %9s %5s  %s\n' \
        "$s" "$m" "$rps" "$p50" "$p99" "$n2" "$se" "$tot" "$sc" "$wc" "$oc" "$pc" "$bb" "$la"
done | sed 's/ -%/  -/g'
echo
echo "Ratios ca-service / peer, same run (req/s; in brackets: req per server CPU-second):"
for method in $METHODS; do
    M=${method^^}
    printf '  %-4s vs openssl ocsp: %s (%s)   vs cfssl ocspserve: %s (%s)\n' "$M" \
        "$(ratio "${RPS[ca-service-$M]:-}" "${RPS[openssl-$M]:-}")" \
        "$(ratio "${PER_CPU[ca-service-$M]:-}" "${PER_CPU[openssl-$M]:-}")" \
        "$(ratio "${RPS[ca-service-$M]:-}" "${RPS[cfssl-$M]:-}")" \
        "$(ratio "${PER_CPU[ca-service-$M]:-}" "${PER_CPU[cfssl-$M]:-}")"
done
if [[ -n ${RPS[ca-service-GET]:-} && -n ${RPS[cfssl-POST]:-} && -z ${RPS[cfssl-GET]:-} ]]; then
    printf '  GET (RFC 5019) vs cfssl POST (its only working method here): %s (%s)\n' \
        "$(ratio "${RPS[ca-service-GET]}" "${RPS[cfssl-POST]}")" \
        "$(ratio "${PER_CPU[ca-service-GET]}" "${PER_CPU[cfssl-POST]}")"
fi
if [[ -n ${RPS[ca-service-GET]:-} ]]; then
    echo
    echo "ca-service CPU by thread during the GET run:"
    thread_split "$(awk '/requests in/{sub(/s,$/,"",$4); print $4}' logs/wrk-ca-service-GET.txt)" GET
fi
if ((PERF)) && [[ -s perf-children.txt ]]; then
    echo
    echo "perf: share of ca-service CPU under GET load, inclusive (perf.data, perf-*.txt in $WORK):"
    perf_part() { # label, extended regex on the symbol -> the largest inclusive share matching
        awk -v label="$1" -v re="$2" '{ sym = $0; sub(/^ *[0-9.]+% +[0-9.]+% +\[.\] /, "", sym)
            if (sym ~ re) { v = $1 + 0; if (v > max) max = v } }
            END { printf "  %-58s %5.1f %%\n", label, max }' perf-children.txt
    }
    perf_part "socket writes (send: kernel TCP over loopback)" '^__libc_send|^__send'
    perf_part "socket reads (recv)" '^__libc_recv'
    perf_part "routing: actix-router regex-lite match of /ocsp/{request:.*}" 'ResourceDef::capture_match_info_fn'
    perf_part "request span + request log line (tracing-subscriber fmt)" 'tracing_subscriber.*on_event'
    perf_part "ocsp::get handler, all of it" '^ca_service::ocsp::get::[{][{]closure[}][}]'
    perf_part "  OcspService::answer (DER parse + cache lookup)" '^ca_service::ocsp::OcspService::answer'
    perf_part "    DER parse of the request (revocation::ocsp::parse_request)" '^revocation::ocsp::parse_request'
    perf_part "    cache Mutex<HashMap> lookup (hashbrown get)" '^hashbrown::map::HashMap<K,V,S,A>::get'
    perf_part "  ETag: SHA-256 of the response (sha256_hex)" '^ca_service::issuance::sha256_hex'
    perf_part "  base64 decode" '^base64::engine::Engine::decode'
    perf_part "  percent-decoding" '^ca_service::ocsp::percent_decode'
    perf_part "  response headers (insert_header; HttpDate, format!)" 'HttpResponseBuilder::insert_header'
    echo "  top self time:"
    sed 's/^/  /' perf-self.txt
fi
echo
echo "uptime at start: $START_UPTIME"
echo "uptime at end:   $END_UPTIME"

# Judged on GET (what RFC 5019 clients use) when it was measured.
best_m=GET
[[ -n ${RPS[ca-service-GET]:-} ]] || best_m=POST
best=${RPS[ca-service-$best_m]:-0}
cf=${RPS[cfssl-POST]:-${RPS[cfssl-GET]:-0}}
verdict=$(awk -v b="$best" -v m="$best_m" -v c="$cf" -v t="$TARGET_RPS" -v r="$TARGET_RATIO" 'BEGIN{
    ok = (b >= t) && (c > 0 && b / c >= r);
    printf "%s: ca-service %s %.0f/s (target >= %d), ", ok ? "TARGET MET" : "TARGET MISSED", m, b, t
    if (c > 0) printf "%.1fx cfssl ocspserve (target >= %dx)", b / c, r; else printf "no cfssl figure" }')
echo "$verdict"
{
    printf 'server\tmethod\treq_s\tp50_ms\tp99_ms\tnon2xx\tsocket_errors\trequests\tserver_cpu_pct\twrk_cpu_pct\tother_cpu_pct\treq_per_server_cpu_s\tresponse_bytes\tloadavg\n'
    printf '%s\n' "${ROWS[@]}"
} >results.tsv
[[ -n $RESULTS ]] && cp results.tsv "$RESULTS"
((FAILED == 0)) || die "non-2xx responses or socket errors (see above)"
if ((ENFORCE)) && [[ $verdict == "TARGET MISSED"* ]]; then exit 3; fi
