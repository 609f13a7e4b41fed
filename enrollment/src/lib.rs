//! EST (RFC 7030) protocol pieces: decoding and checking PKCS#10 requests (proof of
//! possession and the weak-crypto policy), shared by EST enrollment and the CLI's batch
//! issuance; and the EST message encodings (base64 bodies, certs-only CMS, csrattrs,
//! serverkeygen multipart) and the renewal identity rule; and the registration
//! authority ([`ra`]): the enrollment pipeline every issuing path goes through.

pub mod certid;
pub mod csr;
pub mod est;
pub mod ra;

pub use csr::{check_csr, CheckedCsr, CsrError, PublicKeyKind, MAX_CSR_BYTES};
pub use est::{
    base64_line, certs_only, check_content_type, check_renewal_identity, csr_attrs, decode_base64_body,
    serverkeygen_response, EstError, RenewalMismatch, MAX_BODY_BYTES,
};
