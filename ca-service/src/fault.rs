//! Test-only fault points. In debug builds, `PKI_FAULT_POINT=<name>` ends the process
//! abruptly (as `kill -9` or a power cut would) when it reaches the point of that
//! name, so end-to-end tests can prove what survives a crash at exactly that moment.
//! Release builds compile every point to nothing.

/// Ends the process here if `PKI_FAULT_POINT` names this point (debug builds only).
#[cfg(debug_assertions)]
pub fn point(name: &str) {
    if std::env::var("PKI_FAULT_POINT").is_ok_and(|v| v == name) {
        eprintln!("fault point '{name}' reached: aborting (PKI_FAULT_POINT)");
        std::process::abort();
    }
}

/// Release builds have no fault points.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
