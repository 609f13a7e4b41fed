//! Issuance from CSRs made by the real `openssl req`, checked by `openssl verify` and
//! by parsing the certificates: profile contents (EKU, names, HardwareModuleName),
//! key identifiers, CDP/AIA from the public base URL, serial numbers.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Sequence, Tagged};
use e2e_tests::{make_csr, openssl, pem_certificates, sqlite_ca_der, write_pem, Cli, P256};
use x509_parser::prelude::*;

/// Public base URL given to the service; with a path and a trailing slash, to check
/// the URLs are joined without doubled slashes.
const BASE: &str = "http://127.0.0.1:18080/pki/";
const BASE_TRIMMED: &str = "http://127.0.0.1:18080/pki";
const OID_HMN: &str = "1.3.6.1.5.5.7.8.4";
const OID_GENERIC_MODEL: &str = "1.3.6.1.4.1.59999.1.1";

/// RFC 4108 HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }
#[derive(Debug, Sequence)]
struct HardwareModuleName {
    hw_type: ObjectIdentifier,
    hw_serial_num: OctetString,
}

/// An initialised evaluation deployment with a fixed public base URL.
fn deployment(prefix: &str) -> Result<(tempfile::TempDir, Cli)> {
    let dir = e2e_tests::workdir(prefix)?;
    let cli = Cli::evaluation(dir.path()).env("CA_PUBLIC_BASE_URL", BASE);
    cli.run_ok(&["init"])?;
    Ok((dir, cli))
}

/// Issues `csr` with `profile` (plus extra CLI args) into `<name>.chain.pem`; returns
/// the DER certificates (leaf first).
fn issue(cli: &Cli, name: &str, profile: &str, csr: &Path, extra: &[&str]) -> Result<Vec<Vec<u8>>> {
    let out = cli.workdir.join(format!("{name}.chain.pem"));
    let mut args =
        vec!["issue", "--profile", profile, "--csr", e2e_tests::path_str(csr)?, "--out", e2e_tests::path_str(&out)?];
    args.extend_from_slice(extra);
    cli.run_ok(&args)?;
    let certs = pem_certificates(&std::fs::read_to_string(&out)?)?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", out.display());
    Ok(certs)
}

/// `openssl verify -x509_strict` of the leaf of `<name>.chain.pem` against `root`
/// with the rest of the chain as untrusted intermediates; returns the output.
fn verify(dir: &Path, name: &str, root: &Path, purpose: Option<&str>) -> Result<e2e_tests::Output> {
    let chain = format!("{name}.chain.pem");
    let leaf = format!("{name}.leaf.pem");
    let certs = pem_certificates(&std::fs::read_to_string(dir.join(&chain))?)?;
    write_pem(&dir.join(&leaf), certs.first().ok_or_else(|| anyhow!("empty chain"))?)?;
    let root = e2e_tests::path_str(root)?;
    let mut args = vec!["verify", "-x509_strict", "-CAfile", root, "-untrusted", chain.as_str()];
    if let Some(p) = purpose {
        args.extend_from_slice(&["-purpose", p]);
    }
    args.push(leaf.as_str());
    openssl(dir, &args)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| anyhow!("certificate does not parse: {e}"))?;
    anyhow::ensure!(rest.is_empty(), "trailing bytes after the certificate");
    Ok(cert)
}

fn ekus(cert: &X509Certificate<'_>) -> Result<Vec<String>> {
    let eku =
        cert.extended_key_usage().map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no extendedKeyUsage"))?.value;
    let mut out = Vec::new();
    for (set, oid) in [
        (eku.any, "2.5.29.37.0"),
        (eku.server_auth, "1.3.6.1.5.5.7.3.1"),
        (eku.client_auth, "1.3.6.1.5.5.7.3.2"),
        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
        (eku.email_protection, "1.3.6.1.5.5.7.3.4"),
        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
    ] {
        if set {
            out.push(oid.to_string());
        }
    }
    out.extend(eku.other.iter().map(|o| o.to_id_string()));
    Ok(out)
}

fn attr(cert: &X509Certificate<'_>, oid: &x509_parser::oid_registry::Oid<'_>) -> Vec<String> {
    cert.subject().iter_by_oid(oid).filter_map(|a| a.as_str().ok().map(str::to_string)).collect()
}

fn ski(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    })
}

fn aki(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    })
}

fn uri_list(names: &[GeneralName<'_>]) -> Vec<String> {
    names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

fn crl_uris(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for e in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(cdp) = e.parsed_extension() {
            for p in cdp.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    out.extend(uri_list(names));
                }
            }
        }
    }
    out
}

/// (accessMethod dotted OID, URI) pairs of authorityInfoAccess.
fn aia(cert: &X509Certificate<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = e.parsed_extension() {
            for d in &aia.accessdescs {
                if let GeneralName::URI(u) = &d.access_location {
                    out.push((d.access_method.to_id_string(), u.to_string()));
                }
            }
        }
    }
    out
}

/// The HardwareModuleName otherNames of the SAN: (hwType, hwSerialNum).
fn hardware_module_names(cert: &X509Certificate<'_>) -> Result<Vec<(String, Vec<u8>)>> {
    let san =
        cert.subject_alternative_name().map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no subjectAltName"))?.value;
    let mut out = Vec::new();
    for n in &san.general_names {
        match n {
            GeneralName::OtherName(oid, value) if oid.to_id_string() == OID_HMN => {
                // value = [0] EXPLICIT HardwareModuleName
                let any = der::Any::from_der(value).context("otherName value")?;
                anyhow::ensure!(
                    any.tag() == der::Tag::ContextSpecific { constructed: true, number: der::TagNumber::N0 },
                    "otherName value is not [0] EXPLICIT (tag {})",
                    any.tag()
                );
                let hmn = HardwareModuleName::from_der(any.value()).context("HardwareModuleName")?;
                out.push((hmn.hw_type.to_string(), hmn.hw_serial_num.as_bytes().to_vec()));
            }
            other => anyhow::bail!("unexpected SAN entry {other:?}"),
        }
    }
    Ok(out)
}

#[test]
fn device_certificate_from_openssl_csr() -> Result<()> {
    let (dir, cli) = deployment("issue-device")?;
    let d = dir.path();

    // `ca list` shows the hierarchy with fingerprints matching the stored certificates.
    let list = cli.run_ok(&["ca", "list"])?;
    for ca in ["identity-root", "device", "station", "update-root", "update-authority"] {
        let pem = write_pem(&d.join(format!("{ca}.pem")), &sqlite_ca_der(d, ca)?)?;
        let fp = e2e_tests::openssl_fingerprint(d, &pem)?;
        assert!(list.stdout.contains(&fp), "`ca list` lacks {ca}'s SHA-256 {fp}:\n{}", list.stdout);
    }
    let root = d.join("identity-root.pem");

    let csr = make_csr(d, "dev", P256, "/CN=SN-0001", &[])?;
    let certs = issue(&cli, "dev", "device", &csr, &[])?;
    assert_eq!(certs.len(), 2, "chain = leaf + Device Issuing CA (root excluded)");

    // The exact command a relying party would run, then the leaf alone for a purpose.
    let v = openssl(
        d,
        &["verify", "-x509_strict", "-CAfile", "identity-root.pem", "-untrusted", "dev.chain.pem", "dev.chain.pem"],
    )?;
    assert!(v.success() && v.stdout.contains(": OK"), "openssl verify:\n{}", v.describe());
    let v = verify(d, "dev", &root, Some("sslclient"))?;
    assert!(v.success(), "leaf verify for sslclient:\n{}", v.describe());
    // It must not verify against the other trust anchor.
    let v = verify(d, "dev", &d.join("update-root.pem"), None)?;
    assert!(!v.success(), "a device certificate verified against the update root:\n{}", v.describe());

    let leaf = parse(&certs[0])?;
    let issuer = parse(&certs[1])?;
    assert!(issuer.subject().to_string().contains("Device Issuing CA"));
    assert_eq!(leaf.issuer().as_raw(), issuer.subject().as_raw());

    assert_eq!(ekus(&leaf)?, vec!["1.3.6.1.5.5.7.3.2".to_string()], "EKU must be clientAuth only");
    let ku = leaf.key_usage().map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no keyUsage"))?;
    assert!(ku.critical && ku.value.digital_signature() && !ku.value.key_cert_sign());
    let bc = leaf.basic_constraints().map_err(|e| anyhow!("{e}"))?;
    assert!(bc.map(|b| !b.value.ca).unwrap_or(true), "leaf must not be a CA");

    assert_eq!(attr(&leaf, &x509_parser::oid_registry::OID_X509_COMMON_NAME), vec!["SN-0001"]);
    assert_eq!(attr(&leaf, &x509_parser::oid_registry::OID_X509_SERIALNUMBER), vec!["SN-0001"]);
    assert_eq!(
        hardware_module_names(&leaf)?,
        vec![(OID_GENERIC_MODEL.to_string(), b"SN-0001".to_vec())],
        "SAN must be exactly one HardwareModuleName(generic model OID, device id)"
    );

    let issuer_ski = ski(&issuer).ok_or_else(|| anyhow!("issuer has no SKI"))?;
    assert_eq!(aki(&leaf), Some(issuer_ski), "leaf AKI must equal the issuer's SKI");
    assert!(ski(&leaf).is_some(), "leaf needs a SKI (DESIGN §5)");

    assert_eq!(crl_uris(&leaf), vec![format!("{BASE_TRIMMED}/crl/device.crl")]);
    let aia = aia(&leaf);
    assert!(aia.contains(&("1.3.6.1.5.5.7.48.1".to_string(), format!("{BASE_TRIMMED}/ocsp"))), "AIA OCSP: {aia:?}");
    assert!(
        aia.contains(&("1.3.6.1.5.5.7.48.2".to_string(), format!("{BASE_TRIMMED}/ca/device.crt"))),
        "AIA caIssuers: {aia:?}"
    );
    // The intermediate points at its own issuer's CRL and certificate.
    assert_eq!(crl_uris(&issuer), vec![format!("{BASE_TRIMMED}/crl/identity-root.crl")]);
    assert!(aia_has(&issuer, &format!("{BASE_TRIMMED}/ca/identity-root.crt")));

    let serial = leaf.raw_serial();
    assert_eq!(serial.len(), 16, "serial must be 16 octets: {}", hex::encode(serial));
    assert!(
        serial[0] & 0x80 == 0 && serial[0] != 0,
        "serial must be positive and minimally encoded: {}",
        hex::encode(serial)
    );

    let days = (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp()) / 86_400;
    assert!((824..=826).contains(&days), "device validity is {days} days, profile says 825");

    // Same CSR again, with the device id given on the command line: a new
    // certificate with a different serial, for that id, which also verifies.
    let again = issue(&cli, "dev2", "device", &csr, &["--device-id", "dev.42:B"])?;
    let leaf2 = parse(&again[0])?;
    assert_ne!(leaf2.raw_serial(), serial, "two issuances for the same CSR got the same serial");
    assert_eq!(leaf2.raw_serial().len(), 16);
    assert_eq!(attr(&leaf2, &x509_parser::oid_registry::OID_X509_COMMON_NAME), vec!["dev.42:B"]);
    assert_eq!(attr(&leaf2, &x509_parser::oid_registry::OID_X509_SERIALNUMBER), vec!["dev.42:B"]);
    assert_eq!(hardware_module_names(&leaf2)?, vec![(OID_GENERIC_MODEL.to_string(), b"dev.42:B".to_vec())]);
    let v = verify(d, "dev2", &root, Some("sslclient"))?;
    assert!(v.success(), "second certificate:\n{}", v.describe());
    Ok(())
}

fn aia_has(cert: &X509Certificate<'_>, uri: &str) -> bool {
    aia(cert).iter().any(|(_, u)| u == uri)
}

#[test]
fn key_types_and_profiles() -> Result<()> {
    let (dir, cli) = deployment("issue-kinds")?;
    let d = dir.path();
    let identity_root = write_pem(&d.join("identity-root.pem"), &sqlite_ca_der(d, "identity-root")?)?;

    // RSA-2048 and Ed25519 device keys.
    for (name, key) in [("rsa", &["-newkey", "rsa:2048"][..]), ("ed", &["-newkey", "ed25519"][..])] {
        let csr = make_csr(d, name, key, &format!("/CN=SN-{name}"), &[])?;
        let certs = issue(&cli, name, "device", &csr, &[])?;
        let v = verify(d, name, &identity_root, Some("sslclient"))?;
        assert!(v.success(), "{name} device certificate:\n{}", v.describe());
        assert_eq!(ekus(&parse(&certs[0])?)?, vec!["1.3.6.1.5.5.7.3.2"]);
    }

    // Station: clientAuth, issued by the Station CA under the identity root.
    let csr = make_csr(d, "station", P256, "/CN=station-01", &[])?;
    let certs = issue(&cli, "station", "station", &csr, &[])?;
    let leaf = parse(&certs[0])?;
    assert_eq!(ekus(&leaf)?, vec!["1.3.6.1.5.5.7.3.2"], "station EKU");
    assert!(leaf.issuer().to_string().contains("Station CA"), "station issuer: {}", leaf.issuer());
    assert_eq!(attr(&leaf, &x509_parser::oid_registry::OID_X509_COMMON_NAME), vec!["station-01"]);
    let v = verify(d, "station", &identity_root, Some("sslclient"))?;
    assert!(v.success(), "station certificate:\n{}", v.describe());

    // Update signing is never issued directly: only through a request two approvers
    // approved (tests/tests/update_authority.rs covers that flow and the certificate).
    let csr = make_csr(d, "upd", P256, "/CN=release-signer", &[])?;
    let refused = cli.run(&["issue", "--profile", "update-signing", "--csr", e2e_tests::path_str(&csr)?])?;
    assert!(!refused.success() && refused.stderr.contains("two approvers"), "{}", refused.describe());
    Ok(())
}
