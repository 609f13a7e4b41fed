//! Revocation publishing: CRLs (full and delta, RFC 5280) and OCSP (RFC 6960/5019)
//! encoding and the responder's pre-signed cache. Empty until the revocation issue
//! lands; the crate exists so the workspace layout of DESIGN §2 is in place and its
//! dependency direction (`hsm` ← `revocation` ← `ca-service`) is fixed from the start.
