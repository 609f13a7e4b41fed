//! Strict configuration (DESIGN §6 invariant 9): an unknown key is an error at start,
//! never a silent default.
//!
//! Every configuration type denies unknown fields, so figment's extraction fails on
//! the first key no type knows — in the TOML file or in a `CA_…` variable alike, as
//! both end up in the same merged tree. This module turns that failure into a message
//! an operator can act on: the key's full path (`server.htps`), where it came from
//! (the file, or the exact environment variable), and the nearest known key of the
//! same table by edit distance ("did you mean `server.https`?"). Map-typed tables
//! (`profiles`, `cas`, `key_stores`, `models`, `est.labels`, `updates.classes`) take
//! any entry name; their entries' fields are checked like any other table's.

use figment::error::Kind;
use figment::{Figment, Source};

/// `CA_…` variables that are not configuration keys: the config file path (read by the
/// command line) and the log filter (read by the logger).
pub const NOT_CONFIG_VARS: [&str; 2] = ["CA_CONFIG", "CA_LOG"];

/// Describes a failed extraction: each error on one line, unknown keys and values with
/// their origin and a suggestion.
pub(super) fn describe(fig: &Figment, env_prefix: &str, err: figment::Error) -> String {
    err.into_iter().map(|e| describe_one(fig, env_prefix, &e)).collect::<Vec<_>>().join("; ")
}

fn describe_one(fig: &Figment, env_prefix: &str, e: &figment::Error) -> String {
    let (word, expected, unknown_key) = match &e.kind {
        Kind::UnknownField(field, expected) => (field.as_str(), *expected, true),
        Kind::UnknownVariant(variant, expected) => (variant.as_str(), *expected, false),
        _ => return e.to_string(),
    };
    let mut table: Vec<&str> = e.path.iter().map(String::as_str).collect();
    if unknown_key && table.last() == Some(&word) {
        table.pop();
    }
    let join = |last: &str| table.iter().copied().chain(std::iter::once(last)).collect::<Vec<_>>().join(".");
    let suggestion = nearest(word, expected);
    if unknown_key {
        let key = join(word);
        let origin = origin(fig, env_prefix, &key);
        let mut msg = format!("unknown key `{key}`{}", origin.describe());
        match suggestion {
            Some(s) => {
                msg.push_str(&format!(" (did you mean `{}`", join(s)));
                if let Origin::Env(_) = origin {
                    msg.push_str(&format!(", {}", env_var_name(env_prefix, &join(s))));
                }
                msg.push_str("?)");
            }
            None if !expected.is_empty() => {
                msg.push_str(&format!(" (known keys here: {})", expected.join(", ")));
            }
            None => {}
        }
        msg
    } else {
        let key = table.join(".");
        let origin = origin(fig, env_prefix, &key);
        let mut msg = format!("`{key}`{}: unknown value \"{word}\"", origin.describe());
        match suggestion {
            Some(s) => msg.push_str(&format!(" (did you mean \"{s}\"?)")),
            None => msg.push_str(&format!(" (expected one of: {})", expected.join(", "))),
        }
        msg
    }
}

/// Where a key's value came from.
enum Origin {
    File(std::path::PathBuf),
    /// The environment variable's exact name.
    Env(String),
    Unknown,
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::File(p) => format!(" in {}", p.display()),
            Origin::Env(var) => format!(" (environment variable {var})"),
            Origin::Unknown => String::new(),
        }
    }
}

fn origin(fig: &Figment, env_prefix: &str, key: &str) -> Origin {
    let Some(md) = fig.find_metadata(key) else { return Origin::Unknown };
    if let Some(Source::File(p)) = &md.source {
        return Origin::File(p.clone());
    }
    if md.name.contains("environment") {
        // The variable as the operator spelled it (figment folds the case).
        let found = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()).find(|k| {
            k.get(..env_prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(env_prefix))
                && k.get(env_prefix.len()..)
                    .is_some_and(|rest| rest.trim().to_ascii_lowercase().replace("__", ".") == key.to_ascii_lowercase())
        });
        return Origin::Env(found.unwrap_or_else(|| env_var_name(env_prefix, key)));
    }
    Origin::Unknown
}

/// The environment variable that sets `key` (`server.https` → `CA_SERVER__HTTPS`).
pub fn env_var_name(env_prefix: &str, key: &str) -> String {
    format!("{env_prefix}{}", key.to_ascii_uppercase().replace('.', "__"))
}

/// The known word nearest to `word`, if it is near enough to be a typo: within a third
/// of its length (at least 2) edits, counting a swap of neighbours as one.
pub fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(2);
    known
        .iter()
        .map(|k| (edit_distance(&word, &k.to_ascii_lowercase()), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and
/// transpositions of adjacent characters (`storgae` → `storage` is 1).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1).min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::super::{Config, ConfigError, KeyStoreConfig};
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("htps", "https"), 1);
        assert_eq!(edit_distance("htps", "http"), 2);
        assert_eq!(edit_distance("storgae", "storage"), 1);
        assert_eq!(edit_distance("renewal_min_intervall_secs", "renewal_min_interval_secs"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn nearest_prefers_the_closest_and_refuses_far_ones() {
        assert_eq!(nearest("htps", &["http", "https", "tls_names"]), Some("https"));
        assert_eq!(nearest("STORGAE", &["server", "storage"]), Some("storage"));
        assert_eq!(nearest("completely_else", &["http", "https"]), None);
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_name("CA_", "server.https"), "CA_SERVER__HTTPS");
        assert_eq!(env_var_name("CA_", "profiles.ocsp-signer-device.kind"), "CA_PROFILES__OCSP-SIGNER-DEVICE__KIND");
    }

    /// Loads `toml` as the configuration file, with environment variables of `prefix`
    /// (a prefix of the test's own, so tests never see each other's variables).
    fn load_toml(toml: &str, prefix: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pki.toml");
        std::fs::write(&path, toml).unwrap();
        Config::extract(Config::figment_with_env(Some(&path), prefix)?, prefix)
    }

    fn refusal(toml: &str) -> String {
        match load_toml(toml, "CFGTEST_NONE_") {
            Ok(_) => panic!("accepted:\n{toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_pass_the_strict_check() {
        let c = Config::extract(Config::figment_with_env(None, "CFGTEST_NONE_").unwrap(), "CFGTEST_NONE_").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn a_typo_in_a_key_is_refused_with_the_nearest_key() {
        let e = refusal("[server]\nhtps = \"0.0.0.0:9443\"\n");
        assert!(e.contains("unknown key `server.htps`") && e.contains("did you mean `server.https`?"), "{e}");
        assert!(e.contains("pki.toml"), "the file is named: {e}");

        let e = refusal("[est]\nrenewal_min_intervall_secs = 60\n");
        assert!(
            e.contains("unknown key `est.renewal_min_intervall_secs`")
                && e.contains("did you mean `est.renewal_min_interval_secs`?"),
            "{e}"
        );
    }

    #[test]
    fn a_misspelled_storage_table_does_not_fall_back_to_sqlite() {
        let e = refusal("[storgae]\nurl = \"postgres://pki@db/pki\"\n");
        assert!(e.contains("unknown key `storgae`") && e.contains("did you mean `storage`?"), "{e}");
    }

    #[test]
    fn a_typo_in_an_environment_variable_is_refused_with_its_name() {
        std::env::set_var("CFGTEST_ENV_SERVER__HTPS", "0.0.0.0:9443");
        let e = load_toml("", "CFGTEST_ENV_").unwrap_err().to_string();
        std::env::remove_var("CFGTEST_ENV_SERVER__HTPS");
        assert!(
            e.contains("unknown key `server.htps`")
                && e.contains("environment variable CFGTEST_ENV_SERVER__HTPS")
                && e.contains("CFGTEST_ENV_SERVER__HTTPS"),
            "{e}"
        );
    }

    #[test]
    fn config_and_log_variables_are_not_keys() {
        std::env::set_var("CFGTEST_IGN_CONFIG", "/etc/pki.toml");
        std::env::set_var("CFGTEST_IGN_LOG", "debug");
        std::env::set_var("CFGTEST_IGN_EST__RENEWAL_MIN_INTERVAL_SECS", "7");
        let c = load_toml("", "CFGTEST_IGN_");
        for v in ["CONFIG", "LOG", "EST__RENEWAL_MIN_INTERVAL_SECS"] {
            std::env::remove_var(format!("CFGTEST_IGN_{v}"));
        }
        assert_eq!(c.unwrap().est.renewal_min_interval_secs, 7);
    }

    #[test]
    fn map_tables_take_any_entry_name_but_check_its_fields() {
        let c = load_toml(
            "[profiles.factory-b]\nkind = \"device\"\nissuer = \"device\"\nvalidity_days = 30\n\
             key_types = [\"ecdsa-p256\"]\n\n[est.labels]\nfactory-b = \"factory-b\"\n\n\
             [updates.classes]\ncamera = 9\n\n[models.cam]\noid = \"1.3.6.1.4.1.59999.1.9\"\n",
            "CFGTEST_NONE_",
        )
        .unwrap();
        assert_eq!(c.est.labels["factory-b"], "factory-b");
        assert_eq!(c.updates.classes["camera"], 9);

        let e = refusal("[profiles.device]\nkindd = \"device\"\n");
        assert!(e.contains("`profiles.device.kindd`") && e.contains("`profiles.device.kind`"), "{e}");
        let e = refusal("[cas.device]\nkey_stor = \"default\"\n");
        assert!(e.contains("`cas.device.key_stor`") && e.contains("`cas.device.key_store`"), "{e}");
        let e = refusal("[models.generic]\noidd = \"1.2.3\"\n");
        assert!(e.contains("`models.generic.oidd`"), "{e}");
        let e =
            refusal("[key_stores.hsm]\ntype = \"pkcs11\"\nmodule = \"/x.so\"\ntoken_label = \"t\"\npin_fil = \"/p\"\n");
        assert!(e.contains("`key_stores.hsm.pin_fil`") && e.contains("`key_stores.hsm.pin_file`"), "{e}");
        let e = refusal("[cas.device]\nalgorithm = \"ecdsa-p265\"\n");
        assert!(e.contains("ecdsa-p265") && e.contains("did you mean \"ecdsa-p256\"?"), "{e}");
    }

    #[test]
    fn a_key_store_of_another_type_does_not_inherit_the_defaults_fields() {
        let c = load_toml(
            "[key_stores.default]\ntype = \"pkcs11\"\nmodule = \"/x.so\"\ntoken_label = \"t\"\npin_env = \"PIN\"\n",
            "CFGTEST_NONE_",
        )
        .unwrap();
        assert!(matches!(c.key_stores["default"], KeyStoreConfig::Pkcs11 { .. }));
        // Same type: merged key by key with the default entry, as before.
        let c = load_toml("[key_stores.default]\npassphrase_env = \"PASS\"\n", "CFGTEST_NONE_").unwrap();
        assert!(matches!(
            &c.key_stores["default"],
            KeyStoreConfig::Software { passphrase_env: Some(_), passphrase_file: Some(_), .. }
        ));
    }

    #[test]
    fn secret_files_others_can_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("keystore.pass");
        let mut c = Config::default();
        c.key_stores.insert(
            "default".into(),
            KeyStoreConfig::Software {
                dir: dir.path().join("keys"),
                passphrase_env: None,
                passphrase_file: Some(pass.clone()),
                key_file: None,
            },
        );
        // Absent: not this check's business (the key store says so when opened).
        c.check_secret_files().unwrap();
        std::fs::write(&pass, "secret\n").unwrap();
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = c.check_secret_files().unwrap_err().to_string();
        assert!(
            e.contains("key store 'default'") && e.contains(&pass.display().to_string()) && e.contains("0644"),
            "{e}"
        );
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
        c.check_secret_files().unwrap();

        let pin = dir.path().join("pin");
        std::fs::write(&pin, "1234").unwrap();
        std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o640)).unwrap();
        c.key_stores.insert(
            "hsm".into(),
            KeyStoreConfig::Pkcs11 {
                module: "/x.so".into(),
                token_label: "t".into(),
                pin_env: None,
                pin_file: Some(pin.clone()),
                sessions: None,
            },
        );
        let e = c.check_secret_files().unwrap_err().to_string();
        assert!(e.contains("key store 'hsm'") && e.contains("0640"), "{e}");
    }
}
