//! Algorithm identifiers: which digest goes with which signature, and which webpki
//! verification algorithm checks a SignerInfo's signature.

use std::io::{self, Read};

use aws_lc_rs::digest;
use const_oid::db::{rfc5912, rfc8410};
use const_oid::ObjectIdentifier;
use rustls_pki_types::SignatureVerificationAlgorithm;
use spki::AlgorithmIdentifierOwned;
use webpki::aws_lc_rs as algs;

use crate::VerifyError;

/// The digests a SignerInfo may use (no SHA-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DigestAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    pub(crate) fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            rfc5912::ID_SHA_256 => Some(DigestAlg::Sha256),
            rfc5912::ID_SHA_384 => Some(DigestAlg::Sha384),
            rfc5912::ID_SHA_512 => Some(DigestAlg::Sha512),
            _ => None,
        }
    }

    pub(crate) fn oid(self) -> ObjectIdentifier {
        match self {
            DigestAlg::Sha256 => rfc5912::ID_SHA_256,
            DigestAlg::Sha384 => rfc5912::ID_SHA_384,
            DigestAlg::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The AlgorithmIdentifier as we write it: parameters absent (RFC 5754 §2; what
    /// OpenSSL writes too).
    pub(crate) fn identifier(self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned { oid: self.oid(), parameters: None }
    }

    fn aws(self) -> &'static digest::Algorithm {
        match self {
            DigestAlg::Sha256 => &digest::SHA256,
            DigestAlg::Sha384 => &digest::SHA384,
            DigestAlg::Sha512 => &digest::SHA512,
        }
    }

    /// Hashes everything `reader` yields, in fixed-size chunks: the content may be a
    /// multi-gigabyte image and is never held in memory.
    pub(crate) fn digest_reader(self, mut reader: impl Read) -> io::Result<digest::Digest> {
        let mut ctx = digest::Context::new(self.aws());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(ctx.finish()),
                Ok(n) => {
                    let chunk = buf
                        .get(..n)
                        .ok_or_else(|| io::Error::other("the content reader returned more bytes than requested"))?;
                    ctx.update(chunk);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The digest a signer's signature algorithm implies, for the SignerInfo's
/// digestAlgorithm: the hash inside ecdsa-with-SHAx / shaxWithRSAEncryption, and
/// SHA-512 for Ed25519 (RFC 8419 §3.1).
pub(crate) fn digest_for_signature(sig_alg: ObjectIdentifier) -> Option<DigestAlg> {
    match sig_alg {
        rfc5912::ECDSA_WITH_SHA_256 | rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Some(DigestAlg::Sha256),
        rfc5912::ECDSA_WITH_SHA_384 | rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Some(DigestAlg::Sha384),
        rfc5912::ECDSA_WITH_SHA_512 | rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Some(DigestAlg::Sha512),
        rfc8410::ID_ED_25519 => Some(DigestAlg::Sha512),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa,
}

fn key_kind(spki_alg: &AlgorithmIdentifierOwned) -> Result<KeyKind, VerifyError> {
    match spki_alg.oid {
        rfc5912::ID_EC_PUBLIC_KEY => {
            let curve = spki_alg
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                .ok_or_else(|| VerifyError::UnsupportedAlgorithm("EC signer key without a named curve".into()))?;
            match curve {
                rfc5912::SECP_256_R_1 => Ok(KeyKind::P256),
                rfc5912::SECP_384_R_1 => Ok(KeyKind::P384),
                other => Err(VerifyError::UnsupportedAlgorithm(format!("EC curve {other}"))),
            }
        }
        rfc8410::ID_ED_25519 => Ok(KeyKind::Ed25519),
        rfc5912::RSA_ENCRYPTION => Ok(KeyKind::Rsa),
        other => Err(VerifyError::UnsupportedAlgorithm(format!("signer key algorithm {other}"))),
    }
}

/// The webpki algorithm that verifies a SignerInfo signature, from its
/// signatureAlgorithm, its digestAlgorithm and the signer certificate's key.
pub(crate) fn verification_alg(
    sig_alg: ObjectIdentifier,
    digest: DigestAlg,
    spki_alg: &AlgorithmIdentifierOwned,
) -> Result<&'static dyn SignatureVerificationAlgorithm, VerifyError> {
    use DigestAlg::*;
    use KeyKind::*;
    let key = key_kind(spki_alg)?;
    let hash = match sig_alg {
        rfc5912::ECDSA_WITH_SHA_256 | rfc5912::SHA_256_WITH_RSA_ENCRYPTION => Sha256,
        rfc5912::ECDSA_WITH_SHA_384 | rfc5912::SHA_384_WITH_RSA_ENCRYPTION => Sha384,
        rfc5912::ECDSA_WITH_SHA_512 | rfc5912::SHA_512_WITH_RSA_ENCRYPTION => Sha512,
        // OpenSSL writes rsaEncryption as the signatureAlgorithm of PKCS#1 v1.5 CMS
        // signatures (RFC 3370 §3.2 allows it); the hash is the digestAlgorithm.
        rfc5912::RSA_ENCRYPTION => digest,
        // Ed25519 hashes internally; the digestAlgorithm only covers messageDigest.
        rfc8410::ID_ED_25519 => digest,
        other => return Err(VerifyError::UnsupportedAlgorithm(format!("signature algorithm {other}"))),
    };
    let family_fits = match sig_alg {
        rfc5912::ECDSA_WITH_SHA_256 | rfc5912::ECDSA_WITH_SHA_384 | rfc5912::ECDSA_WITH_SHA_512 => {
            matches!(key, P256 | P384)
        }
        rfc8410::ID_ED_25519 => key == Ed25519,
        _ => key == Rsa,
    };
    if !family_fits {
        return Err(VerifyError::UnsupportedAlgorithm(format!(
            "signature algorithm {sig_alg} does not fit the signer certificate's key"
        )));
    }
    Ok(match (key, hash) {
        (P256, Sha256) => algs::ECDSA_P256_SHA256,
        (P256, Sha384) => algs::ECDSA_P256_SHA384,
        (P256, Sha512) => algs::ECDSA_P256_SHA512,
        (P384, Sha256) => algs::ECDSA_P384_SHA256,
        (P384, Sha384) => algs::ECDSA_P384_SHA384,
        (P384, Sha512) => algs::ECDSA_P384_SHA512,
        (Ed25519, _) => algs::ED25519,
        (Rsa, Sha256) => algs::RSA_PKCS1_2048_8192_SHA256,
        (Rsa, Sha384) => algs::RSA_PKCS1_2048_8192_SHA384,
        (Rsa, Sha512) => algs::RSA_PKCS1_2048_8192_SHA512,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_digest_equals_one_shot() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for alg in [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512] {
            let streamed = alg.digest_reader(&data[..]).unwrap();
            assert_eq!(streamed.as_ref(), digest::digest(alg.aws(), &data).as_ref());
            assert_eq!(DigestAlg::from_oid(alg.oid()), Some(alg));
        }
    }

    #[test]
    fn sha1_and_pss_are_not_accepted() {
        assert_eq!(DigestAlg::from_oid(const_oid::db::rfc5912::ID_SHA_1), None);
        let p256 = AlgorithmIdentifierOwned { oid: rfc5912::RSA_ENCRYPTION, parameters: Some(der::asn1::Null.into()) };
        assert!(matches!(
            verification_alg(rfc5912::ID_RSASSA_PSS, DigestAlg::Sha256, &p256),
            Err(VerifyError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn signature_family_must_fit_the_key() {
        let ed = AlgorithmIdentifierOwned { oid: rfc8410::ID_ED_25519, parameters: None };
        assert!(matches!(
            verification_alg(rfc5912::ECDSA_WITH_SHA_256, DigestAlg::Sha256, &ed),
            Err(VerifyError::UnsupportedAlgorithm(_))
        ));
        assert!(verification_alg(rfc8410::ID_ED_25519, DigestAlg::Sha512, &ed).is_ok());
    }
}
