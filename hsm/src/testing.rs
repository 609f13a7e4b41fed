//! Test fixtures shared by this crate's tests and benches and by other crates' tests
//! (feature `testing`; never enable it in production builds).
//!
//! * [`SoftHsmFixture`] — a fresh SoftHSM2 token per call. SoftHSM reads
//!   `SOFTHSM2_CONF` once, at `C_Initialize`, and that happens once per process, so
//!   all fixtures of a process share one token directory (created on first use under
//!   the system temp dir, named after the pid, swept by later runs once the process
//!   is gone); each fixture gets its own token in it, so tests stay independent.
//! * [`software_store`] — a software store in a temp dir, unlocked by a random key
//!   file (no Argon2 cost, so it is fast in debug builds).
//! * [`verify_signature`] — an independent check of a signature against a DER SPKI,
//!   using only the public key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use der::Decode;
use spki::SubjectPublicKeyInfoRef;
use tempfile::TempDir;

use crate::pkcs11::{shared_context, Pkcs11Config};
use crate::software::{SoftwareConfig, SoftwareKeyStore, SoftwareSecret};
use crate::{HsmError, KeyAlgorithm, SecretSource};

/// Where Debian/Ubuntu's `softhsm2` package installs the module.
pub const DEFAULT_SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The SoftHSM module to test against: `$PKCS11_MODULE`, or
/// [`DEFAULT_SOFTHSM_MODULE`].
pub fn softhsm_module() -> PathBuf {
    std::env::var_os("PKCS11_MODULE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_SOFTHSM_MODULE))
}

/// A freshly initialized SoftHSM2 token. The token lives as long as the process (in
/// the shared token directory); the fixture's own temp dir holds the PIN file and is
/// removed on drop.
#[derive(Debug)]
pub struct SoftHsmFixture {
    /// Ready-to-use configuration (PIN read from a file in [`SoftHsmFixture::dir`]).
    pub config: Pkcs11Config,
    /// The user PIN (tests that need to log in by hand, or test a wrong PIN).
    pub user_pin: String,
    /// The security officer PIN.
    pub so_pin: String,
    dir: TempDir,
}

struct Shared {
    module: PathBuf,
    conf: PathBuf,
}

fn shared() -> Result<&'static Shared, HsmError> {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    SHARED.get_or_init(init_shared).as_ref().map_err(|e| HsmError::Pkcs11(e.clone()))
}

fn init_shared() -> Result<Shared, String> {
    let module = softhsm_module();
    if !module.is_file() {
        return Err(format!(
            "SoftHSM2 PKCS#11 module {} not found: install softhsm2 (apt-get install \
             softhsm2) or point PKCS11_MODULE at the module",
            module.display()
        ));
    }
    sweep_stale_dirs();
    // Deliberately not a TempDir: statics are never dropped, and SoftHSM keeps files
    // open in it until the process exits. Stale ones are swept by later runs.
    let root = std::env::temp_dir().join(format!("hsm-softhsm-{}", std::process::id()));
    let tokens = root.join("tokens");
    fs::create_dir_all(&tokens).map_err(|e| format!("creating {}: {e}", tokens.display()))?;
    let conf = root.join("softhsm2.conf");
    fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
             slots.removable = false\n",
            tokens.display()
        ),
    )
    .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    // Must be set before the first C_Initialize of the module in this process; this
    // runs before any fixture hands out a config, and contexts are only created from
    // configs.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    Ok(Shared { module, conf })
}

/// Removes token directories left behind by earlier test processes that have exited.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("hsm-softhsm-")).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn random_hex(n: usize) -> Result<String, HsmError> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| HsmError::Crypto("random".into()))?;
    Ok(hex::encode(b))
}

impl SoftHsmFixture {
    /// Creates a new token with random PINs. Fails with a clear message if SoftHSM2 is
    /// not installed.
    ///
    /// The token is initialized through the module in this process (`C_InitToken` on
    /// the free slot, then `C_InitPIN` as SO), not with `softhsm2-util`: SoftHSM scans
    /// its token directory only at `C_Initialize`, so a token that another process
    /// creates later is invisible to this one.
    pub fn new() -> Result<Self, HsmError> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        // Two threads must not race for the same free slot.
        static INIT: Mutex<()> = Mutex::new(());
        let shared = shared()?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let token_label = format!("hsm-test-{n}");
        let so_pin = random_hex(8)?;
        let user_pin = random_hex(8)?;

        let ctx = shared_context(&shared.module)?;
        let ck = |what: &str, e: cryptoki::error::Error| HsmError::Pkcs11(format!("{what}: {e:?}"));
        {
            let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
            let mut free = None;
            for slot in ctx.get_slots_with_token().map_err(|e| ck("C_GetSlotList", e))? {
                let info = ctx.get_token_info(slot).map_err(|e| ck("C_GetTokenInfo", e))?;
                if !info.token_initialized() {
                    free = Some(slot);
                    break;
                }
            }
            let slot = free.ok_or_else(|| HsmError::Pkcs11("SoftHSM offers no free slot".into()))?;
            ctx.init_token(slot, &AuthPin::from(so_pin.as_str()), &token_label).map_err(|e| ck("C_InitToken", e))?;
        }
        // SoftHSM may renumber the slot once the token has a serial: find it again.
        let slot = ctx
            .get_slots_with_initialized_token()
            .map_err(|e| ck("C_GetSlotList", e))?
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label().trim_end() == token_label))
            .ok_or_else(|| HsmError::TokenNotFound(token_label.clone()))?;
        let session = ctx.open_rw_session(slot).map_err(|e| ck("C_OpenSession", e))?;
        session.login(UserType::So, Some(&AuthPin::from(so_pin.as_str()))).map_err(|e| ck("C_Login(SO)", e))?;
        session.init_pin(&AuthPin::from(user_pin.as_str())).map_err(|e| ck("C_InitPIN", e))?;
        session.logout().map_err(|e| ck("C_Logout", e))?;
        drop(session);

        let dir = tempfile::tempdir()
            .map_err(|e| HsmError::Io { path: std::env::temp_dir().display().to_string(), source: e })?;
        let pin_file = dir.path().join("user.pin");
        write_secret_file(&pin_file, user_pin.as_bytes())?;
        let config =
            Pkcs11Config { module: shared.module.clone(), token_label, pin: SecretSource::File(pin_file), sessions: 2 };
        Ok(SoftHsmFixture { config, user_pin, so_pin, dir })
    }

    /// The fixture's private temp dir (holds the PIN file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `softhsm2.conf` this process uses (also exported as `SOFTHSM2_CONF`, so
    /// child processes — e.g. the service binary in end-to-end tests — see the same
    /// tokens).
    pub fn softhsm2_conf() -> Result<&'static Path, HsmError> {
        Ok(&shared()?.conf)
    }
}

fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), HsmError> {
    let io = |e| HsmError::Io { path: path.display().to_string(), source: e };
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
    f.write_all(contents).map_err(io)
}

/// A software store in a new temp dir, unlocked by a random key file in that dir.
pub fn software_store() -> Result<(SoftwareKeyStore, TempDir), HsmError> {
    let dir = tempfile::tempdir()
        .map_err(|e| HsmError::Io { path: std::env::temp_dir().display().to_string(), source: e })?;
    let key_file = dir.path().join("kek.hex");
    write_secret_file(&key_file, random_hex(32)?.as_bytes())?;
    let config = SoftwareConfig::new(dir.path().join("keys"), SoftwareSecret::KeyFile(SecretSource::File(key_file)));
    Ok((SoftwareKeyStore::open(&config)?, dir))
}

/// Verifies `signature` over `message` with the public key in `spki_der` alone, the
/// way a relying party would: the SPKI is parsed with the `spki` crate, its algorithm
/// must match `algorithm`, and aws-lc verifies.
pub fn verify_signature(
    spki_der: &[u8],
    algorithm: KeyAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use const_oid::db::{rfc5912, rfc8410};
    let spki = SubjectPublicKeyInfoRef::from_der(spki_der).map_err(|e| format!("SPKI: {e}"))?;
    let params_oid = spki.algorithm.parameters.map(|p| p.decode_as::<const_oid::ObjectIdentifier>());
    let expect = |ok: bool, what: &str| if ok { Ok(()) } else { Err(format!("SPKI is not {what}")) };
    let verifier: &'static dyn VerificationAlgorithm = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            expect(
                spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY
                    && matches!(params_oid, Some(Ok(o)) if o == rfc5912::SECP_256_R_1),
                "a P-256 key",
            )?;
            &signature::ECDSA_P256_SHA256_ASN1
        }
        KeyAlgorithm::EcdsaP384 => {
            expect(
                spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY
                    && matches!(params_oid, Some(Ok(o)) if o == rfc5912::SECP_384_R_1),
                "a P-384 key",
            )?;
            &signature::ECDSA_P384_SHA384_ASN1
        }
        KeyAlgorithm::Ed25519 => {
            // RFC 8410: parameters MUST be absent.
            expect(
                spki.algorithm.oid == rfc8410::ID_ED_25519 && spki.algorithm.parameters.is_none(),
                "an Ed25519 key",
            )?;
            &signature::ED25519
        }
        KeyAlgorithm::Rsa3072 => {
            // RFC 3279: parameters MUST be NULL.
            expect(
                spki.algorithm.oid == rfc5912::RSA_ENCRYPTION && spki.algorithm.parameters.is_some_and(|p| p.is_null()),
                "an RSA key",
            )?;
            // The signature is as long as the modulus: this pins RSA-3072.
            if signature.len() != 3072 / 8 {
                return Err(format!("RSA signature is {} bytes, not 384", signature.len()));
            }
            &signature::RSA_PKCS1_2048_8192_SHA256
        }
    };
    let key = spki.subject_public_key.as_bytes().ok_or("SPKI public key has unused bits")?;
    UnparsedPublicKey::new(verifier, key)
        .verify(message, signature)
        .map_err(|_| format!("{algorithm} signature does not verify"))
}
