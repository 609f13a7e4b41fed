//! What a caller who has not authenticated can make the service do, bounded (DESIGN
//! invariant 8): failed authentications are rate-limited per client address, and
//! their refusals are audited in aggregate.
//!
//! - [`FailureLimiter`]: a token bucket per client address (IPv6 by /64), holding
//!   [`FAILURE_BURST`] failures and refilling [`FAILURES_PER_SEC`]; an address that has
//!   used them up gets 429 with `Retry-After` before any credential is looked at. At
//!   most [`MAX_TRACKED_ADDRESSES`] addresses are tracked.
//! - [`RefusalAudit`]: a refusal whose actor is not authenticated ([`unauthenticated`])
//!   and who presented no TLS client certificate is audited at once the first time its kind — client address, action, actor,
//!   claimed identity, reason, status — is seen in a window of [`REFUSAL_WINDOW`];
//!   repeats within the window are counted and written as one entry (`details.repeated`)
//!   when the window ends. Authenticated callers' refusals are one entry each. At most
//!   [`MAX_REFUSAL_KINDS`] kinds are held per window; beyond that repeats are counted
//!   per action only.
//!
//! [`Gate`] holds both and the credential key; `serve` makes one and shares it with
//! the EST and admin handlers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::audit::AuditEvent;
use crate::credentials::CredentialKey;
use crate::store::Store;

/// Failed authentications an address may make at once.
pub const FAILURE_BURST: u32 = 64;
/// Failed authentications an address regains per second.
pub const FAILURES_PER_SEC: f64 = 1.0;
/// Addresses the failure limiter tracks at most.
pub const MAX_TRACKED_ADDRESSES: usize = 4096;
/// The aggregation window of unauthenticated refusals.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(60);
/// Distinct kinds of unauthenticated refusal held per window.
pub const MAX_REFUSAL_KINDS: usize = 1024;

/// What the abuse defences share: the credential key, the failure limiter and the
/// refusal audit.
#[derive(Debug)]
pub struct Gate {
    pub key: Arc<CredentialKey>,
    pub failures: FailureLimiter,
    pub refusals: Arc<RefusalAudit>,
}

impl Gate {
    pub fn new(key: Arc<CredentialKey>, store: Arc<dyn Store>) -> Self {
        Self { key, failures: FailureLimiter::default(), refusals: Arc::new(RefusalAudit::new(store)) }
    }

    /// Starts flushing the refusal counts every window. Must run inside a tokio runtime.
    pub fn spawn_flush(&self) {
        RefusalAudit::spawn_flush(Arc::downgrade(&self.refusals));
    }
}

/// Whether an audit actor is someone who has not (yet) proved who they are: no
/// credential (`anonymous`, `unauthenticated`) or a claimed one that did not verify
/// (`token:<id>:?`).
pub fn unauthenticated(actor: &str) -> bool {
    matches!(actor, "anonymous" | "unauthenticated") || actor.ends_with(":?")
}

/// The address a client is tracked by: IPv4 as is, IPv6 by its /64 (one host gets a
/// whole /64), IPv4-mapped IPv6 as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Failed authentications per client address: a token bucket each, bounded in number.
#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    per_sec: f64,
    max_tracked: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(FAILURE_BURST, FAILURES_PER_SEC, MAX_TRACKED_ADDRESSES)
    }
}

impl FailureLimiter {
    pub fn new(burst: u32, per_sec: f64, max_tracked: usize) -> Self {
        Self { burst: f64::from(burst), per_sec, max_tracked, buckets: Mutex::new(HashMap::new()) }
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * self.per_sec).min(self.burst)
    }

    /// `Err(seconds to wait)` if `client` has no failures left; an unknown address may try.
    pub fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let Some(ip) = client.map(client_key) else { return Ok(()) };
        let buckets = locked(&self.buckets);
        match buckets.get(&ip).map(|b| self.level(b, now)) {
            Some(level) if level < 1.0 => Err(((1.0 - level) / self.per_sec).ceil().max(1.0) as u64),
            _ => Ok(()),
        }
    }

    /// Records a failed authentication of `client`.
    pub fn failed(&self, client: Option<IpAddr>, now: Instant) {
        let Some(ip) = client.map(client_key) else { return };
        let mut buckets = locked(&self.buckets);
        let level = match buckets.get(&ip).map(|b| self.level(b, now)) {
            Some(level) => level,
            None => {
                if buckets.len() >= self.max_tracked {
                    self.make_room(&mut buckets, now);
                }
                self.burst
            }
        };
        buckets.insert(ip, Bucket { tokens: (level - 1.0).max(0.0), at: now });
    }

    /// Forgets the addresses whose bucket has refilled; if none has, the one that
    /// failed longest ago.
    fn make_room(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, b| self.level(b, now) < self.burst);
        if buckets.len() >= self.max_tracked {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(ip, _)| *ip) {
                buckets.remove(&oldest);
            }
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        locked(&self.buckets).len()
    }
}

/// A refusal to audit.
#[derive(Clone, Debug)]
pub struct Refused<'a> {
    pub action: &'static str,
    /// Who the caller turned out to be (or claimed to be, unverified: `token:<id>:?`).
    pub actor: &'a str,
    pub target: &'a str,
    pub client: Option<IpAddr>,
    /// The caller presented a TLS client certificate (one of our CAs' issuing: the
    /// handshake checked it). Such refusals are never aggregated: the caller holds a
    /// key we certified, and its refusals (superseded, revoked, not a station) are
    /// each worth an entry.
    pub certified: bool,
    /// An identity claimed but not proved, when the actor does not name it (an EST
    /// station credential's station name).
    pub claim: Option<&'a str>,
    pub status: u16,
    pub reason: &'a str,
}

impl Refused<'_> {
    /// The entry written for this refusal.
    pub fn event(&self) -> AuditEvent {
        AuditEvent::success(self.actor, self.action, self.target)
            .with_outcome(format!("denied: {}", self.reason))
            .with_details(serde_json::json!({ "status": self.status }))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Kind {
    client: IpAddr,
    action: &'static str,
    actor: String,
    claim: Option<String>,
    reason: String,
    status: u16,
}

#[derive(Debug)]
struct Seen {
    /// The first one's target (written at once).
    target: String,
    /// Further ones in this window, not yet written.
    repeated: u64,
}

#[derive(Debug, Default)]
struct Window {
    kinds: HashMap<Kind, Seen>,
    /// Repeats that found the kinds table full, per action.
    overflow: HashMap<&'static str, u64>,
}

/// The audit of refusals, aggregating those of unauthenticated callers per window.
#[derive(Debug)]
pub struct RefusalAudit {
    store: Arc<dyn Store>,
    window: Duration,
    max_kinds: usize,
    current: Mutex<Window>,
}

impl RefusalAudit {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_limits(store, REFUSAL_WINDOW, MAX_REFUSAL_KINDS)
    }

    pub fn with_limits(store: Arc<dyn Store>, window: Duration, max_kinds: usize) -> Self {
        Self { store, window, max_kinds, current: Mutex::new(Window::default()) }
    }

    /// Flushes the counts every window until the audit is dropped.
    fn spawn_flush(this: Weak<Self>) {
        let Some(window) = this.upgrade().map(|a| a.window) else { return };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(window);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(audit) = this.upgrade() else { return };
                audit.flush().await;
            }
        });
    }

    /// Audits a refusal: at once, unless it is an unauthenticated caller's repeat of a
    /// kind already written in this window (then it is counted).
    pub async fn record(&self, r: &Refused<'_>) {
        if self.counted(r) {
            return;
        }
        if let Err(e) = self.store.append_audit(&[r.event()]).await {
            tracing::error!(error = %e, action = r.action, "could not audit a refusal");
        }
    }

    /// Whether `r` was counted rather than to be written now.
    fn counted(&self, r: &Refused<'_>) -> bool {
        let Some(client) = r.client.map(client_key).filter(|_| !r.certified && unauthenticated(r.actor)) else {
            return false;
        };
        let kind = Kind {
            client,
            action: r.action,
            actor: r.actor.to_string(),
            claim: r.claim.map(str::to_string),
            reason: r.reason.to_string(),
            status: r.status,
        };
        let mut w = locked(&self.current);
        if let Some(seen) = w.kinds.get_mut(&kind) {
            seen.repeated += 1;
            return true;
        }
        if w.kinds.len() >= self.max_kinds {
            *w.overflow.entry(r.action).or_default() += 1;
            return true;
        }
        w.kinds.insert(kind, Seen { target: r.target.to_string(), repeated: 0 });
        false
    }

    /// Ends the window: writes one entry per kind that repeated (with the count) and
    /// one per action for the overflow, then starts a new window. Returns the number
    /// of refusals the written entries stand for.
    pub async fn flush(&self) -> u64 {
        let window = std::mem::take(&mut *locked(&self.current));
        let secs = self.window.as_secs();
        let mut events = Vec::new();
        let mut total = 0;
        for (kind, seen) in window.kinds.into_iter().filter(|(_, s)| s.repeated > 0) {
            total += seen.repeated;
            let mut details = serde_json::json!({
                "status": kind.status,
                "client": kind.client.to_string(),
                "repeated": seen.repeated,
                "window_secs": secs,
            });
            if let Some(claim) = &kind.claim {
                details["claimed"] = serde_json::Value::from(claim.as_str());
            }
            events.push(
                AuditEvent::success(kind.actor, kind.action, seen.target)
                    .with_outcome(format!("denied: {}", kind.reason))
                    .with_details(details),
            );
        }
        for (action, repeated) in window.overflow {
            total += repeated;
            events.push(
                AuditEvent::success("unauthenticated", action, "*")
                    .with_outcome("denied: unauthenticated refusals of too many kinds to list one by one")
                    .with_details(serde_json::json!({ "repeated": repeated, "window_secs": secs })),
            );
        }
        if events.is_empty() {
            return 0;
        }
        if let Err(e) = self.store.append_audit(&events).await {
            tracing::error!(error = %e, refusals = total, "could not audit the aggregated refusals");
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    #[test]
    fn an_address_gets_its_burst_then_waits_for_the_refill() {
        let limiter = FailureLimiter::new(3, 0.5, 16);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(a, t0), Ok(()));
            limiter.failed(a, t0);
        }
        // Out of failures: 2 s until the next (0.5 per second).
        assert_eq!(limiter.check(a, t0), Err(2));
        assert_eq!(limiter.check(a, t0 + Duration::from_millis(1500)), Err(1));
        assert_eq!(limiter.check(a, t0 + Duration::from_secs(2)), Ok(()));
        // Other addresses are not affected, nor is a caller without one.
        assert_eq!(limiter.check(ip("192.0.2.2"), t0), Ok(()));
        assert_eq!(limiter.check(None, t0), Ok(()));
        limiter.failed(None, t0);
        // The bucket never holds more than the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            limiter.failed(a, later);
        }
        assert!(limiter.check(a, later).is_err());
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = FailureLimiter::new(1, 1.0, 16);
        let t0 = Instant::now();
        limiter.failed(ip("2001:db8:1:2::1"), t0);
        assert!(limiter.check(ip("2001:db8:1:2:ffff::7"), t0).is_err());
        assert!(limiter.check(ip("2001:db8:1:3::1"), t0).is_ok());
        limiter.failed(ip("::ffff:192.0.2.9"), t0);
        assert!(limiter.check(ip("192.0.2.9"), t0).is_err());
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let limiter = FailureLimiter::new(2, 1.0, 100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiter.failed(Some(addr), t0 + Duration::from_millis(u64::from(i)));
            assert!(limiter.tracked() <= 100);
        }
        // The newest stay tracked.
        let newest = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 9_999));
        limiter.failed(Some(newest), t0 + Duration::from_millis(9_999));
        assert!(limiter.check(Some(newest), t0 + Duration::from_millis(9_999)).is_err());
    }

    #[test]
    fn who_is_unauthenticated() {
        for a in ["anonymous", "unauthenticated", "token:0123456789abcdef:?"] {
            assert!(unauthenticated(a), "{a}");
        }
        for a in ["token:0123456789abcdef:ops", "operator:alice:0123", "station:line-1:credential", "device:SN-1:ab"] {
            assert!(!unauthenticated(a), "{a}");
        }
    }

    fn refused<'a>(actor: &'a str, client: &str, reason: &'a str) -> Refused<'a> {
        Refused {
            action: "api.audit.read",
            actor,
            target: "audit",
            client: ip(client),
            certified: false,
            claim: None,
            status: 401,
            reason,
        }
    }

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("pki.db").display());
        let store = crate::store::open(&url).await.unwrap();
        (dir, store)
    }

    async fn entries(store: &Arc<dyn Store>) -> Vec<crate::audit::AuditEntry> {
        store.audit_entries(0, 10_000).await.unwrap()
    }

    #[tokio::test]
    async fn unauthenticated_refusals_are_written_once_per_kind_and_counted() {
        let (_dir, store) = store().await;
        let audit = RefusalAudit::with_limits(store.clone(), Duration::from_secs(60), 8);
        for _ in 0..500 {
            audit.record(&refused("token:0123456789abcdef:?", "192.0.2.1", "invalid or revoked API token")).await;
        }
        // Another address, another claimed token, another reason: each its own first.
        audit.record(&refused("token:0123456789abcdef:?", "192.0.2.2", "invalid or revoked API token")).await;
        audit.record(&refused("token:ffffffffffffffff:?", "192.0.2.1", "invalid or revoked API token")).await;
        audit.record(&refused("anonymous", "192.0.2.1", "missing credential")).await;
        let mut claimed = refused("unauthenticated", "192.0.2.1", "station credentials are not valid");
        audit.record(&claimed).await;
        claimed.claim = Some("line-404");
        audit.record(&claimed).await;
        audit.record(&claimed).await;
        assert_eq!(entries(&store).await.len(), 6, "the first of each kind at once");
        // A caller with a TLS client certificate (a superseded device, say): every one.
        let mut device = refused("unauthenticated", "192.0.2.1", "the certificate is no longer valid");
        device.certified = true;
        audit.record(&device).await;
        audit.record(&device).await;
        assert_eq!(entries(&store).await.len(), 8);
        // Authenticated callers' refusals: every one.
        for _ in 0..3 {
            audit.record(&refused("token:0123456789abcdef:ops", "192.0.2.1", "role operator may not")).await;
        }
        assert_eq!(entries(&store).await.len(), 11);

        assert_eq!(audit.flush().await, 500);
        let all = entries(&store).await;
        assert_eq!(all.len(), 13, "one entry per kind that repeated");
        let details: Vec<serde_json::Value> =
            all[11..].iter().map(|e| serde_json::from_str(&e.event.details).unwrap()).collect();
        let flood = details.iter().find(|d| d["repeated"] == 499).expect("the flood's count");
        assert_eq!((flood["client"].as_str(), flood["status"].as_u64()), (Some("192.0.2.1"), Some(401)));
        assert!(details.iter().any(|d| d["repeated"] == 1 && d["claimed"] == "line-404"));
        // A new window starts with a first again; an empty window writes nothing.
        audit.record(&refused("token:0123456789abcdef:?", "192.0.2.1", "invalid or revoked API token")).await;
        assert_eq!(entries(&store).await.len(), 14);
        assert_eq!(audit.flush().await, 0);
        assert_eq!(entries(&store).await.len(), 14);
        // Logged as every entry is.
        crate::audit::verify(crate::audit::LogHead::default(), &entries(&store).await).unwrap();
    }

    #[tokio::test]
    async fn too_many_kinds_are_counted_per_action() {
        let (_dir, store) = store().await;
        let audit = RefusalAudit::with_limits(store.clone(), Duration::from_secs(60), 4);
        for i in 0..1000u32 {
            let actor = format!("token:{i:016x}:?");
            audit.record(&refused(&actor, "192.0.2.1", "invalid or revoked API token")).await;
        }
        assert_eq!(entries(&store).await.len(), 4);
        assert_eq!(audit.flush().await, 996);
        let all = entries(&store).await;
        assert_eq!(all.len(), 5);
        assert_eq!((all[4].event.target.as_str(), all[4].event.action.as_str()), ("*", "api.audit.read"));
        assert!(all[4].event.details.contains("\"repeated\":996"), "{}", all[4].event.details);
    }

    #[tokio::test]
    async fn without_a_client_address_every_refusal_is_written() {
        let (_dir, store) = store().await;
        let audit = RefusalAudit::new(store.clone());
        for _ in 0..3 {
            audit.record(&refused("anonymous", "not an address", "missing credential")).await;
        }
        assert_eq!(entries(&store).await.len(), 3);
    }
}
