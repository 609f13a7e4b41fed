//! EST (RFC 7030) protocol pieces. For now: decoding and checking PKCS#10 requests
//! (proof of possession and the weak-crypto policy), shared by EST enrollment and
//! the CLI's batch issuance.

pub mod csr;

pub use csr::{check_csr, CheckedCsr, CsrError, PublicKeyKind, MAX_CSR_BYTES};
