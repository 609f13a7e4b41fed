//! The table, the ratios against the peer, the verdict on each target and one line
//! of JSON.

use crate::load::PhaseResult;
use crate::{Mode, PeerPhase, RunArgs};

/// Targets, against the peer measured in the same run.
const TARGET_KEEPALIVE_VS_FULL: f64 = 1.5;
const TARGET_NEW_CONNECTION_VS_FULL: f64 = 1.5;
const TARGET_KEEPALIVE_VS_PLAIN: f64 = 1.0;

pub fn line(r: &PhaseResult) -> String {
    format!(
        "{:<24} {:>8} {:>6} {:>7.1} {:>9.1} {:>8.2} {:>8.2} {:>8.2}  {}",
        r.name,
        r.successes,
        r.errors,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        cpu_line(r)
    )
}

/// "ca-service 410 + postgres 240 + est-load 120 = 770".
fn cpu_line(r: &PhaseResult) -> String {
    let parts: Vec<String> =
        r.cpu_us.iter().filter(|(n, _)| n != "total").map(|(n, v)| format!("{n} {v:.0}")).collect();
    match r.cpu_us.iter().find(|(n, _)| n == "total") {
        Some((_, t)) => format!("{} = {t:.0}", parts.join(" + ")),
        None => String::new(),
    }
}

fn ratio(ours: Option<&PhaseResult>, peer: Option<&PhaseResult>) -> Option<f64> {
    match (ours, peer) {
        (Some(o), Some(p)) if p.rate() > 0.0 => Some(o.rate() / p.rate()),
        _ => None,
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

fn round3(r: Option<f64>) -> Option<f64> {
    r.map(|r| (r * 1000.0).round() / 1000.0)
}

pub fn print(args: &RunArgs, ours: &[(Mode, PhaseResult)], peers: &[(PeerPhase, PhaseResult)]) {
    let our = |m: Mode| ours.iter().find(|(mode, _)| *mode == m).map(|(_, r)| r);
    let peer = |k: PeerPhase| peers.iter().find(|(kind, _)| *kind == k).map(|(_, r)| r);
    let (ka, nc) = (our(Mode::Keepalive), our(Mode::NewConnection));
    let (full_ka, full_nc, plain) =
        (peer(PeerPhase::FullKeepalive), peer(PeerPhase::FullNewConnection), peer(PeerPhase::PlainKeepalive));
    let r_ka_full = ratio(ka, full_ka);
    let r_nc_full = ratio(nc, full_nc);
    let r_ka_plain = ratio(ka, plain);
    let store = format!("{:?}", args.store).to_lowercase();
    let keys = format!("{:?}", args.keys).to_lowercase();

    println!();
    println!(
        "est-load: store={store} keys={keys} concurrency={} fleet={} new connections {}",
        args.concurrency,
        args.fleet,
        if args.resumption { "resume their TLS session" } else { "make a full handshake" }
    );
    println!(
        "{:<24} {:>8} {:>6} {:>7} {:>9} {:>8} {:>8} {:>8}  CPU µs per request",
        "phase", "ok", "errors", "secs", "per sec", "p50 ms", "p99 ms", "max ms"
    );
    for r in ours.iter().map(|(_, r)| r).chain(peers.iter().map(|(_, r)| r)) {
        println!("{}", line(r));
    }
    let fmt = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{r:.2}"));
    if !peers.is_empty() {
        println!(
            "ratio ours/cfssl-full: keep-alive {}, new-connection {}; ours/cfssl-plain: keep-alive {}",
            fmt(r_ka_full),
            fmt(r_nc_full),
            fmt(r_ka_plain)
        );
    }
    let t_ka_full = r_ka_full.map(|r| r >= TARGET_KEEPALIVE_VS_FULL);
    let t_nc_full = r_nc_full.map(|r| r >= TARGET_NEW_CONNECTION_VS_FULL);
    let t_ka_plain = r_ka_plain.map(|r| r >= TARGET_KEEPALIVE_VS_PLAIN);
    // p99 below the like-for-like peer's, mode for mode.
    let p99_pairs: Vec<(f64, f64)> =
        [(ka, full_ka), (nc, full_nc)].into_iter().filter_map(|(o, p)| Some((o?.p99_ms, p?.p99_ms))).collect();
    let t_p99 = (!p99_pairs.is_empty()).then(|| p99_pairs.iter().all(|(o, p)| o < p));
    let t_errors = ours.iter().map(|(_, r)| r).chain(peers.iter().map(|(_, r)| r)).all(|r| r.errors == 0);
    println!(
        "targets: keep-alive >= {TARGET_KEEPALIVE_VS_FULL}x cfssl-full: {}; new-connection >= \
         {TARGET_NEW_CONNECTION_VS_FULL}x cfssl-full: {}; keep-alive >= {TARGET_KEEPALIVE_VS_PLAIN}x cfssl-plain: {}; \
         p99 below cfssl-full's: {}; no errors: {}",
        verdict(t_ka_full),
        verdict(t_nc_full),
        verdict(t_ka_plain),
        verdict(t_p99),
        verdict(Some(t_errors))
    );
    let json = serde_json::json!({
        "tool": "est-load",
        "store": store,
        "keys": keys,
        "concurrency": args.concurrency,
        "requests_per_phase": args.requests,
        "peer_requests": args.peer_requests.unwrap_or(3 * args.requests),
        "max_secs": args.max_secs,
        "resumption": args.resumption,
        "fleet_devices": args.fleet,
        "keepalive": ka.map(PhaseResult::json),
        "new_connection": nc.map(PhaseResult::json),
        "cfssl_full_keepalive": full_ka.map(PhaseResult::json),
        "cfssl_full_new_connection": full_nc.map(PhaseResult::json),
        "cfssl_plain_keepalive": plain.map(PhaseResult::json),
        "ratio_keepalive_vs_cfssl_full": round3(r_ka_full),
        "ratio_new_connection_vs_cfssl_full": round3(r_nc_full),
        "ratio_keepalive_vs_cfssl_plain": round3(r_ka_plain),
        "targets_met": {
            "keepalive_vs_cfssl_full": t_ka_full,
            "new_connection_vs_cfssl_full": t_nc_full,
            "keepalive_vs_cfssl_plain": t_ka_plain,
            "p99_below_cfssl_full": t_p99,
            "no_errors": t_errors,
        },
    });
    println!("{json}");
}
