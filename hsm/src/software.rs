//! The embedded key store: PKCS#8 keys encrypted at rest in a directory.
//!
//! Layout of `dir` (created `0700` on first use):
//!
//! * `keystore.json` — how the key-encryption key (KEK) is obtained (Argon2id salt and
//!   cost, or "key file") plus a *check value*: a constant sealed under the KEK. Opening
//!   the store unseals it, so a wrong passphrase is reported at open as
//!   [`HsmError::WrongPassphrase`] even while the store holds no keys yet.
//! * `<label>.key` — one file per key (`0600`): `MAGIC ‖ algorithm ‖ nonce ‖
//!   AES-256-GCM(PKCS#8)`. The AAD is `MAGIC ‖ algorithm ‖ label`, so a file renamed to
//!   another label, or with its algorithm byte edited, fails authentication instead of
//!   being used under the wrong name.
//!
//! The KEK is derived once, when the store is opened: Argon2id is deliberately slow
//! (tens to hundreds of milliseconds) and must not sit on the signing path.
//!
//! Files are written to a temporary name, fsynced, then hard-linked into place and the
//! directory fsynced. `link(2)` fails if the target exists, which makes "never replace a
//! key" atomic even when two processes generate the same label at the same moment.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::{self as lc_rand, SystemRandom};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
    RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::label::validate_label;
use crate::{HsmError, KeyAlgorithm, KeyStore, SecretSource, Signer};

/// Name of the store's metadata file inside the key directory.
pub const METADATA_FILE: &str = "keystore.json";
/// Extension of key files: `<label>.key`.
pub const KEY_FILE_EXTENSION: &str = "key";

/// First bytes of every key file; the last byte is the format version.
const KEY_MAGIC: &[u8; 8] = b"DPKIKEY\x01";
/// Format version of `keystore.json`.
const METADATA_FORMAT: u32 = 1;
/// What the check value seals, and its AAD (distinct from any key file's AAD, so a
/// key file can never be passed off as the check value or vice versa).
const CHECK_PLAINTEXT: &[u8] = b"device-pki software key store";
const CHECK_AAD: &[u8] = b"DPKI-KEYSTORE-CHECK-v1";
const SALT_LEN: usize = 16;
const KEK_LEN: usize = 32;
/// Key files are a few KiB at most (RSA-3072 PKCS#8 is ~1.8 KiB); refuse to read
/// anything absurdly large into memory.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;
const TAG_LEN: usize = 16;

/// Configuration of a [`SoftwareKeyStore`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SoftwareConfig {
    /// Directory holding `keystore.json` and the key files. Created (mode `0700`) if
    /// missing.
    pub dir: PathBuf,
    /// Where the key-encryption key comes from.
    pub secret: SoftwareSecret,
    /// Argon2id cost used when a passphrase store is *created*. An existing store
    /// always uses the parameters recorded in its `keystore.json`.
    #[serde(default)]
    pub kdf: KdfParams,
}

impl SoftwareConfig {
    /// A configuration with the default (production) Argon2id cost.
    pub fn new(dir: impl Into<PathBuf>, secret: SoftwareSecret) -> Self {
        SoftwareConfig { dir: dir.into(), secret, kdf: KdfParams::default() }
    }
}

/// The secret that unlocks a software store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftwareSecret {
    /// A passphrase; the key-encryption key is derived from it with Argon2id.
    Passphrase(SecretSource),
    /// A 256-bit key-encryption key used as is. From a file: exactly 32 raw bytes or
    /// 64 hex digits (e.g. `openssl rand -hex 32`); from an environment variable:
    /// 64 hex digits.
    KeyFile(SecretSource),
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: above the RFC 9106 "second recommended option"
    /// (64 MiB, t=3) and still well under a second on a small server.
    fn default() -> Self {
        KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 }
    }
}

/// `keystore.json`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    format: u32,
    kek: KekSpec,
    /// base64(nonce ‖ AES-256-GCM(CHECK_PLAINTEXT)).
    check: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum KekSpec {
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        /// base64 of the per-store random salt.
        salt: String,
    },
    KeyFile,
}

/// Keys encrypted at rest under a key derived from a passphrase or read from a key
/// file. See the [module documentation](self) for the on-disk format.
pub struct SoftwareKeyStore {
    dir: PathBuf,
    /// AES-256-GCM under the KEK. aws-lc cleanses the key schedule when dropped.
    kek: LessSafeKey,
}

impl fmt::Debug for SoftwareKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKeyStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl SoftwareKeyStore {
    /// Opens the store in `config.dir`, creating the directory and its metadata on
    /// first use. Derives the key-encryption key (the only slow step) and checks it
    /// against the stored check value.
    ///
    /// # Errors
    /// [`HsmError::WrongPassphrase`] if the secret does not open an existing store;
    /// [`HsmError::SecretUnavailable`] if it cannot be read or has the wrong form;
    /// [`HsmError::Io`] / [`HsmError::Corrupt`] for file problems.
    pub fn open(config: &SoftwareConfig) -> Result<Self, HsmError> {
        let dir = config.dir.clone();
        ensure_dir(&dir)?;
        let meta_path = dir.join(METADATA_FILE);
        let kek = match read_metadata(&meta_path)? {
            Some(meta) => open_existing(&meta, &config.secret)?,
            None => match create_metadata(&dir, &meta_path, config)? {
                Some(kek) => kek,
                // Another process created the store between our read and our link:
                // open what it wrote.
                None => match read_metadata(&meta_path)? {
                    Some(meta) => open_existing(&meta, &config.secret)?,
                    None => {
                        return Err(HsmError::Corrupt(format!(
                            "{} vanished while the store was being created",
                            meta_path.display()
                        )))
                    }
                },
            },
        };
        Ok(SoftwareKeyStore { dir, kek })
    }

    fn key_path(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.{KEY_FILE_EXTENSION}"))
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let mut nonce = [0u8; NONCE_LEN];
        lc_rand::fill(&mut nonce).map_err(|_| HsmError::Crypto("random nonce".into()))?;
        // The buffer holds plaintext until sealed, so it is wiped whatever happens.
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buf.extend_from_slice(plaintext);
        self.kek
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut *buf)
            .map_err(|_| HsmError::Crypto("AES-256-GCM seal".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }
}

impl KeyStore for SoftwareKeyStore {
    fn generate(&self, label: &str, algorithm: KeyAlgorithm) -> Result<Arc<dyn Signer>, HsmError> {
        validate_label(label)?;
        let path = self.key_path(label);
        // Cheap early answer; the hard link below is what actually guarantees it.
        if path.symlink_metadata().is_ok() {
            return Err(HsmError::KeyExists(label.to_owned()));
        }
        let pkcs8 = generate_pkcs8(algorithm)?;
        let signer = SoftwareSigner::from_pkcs8(label, algorithm, &pkcs8)?;

        let code = algorithm_code(algorithm);
        let mut file = Vec::with_capacity(KEY_MAGIC.len() + 1 + NONCE_LEN + pkcs8.len() + TAG_LEN);
        file.extend_from_slice(KEY_MAGIC);
        file.push(code);
        file.extend_from_slice(&self.seal(&key_aad(code, label), &pkcs8)?);

        match write_new_file(&self.dir, &path, &file)? {
            true => {
                tracing::info!(label, %algorithm, "generated software key");
                Ok(Arc::new(signer))
            }
            false => Err(HsmError::KeyExists(label.to_owned())),
        }
    }

    fn find(&self, label: &str) -> Result<Arc<dyn Signer>, HsmError> {
        validate_label(label)?;
        let path = self.key_path(label);
        let bytes = match read_limited(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(HsmError::KeyNotFound(label.to_owned())),
            Err(e) => return Err(io_err(&path, e)),
        };
        let corrupt = |what: &str| HsmError::Corrupt(format!("{}: {what}", path.display()));
        let header = KEY_MAGIC.len() + 1 + NONCE_LEN;
        if bytes.len() < header + TAG_LEN || !bytes.starts_with(KEY_MAGIC) {
            return Err(corrupt("not a key file of this store (bad header)"));
        }
        let code = bytes[KEY_MAGIC.len()];
        let algorithm = algorithm_from_code(code).ok_or_else(|| corrupt("unknown algorithm"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[KEY_MAGIC.len() + 1..header]);
        let mut buf = Zeroizing::new(bytes[header..].to_vec());
        let pkcs8 = self
            .kek
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(key_aad(code, label)), &mut buf)
            .map_err(|_| {
                corrupt(
                    "authentication failed (the file was modified, renamed from another \
                     label, or written under a different key-encryption key)",
                )
            })?;
        Ok(Arc::new(SoftwareSigner::from_pkcs8(label, algorithm, pkcs8)?))
    }

    fn destroy(&self, label: &str) -> Result<(), HsmError> {
        validate_label(label)?;
        let path = self.key_path(label);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(HsmError::KeyNotFound(label.to_owned())),
            Err(e) => return Err(io_err(&path, e)),
        }
        // The removal is durable only once the directory entry is.
        fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io_err(&self.dir, e))?;
        tracing::info!(label, "destroyed software key");
        Ok(())
    }

    fn ping(&self) -> Result<(), HsmError> {
        let meta = self.dir.join(METADATA_FILE);
        fs::metadata(&meta).map_err(|e| io_err(&meta, e))?;
        Ok(())
    }
}

/// A software key, parsed and ready to sign.
pub struct SoftwareSigner {
    label: String,
    algorithm: KeyAlgorithm,
    public_key_der: Vec<u8>,
    key: SoftwareKey,
}

/// The aws-lc key objects free (and cleanse) their private key material on drop.
enum SoftwareKey {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

impl fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("label", &self.label)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SoftwareSigner {
    fn from_pkcs8(label: &str, algorithm: KeyAlgorithm, pkcs8: &[u8]) -> Result<Self, HsmError> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| {
            HsmError::Corrupt(format!("key '{label}' is not a valid {algorithm} key: {e}"))
        };
        let spki_err = |_| HsmError::Crypto(format!("encoding the public key of '{label}'"));
        let (key, public_key_der) = match algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                let alg = if algorithm == KeyAlgorithm::EcdsaP256 {
                    &ECDSA_P256_SHA256_ASN1_SIGNING
                } else {
                    &ECDSA_P384_SHA384_ASN1_SIGNING
                };
                let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(rejected)?;
                let der: PublicKeyX509Der<'static> = kp.public_key().as_der().map_err(spki_err)?;
                let der = der.as_ref().to_vec();
                (SoftwareKey::Ecdsa(kp), der)
            }
            KeyAlgorithm::Ed25519 => {
                let kp = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                let der: PublicKeyX509Der<'static> = kp.public_key().as_der().map_err(spki_err)?;
                let der = der.as_ref().to_vec();
                (SoftwareKey::Ed25519(kp), der)
            }
            KeyAlgorithm::Rsa3072 => {
                let kp = RsaKeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
                if kp.public_modulus_len() != 3072 / 8 {
                    return Err(HsmError::Corrupt(format!(
                        "key '{label}' is RSA-{} but is recorded as rsa-3072",
                        kp.public_modulus_len() * 8
                    )));
                }
                let der: PublicKeyX509Der<'static> = kp.public_key().as_der().map_err(spki_err)?;
                let der = der.as_ref().to_vec();
                (SoftwareKey::Rsa(kp), der)
            }
        };
        Ok(SoftwareSigner { label: label.to_owned(), algorithm, public_key_der, key })
    }
}

/// Algorithm OIDs of PKCS#8 `privateKeyAlgorithm` the key-file loader recognises.
const OID_EC_PUBLIC_KEY: const_oid::ObjectIdentifier = const_oid::db::rfc5912::ID_EC_PUBLIC_KEY;
const OID_SECP256R1: const_oid::ObjectIdentifier = const_oid::db::rfc5912::SECP_256_R_1;
const OID_SECP384R1: const_oid::ObjectIdentifier = const_oid::db::rfc5912::SECP_384_R_1;
const OID_ED25519: const_oid::ObjectIdentifier = const_oid::db::rfc8410::ID_ED_25519;
const OID_RSA_ENCRYPTION: const_oid::ObjectIdentifier = const_oid::db::rfc5912::RSA_ENCRYPTION;

impl SoftwareSigner {
    /// Loads a signer from an **unencrypted** PKCS#8 PEM file (`-----BEGIN PRIVATE
    /// KEY-----`, what `openssl genpkey` writes), for tools that sign with a key the
    /// operator holds in a file (OTA pipelines, the `ca-service ota sign` CLI) rather
    /// than one generated inside a [`KeyStore`].
    ///
    /// The algorithm is read from the PKCS#8 `privateKeyAlgorithm`: P-256, P-384 and
    /// Ed25519 map to their [`KeyAlgorithm`]; RSA is accepted only at 3072 bits, because
    /// [`KeyAlgorithm::Rsa3072`] is the one RSA shape the rest of the system signs with
    /// (sha256WithRSAEncryption) — any other size is refused rather than mislabelled.
    /// Encrypted PKCS#8 and the traditional `EC PRIVATE KEY` / `RSA PRIVATE KEY` forms
    /// are refused with a hint how to convert them. The file bytes and the decoded
    /// PKCS#8 are zeroized after use. A file readable by group or others is loaded but
    /// logged as a warning.
    ///
    /// # Errors
    /// [`HsmError::Io`] if the file cannot be read; [`HsmError::Unsupported`] for a
    /// key type or PEM form that is not supported; [`HsmError::Corrupt`] for a file
    /// that is not valid PEM/PKCS#8.
    pub fn from_pkcs8_pem_file(path: &Path, label: &str) -> Result<Arc<dyn Signer>, HsmError> {
        validate_label(label)?;
        let corrupt = |what: String| HsmError::Corrupt(format!("{}: {what}", path.display()));
        let file = Zeroizing::new(read_limited(path).map_err(|e| io_err(path, e))?);
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "private key file is accessible to group/others; 0600 is recommended");
            }
        }
        let pem_label = der::pem::decode_label(&file).map_err(|e| corrupt(format!("not a PEM file: {e}")))?;
        match pem_label {
            "PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => {
                return Err(HsmError::Unsupported(format!(
                    "{}: encrypted PKCS#8 (decrypt it first: openssl pkcs8 -in KEY -out PLAIN)",
                    path.display()
                )))
            }
            other => {
                return Err(HsmError::Unsupported(format!(
                    "{}: PEM '{other}' is not an unencrypted PKCS#8 private key \
                     (convert with: openssl pkcs8 -topk8 -nocrypt -in KEY -out PLAIN)",
                    path.display()
                )))
            }
        }
        // Decode into a buffer we own (and wipe), not into a fresh Vec.
        let mut buf = Zeroizing::new(vec![0u8; file.len()]);
        let (_, pkcs8) = der::pem::decode(&file, &mut buf).map_err(|e| corrupt(format!("bad PEM: {e}")))?;
        let algorithm = pkcs8_algorithm(pkcs8).map_err(|e| match e {
            Pkcs8AlgError::Der(e) => corrupt(format!("not PKCS#8: {e}")),
            Pkcs8AlgError::Unsupported(what) => {
                HsmError::Unsupported(format!("{}: {what} keys are not supported", path.display()))
            }
        })?;
        if algorithm == KeyAlgorithm::Rsa3072 {
            let kp = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| corrupt(format!("invalid RSA key: {e}")))?;
            let bits = kp.public_modulus_len() * 8;
            if bits != 3072 {
                return Err(HsmError::Unsupported(format!(
                    "{}: RSA-{bits} key; only RSA-3072 is supported",
                    path.display()
                )));
            }
        }
        Ok(Arc::new(SoftwareSigner::from_pkcs8(label, algorithm, pkcs8)?))
    }
}

enum Pkcs8AlgError {
    Der(der::Error),
    Unsupported(String),
}

/// The key type named by a PKCS#8 PrivateKeyInfo's `privateKeyAlgorithm`.
fn pkcs8_algorithm(pkcs8: &[u8]) -> Result<KeyAlgorithm, Pkcs8AlgError> {
    use der::{Decode, Reader};
    let mut reader = der::SliceReader::new(pkcs8).map_err(Pkcs8AlgError::Der)?;
    let alg = reader
        .sequence(|r| {
            let _version = der::asn1::UintRef::decode(r)?;
            let alg = spki::AlgorithmIdentifierRef::decode(r)?;
            // privateKey, attributes, publicKey: parsed by aws-lc-rs.
            r.read_slice(r.remaining_len())?;
            Ok(alg)
        })
        .map_err(Pkcs8AlgError::Der)?;
    reader.finish(()).map_err(Pkcs8AlgError::Der)?;
    match alg.oid {
        OID_ED25519 => Ok(KeyAlgorithm::Ed25519),
        OID_RSA_ENCRYPTION => Ok(KeyAlgorithm::Rsa3072),
        OID_EC_PUBLIC_KEY => match alg.parameters_oid() {
            Ok(OID_SECP256R1) => Ok(KeyAlgorithm::EcdsaP256),
            Ok(OID_SECP384R1) => Ok(KeyAlgorithm::EcdsaP384),
            Ok(curve) => Err(Pkcs8AlgError::Unsupported(format!("EC curve {curve}"))),
            Err(_) => Err(Pkcs8AlgError::Unsupported("EC keys without a named curve".into())),
        },
        other => Err(Pkcs8AlgError::Unsupported(format!("algorithm {other}"))),
    }
}

impl Signer for SoftwareSigner {
    fn label(&self) -> &str {
        &self.label
    }

    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    fn signs_in_microseconds(&self) -> bool {
        !matches!(self.key, SoftwareKey::Rsa(_))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let failed = |_| HsmError::Crypto(format!("signing with '{}'", self.label));
        match &self.key {
            SoftwareKey::Ecdsa(kp) => Ok(kp.sign(&SystemRandom::new(), message).map_err(failed)?.as_ref().to_vec()),
            SoftwareKey::Ed25519(kp) => Ok(kp.try_sign(message).map_err(failed)?.as_ref().to_vec()),
            SoftwareKey::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig).map_err(failed)?;
                Ok(sig)
            }
        }
    }
}

fn generate_pkcs8(algorithm: KeyAlgorithm) -> Result<Zeroizing<Vec<u8>>, HsmError> {
    let failed = |_| HsmError::Crypto(format!("generating a {algorithm} key"));
    let rng = SystemRandom::new();
    // `Document` and the PKCS#8 buffer zeroize themselves on drop; the copy we keep
    // is in `Zeroizing`.
    let bytes = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).map_err(failed)?.as_ref().to_vec()
        }
        KeyAlgorithm::EcdsaP384 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &rng).map_err(failed)?.as_ref().to_vec()
        }
        KeyAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?.as_ref().to_vec(),
        KeyAlgorithm::Rsa3072 => {
            let kp = RsaKeyPair::generate(KeySize::Rsa3072).map_err(failed)?;
            let der: Pkcs8V1Der<'static> = kp.as_der().map_err(failed)?;
            der.as_ref().to_vec()
        }
    };
    Ok(Zeroizing::new(bytes))
}

fn algorithm_code(algorithm: KeyAlgorithm) -> u8 {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => 1,
        KeyAlgorithm::EcdsaP384 => 2,
        KeyAlgorithm::Ed25519 => 3,
        KeyAlgorithm::Rsa3072 => 4,
    }
}

fn algorithm_from_code(code: u8) -> Option<KeyAlgorithm> {
    KeyAlgorithm::ALL.into_iter().find(|a| algorithm_code(*a) == code)
}

fn key_aad(code: u8, label: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(KEY_MAGIC.len() + 1 + label.len());
    aad.extend_from_slice(KEY_MAGIC);
    aad.push(code);
    aad.extend_from_slice(label.as_bytes());
    aad
}

fn io_err(path: &Path, source: io::Error) -> HsmError {
    HsmError::Io { path: path.display().to_string(), source }
}

/// Creates the key directory `0700` if missing; warns if an existing one is open to
/// group or others (we do not silently chmod a directory an operator provided).
fn ensure_dir(dir: &Path) -> Result<(), HsmError> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_err(dir, e))?;
    let mode = fs::metadata(dir).map_err(|e| io_err(dir, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format_args!("{:o}", mode & 0o777),
            "software key store directory is accessible to group/others; 0700 is recommended"
        );
    }
    Ok(())
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > MAX_KEY_FILE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file is {len} bytes, more than a key file can be"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    io::Read::read_to_end(&mut io::Read::take(file, MAX_KEY_FILE_LEN), &mut buf)?;
    Ok(buf)
}

fn read_metadata(path: &Path) -> Result<Option<Metadata>, HsmError> {
    let bytes = match read_limited(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let meta: Metadata =
        serde_json::from_slice(&bytes).map_err(|e| HsmError::Corrupt(format!("{}: {e}", path.display())))?;
    if meta.format != METADATA_FORMAT {
        return Err(HsmError::Corrupt(format!("{}: unsupported format {}", path.display(), meta.format)));
    }
    Ok(Some(meta))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Derives the KEK for an existing store and proves it with the check value.
fn open_existing(meta: &Metadata, secret: &SoftwareSecret) -> Result<LessSafeKey, HsmError> {
    let kek_bytes = match (&meta.kek, secret) {
        (KekSpec::Argon2id { memory_kib, iterations, parallelism, salt }, SoftwareSecret::Passphrase(src)) => {
            let salt = b64().decode(salt).map_err(|_| HsmError::Corrupt("keystore.json: salt is not base64".into()))?;
            let params = KdfParams { memory_kib: *memory_kib, iterations: *iterations, parallelism: *parallelism };
            derive_from_passphrase(src, &salt, params)?
        }
        (KekSpec::KeyFile, SoftwareSecret::KeyFile(src)) => load_key_file(src)?,
        (KekSpec::Argon2id { .. }, SoftwareSecret::KeyFile(_)) => {
            return Err(HsmError::SecretUnavailable(
                "the key store was created with a passphrase, but a key file is configured".into(),
            ))
        }
        (KekSpec::KeyFile, SoftwareSecret::Passphrase(_)) => {
            return Err(HsmError::SecretUnavailable(
                "the key store was created with a key file, but a passphrase is configured".into(),
            ))
        }
    };
    let kek = make_kek(&kek_bytes)?;
    let check =
        b64().decode(&meta.check).map_err(|_| HsmError::Corrupt("keystore.json: check value is not base64".into()))?;
    if check.len() < NONCE_LEN + TAG_LEN {
        return Err(HsmError::Corrupt("keystore.json: check value too short".into()));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&check[..NONCE_LEN]);
    let mut buf = check[NONCE_LEN..].to_vec();
    match kek.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(CHECK_AAD), &mut buf) {
        Ok(plain) if plain == CHECK_PLAINTEXT => Ok(kek),
        _ => Err(HsmError::WrongPassphrase),
    }
}

/// Creates `keystore.json`. Returns `None` if another process won the race.
fn create_metadata(dir: &Path, meta_path: &Path, config: &SoftwareConfig) -> Result<Option<LessSafeKey>, HsmError> {
    let (kek_bytes, spec) = match &config.secret {
        SoftwareSecret::Passphrase(src) => {
            let mut salt = [0u8; SALT_LEN];
            lc_rand::fill(&mut salt).map_err(|_| HsmError::Crypto("random salt".into()))?;
            let kek = derive_from_passphrase(src, &salt, config.kdf)?;
            (
                kek,
                KekSpec::Argon2id {
                    memory_kib: config.kdf.memory_kib,
                    iterations: config.kdf.iterations,
                    parallelism: config.kdf.parallelism,
                    salt: b64().encode(salt),
                },
            )
        }
        SoftwareSecret::KeyFile(src) => (load_key_file(src)?, KekSpec::KeyFile),
    };
    let kek = make_kek(&kek_bytes)?;
    let store = SoftwareKeyStore { dir: dir.to_owned(), kek };
    let meta =
        Metadata { format: METADATA_FORMAT, kek: spec, check: b64().encode(store.seal(CHECK_AAD, CHECK_PLAINTEXT)?) };
    let mut json =
        serde_json::to_vec_pretty(&meta).map_err(|e| HsmError::Crypto(format!("encoding keystore.json: {e}")))?;
    json.push(b'\n');
    if write_new_file(dir, meta_path, &json)? {
        tracing::info!(dir = %dir.display(), "created software key store");
        Ok(Some(store.kek))
    } else {
        Ok(None)
    }
}

fn make_kek(bytes: &[u8; KEK_LEN]) -> Result<LessSafeKey, HsmError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| HsmError::Crypto("AES-256-GCM key setup".into()))
}

fn derive_from_passphrase(
    src: &SecretSource,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; KEK_LEN]>, HsmError> {
    let passphrase = src.load()?;
    if passphrase.is_empty() {
        return Err(HsmError::SecretUnavailable("the passphrase is empty".into()));
    }
    let argon_params = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(KEK_LEN))
        .map_err(|e| HsmError::Corrupt(format!("Argon2id parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
    let mut out = Zeroizing::new([0u8; KEK_LEN]);
    argon.hash_password_into(&passphrase, salt, &mut *out).map_err(|e| HsmError::Crypto(format!("Argon2id: {e}")))?;
    Ok(out)
}

/// Reads a raw key-encryption key. Files are read directly rather than through
/// [`SecretSource::load`], whose trailing-newline trimming would corrupt a raw key
/// that happens to end in `0x0a`.
fn load_key_file(src: &SecretSource) -> Result<Zeroizing<[u8; KEK_LEN]>, HsmError> {
    let bytes: Zeroizing<Vec<u8>> = match src {
        SecretSource::File(path) => Zeroizing::new(crate::secret::read_secret_file(path)?),
        SecretSource::Env(_) => src.load()?,
    };
    let mut key = Zeroizing::new([0u8; KEK_LEN]);
    if bytes.len() == KEK_LEN && matches!(src, SecretSource::File(_)) {
        key.copy_from_slice(&bytes);
        return Ok(key);
    }
    let text = bytes.trim_ascii();
    if text.len() == 2 * KEK_LEN && hex::decode_to_slice(text, &mut *key).is_ok() {
        return Ok(key);
    }
    Err(HsmError::SecretUnavailable("the key-encryption key must be 32 raw bytes (file only) or 64 hex digits".into()))
}

/// Writes `contents` to `path` only if `path` does not exist yet, durably: temp file
/// (0600, fsynced) → `link` → unlink temp → fsync directory. Returns `false` if the
/// target already existed.
fn write_new_file(dir: &Path, path: &Path, contents: &[u8]) -> Result<bool, HsmError> {
    let mut rnd = [0u8; 8];
    lc_rand::fill(&mut rnd).map_err(|_| HsmError::Crypto("random file name".into()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Leading dot: never collides with a label (labels cannot start with '.').
    let tmp = dir.join(format!(".{name}.tmp-{}", hex::encode(rnd)));
    let result = (|| {
        let mut f =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(contents).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(f);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(path, e)),
        }
    })();
    // Best effort: a leftover temp file holds only ciphertext.
    if let Err(e) = fs::remove_file(&tmp) {
        tracing::warn!(path = %tmp.display(), error = %e, "could not remove temporary file");
    }
    let created = result?;
    if created {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))?;
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn algorithm_codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for a in KeyAlgorithm::ALL {
            assert!(seen.insert(algorithm_code(a)));
            assert_eq!(algorithm_from_code(algorithm_code(a)), Some(a));
        }
        assert_eq!(algorithm_from_code(0), None);
    }

    #[test]
    fn key_file_accepts_raw_and_hex_but_not_other_lengths() {
        let dir = tempfile::tempdir().unwrap();
        // A raw key ending in '\n' must not lose its last byte.
        let mut raw = [7u8; 32];
        raw[31] = b'\n';
        let p = dir.path().join("raw");
        write_secret(&p, &raw);
        assert_eq!(*load_key_file(&SecretSource::File(p)).unwrap(), raw);

        let p = dir.path().join("hex");
        write_secret(&p, format!("{}\n", hex::encode([9u8; 32])).as_bytes());
        assert_eq!(*load_key_file(&SecretSource::File(p)).unwrap(), [9u8; 32]);

        let p = dir.path().join("short");
        write_secret(&p, &[1u8; 31]);
        assert!(matches!(load_key_file(&SecretSource::File(p)), Err(HsmError::SecretUnavailable(_))));
    }

    fn write_secret(p: &Path, bytes: &[u8]) {
        fs::write(p, bytes).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        write_secret(&p, hex::encode([9u8; 32]).as_bytes());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_key_file(&SecretSource::File(p)).unwrap_err().to_string();
        assert!(err.contains("mode 0640"), "{err}");
    }

    fn write_pem(dir: &Path, name: &str, label: &str, der: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, der::pem::encode_string(label, der::pem::LineEnding::LF, der).unwrap()).unwrap();
        p
    }

    #[test]
    fn pkcs8_pem_file_loads_each_algorithm_and_signs_verifiably() {
        let dir = tempfile::tempdir().unwrap();
        for alg in KeyAlgorithm::ALL {
            let pkcs8 = generate_pkcs8(alg).unwrap();
            let p = write_pem(dir.path(), &format!("{alg}.pem"), "PRIVATE KEY", &pkcs8);
            let signer = SoftwareSigner::from_pkcs8_pem_file(&p, "ota-key").unwrap();
            assert_eq!(signer.algorithm(), alg, "algorithm detected from the PKCS#8 header");
            assert_eq!(signer.label(), "ota-key");
            let sig = signer.sign(b"firmware").unwrap();
            crate::testing::verify_signature(signer.public_key_der(), alg, b"firmware", &sig).unwrap();
        }
    }

    #[test]
    fn pkcs8_pem_file_refuses_other_rsa_sizes_encrypted_and_traditional_forms() {
        let dir = tempfile::tempdir().unwrap();
        let rsa2048 = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = rsa2048.as_der().unwrap();
        let p = write_pem(dir.path(), "rsa2048.pem", "PRIVATE KEY", der.as_ref());
        let err = SoftwareSigner::from_pkcs8_pem_file(&p, "k").unwrap_err();
        assert!(matches!(&err, HsmError::Unsupported(m) if m.contains("RSA-2048")), "{err}");

        let p256 = generate_pkcs8(KeyAlgorithm::EcdsaP256).unwrap();
        let p = write_pem(dir.path(), "enc.pem", "ENCRYPTED PRIVATE KEY", &p256);
        let err = SoftwareSigner::from_pkcs8_pem_file(&p, "k").unwrap_err();
        assert!(matches!(&err, HsmError::Unsupported(m) if m.contains("encrypted")), "{err}");
        let p = write_pem(dir.path(), "sec1.pem", "EC PRIVATE KEY", &p256);
        let err = SoftwareSigner::from_pkcs8_pem_file(&p, "k").unwrap_err();
        assert!(matches!(&err, HsmError::Unsupported(m) if m.contains("-topk8")), "{err}");
    }

    #[test]
    fn pkcs8_pem_file_reports_junk_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.pem");
        fs::write(&p, "not a key\n").unwrap();
        assert!(matches!(SoftwareSigner::from_pkcs8_pem_file(&p, "k"), Err(HsmError::Corrupt(_))));
        let p = write_pem(dir.path(), "trunc.pem", "PRIVATE KEY", &[0x30, 0x82, 0x01]);
        assert!(matches!(SoftwareSigner::from_pkcs8_pem_file(&p, "k"), Err(HsmError::Corrupt(_))));
        // Unknown key algorithm (an X25519 OID) in an otherwise well-formed PKCS#8.
        let x25519 = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20, 1, 2, 3, 4,
            5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
        ];
        let p = write_pem(dir.path(), "x25519.pem", "PRIVATE KEY", &x25519);
        assert!(matches!(SoftwareSigner::from_pkcs8_pem_file(&p, "k"), Err(HsmError::Unsupported(_))));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(SoftwareSigner::from_pkcs8_pem_file(&missing, "k"), Err(HsmError::Io { .. })));
    }
}
