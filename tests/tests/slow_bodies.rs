//! Slow and oversized request bodies (DESIGN invariant 8), with raw TCP clients on the
//! public listener's `POST /ocsp` (no authentication: anyone can do this):
//!
//! - `Content-Length: 1000000000` (limit 16 KiB) is refused with 413 at once, before
//!   a byte of the body is sent.
//! - Connections that declare 500 bytes and send 3 are cut off at the body deadline
//!   (10 s): answered 408 or closed.
//! - A body trickled at 1 byte / 0.5 s is cut off at the same deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e_tests::{Cli, Service};

/// The service's body deadline.
const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// How late after the deadline a connection may still be open (loaded machine).
const SLACK: Duration = Duration::from_secs(4);
/// How long the client waits at most: far beyond the deadline.
const CLIENT_PATIENCE: Duration = Duration::from_secs(30);

fn head(addr: SocketAddr, length: u64) -> String {
    format!(
        "POST /ocsp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// What a client saw: when the server answered or closed (the first of the two, since
/// `since`), the status line if any, and whether the connection ended (rather than the
/// client giving up after `CLIENT_PATIENCE`).
type Cut = (Duration, Option<String>, bool);

/// Reads until the server closes, or `CLIENT_PATIENCE` passes.
fn until_cut(stream: &mut TcpStream, since: Instant) -> Cut {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first = None;
    let deadline = since + CLIENT_PATIENCE;
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break false;
        }
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                first.get_or_insert_with(|| since.elapsed());
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break false,
            // Reset by the server: cut off.
            Err(_) => break true,
        }
    };
    let text = String::from_utf8_lossy(&got).into_owned();
    (first.unwrap_or_else(|| since.elapsed()), text.lines().next().map(str::to_string), ended)
}

fn start(prefix: &str) -> Result<(tempfile::TempDir, Service)> {
    let dir = e2e_tests::workdir(prefix)?;
    let cli = Cli::evaluation(dir.path());
    cli.run_ok(&["init"])?;
    let svc = Service::start(&cli)?;
    Ok((dir, svc))
}

/// The cut-off must come at the deadline: not before it, not much after it, and as a
/// 408 or a closed connection.
fn check_cut(what: &str, (took, status, ended): Cut) -> Result<Duration> {
    ensure!(ended, "{what}: still open after {took:?} (status line {status:?})");
    ensure!(
        took + Duration::from_millis(500) >= BODY_DEADLINE && took <= BODY_DEADLINE + SLACK,
        "{what}: cut after {took:?}, expected at the {BODY_DEADLINE:?} deadline (status line {status:?})"
    );
    if let Some(line) = &status {
        ensure!(line.contains(" 408 "), "{what}: answered {line:?}, expected 408 or a closed connection");
    }
    Ok(took)
}

#[test]
fn declared_length_over_the_limit_is_413_at_once() -> Result<()> {
    let (_dir, svc) = start("body-413")?;
    let mut s = TcpStream::connect(svc.http)?;
    let started = Instant::now();
    s.write_all(head(svc.http, 1_000_000_000).as_bytes())?;
    let (took, status, _) = until_cut(&mut s, started);
    let line = status.context("no answer to a 1 GB Content-Length")?;
    ensure!(line.contains(" 413 "), "expected 413, got {line:?}");
    ensure!(took < Duration::from_secs(2), "the 413 took {took:?}");
    eprintln!("Content-Length 1000000000 on /ocsp: {line} after {took:?}");
    Ok(())
}

#[test]
fn partial_bodies_are_cut_at_the_deadline() -> Result<()> {
    let (_dir, svc) = start("body-partial")?;
    // Many at once: each holds a connection until the deadline, none longer.
    let started = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(svc.http)?;
        s.write_all(head(svc.http, 500).as_bytes())?;
        s.write_all(&[0x30, 0x82, 0x01])?;
        streams.push(s);
    }
    let results: Vec<Result<Duration>> = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .iter_mut()
            .enumerate()
            .map(|(i, s)| scope.spawn(move || check_cut(&format!("connection {i}"), until_cut(s, started))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("reader panicked")))).collect()
    });
    let took: Vec<Duration> = results.into_iter().collect::<Result<_>>()?;
    eprintln!(
        "3 of 500 bytes, 50 connections: cut after {:?} … {:?}",
        took.iter().min().unwrap_or(&Duration::ZERO),
        took.iter().max().unwrap_or(&Duration::ZERO)
    );
    // The service still answers.
    ensure!(matches!(e2e_tests::http_get(svc.http, "/healthz"), Ok((200, _))), "/healthz after the slow bodies");
    Ok(())
}

#[test]
fn trickled_body_is_cut_at_the_deadline() -> Result<()> {
    let (_dir, svc) = start("body-trickle")?;
    let mut s = TcpStream::connect(svc.http)?;
    let started = Instant::now();
    s.write_all(head(svc.http, 500).as_bytes())?;
    let mut writer = s.try_clone()?;
    let trickle = std::thread::spawn(move || {
        for _ in 0..500 {
            if writer.write_all(b"0").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let cut = until_cut(&mut s, started);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let took = check_cut("1 byte / 0.5 s", cut)?;
    let _ = trickle.join();
    eprintln!("1 byte / 0.5 s: cut after {took:?}");
    Ok(())
}
