//! Key labels are shared by both backends, so one rule applies everywhere: a key
//! created on the software store can move to a token under the same name.

use crate::HsmError;

/// Longest accepted label. PKCS#11 imposes no limit, file systems do (255 bytes),
/// and 64 is plenty for names like `device-issuing-ca-2025`.
pub(crate) const MAX_LABEL_LEN: usize = 64;

/// Accepts `[A-Za-z0-9._-]{1,64}` not starting with `.`.
///
/// The software store uses the label as a file name, so this is what keeps a label
/// such as `../x` or `a/b` from escaping the key directory; refusing a leading dot
/// keeps `.`/`..` out and leaves dot-files free for the store's own temporary files.
pub(crate) fn validate_label(label: &str) -> Result<(), HsmError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && !label.starts_with('.')
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(HsmError::Unsupported(format!(
            "key label {label:?}: labels are 1-{MAX_LABEL_LEN} characters from \
             A-Z a-z 0-9 . _ - and must not start with '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_labels() {
        for l in ["a", "device-issuing-ca", "ocsp_signer.2025", "A9", &"x".repeat(64)] {
            assert!(validate_label(l).is_ok(), "{l}");
        }
    }

    #[test]
    fn refuses_traversal_and_odd_characters() {
        for l in ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "sp ace", "nul\0", "é", &"x".repeat(65)] {
            assert!(matches!(validate_label(l), Err(HsmError::Unsupported(_))), "{l:?}");
        }
    }
}
