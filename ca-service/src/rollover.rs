//! CA rollover: a configured CA gets a new key, stored as its next *generation*
//! (`device.2`, see [`hierarchy::generation_name`]), which issues from a chosen time;
//! the previous key is then retired — it issues nothing, and keeps signing its own
//! CRLs and OCSP answers until its last certificate expires — and can afterwards be
//! destroyed ([`destroy`]). docs/0014 records why a generation is a CA of its own.
//!
//! * An issuing CA's new key is certified by its parent: online, when the parent's key
//!   is in a key store here, or (`external`) through a CSR that an offline root signs
//!   and `ca import --ca device.2` installs.
//! * A root's new key certifies itself (NewWithNew), and the two keys certify each
//!   other (OldWithNew, NewWithOld; RFC 4210 §4.4), so that a relying party holding
//!   either root verifies a chain through the other. Its children are then rolled
//!   over under the new root.

use std::sync::Arc;
use std::time::SystemTime;

use crate::audit::AuditEvent;
use crate::config::{CaConfig, Config};
use crate::hierarchy::{
    self, blocking, generation_label, generation_name, generation_of, issuer_for, not_after, ocsp_key_label, CaSummary,
    HierarchyError,
};
use crate::issuance::{sha256_hex, unix};
use crate::keys::{CaKey, KeyStoreError, KeyStores};
use crate::profile::{self, PublicUrls};
use crate::store::{CaRecord, Store};

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct RolloverRequest {
    /// The configured CA (`device`, `identity-root`).
    pub ca: String,
    /// From when the new key issues (unix seconds); `None`: at once.
    pub issues_from: Option<i64>,
    /// Have the new key certified by an offline parent (a CSR) rather than online.
    pub external: bool,
    pub actor: String,
}

/// What a rollover did.
#[derive(Debug)]
pub enum Rolled {
    /// The new generation is stored and certified.
    Certified(CaSummary),
    /// The new key exists; its CSR waits for the parent's signature, to be installed
    /// with `ca-service ca import --ca <name>`.
    AwaitingCertificate { name: String, csr_pem: String },
}

/// Rolls `request.ca` over to a new key (see the module doc). Refusals and failures
/// are audited as `ca.rollover`, with the reason.
pub async fn rollover(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    request: RolloverRequest,
) -> Result<Rolled, HierarchyError> {
    audited(store, &request.actor, "ca.rollover", &format!("ca:{}", request.ca), roll(config, store, keys, &request))
        .await
}

async fn roll(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    request: &RolloverRequest,
) -> Result<Rolled, HierarchyError> {
    let ca = request.ca.as_str();
    let ca_cfg = config.cas.get(ca).ok_or_else(|| HierarchyError::UnknownCa(ca.to_string()))?.clone();
    if request.external && request.issues_from.is_some() {
        // The key issues from when its certificate is installed: that is when to say it.
        return Err(refused("with --external the takeover time is given to `ca import --issues-from`".into()));
    }
    let now = unix(SystemTime::now());
    let records = store.list_cas().await?;
    let current = newest(&records, ca).ok_or_else(|| refused(format!("CA '{ca}' is not in the hierarchy")))?.clone();
    if let Some(at) = current.issues_from.filter(|&at| at > now) {
        return Err(refused(format!(
            "'{}' already waits to issue from {}; roll over again once it has taken over",
            current.name,
            rfc3339(at)
        )));
    }
    let n = generation_of(&current.name).1 + 1;
    let name = generation_name(ca, n);
    let label = generation_label(&ca_cfg.key_label, n);
    let issues_from = request.issues_from.unwrap_or(now);
    let mut labels = vec![label.clone()];
    if ca_cfg.issuing {
        labels.push(ocsp_key_label(&name));
    }
    ensure_free(&keys, &ca_cfg.key_store, &labels).await?;

    let urls = PublicUrls::new(config);
    // Where the current key's certificate came from decides who certifies the next:
    // itself (a root), a stored parent, or a CA outside this service.
    let self_signed = x509_parser::parse_x509_certificate(&current.cert_der)
        .map(|(_, c)| c.subject().as_raw() == c.issuer().as_raw())
        .map_err(|e| HierarchyError::Build(format!("CA '{}': {e}", current.name)))?;
    let record = match (self_signed, current.parent.as_deref().map(|p| generation_of(p).0)) {
        (true, _) if request.external => {
            return Err(refused(format!("'{ca}' is a root: it certifies itself, there is no parent to send a CSR to")))
        }
        (true, _) => {
            let old = find(&keys, &current.key_store, &current.key_label).await.map_err(|_| {
                refused(format!(
                    "the root's current key {}:{} is not in a key store here; a root rollover signs NewWithOld with \
                     it, so run it where that key is",
                    current.key_store, current.key_label
                ))
            })?;
            let (keys, cfg, urls, current, name, label) =
                (keys.clone(), ca_cfg.clone(), urls.clone(), current.clone(), name.clone(), label.clone());
            blocking(move || root_generation(&keys, &cfg, &urls, &current, old, name, label, issues_from)).await?
        }
        (false, None) if !request.external => {
            return Err(refused(format!(
                "'{}' is certified by a CA outside this service: use --external and have the CSR signed there",
                current.name
            )))
        }
        (false, parent_ca) => {
            let parent = match parent_ca {
                Some(p) => Some(
                    issuing_generation(&records, p, now)
                        .ok_or_else(|| refused(format!("the parent CA '{p}' has no key that issues now")))?
                        .clone(),
                ),
                None => None,
            };
            let parent_key = match (&parent, request.external) {
                (Some(parent), false) => {
                    Some(find(&keys, &parent.key_store, &parent.key_label).await.map_err(|_| {
                        refused(format!(
                        "the parent's key {}:{} is not in a key store here (an offline root?): use --external, have \
                         the CSR signed there and install the certificate with `ca import --ca {name}`",
                        parent.key_store, parent.key_label
                    ))
                    })?)
                }
                _ => None,
            };
            let key = generate(&keys, &ca_cfg, &label).await?;
            if ca_cfg.issuing {
                // Its delegated OCSP signer; `serve` certifies it with this generation.
                let (k, s, l) = (keys.clone(), ca_cfg.key_store.clone(), ocsp_key_label(&name));
                blocking(move || Ok(k.generate(&s, &l, hsm::KeyAlgorithm::EcdsaP256)?)).await?;
            }
            let (Some(parent), Some(parent_key)) = (parent, parent_key) else {
                let csr_pem = csr(&ca_cfg, key).await?;
                let event = AuditEvent::success(&request.actor, "ca.rollover", format!("ca:{name}"))
                    .with_details(serde_json::json!({ "ca": ca, "key": format!("{}:{label}", ca_cfg.key_store),
                        "state": "awaiting the parent's certificate (ca import)", "previous": current.name }));
                store.append_audit(&[event]).await?;
                return Ok(Rolled::AwaitingCertificate { name, csr_pem });
            };
            let (cfg, urls, name2, label2) = (ca_cfg.clone(), urls.clone(), name.clone(), label.clone());
            blocking(move || {
                let window = profile::validity(cfg.validity_days, Some(not_after(&parent.cert_der)?));
                // The CRL and caIssuers URLs name the parent's generation that signs.
                let cfg = CaConfig { parent: Some(parent.name.clone()), ..cfg };
                let params = profile::ca_params(&name2, &cfg, profile::random_serial(), window, &urls)
                    .map_err(|e| HierarchyError::Build(e.to_string()))?;
                let cert = params
                    .signed_by(&key, &issuer_for(&parent, CaKey::new(parent_key)?)?)
                    .map_err(|e| HierarchyError::Build(e.to_string()))?;
                Ok(CaRecord {
                    name: name2,
                    cert_der: cert.der().to_vec(),
                    key_store: cfg.key_store,
                    key_label: label2,
                    parent: Some(parent.name),
                    issues_from: Some(issues_from),
                    ..CaRecord::default()
                })
            })
            .await?
        }
    };
    let summary = hierarchy::summaries(std::slice::from_ref(&record)).remove(0);
    let event = AuditEvent::success(&request.actor, "ca.rollover", format!("ca:{}", record.name)).with_details(serde_json::json!({
        "ca": ca,
        "previous": current.name,
        "subject": summary.subject,
        "sha256_fingerprint": sha256_hex(&record.cert_der),
        "key": summary.key,
        "parent": record.parent,
        "issues_from": rfc3339(issues_from),
        "rollover_certificates": record.old_with_new.iter().chain(&record.new_with_old).map(|d| sha256_hex(d)).collect::<Vec<_>>(),
    }));
    store.create_ca(&record, event).await?;
    Ok(Rolled::Certified(summary))
}

/// A root's next generation: NewWithNew, and the link certificates between the keys.
#[allow(clippy::too_many_arguments)]
fn root_generation(
    keys: &KeyStores,
    cfg: &CaConfig,
    urls: &PublicUrls,
    current: &CaRecord,
    old: Arc<dyn hsm::Signer>,
    name: String,
    label: String,
    issues_from: i64,
) -> Result<CaRecord, HierarchyError> {
    let build = |e: rcgen::Error| HierarchyError::Build(e.to_string());
    let key = CaKey::new(keys.generate(&cfg.key_store, &label, cfg.algorithm)?)?;
    let old = CaKey::new(old)?;
    let params = |window| {
        profile::ca_params(&name, cfg, profile::random_serial(), window, urls)
            .map_err(|e| HierarchyError::Build(e.to_string()))
    };
    let new_with_new = params(profile::validity(cfg.validity_days, None))?.self_signed(&key).map_err(build)?;
    // The links live as long as the old root: past it, no relying party needs them.
    let old_until = not_after(&current.cert_der)?;
    let link_window = profile::validity(cfg.validity_days, Some(old_until));
    let new_record = CaRecord { cert_der: new_with_new.der().to_vec(), ..CaRecord::default() };
    // Subject and issuer are the same name: only the AKI tells a path builder that a
    // link is not self-signed.
    let link = |window| {
        params(window).map(|mut p| {
            p.use_authority_key_identifier_extension = true;
            p
        })
    };
    let old_with_new = link(link_window)?.signed_by(&old, &issuer_for(&new_record, key.clone())?).map_err(build)?;
    let new_with_old = link(link_window)?.signed_by(&key, &issuer_for(current, old)?).map_err(build)?;
    Ok(CaRecord {
        name,
        cert_der: new_with_new.der().to_vec(),
        key_store: cfg.key_store.clone(),
        key_label: label,
        parent: None,
        issues_from: Some(issues_from),
        destroyed_at: None,
        old_with_new: Some(old_with_new.der().to_vec()),
        new_with_old: Some(new_with_old.der().to_vec()),
    })
}

/// Destroys a retired key generation (`device`, `device.2`) once nothing it signed is
/// still valid: its key and its OCSP signer's, then records it. Refusals are audited
/// as `ca.destroy`, with the reason.
pub async fn destroy(
    config: &Config,
    store: &dyn Store,
    keys: Arc<KeyStores>,
    name: &str,
    actor: &str,
) -> Result<(), HierarchyError> {
    audited(store, actor, "ca.destroy", &format!("ca:{name}"), async {
        let records = store.list_cas().await?;
        let record = records.iter().find(|r| r.name == name).ok_or_else(|| HierarchyError::UnknownCa(name.into()))?;
        if let Some(at) = record.destroyed_at {
            return Err(refused(format!("'{name}' was destroyed at {}", rfc3339(at))));
        }
        let (ca, n) = generation_of(name);
        let now = unix(SystemTime::now());
        let later = records.iter().find(|r| {
            let (c, m) = generation_of(&r.name);
            c == ca && m > n && r.destroyed_at.is_none() && r.issues_from.is_none_or(|t| t <= now)
        });
        let Some(successor) = later else {
            return Err(
                match records.iter().find(|r| generation_of(&r.name).0 == ca && generation_of(&r.name).1 > n) {
                    Some(next) => refused(format!(
                        "'{name}' issues until '{}' takes over at {}; destroy it after its last certificate expires",
                        next.name,
                        rfc3339(next.issues_from.unwrap_or(now))
                    )),
                    None => refused(format!("'{name}' is the current key of CA '{ca}'; roll '{ca}' over first")),
                },
            );
        };
        // Until its last certificate expires it must keep signing CRLs and OCSP answers:
        // its end entities, the CAs it certified, and the NewWithOld of a root's successor.
        let ocsp_profile = config.ocsp_profile_for(ca).map(|(p, _)| p.clone()).unwrap_or_default();
        let mut last = store.last_expiry(name, &ocsp_profile).await?.unwrap_or(0);
        for r in &records {
            let certified = r.parent.as_deref() == Some(name) && r.destroyed_at.is_none();
            if certified {
                last = last.max(unix(not_after(&r.cert_der)?));
            }
        }
        if let Some(link) = successor.new_with_old.as_deref() {
            last = last.max(unix(not_after(link)?));
        }
        if last > now {
            return Err(refused(format!(
                "certificates '{name}' signed are valid until {}; it must answer for them until then",
                rfc3339(last)
            )));
        }
        let event = AuditEvent::success(actor, "ca.destroy", format!("ca:{name}")).with_details(serde_json::json!({
            "key": format!("{}:{}", record.key_store, record.key_label),
            "successor": successor.name,
            "last_certificate_expired": rfc3339(last),
        }));
        // Recorded first: a key that outlives its record is found and reported below; a
        // record that outlived its key would stop `serve` loading the hierarchy.
        store.destroy_ca(name, now, event).await?;
        let (k, s, labels) = (keys, record.key_store.clone(), [record.key_label.clone(), ocsp_key_label(name)]);
        blocking(move || {
            for label in labels {
                match k.get(&s)?.destroy(&label) {
                    Ok(()) | Err(hsm::HsmError::KeyNotFound(_)) => {}
                    Err(cause) => return Err(KeyStoreError::Hsm { store: s.clone(), cause }.into()),
                }
            }
            Ok(())
        })
        .await
    })
    .await
}

/// What `ca list` says of a generation: issuing, retired, waiting, destroyed.
pub fn state(records: &[CaRecord], record: &CaRecord, now: i64) -> String {
    let (ca, n) = generation_of(&record.name);
    if let Some(at) = record.destroyed_at {
        return format!("destroyed {}", rfc3339(at));
    }
    if let Some(at) = record.issues_from.filter(|&at| at > now) {
        return format!("issues from {}", rfc3339(at));
    }
    let later: Vec<(i64, &String)> = records
        .iter()
        .filter(|r| {
            let (c, m) = generation_of(&r.name);
            c == ca && m > n && r.destroyed_at.is_none()
        })
        .map(|r| (r.issues_from.unwrap_or(i64::MIN), &r.name))
        .collect();
    match (later.iter().filter(|(at, _)| *at <= now).min(), later.iter().min()) {
        (Some((at, by)), _) => format!("retired {} (by {by})", rfc3339(*at)),
        (None, Some((at, by))) => format!("current; {by} takes over at {}", rfc3339(*at)),
        (None, None) => "current".into(),
    }
}

/// Unix seconds as RFC 3339, for reasons and `ca list`.
fn rfc3339(secs: i64) -> String {
    crate::issuance::rfc3339(secs).unwrap_or_else(|| format!("@{secs}"))
}

/// The newest generation of `ca` in the store.
fn newest<'a>(records: &'a [CaRecord], ca: &str) -> Option<&'a CaRecord> {
    records.iter().filter(|r| generation_of(&r.name).0 == ca).max_by_key(|r| generation_of(&r.name).1)
}

/// The generation of `ca` that issues at `now`.
fn issuing_generation<'a>(records: &'a [CaRecord], ca: &str, now: i64) -> Option<&'a CaRecord> {
    records
        .iter()
        .filter(|r| generation_of(&r.name).0 == ca && r.destroyed_at.is_none())
        .filter(|r| r.issues_from.is_none_or(|t| t <= now))
        .max_by_key(|r| generation_of(&r.name).1)
}

fn refused(why: String) -> HierarchyError {
    HierarchyError::Refused(why)
}

async fn find(keys: &Arc<KeyStores>, store: &str, label: &str) -> Result<Arc<dyn hsm::Signer>, HierarchyError> {
    let (k, s, l) = (keys.clone(), store.to_string(), label.to_string());
    blocking(move || Ok(k.find(&s, &l)?)).await
}

async fn generate(keys: &Arc<KeyStores>, cfg: &CaConfig, label: &str) -> Result<CaKey, HierarchyError> {
    let (k, s, l, alg) = (keys.clone(), cfg.key_store.clone(), label.to_string(), cfg.algorithm);
    blocking(move || Ok(CaKey::new(k.generate(&s, &l, alg)?)?)).await
}

/// Refuses before anything is generated if one of `labels` is taken.
async fn ensure_free(keys: &Arc<KeyStores>, store: &str, labels: &[String]) -> Result<(), HierarchyError> {
    for label in labels {
        match find(keys, store, label).await {
            Ok(_) => return Err(HierarchyError::KeyPresent { store: store.to_string(), label: label.clone() }),
            Err(HierarchyError::Key(KeyStoreError::Hsm { cause: hsm::HsmError::KeyNotFound(_), .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn csr(cfg: &CaConfig, key: CaKey) -> Result<String, HierarchyError> {
    let subject = cfg.subject.clone();
    blocking(move || {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name =
            profile::parse_subject(&subject).map_err(|e| HierarchyError::Build(e.to_string()))?;
        let csr = params.serialize_request(&key).map_err(|e| HierarchyError::Build(e.to_string()))?;
        csr.pem().map_err(|e| HierarchyError::Build(e.to_string()))
    })
    .await
}

/// Runs a CA command and, if it is refused or fails, audits that with the reason (a
/// success audits itself, in its own transaction).
pub(crate) async fn audited<T>(
    store: &dyn Store,
    actor: &str,
    action: &str,
    target: &str,
    command: impl std::future::Future<Output = Result<T, HierarchyError>>,
) -> Result<T, HierarchyError> {
    let result = command.await;
    if let Err(e) = &result {
        audit_failure(store, actor, action, target, e).await;
    }
    result
}

async fn audit_failure(store: &dyn Store, actor: &str, action: &str, target: &str, e: &HierarchyError) {
    let outcome = match e {
        HierarchyError::Key(_) | HierarchyError::Store(_) | HierarchyError::Build(_) => format!("failed: {e}"),
        _ => format!("denied: {e}"),
    };
    let event = AuditEvent::success(actor, action, target).with_outcome(outcome);
    if let Err(err) = store.append_audit(&[event]).await {
        tracing::error!(error = %err, action, "could not audit a refused CA command");
    }
}
