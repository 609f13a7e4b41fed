//! The device PKI service, the workspace's composition root: configuration, the CA
//! hierarchy and its key ceremony, certificate profiles, issuance (the group-commit
//! writer), storage (SQLite and PostgreSQL), the hash-chained audit log, EST, the OCSP
//! responder and CRL publisher, the admin API, update-signing requests (two-person
//! rule), the HTTP/TLS servers and the `ca-service` CLI.
//!
//! The other crates (`hsm`, `enrollment`, `revocation`, `update-trust`) know nothing of
//! storage or configuration; this crate wires them to both. The decisions behind the
//! main parts are recorded in the repository's `docs/`.

pub mod abuse;
pub mod admin;
pub mod audit;
pub mod batch;
pub mod cli;
pub mod config;
pub mod console;
pub mod credentials;
pub mod crl;
pub mod est;
pub mod fault;
pub mod hierarchy;
pub mod issuance;
pub mod keys;
pub mod ocsp;
pub mod ota;
pub mod profile;
pub mod ra;
pub mod reports;
pub mod revoke;
pub mod rollover;
pub mod rotation;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transparency;
pub mod updates;

/// Installs the tracing subscriber (stderr; `text` or `json`), once. `CA_LOG`
/// (an `EnvFilter` directive) overrides `default_level`.
pub fn init_logging(format: &str, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // cryptoki logs every mechanism number it has no name for at ERROR while listing
    // a token's mechanisms: noise, not an error of ours. Silenced unless the operator's
    // own filter says something about cryptoki.
    let mut directives = std::env::var("CA_LOG").unwrap_or_else(|_| default_level.to_string());
    if !directives.contains("cryptoki") {
        directives.push_str(",cryptoki::mechanism=off");
    }
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal());
    // JSON escapes control characters itself; a text line gets them escaped here, so
    // that no logged field (a path, a reason quoting a client's input) can forge a line.
    let _ = if format == "json" {
        builder.with_writer(std::io::stderr).json().try_init()
    } else {
        builder.with_writer(|| EscapingWriter(std::io::stderr())).try_init()
    };
}

/// A text log line with every control character escaped (`\n`, `\u{1b}`, …) but its
/// final newline, tabs and the colour sequences of the formatter itself (`ESC [ … m`).
/// The formatter writes each event with one `write_all` of the whole line.
struct EscapingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(escape_log_line(&String::from_utf8_lossy(buf)).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// See [`EscapingWriter`].
fn escape_log_line(line: &str) -> String {
    let (body, newline) = match line.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (line, ""),
    };
    let mut out = String::with_capacity(line.len());
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        let colour = (c == '\u{1b}')
            .then(|| rest[1..].strip_prefix('[')?.find(|d: char| !(d.is_ascii_digit() || d == ';')))
            .flatten()
            .filter(|&end| rest[2 + end..].starts_with('m'))
            .map(|end| &rest[..3 + end]);
        if let Some(seq) = colour {
            out.push_str(seq);
            rest = &rest[seq.len()..];
            continue;
        }
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push_str(newline);
    out
}

/// A logged field with control characters escaped, formatted without allocating
/// (the request span's path).
pub struct LogSafe<'a>(pub &'a str);

impl std::fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            if c.is_control() {
                for e in c.escape_default() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_cannot_be_forged() {
        let forged = "INFO request{path=/.well-known/est/x\nERROR forged line\r\u{0}}: done\n";
        assert_eq!(
            escape_log_line(forged),
            "INFO request{path=/.well-known/est/x\\nERROR forged line\\r\\u{0}}: done\n"
        );
        // The formatter's colours stay; a lone ESC or a cursor move does not.
        assert_eq!(
            escape_log_line("\u{1b}[2m12:00\u{1b}[0m \u{1b}[32mINFO\u{1b}[0m"),
            "\u{1b}[2m12:00\u{1b}[0m \u{1b}[32mINFO\u{1b}[0m"
        );
        assert_eq!(escape_log_line("a\u{1b}[2Jb\u{1b}"), "a\\u{1b}[2Jb\\u{1b}");
        assert_eq!(escape_log_line("tab\there \u{85}"), "tab\there \\u{85}");
        assert_eq!(LogSafe("/x\ny").to_string(), "/x\\ny");
    }
}
