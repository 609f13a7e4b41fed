//! CPU time per process, from `/proc`, so that a phase can say what each process
//! (the server, PostgreSQL, the peer, the load tool itself) spent per enrollment.
//!
//! PostgreSQL forks a backend per connection, and a pool that closes connections
//! (Go's database/sql keeps two idle by default) ends backends during a phase. So
//! its time is that of every live `postgres` process plus what the postmaster has
//! reaped from its exited children (`cutime`/`cstime`), which makes the difference
//! of two samples exact whatever came and went between them. Other databases on the
//! same server count too: measure on a quiet machine.

use std::path::Path;
use std::time::Duration;

/// Linux reports process times in USER_HZ ticks, fixed at 100 for user space.
const TICKS_PER_SECOND: u64 = 100;

/// The fields of `/proc/PID/stat` that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    ppid: u32,
    /// utime + stime, ticks.
    own: u64,
    /// cutime + cstime (children waited for), ticks.
    children: u64,
}

/// Parses `/proc/PID/stat`: the command name is in parentheses and may contain
/// spaces and parentheses itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<(String, Stat)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, so rest[11].
    let field = |n: usize| rest.get(n - 3).and_then(|s| s.parse::<u64>().ok());
    let ppid = u32::try_from(field(4)?).ok()?;
    Some((comm, Stat { ppid, own: field(14)? + field(15)?, children: field(16)? + field(17)? }))
}

fn read_stat(pid: u32) -> Option<(String, Stat)> {
    parse_stat(&std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?)
}

/// Every process: (pid, comm, stat).
fn all_processes() -> Vec<(u32, String, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read_stat(pid).map(|(comm, s)| (pid, comm, s)))
        .collect()
}

/// Total CPU ticks of PostgreSQL: live `postgres` processes plus what their
/// postmaster(s) reaped.
fn postgres_ticks() -> u64 {
    let procs = all_processes();
    let is_pg = |pid: u32| procs.iter().any(|(p, c, _)| *p == pid && c == "postgres");
    procs
        .iter()
        .filter(|(_, comm, _)| comm == "postgres")
        .map(|(_, _, s)| s.own + if is_pg(s.ppid) { 0 } else { s.children })
        .sum()
}

/// The processes a phase is accounted to.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// (label, pid) of the server under test, e.g. ("ca-service", 1234).
    pub server: Option<(&'static str, u32)>,
    pub postgres: bool,
}

/// A sample of the subjects' CPU time.
#[derive(Debug, Clone)]
pub struct Sample {
    server: Option<u64>,
    postgres: Option<u64>,
    load_tool: u64,
}

/// CPU spent between two samples, per process.
#[derive(Debug, Clone, Default)]
pub struct Spent {
    pub server: Option<(&'static str, Duration)>,
    pub postgres: Option<Duration>,
    pub load_tool: Duration,
}

fn ticks(t: u64) -> Duration {
    Duration::from_micros(t * 1_000_000 / TICKS_PER_SECOND)
}

impl Subjects {
    pub fn sample(&self) -> Sample {
        Sample {
            server: self.server.and_then(|(_, pid)| read_stat(pid)).map(|(_, s)| s.own),
            postgres: self.postgres.then(postgres_ticks),
            load_tool: read_stat(std::process::id()).map_or(0, |(_, s)| s.own),
        }
    }

    pub fn since(&self, before: &Sample) -> Spent {
        let now = self.sample();
        let diff = |a: Option<u64>, b: Option<u64>| Some(ticks(a?.saturating_sub(b?)));
        Spent {
            server: self.server.and_then(|(name, _)| Some((name, diff(now.server, before.server)?))),
            postgres: diff(now.postgres, before.postgres),
            load_tool: ticks(now.load_tool.saturating_sub(before.load_tool)),
        }
    }
}

impl Spent {
    /// Microseconds of CPU per operation of each process, and their sum.
    pub fn per_op_us(&self, ops: u64) -> Vec<(String, f64)> {
        let per = |d: Duration| if ops == 0 { 0.0 } else { d.as_secs_f64() * 1e6 / ops as f64 };
        let mut out = Vec::new();
        if let Some((name, d)) = self.server {
            out.push((name.to_string(), per(d)));
        }
        if let Some(d) = self.postgres {
            out.push(("postgres".to_string(), per(d)));
        }
        out.push(("est-load".to_string(), per(self.load_tool)));
        let total = out.iter().map(|(_, v)| v).sum();
        out.push(("total".to_string(), total));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_from_the_last_parenthesis() {
        // A name with a space and a ')' in it, as a process may call itself.
        let line = "4242 (post gres) x) S 17 4242 4242 0 -1 4194560 2530 0 0 0 \
                    120 30 7 5 20 0 1 0 12345 1000 100 18446744073709551615";
        let (comm, s) = parse_stat(line).expect("parses");
        assert_eq!(comm, "post gres) x");
        assert_eq!(s, Stat { ppid: 17, own: 150, children: 12 });
    }

    #[test]
    fn own_process_is_readable_and_counts_up() {
        let me = Subjects { server: None, postgres: false };
        let before = me.sample();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(120) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = me.since(&before);
        assert!(spent.load_tool >= Duration::from_millis(50), "{spent:?}");
    }
}
