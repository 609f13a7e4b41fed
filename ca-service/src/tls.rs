//! TLS for the HTTPS listener: rustls with the aws-lc-rs provider passed explicitly,
//! TLS 1.2 and 1.3 only, the server key used through the key store (it never leaves
//! it), and client certificates requested but not required at the handshake.
//!
//! The handshake proves the client holds the key of the certificate it presents; it
//! does *not* judge the certificate. Each endpoint does that (issuer, validity, current
//! status in our store) so that a foreign, expired or revoked certificate gets an HTTP
//! answer with a reason and an audit entry, instead of a bare TLS alert nobody sees.

use std::sync::Arc;

use hsm::{KeyAlgorithm, Signer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::DigitallySignedStruct;
use rustls::{RootCertStore, ServerConfig, SignatureAlgorithm, SignatureScheme};

/// The one crypto provider of the process.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A key-store key presented to rustls.
#[derive(Debug)]
struct StoreKey {
    signer: Arc<dyn Signer>,
    scheme: SignatureScheme,
}

impl rustls::sign::SigningKey for StoreKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(StoreSigner { signer: self.signer.clone(), scheme: self.scheme }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.signer.public_key_der()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.signer.algorithm() {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => SignatureAlgorithm::ECDSA,
            KeyAlgorithm::Ed25519 => SignatureAlgorithm::ED25519,
            KeyAlgorithm::Rsa3072 => SignatureAlgorithm::RSA,
        }
    }
}

#[derive(Debug)]
struct StoreSigner {
    signer: Arc<dyn Signer>,
    scheme: SignatureScheme,
}

impl rustls::sign::Signer for StoreSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.signer.sign(message).map_err(|e| rustls::Error::General(format!("server key: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the TLS server key type {0} cannot be used (use ecdsa-p256, ecdsa-p384 or ed25519)")]
    UnsupportedKey(KeyAlgorithm),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The HTTPS configuration from a PEM chain file and PEM key file (a server
/// certificate from outside the hierarchy, e.g. a public CA's).
pub fn server_config_from_files(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    client_roots: &[Vec<u8>],
) -> Result<ServerConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let read = |p: &std::path::Path, e: String| TlsError::Config(format!("{}: {e}", p.display()));
    let chain: Vec<Vec<u8>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| read(cert_file, e.to_string()))?
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(read(cert_file, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| read(key_file, e.to_string()))?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(|e| read(key_file, e.to_string()))?;
    build(chain, signing_key, client_roots)
}

/// Builds the HTTPS server configuration with a key-store key. `client_roots` are
/// the CAs whose certificates clients may present (stations, devices).
pub fn server_config(
    chain: Vec<Vec<u8>>,
    key: Arc<dyn Signer>,
    client_roots: &[Vec<u8>],
) -> Result<ServerConfig, TlsError> {
    // Our hsm RSA keys sign PKCS#1 v1.5, which TLS 1.3 forbids for handshakes.
    let scheme = match key.algorithm() {
        KeyAlgorithm::EcdsaP256 => SignatureScheme::ECDSA_NISTP256_SHA256,
        KeyAlgorithm::EcdsaP384 => SignatureScheme::ECDSA_NISTP384_SHA384,
        KeyAlgorithm::Ed25519 => SignatureScheme::ED25519,
        other => return Err(TlsError::UnsupportedKey(other)),
    };
    build(chain, Arc::new(StoreKey { signer: key, scheme }), client_roots)
}

fn build(
    chain: Vec<Vec<u8>>,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    client_roots: &[Vec<u8>],
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for der in client_roots {
        roots.add(CertificateDer::from(der.clone())).map_err(|e| TlsError::Config(format!("client root: {e}")))?;
    }
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let verifier = Arc::new(DeferredClientVerifier { inner: webpki });
    let certified = Arc::new(CertifiedKey::new(chain.into_iter().map(CertificateDer::from).collect(), signing_key));
    let mut config = ServerConfig::builder_with_provider(Arc::new(aes_128_first(&provider)))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCert(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(config)
}

/// The provider with the AES-128-GCM suites first, for the server to choose by its
/// own order. Every handshake runs its key schedule and transcript on the suite's
/// hash: SHA-256 (AES-128) has hardware support where SHA-384 (AES-256) does not,
/// and constrained devices prefer AES-128 anyway. AES-256 stays for clients that
/// offer nothing else. Measured with `est-load`, new connection per enrollment:
/// SHA-512 block functions took 4 % of the machine's CPU under AES-256.
fn aes_128_first(provider: &CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    let mut preferred = provider.clone();
    preferred.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256 | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    preferred
}

/// Requests a client certificate (naming our client-identity CAs as hints) and
/// verifies the handshake signature made with its key, but leaves judging the
/// certificate itself to the endpoint (see the module comment).
#[derive(Debug)]
struct DeferredClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct SingleCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for SingleCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_suites_come_first_and_none_is_lost() {
        let default = provider();
        let preferred = aes_128_first(&default);
        let names = |p: &CryptoProvider| p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>();
        assert_eq!(names(&preferred)[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let (mut before, mut after) = (names(&default), names(&preferred));
        before.sort_by_key(|s| u16::from(*s));
        after.sort_by_key(|s| u16::from(*s));
        assert_eq!(before, after, "reordered, not filtered");
        // TLS 1.2 keeps AES-128 ahead of AES-256 too.
        let position = |s| names(&preferred).iter().position(|x| *x == s);
        assert!(
            position(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
                < position(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        );
    }
}
