//! Console sessions: what an API token or an operator certificate is exchanged for at
//! sign-in, so a browser need not send the token again.
//!
//! A session is a random 256-bit value in a cookie (`__Host-console`: `Secure`,
//! `HttpOnly`, `SameSite=Strict`, path `/`, no domain), kept here only as its SHA-256,
//! so a memory dump of the table names no live cookie. It ends after
//! `console.idle_timeout_secs` without a request, `console.max_session_secs` after
//! sign-in, at sign-out, or when its credential stops being valid (the console checks
//! that on every request). Each session has its own CSRF token, which every form
//! carries and the console compares in constant time. Sessions live in this process:
//! instances behind one address need sticky routing, or an operator signs in again.
//!
//! The table is bounded ([`MAX_SESSIONS`]): only a signed-in principal adds to it,
//! expired sessions are swept on every sign-in, and when it is still full the session
//! idle the longest ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::admin::Principal;

/// The session cookie's name (`__Host-`: the browser keeps it only when it is
/// `Secure`, for path `/` and without a domain).
pub const COOKIE: &str = "__Host-console";
/// Most sessions held at once.
pub const MAX_SESSIONS: usize = 10_000;

/// A live session, as a request sees it.
#[derive(Clone, Debug)]
pub struct Session {
    pub principal: Principal,
    /// The audit actor of whoever signed in.
    pub actor: String,
    /// The token every form of this session carries (hex).
    pub csrf: String,
}

struct Entry {
    session: Session,
    started: Instant,
    last_seen: Instant,
}

/// The sessions of this process.
pub struct Sessions {
    table: Mutex<HashMap<[u8; 32], Entry>>,
    idle: Duration,
    lifetime: Duration,
}

fn key(cookie: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cookie.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

fn random_text() -> Zeroizing<String> {
    let bytes = Zeroizing::new(rand::random::<[u8; 32]>());
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice()))
}

impl Sessions {
    pub fn new(idle: Duration, lifetime: Duration) -> Self {
        Sessions { table: Mutex::new(HashMap::new()), idle, lifetime }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.last_seen) < self.idle
            && now.saturating_duration_since(entry.started) < self.lifetime
    }

    /// Starts a session for `principal`; returns the cookie value (shown once: only
    /// its hash is kept).
    pub fn start(&self, principal: Principal, actor: String, now: Instant) -> Zeroizing<String> {
        let cookie = random_text();
        let csrf = hex::encode(rand::random::<[u8; 32]>());
        let mut table = self.table();
        table.retain(|_, e| self.live(e, now));
        if table.len() >= MAX_SESSIONS {
            if let Some(oldest) = table.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| *k) {
                table.remove(&oldest);
            }
        }
        let entry = Entry { session: Session { principal, actor, csrf }, started: now, last_seen: now };
        table.insert(key(&cookie), entry);
        cookie
    }

    /// The live session a cookie names, marked as used now; an expired one ends here.
    pub fn find(&self, cookie: &str, now: Instant) -> Option<Session> {
        let k = key(cookie);
        let mut table = self.table();
        let entry = table.get_mut(&k)?;
        if !self.live(entry, now) {
            table.remove(&k);
            return None;
        }
        entry.last_seen = now;
        Some(entry.session.clone())
    }

    /// Ends the session a cookie names (if any).
    pub fn end(&self, cookie: &str) {
        self.table().remove(&key(cookie));
    }

    /// How many sessions are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether a form's CSRF token is the session's, compared in constant time.
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(session.csrf.as_bytes(), presented.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Credential;
    use crate::store::Role;

    fn principal() -> Principal {
        Principal { name: "ops".into(), role: Role::Operator, credential: Credential::Token { id: "ab".into() } }
    }

    #[test]
    fn a_session_ends_when_idle_after_its_lifetime_and_at_sign_out() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        let cookie = sessions.start(principal(), "token:ab:ops".into(), t0);
        assert!(cookie.len() >= 43, "256 bits of cookie");
        let s = sessions.find(&cookie, t0 + Duration::from_secs(59)).expect("used within the idle timeout");
        assert_eq!((s.actor.as_str(), s.csrf.len()), ("token:ab:ops", 64));
        // Each use moves the idle deadline on …
        assert!(sessions.find(&cookie, t0 + Duration::from_secs(118)).is_some());
        // … but not past the lifetime.
        for at in (170..300).step_by(50) {
            assert!(sessions.find(&cookie, t0 + Duration::from_secs(at)).is_some());
        }
        assert!(sessions.find(&cookie, t0 + Duration::from_secs(300)).is_none(), "past the lifetime");
        assert!(sessions.is_empty(), "an expired session is dropped when found");

        let cookie = sessions.start(principal(), "a".into(), t0);
        assert!(sessions.find(&cookie, t0 + Duration::from_secs(60)).is_none(), "idle for the whole timeout");
        let cookie = sessions.start(principal(), "a".into(), t0);
        sessions.end(&cookie);
        assert!(sessions.find(&cookie, t0).is_none());
        assert!(sessions.find("not-a-cookie", t0).is_none());
    }

    #[test]
    fn csrf_tokens_are_per_session_and_must_match_exactly() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        let a = sessions.find(&sessions.start(principal(), "a".into(), t0), t0).unwrap();
        let b = sessions.find(&sessions.start(principal(), "b".into(), t0), t0).unwrap();
        assert_ne!(a.csrf, b.csrf);
        assert!(csrf_matches(&a, &a.csrf.clone()));
        assert!(!csrf_matches(&a, &b.csrf));
        assert!(!csrf_matches(&a, ""));
        assert!(!csrf_matches(&a, &a.csrf[..63]));
    }

    #[test]
    fn the_table_is_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        let first = sessions.start(principal(), "first".into(), t0);
        for i in 1..=MAX_SESSIONS {
            sessions.start(principal(), "x".into(), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.find(&first, t0 + Duration::from_secs(1)).is_none(), "the longest idle made room");
        // Expired ones are swept at the next sign-in.
        sessions.start(principal(), "late".into(), t0 + Duration::from_secs(120));
        assert_eq!(sessions.len(), 1);
    }
}
