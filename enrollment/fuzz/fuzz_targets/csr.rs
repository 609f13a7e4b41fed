//! `check_csr` (PKCS#10 decoding, proof of possession, the weak-crypto policy) must never
//! panic, and whatever it accepts must be consistent: a public key of a supported kind,
//! its DER inside the limit, and the profile key rules must decide on it without
//! panicking either.
#![no_main]

use enrollment::ra::{Approval, KeyType, ProfileKind, ProfilePolicy};
use enrollment::{check_csr, MAX_CSR_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = check_csr(data) {
        assert!(data.len() <= MAX_CSR_BYTES);
        assert!(!csr.public_key_der.is_empty() && !csr.der.is_empty());
        let policy = ProfilePolicy {
            kind: ProfileKind::Device,
            key_types: KeyType::ALL.to_vec(),
            approval: Approval::Automatic,
            station_credentials: false,
            default_model: None,
            renewal: Default::default(),
        };
        let _ = policy.check_request("device", &csr);
        let _ = enrollment::ra::is_valid_device_id(csr.common_name.as_deref().unwrap_or(""));
    }
});
