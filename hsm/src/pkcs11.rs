//! PKCS#11 backend (`cryptoki`): keys are generated inside the token, marked
//! sensitive and non-extractable, and used through a pool of logged-in sessions.
//!
//! Facts of PKCS#11 life this module is built around:
//!
//! * `C_Initialize` may be called once per process per module, so contexts live in a
//!   process-wide registry ([`shared_context`]) and are never finalized.
//! * Login state belongs to the application + token, not to a session: the second
//!   session's `C_Login` answers `CKR_USER_ALREADY_LOGGED_IN` (fine), a `C_Logout` on
//!   any session logs out all of them, and closing the last session logs out too.
//! * A [`Session`] is `Send` but not `Sync`, and a token serializes work per session,
//!   so parallel signing needs several sessions: the session pool hands one session
//!   to one thread at a time and opens them lazily up to the configured size.
//! * Sessions can be lost (token reset, logout behind our back, device removal). An
//!   operation that fails that way drops its session, opens and logs in a fresh one,
//!   re-resolves the key handle (SoftHSM invalidates private-object handles on
//!   logout) and is retried once.
//! * SoftHSM offers only raw `CKM_ECDSA`: the message is hashed on the host and the raw
//!   `r ‖ s` result is re-encoded as a DER `Ecdsa-Sig-Value`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use const_oid::db::{rfc5912, rfc8410};
use const_oid::ObjectIdentifier;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use der::asn1::{AnyRef, BitString, OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::label::validate_label;
use crate::{HsmError, KeyAlgorithm, KeyStore, SecretSource, SessionUse, Signer};

/// Configuration of a [`Pkcs11KeyStore`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token to use. Slots are found by token label because slot ids
    /// are not stable (SoftHSM reassigns them when tokens are added).
    pub token_label: String,
    /// The user PIN.
    pub pin: SecretSource,
    /// Maximum number of sessions in the pool; `0` means the default, one per CPU
    /// ([`default_sessions`]).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

impl Pkcs11Config {
    /// A configuration with the default pool size.
    pub fn new(module: impl Into<PathBuf>, token_label: impl Into<String>, pin: SecretSource) -> Self {
        Pkcs11Config { module: module.into(), token_label: token_label.into(), pin, sessions: default_sessions() }
    }
}

/// One session per available CPU: signing is CPU-bound inside the token library, so
/// more sessions than cores only add contention.
pub fn default_sessions() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The process-wide, initialized context for `module`.
///
/// `C_Initialize` must happen once per process per module; everything in this crate
/// (and any test that wants a raw session of its own) goes through this registry.
/// Contexts are never finalized: other holders may still have sessions open.
pub fn shared_context(module: &Path) -> Result<Pkcs11, HsmError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let key = module.canonicalize().unwrap_or_else(|_| module.to_owned());
    let mut map = lock(CONTEXTS.get_or_init(Default::default));
    if let Some(ctx) = map.get(&key) {
        return Ok(ctx.clone());
    }
    if !key.exists() {
        return Err(HsmError::Pkcs11(format!("PKCS#11 module {} does not exist", module.display())));
    }
    let ctx = Pkcs11::new(&key)
        .map_err(|e| HsmError::Pkcs11(format!("cannot load PKCS#11 module {}: {e}", module.display())))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        // Someone else in this process (another library) initialized it: share it.
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck_err(e)),
    }
    map.insert(key, ctx.clone());
    Ok(ctx)
}

/// Keys in a PKCS#11 token.
pub struct Pkcs11KeyStore {
    pool: Arc<SessionPool>,
    /// Serializes generate's "label free?" check with the creation, within this
    /// process. PKCS#11 has no atomic create-if-absent, so two *processes*
    /// generating the same label at the same instant cannot be excluded here.
    generate_lock: Mutex<()>,
}

impl fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl Pkcs11KeyStore {
    /// Loads/initializes the module, finds the token by label and logs in a first
    /// session, so a wrong PIN or missing token is reported here rather than at the
    /// first signature.
    ///
    /// # Errors
    /// [`HsmError::TokenNotFound`], [`HsmError::WrongPin`],
    /// [`HsmError::SecretUnavailable`] (PIN unreadable), [`HsmError::Pkcs11`].
    pub fn open(config: &Pkcs11Config) -> Result<Self, HsmError> {
        let ctx = shared_context(&config.module)?;
        let slot = find_slot(&ctx, &config.token_label)?;
        let pin = config.pin.load()?;
        let pin = RawAuthPin::new(Box::new(pin.to_vec()));
        let max = if config.sessions == 0 { default_sessions() } else { config.sessions };
        let pool = Arc::new(SessionPool {
            ctx,
            slot,
            token_label: config.token_label.clone(),
            pin,
            max,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            available: Condvar::new(),
        });
        // Open and log in one session now; it goes back to the pool idle.
        drop(pool.checkout(false)?);
        tracing::info!(token = %config.token_label, sessions = max, "opened PKCS#11 key store");
        Ok(Pkcs11KeyStore { pool, generate_lock: Mutex::new(()) })
    }

    /// The label of the token this store uses.
    pub fn token_label(&self) -> &str {
        &self.pool.token_label
    }

    /// Asks the token about each mechanism. (Not `C_GetMechanismList`: cryptoki logs
    /// an ERROR for every vendor mechanism number it has no name for.)
    fn require(&self, algorithm: KeyAlgorithm, needed: &[MechanismType]) -> Result<(), HsmError> {
        for m in needed {
            match self.pool.ctx.get_mechanism_info(self.pool.slot, *m) {
                Ok(_) => {}
                Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::MechanismInvalid, _)) => {
                    return Err(HsmError::Unsupported(format!(
                        "{algorithm} keys: token '{}' lacks mechanism {m}",
                        self.pool.token_label
                    )))
                }
                Err(e) => return Err(ck_err(e)),
            }
        }
        Ok(())
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn generate(&self, label: &str, algorithm: KeyAlgorithm) -> Result<Arc<dyn Signer>, HsmError> {
        validate_label(label)?;
        let (gen_mech, needed) = match algorithm {
            KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                (Mechanism::EccKeyPairGen, [MechanismType::ECC_KEY_PAIR_GEN, MechanismType::ECDSA])
            }
            KeyAlgorithm::Ed25519 => {
                (Mechanism::EccEdwardsKeyPairGen, [MechanismType::ECC_EDWARDS_KEY_PAIR_GEN, MechanismType::EDDSA])
            }
            KeyAlgorithm::Rsa3072 => {
                (Mechanism::RsaPkcsKeyPairGen, [MechanismType::RSA_PKCS_KEY_PAIR_GEN, MechanismType::SHA256_RSA_PKCS])
            }
        };
        self.require(algorithm, &needed)?;

        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| HsmError::Crypto("random key id".into()))?;
        let label_attr = Attribute::Label(label.as_bytes().to_vec());
        let id_attr = Attribute::Id(id.to_vec());
        let mut public = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            label_attr.clone(),
            id_attr.clone(),
        ];
        match algorithm {
            KeyAlgorithm::EcdsaP256 => public.push(Attribute::EcParams(oid_der(rfc5912::SECP_256_R_1)?)),
            KeyAlgorithm::EcdsaP384 => public.push(Attribute::EcParams(oid_der(rfc5912::SECP_384_R_1)?)),
            KeyAlgorithm::Ed25519 => public.push(Attribute::EcParams(oid_der(rfc8410::ID_ED_25519)?)),
            KeyAlgorithm::Rsa3072 => {
                public.push(Attribute::ModulusBits(3072.into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            }
        }
        // The private half must never leave the token: sensitive (no CKA_VALUE read),
        // not extractable (no wrapping out), private (needs login to even see it).
        // And it only signs: SoftHSM would otherwise default to decrypt/unwrap too,
        // turning a CA key into a decryption oracle.
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            label_attr,
            id_attr,
        ];

        let _serialize = lock(&self.generate_lock);
        let (handle, public_key_der) = self.pool.run(|session, _retry| {
            if !find_by_label(session, label, None)?.is_empty() {
                return Err(HsmError::KeyExists(label.to_owned()).into());
            }
            let (pub_h, priv_h) = session.generate_key_pair(&gen_mech, &public, &private)?;
            let spki = read_public_key(session, pub_h, algorithm)?;
            Ok((priv_h, spki))
        })?;
        tracing::info!(label, %algorithm, token = %self.pool.token_label, "generated key in token");
        Ok(Arc::new(Pkcs11Signer {
            label: label.to_owned(),
            algorithm,
            public_key_der,
            handle: Mutex::new(handle),
            pool: Arc::clone(&self.pool),
        }))
    }

    fn find(&self, label: &str) -> Result<Arc<dyn Signer>, HsmError> {
        validate_label(label)?;
        let (handle, algorithm, public_key_der) = self.pool.run(|session, _retry| {
            let handle = find_private_key(session, label)?;
            let (algorithm, public) = describe_key(session, handle, label)?;
            let spki = read_public_key(session, public, algorithm)?;
            Ok((handle, algorithm, spki))
        })?;
        Ok(Arc::new(Pkcs11Signer {
            label: label.to_owned(),
            algorithm,
            public_key_der,
            handle: Mutex::new(handle),
            pool: Arc::clone(&self.pool),
        }))
    }

    fn destroy(&self, label: &str) -> Result<(), HsmError> {
        validate_label(label)?;
        let _serialize = lock(&self.generate_lock);
        self.pool.run(|session, _retry| {
            // The private key first: once it is gone nothing can sign, whatever else fails.
            let private = find_private_key(session, label)?;
            session.destroy_object(private)?;
            for handle in find_by_label(session, label, None)? {
                session.destroy_object(handle)?;
            }
            Ok(())
        })?;
        tracing::info!(label, token = %self.pool.token_label, "destroyed key in token");
        Ok(())
    }

    fn ping(&self) -> Result<(), HsmError> {
        self.pool.run(|session, _retry| {
            let info = session.get_session_info()?;
            match info.session_state() {
                SessionState::RoUser | SessionState::RwUser => Ok(()),
                // Logged out behind our back: report it as the token would, so the
                // pool re-logs in and retries.
                _ => Err(CkError::Pkcs11(RvError::UserNotLoggedIn, Function::GetSessionInfo).into()),
            }
        })
    }

    fn sessions(&self) -> Option<SessionUse> {
        Some(self.pool.usage())
    }
}

/// A key in the token. Holds its object handle (valid for every session of this
/// application) and shares the store's session pool.
pub struct Pkcs11Signer {
    label: String,
    algorithm: KeyAlgorithm,
    public_key_der: Vec<u8>,
    /// Refreshed after a session loss: SoftHSM hands out new handles after re-login.
    handle: Mutex<ObjectHandle>,
    pool: Arc<SessionPool>,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("label", &self.label)
            .field("algorithm", &self.algorithm)
            .field("token", &self.pool.token_label)
            .finish_non_exhaustive()
    }
}

impl Signer for Pkcs11Signer {
    fn label(&self) -> &str {
        &self.label
    }

    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        // Hash once, outside the retry loop and outside the session.
        let digest = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => Some(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message)),
            KeyAlgorithm::EcdsaP384 => Some(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, message)),
            KeyAlgorithm::Ed25519 | KeyAlgorithm::Rsa3072 => None,
        };
        self.pool.run(|session, retry| {
            let handle = if retry {
                let h = find_private_key(session, &self.label)?;
                *lock(&self.handle) = h;
                h
            } else {
                *lock(&self.handle)
            };
            match (self.algorithm, &digest) {
                (KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384, Some(d)) => {
                    let raw = session.sign(&Mechanism::Ecdsa, handle, d.as_ref())?;
                    Ok(ecdsa_raw_to_der(&raw, field_len(self.algorithm))?)
                }
                (KeyAlgorithm::Ed25519, _) => Ok(session.sign(
                    &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    handle,
                    message,
                )?),
                (KeyAlgorithm::Rsa3072, _) => Ok(session.sign(&Mechanism::Sha256RsaPkcs, handle, message)?),
                (KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384, None) => {
                    Err(HsmError::Crypto("missing digest".into()).into())
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------------
// Session pool

/// A bounded pool of logged-in read/write sessions on one token.
struct SessionPool {
    ctx: Pkcs11,
    slot: Slot,
    token_label: String,
    /// Kept for logging in new sessions (lazily, and after a session loss). Zeroized
    /// on drop by `secrecy`; its `Debug` is redacted.
    pin: RawAuthPin,
    max: usize,
    state: Mutex<PoolState>,
    available: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    /// Sessions in existence: idle + checked out + being opened.
    open: usize,
}

impl fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionPool")
            .field("token", &self.token_label)
            .field("slot", &self.slot)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// What an operation inside a session can fail with: a raw PKCS#11 error (which the
/// pool inspects for session loss) or an already-classified error.
enum OpError {
    Ck(CkError),
    Hsm(HsmError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Ck(e)
    }
}

impl From<HsmError> for OpError {
    fn from(e: HsmError) -> Self {
        OpError::Hsm(e)
    }
}

impl From<OpError> for HsmError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Ck(e) => ck_err(e),
            OpError::Hsm(e) => e,
        }
    }
}

/// A checked-out session; goes back to the pool on drop.
struct PooledSession<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl PooledSession<'_> {
    fn session(&self) -> Result<&Session, HsmError> {
        self.session.as_ref().ok_or_else(|| HsmError::Pkcs11("internal: pooled session already released".into()))
    }

    /// Closes the session instead of returning it, freeing its place in the pool.
    fn discard(mut self) {
        if let Some(s) = self.session.take() {
            drop(s);
            self.pool.forget_one();
        }
    }
}

impl Drop for PooledSession<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            if std::thread::panicking() {
                // Unwinding out of an operation: the session may have one half done
                // (CKR_OPERATION_ACTIVE for the next user). Close it instead.
                drop(s);
                self.pool.forget_one();
                return;
            }
            lock(&self.pool.state).idle.push(s);
            self.pool.available.notify_one();
        }
    }
}

impl SessionPool {
    /// Takes an idle session, or opens one if the pool is below its size, or waits.
    /// With `fresh`, never reuses an idle session (they may be as dead as the one
    /// that just failed): an idle one is closed to make room if necessary.
    fn checkout(&self, fresh: bool) -> Result<PooledSession<'_>, HsmError> {
        let mut state = lock(&self.state);
        loop {
            if !fresh {
                if let Some(s) = state.idle.pop() {
                    return Ok(PooledSession { pool: self, session: Some(s) });
                }
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.open_session() {
                    Ok(s) => Ok(PooledSession { pool: self, session: Some(s) }),
                    Err(e) => {
                        self.forget_one();
                        Err(e)
                    }
                };
            }
            if fresh {
                if let Some(old) = state.idle.pop() {
                    state.open -= 1;
                    drop(old);
                    continue;
                }
            }
            state = self.available.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn usage(&self) -> SessionUse {
        let state = lock(&self.state);
        SessionUse { in_use: state.open.saturating_sub(state.idle.len()), open: state.open, max: self.max }
    }

    fn forget_one(&self) {
        let mut state = lock(&self.state);
        state.open = state.open.saturating_sub(1);
        drop(state);
        self.available.notify_one();
    }

    fn open_session(&self) -> Result<Session, HsmError> {
        let session = self.ctx.open_rw_session(self.slot).map_err(ck_err)?;
        match session.login_with_raw(UserType::User, &self.pin) {
            // Login is per application: any earlier session already did it.
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _)) => {
                Err(HsmError::WrongPin)
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                Err(HsmError::Pkcs11(format!("the user PIN of token '{}' is locked", self.token_label)))
            }
            Err(e) => Err(ck_err(e)),
        }
    }

    /// Runs `op` on a pooled session. If it fails because the session or its login
    /// was lost, the session is closed and `op` runs once more on a freshly opened,
    /// logged-in session, with `retry = true` so it can re-resolve object handles.
    fn run<T>(&self, mut op: impl FnMut(&Session, bool) -> Result<T, OpError>) -> Result<T, HsmError> {
        let first = self.checkout(false)?;
        let lost = match op(first.session()?, false) {
            Ok(v) => return Ok(v),
            Err(OpError::Ck(e)) if is_session_lost(&e) => e,
            Err(e) => return Err(e.into()),
        };
        first.discard();
        tracing::warn!(
            token = %self.token_label,
            error = %short_ck(&lost),
            "PKCS#11 session lost; opening a new session and retrying once"
        );
        let second = self.checkout(true)?;
        match op(second.session()?, true) {
            Ok(v) => Ok(v),
            Err(OpError::Ck(e)) if is_session_lost(&e) => {
                second.discard();
                Err(ck_err(e))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Errors after which the session (or the application's login) is gone. Invalid
/// object handles are included because SoftHSM drops private-object handles on
/// logout; the retry re-resolves them by label.
fn is_session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::UserNotLoggedIn
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state stays consistent across a panic (plain pushes/counters).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// cryptoki's `Display` for return values is a paragraph of spec text; the variant
/// name is what an operator can search for.
fn short_ck(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("C_{function:?} failed: {rv:?}"),
        other => other.to_string(),
    }
}

fn ck_err(e: CkError) -> HsmError {
    HsmError::Pkcs11(short_ck(&e))
}

fn find_slot(ctx: &Pkcs11, token_label: &str) -> Result<Slot, HsmError> {
    let wanted = token_label.trim_end();
    let mut found = Vec::new();
    for slot in ctx.get_slots_with_initialized_token().map_err(ck_err)? {
        let info = ctx.get_token_info(slot).map_err(ck_err)?;
        if info.label().trim_end() == wanted {
            found.push(slot);
        }
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound(token_label.to_owned())),
        _ => Err(HsmError::Pkcs11(format!(
            "{} tokens are labelled '{token_label}'; token labels must be unique",
            found.len()
        ))),
    }
}

// ---------------------------------------------------------------------------------
// Objects and public keys

fn find_by_label(session: &Session, label: &str, class: Option<ObjectClass>) -> Result<Vec<ObjectHandle>, CkError> {
    let mut template = vec![Attribute::Label(label.as_bytes().to_vec())];
    if let Some(class) = class {
        template.push(Attribute::Class(class));
    }
    session.find_objects(&template)
}

fn find_private_key(session: &Session, label: &str) -> Result<ObjectHandle, OpError> {
    match find_by_label(session, label, Some(ObjectClass::PRIVATE_KEY))?.as_slice() {
        [h] => Ok(*h),
        [] => Err(HsmError::KeyNotFound(label.to_owned()).into()),
        many => {
            Err(HsmError::Corrupt(format!("{} private keys are labelled '{label}' in the token", many.len())).into())
        }
    }
}

/// Works out the algorithm of a private key and finds its public half (same
/// CKA_ID, falling back to the label for keys created without an id).
fn describe_key(
    session: &Session,
    private: ObjectHandle,
    label: &str,
) -> Result<(KeyAlgorithm, ObjectHandle), OpError> {
    let attrs = session.get_attributes(private, &[AttributeType::KeyType, AttributeType::Id])?;
    let key_type = attrs.iter().find_map(|a| match a {
        Attribute::KeyType(k) => Some(*k),
        _ => None,
    });
    let id = attrs.iter().find_map(|a| match a {
        Attribute::Id(id) if !id.is_empty() => Some(id.clone()),
        _ => None,
    });
    let mut template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    match id {
        Some(id) => template.push(Attribute::Id(id)),
        None => template.push(Attribute::Label(label.as_bytes().to_vec())),
    }
    let public = match session.find_objects(&template)?.as_slice() {
        [h] => *h,
        [] => return Err(HsmError::Corrupt(format!("key '{label}' has no public key object in the token")).into()),
        _ => return Err(HsmError::Corrupt(format!("key '{label}' has several matching public key objects")).into()),
    };
    let algorithm = match key_type {
        Some(KeyType::EC) => {
            let params = ec_params(session, public)?;
            match curve_of(&params) {
                Some(Curve::P256) => KeyAlgorithm::EcdsaP256,
                Some(Curve::P384) => KeyAlgorithm::EcdsaP384,
                _ => return Err(HsmError::Unsupported(format!("the curve of EC key '{label}'")).into()),
            }
        }
        Some(KeyType::EC_EDWARDS) => {
            let params = ec_params(session, public)?;
            match curve_of(&params) {
                Some(Curve::Ed25519) => KeyAlgorithm::Ed25519,
                _ => return Err(HsmError::Unsupported(format!("the curve of EdDSA key '{label}'")).into()),
            }
        }
        Some(KeyType::RSA) => KeyAlgorithm::Rsa3072,
        Some(other) => return Err(HsmError::Unsupported(format!("key '{label}' of type {other}")).into()),
        None => return Err(HsmError::Corrupt(format!("key '{label}' has no CKA_KEY_TYPE")).into()),
    };
    Ok((algorithm, public))
}

fn ec_params(session: &Session, object: ObjectHandle) -> Result<Vec<u8>, OpError> {
    session
        .get_attributes(object, &[AttributeType::EcParams])?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcParams(p) => Some(p),
            _ => None,
        })
        .ok_or_else(|| HsmError::Corrupt("EC key without CKA_EC_PARAMS".into()).into())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Curve {
    P256,
    P384,
    Ed25519,
}

/// CKA_EC_PARAMS is a DER `ECParameters` (we only accept `namedCurve`). For Edwards
/// curves PKCS#11 3.0 also allows a PrintableString curve name, which some tokens
/// use.
fn curve_of(params: &[u8]) -> Option<Curve> {
    if let Ok(oid) = ObjectIdentifier::from_der(params) {
        return match oid {
            o if o == rfc5912::SECP_256_R_1 => Some(Curve::P256),
            o if o == rfc5912::SECP_384_R_1 => Some(Curve::P384),
            o if o == rfc8410::ID_ED_25519 => Some(Curve::Ed25519),
            _ => None,
        };
    }
    match der::asn1::PrintableStringRef::from_der(params) {
        Ok(name) if name.as_str() == "edwards25519" => Some(Curve::Ed25519),
        _ => None,
    }
}

fn oid_der(oid: ObjectIdentifier) -> Result<Vec<u8>, HsmError> {
    oid.to_der().map_err(|e| HsmError::Crypto(format!("encoding curve OID: {e}")))
}

/// Size in bytes of one ECDSA scalar for the curve.
fn field_len(algorithm: KeyAlgorithm) -> usize {
    match algorithm {
        KeyAlgorithm::EcdsaP384 => 48,
        _ => 32,
    }
}

/// `RSAPublicKey` (RFC 8017 A.1.1).
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// `Ecdsa-Sig-Value` (RFC 5480 / RFC 3279).
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// Reads a public key object and encodes it as a DER SubjectPublicKeyInfo.
fn read_public_key(session: &Session, public: ObjectHandle, algorithm: KeyAlgorithm) -> Result<Vec<u8>, OpError> {
    let der_err = |e: der::Error| HsmError::Crypto(format!("encoding the public key: {e}"));
    let spki = match algorithm {
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 | KeyAlgorithm::Ed25519 => {
            let attrs = session.get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])?;
            let mut params = None;
            let mut point = None;
            for a in attrs {
                match a {
                    Attribute::EcParams(p) => params = Some(p),
                    Attribute::EcPoint(p) => point = Some(p),
                    _ => {}
                }
            }
            let (Some(params), Some(point)) = (params, point) else {
                return Err(HsmError::Corrupt("EC public key without params or point".into()).into());
            };
            let (curve, point_len) = match algorithm {
                KeyAlgorithm::EcdsaP256 => (Curve::P256, 65),
                KeyAlgorithm::EcdsaP384 => (Curve::P384, 97),
                _ => (Curve::Ed25519, 32),
            };
            if curve_of(&params) != Some(curve) {
                return Err(HsmError::Corrupt(format!("public key curve does not match {algorithm}")).into());
            }
            let point = unwrap_ec_point(&point, point_len)
                .ok_or_else(|| HsmError::Corrupt(format!("CKA_EC_POINT is not a {algorithm} public key")))?;
            if curve != Curve::Ed25519 && point.first() != Some(&0x04) {
                return Err(HsmError::Corrupt("EC point is not uncompressed".into()).into());
            }
            let algorithm_id = if curve == Curve::Ed25519 {
                AlgorithmIdentifierOwned { oid: rfc8410::ID_ED_25519, parameters: None }
            } else {
                let curve_oid = if curve == Curve::P256 { rfc5912::SECP_256_R_1 } else { rfc5912::SECP_384_R_1 };
                AlgorithmIdentifierOwned {
                    oid: rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(AnyRef::from(&curve_oid).into()),
                }
            };
            SubjectPublicKeyInfoOwned {
                algorithm: algorithm_id,
                subject_public_key: BitString::from_bytes(point).map_err(der_err)?,
            }
        }
        KeyAlgorithm::Rsa3072 => {
            let attrs = session.get_attributes(public, &[AttributeType::Modulus, AttributeType::PublicExponent])?;
            let mut modulus = None;
            let mut exponent = None;
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => modulus = Some(m),
                    Attribute::PublicExponent(e) => exponent = Some(e),
                    _ => {}
                }
            }
            let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
                return Err(HsmError::Corrupt("RSA public key without modulus or exponent".into()).into());
            };
            let modulus = UintRef::new(&modulus).map_err(der_err)?;
            if modulus.as_bytes().len() != 3072 / 8 {
                return Err(HsmError::Unsupported(format!(
                    "RSA-{} keys (only RSA-3072 is supported)",
                    modulus.as_bytes().len() * 8
                ))
                .into());
            }
            let rsa = RsaPublicKey { modulus, public_exponent: UintRef::new(&exponent).map_err(der_err)? }
                .to_der()
                .map_err(der_err)?;
            SubjectPublicKeyInfoOwned {
                algorithm: AlgorithmIdentifierOwned {
                    oid: rfc5912::RSA_ENCRYPTION,
                    parameters: Some(AnyRef::NULL.into()),
                },
                subject_public_key: BitString::from_bytes(&rsa).map_err(der_err)?,
            }
        }
    };
    Ok(spki.to_der().map_err(der_err)?)
}

/// CKA_EC_POINT is specified as a DER OCTET STRING around the point; some tokens
/// return the bare point. Accept either, as long as the length is right.
fn unwrap_ec_point(value: &[u8], point_len: usize) -> Option<&[u8]> {
    if let Ok(os) = OctetStringRef::from_der(value) {
        if os.as_bytes().len() == point_len {
            return Some(os.as_bytes());
        }
    }
    (value.len() == point_len).then_some(value)
}

/// Raw `r ‖ s` (each `field_len` bytes, big-endian) → DER `Ecdsa-Sig-Value`.
fn ecdsa_raw_to_der(raw: &[u8], field_len: usize) -> Result<Vec<u8>, HsmError> {
    if raw.len() != 2 * field_len {
        return Err(HsmError::Pkcs11(format!(
            "ECDSA signature from the token is {} bytes, expected {}",
            raw.len(),
            2 * field_len
        )));
    }
    let (r, s) = raw.split_at(field_len);
    let err = |e: der::Error| HsmError::Crypto(format!("encoding ECDSA signature: {e}"));
    EcdsaSigValue { r: UintRef::new(r).map_err(err)?, s: UintRef::new(s).map_err(err)? }.to_der().map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ecdsa_der_strips_leading_zeros_and_adds_sign_byte() {
        let mut raw = [0u8; 64];
        raw[0] = 0x00;
        raw[1] = 0x05; // r = 0x05 followed by zeros, with a leading zero byte
        raw[32] = 0x80; // s has the high bit set → needs a 0x00 prefix
        let der = ecdsa_raw_to_der(&raw, 32).unwrap();
        assert_eq!(der[0], 0x30);
        // r: INTEGER of 31 bytes (leading zero stripped)
        assert_eq!(&der[2..4], &[0x02, 31]);
        assert_eq!(der[4], 0x05);
        // s: INTEGER of 33 bytes (0x00 prepended)
        let s_at = 4 + 31;
        assert_eq!(&der[s_at..s_at + 3], &[0x02, 33, 0x00]);
        assert_eq!(der[s_at + 3], 0x80);
        assert_eq!(der.len(), 2 + 2 + 31 + 2 + 33);
        assert!(ecdsa_raw_to_der(&raw[..63], 32).is_err());
    }

    #[test]
    fn ec_point_wrapped_or_bare() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[0xaa; 64]);
        let wrapped = OctetStringRef::new(&point).unwrap().to_der().unwrap();
        assert_eq!(unwrap_ec_point(&wrapped, 65), Some(&point[..]));
        assert_eq!(unwrap_ec_point(&point, 65), Some(&point[..]));
        assert_eq!(unwrap_ec_point(&point[..64], 65), None);
        let ed = [0x11u8; 32];
        let wrapped = OctetStringRef::new(&ed).unwrap().to_der().unwrap();
        assert_eq!(unwrap_ec_point(&wrapped, 32), Some(&ed[..]));
    }

    #[test]
    fn curves_from_params() {
        assert_eq!(curve_of(&oid_der(rfc5912::SECP_256_R_1).unwrap()), Some(Curve::P256));
        assert_eq!(curve_of(&oid_der(rfc5912::SECP_384_R_1).unwrap()), Some(Curve::P384));
        assert_eq!(curve_of(&oid_der(rfc8410::ID_ED_25519).unwrap()), Some(Curve::Ed25519));
        let name = der::asn1::PrintableStringRef::new("edwards25519").unwrap().to_der().unwrap();
        assert_eq!(curve_of(&name), Some(Curve::Ed25519));
        assert_eq!(curve_of(&oid_der(rfc5912::RSA_ENCRYPTION).unwrap()), None);
    }
}
