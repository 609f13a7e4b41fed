//! External signing of a CA: `ca csr` → an openssl-made external root signs it →
//! `ca import`; certificates issued afterwards chain to the external root. Imports
//! that do not fit the CA's key, or are not CA certificates, are refused.

use std::path::Path;

use anyhow::Result;
use e2e_tests::{make_csr, openssl, pem_certificates, sqlite_ca_der, write_pem, Cli, P256};

const CA_EXT: &str = "basicConstraints=critical,CA:TRUE,pathlen:0\n\
keyUsage=critical,keyCertSign,cRLSign\n\
subjectKeyIdentifier=hash\n\
authorityKeyIdentifier=keyid\n";

const LEAF_EXT: &str = "basicConstraints=critical,CA:FALSE\n\
keyUsage=critical,digitalSignature\n\
subjectKeyIdentifier=hash\n\
authorityKeyIdentifier=keyid\n";

/// Signs `csr` with the external root using the extensions in `ext`.
fn ext_sign(d: &Path, csr: &str, ext: &str, out: &str) -> Result<()> {
    let ext_file = format!("{out}.ext");
    std::fs::write(d.join(&ext_file), ext)?;
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            "ext-root.pem",
            "-CAkey",
            "ext-root.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-sha384",
            "-extfile",
            &ext_file,
            "-out",
            out,
        ],
    )?
    .ok()?;
    Ok(())
}

#[test]
fn externally_signed_device_ca() -> Result<()> {
    let dir = e2e_tests::workdir("external")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;

    // The CA's CSR: a valid PKCS#10 for the Device Issuing CA's key.
    cli.run_ok(&["ca", "csr", "--ca", "device", "--out", "dev-ca.csr"])?;
    let csr = openssl(d, &["req", "-in", "dev-ca.csr", "-noout", "-verify", "-subject"])?;
    assert!(csr.success() && csr.stdout.contains("Device Issuing CA"), "CA CSR:\n{}", csr.describe());

    // An external root made with openssl.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-subj",
            "/CN=External Root CA/O=Elsewhere",
            "-days",
            "3650",
            "-keyout",
            "ext-root.key",
            "-out",
            "ext-root.pem",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?
    .ok()?;
    ext_sign(d, "dev-ca.csr", CA_EXT, "dev-ca-ext.pem")?;

    // Refusals first (they must change nothing).
    let audit_before = cli.audit_entries()?;
    let stored_before = sqlite_ca_der(d, "device")?;
    //  - a CA certificate for another key
    make_csr(d, "other", P256, "/CN=Device Issuing CA/O=Device PKI", &[])?;
    ext_sign(d, "other.csr", CA_EXT, "other-ca.pem")?;
    let out = cli.run(&["ca", "import", "--ca", "device", "--cert", "other-ca.pem"])?;
    assert!(
        !out.success() && out.stderr.contains("different public key"),
        "importing a certificate for another key:\n{}",
        out.describe()
    );
    //  - the right key, but not a CA certificate
    ext_sign(d, "dev-ca.csr", LEAF_EXT, "dev-leaf-ext.pem")?;
    let out = cli.run(&["ca", "import", "--ca", "device", "--cert", "dev-leaf-ext.pem"])?;
    assert!(
        !out.success() && out.stderr.contains("not a CA certificate"),
        "importing a non-CA certificate:\n{}",
        out.describe()
    );
    //  - an unknown CA name
    let out = cli.run(&["ca", "import", "--ca", "nope", "--cert", "dev-ca-ext.pem"])?;
    assert!(!out.success() && out.stderr.contains("unknown CA 'nope'"), "unknown CA:\n{}", out.describe());
    // Each refusal is audited as one, with its reason; none as a change.
    let denied = e2e_tests::sqlite_strings(d, "SELECT outcome FROM audit_log WHERE action = 'ca.import'")?;
    assert!(
        denied.len() == 3 && denied.iter().all(|o| o.starts_with("denied: ")),
        "refused imports should be audited as denied: {denied:?}"
    );
    assert_eq!(cli.audit_entries()?, audit_before + 3, "only the refusals were audited");
    assert_eq!(sqlite_ca_der(d, "device")?, stored_before, "a refused import changed the stored certificate");

    // The real import.
    let out = cli.run_ok(&["ca", "import", "--ca", "device", "--cert", "dev-ca-ext.pem"])?;
    let imported = pem_certificates(&std::fs::read_to_string(d.join("dev-ca-ext.pem"))?)?;
    assert_eq!(sqlite_ca_der(d, "device")?, imported[0], "the imported certificate is not stored");
    let fp = e2e_tests::openssl_fingerprint(d, &d.join("dev-ca-ext.pem"))?;
    assert!(out.stdout.contains(&fp), "import should print the new fingerprint {fp}:\n{}", out.stdout);
    assert_eq!(cli.audit_entries()?, audit_before + 4, "the import must be audited");
    let list = cli.run_ok(&["ca", "list"])?;
    assert!(list.stdout.contains(&fp), "`ca list` should show the imported certificate:\n{}", list.stdout);

    // Issued afterwards: chains to the external root through the imported CA.
    make_csr(d, "dev", P256, "/CN=SN-EXT-1", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", "dev.csr", "--out", "dev.chain.pem"])?;
    let chain = pem_certificates(&std::fs::read_to_string(d.join("dev.chain.pem"))?)?;
    assert_eq!(chain.get(1), Some(&imported[0]), "the chain must carry the imported Device CA certificate");
    write_pem(&d.join("dev.pem"), &chain[0])?;
    let v =
        openssl(d, &["verify", "-x509_strict", "-CAfile", "ext-root.pem", "-untrusted", "dev-ca-ext.pem", "dev.pem"])?;
    assert!(v.success() && v.stdout.contains("dev.pem: OK"), "device cert vs external root:\n{}", v.describe());
    // …and no longer to the internal identity root.
    write_pem(&d.join("identity-root.pem"), &sqlite_ca_der(d, "identity-root")?)?;
    let v = openssl(d, &["verify", "-CAfile", "identity-root.pem", "-untrusted", "dev.chain.pem", "dev.pem"])?;
    assert!(!v.success(), "the device cert still verifies against the internal root:\n{}", v.describe());

    // A rollover under the external root: it cannot be certified online here…
    let out = cli.run(&["ca", "rollover", "--ca", "device"])?;
    assert!(!out.success() && out.stderr.contains("use --external"), "online rollover:\n{}", out.describe());
    let out = cli.run(&["ca", "rollover", "--ca", "device", "--external", "--at", "1d"])?;
    assert!(
        !out.success() && out.stderr.contains("ca import --issues-from"),
        "--at with --external:\n{}",
        out.describe()
    );
    // …so the new key's CSR goes to the external root, and its answer is imported.
    let out = cli.run_ok(&["ca", "rollover", "--ca", "device", "--external", "--out", "dev-ca-2.csr"])?;
    assert!(out.stderr.contains("ca import --ca device.2"), "rollover --external:\n{}", out.describe());
    let csr = openssl(d, &["req", "-in", "dev-ca-2.csr", "-noout", "-verify", "-subject"])?;
    assert!(csr.success() && csr.stdout.contains("Device Issuing CA"), "rollover CSR:\n{}", csr.describe());
    let out = cli.run(&["ca", "import", "--ca", "device.2", "--cert", "dev-ca-ext.pem"])?;
    assert!(!out.success() && out.stderr.contains("different public key"), "old key's cert:\n{}", out.describe());
    ext_sign(d, "dev-ca-2.csr", CA_EXT, "dev-ca-2-ext.pem")?;
    cli.run_ok(&["ca", "import", "--ca", "device.2", "--cert", "dev-ca-2-ext.pem"])?;
    let list = cli.run_ok(&["ca", "list"])?.stdout;
    assert!(list.contains("retired") && list.contains("(by device.2)"), "ca list:\n{list}");
    make_csr(d, "dev2", P256, "/CN=SN-EXT-2", &[])?;
    cli.run_ok(&["issue", "--profile", "device", "--csr", "dev2.csr", "--out", "dev2.chain.pem"])?;
    let chain = pem_certificates(&std::fs::read_to_string(d.join("dev2.chain.pem"))?)?;
    let next = pem_certificates(&std::fs::read_to_string(d.join("dev-ca-2-ext.pem"))?)?;
    assert_eq!(chain.get(1), Some(&next[0]), "issued after the import: under the new key");
    write_pem(&d.join("dev2.pem"), &chain[0])?;
    let v = openssl(
        d,
        &["verify", "-x509_strict", "-CAfile", "ext-root.pem", "-untrusted", "dev-ca-2-ext.pem", "dev2.pem"],
    )?;
    assert!(v.success() && v.stdout.contains("dev2.pem: OK"), "new-key cert vs external root:\n{}", v.describe());
    Ok(())
}

/// After an external certificate is installed for `device`, `ca list` must not keep
/// claiming the internal identity root as its issuer.
#[test]
fn ca_list_names_the_real_issuer_after_import() -> Result<()> {
    let dir = e2e_tests::workdir("external-list")?;
    let d = dir.path();
    let cli = Cli::evaluation(d);
    cli.run_ok(&["init"])?;
    cli.run_ok(&["ca", "csr", "--ca", "device", "--out", "dev-ca.csr"])?;
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=External Root CA",
            "-days",
            "30",
            "-keyout",
            "ext-root.key",
            "-out",
            "ext-root.pem",
        ],
    )?
    .ok()?;
    ext_sign(d, "dev-ca.csr", CA_EXT, "dev-ca-ext.pem")?;
    cli.run_ok(&["ca", "import", "--ca", "device", "--cert", "dev-ca-ext.pem"])?;
    let list = cli.run_ok(&["ca", "list"])?;
    let lines: Vec<&str> = list.stdout.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("device ")).unwrap_or(0);
    let block = lines.iter().skip(at).take(3).copied().collect::<Vec<_>>().join("\n");
    assert!(
        !block.contains("issuer: identity-root"),
        "`ca list` still names identity-root as the device CA's issuer:\n{block}"
    );
    Ok(())
}
