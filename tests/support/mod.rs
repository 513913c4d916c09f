//! What the end-to-end tests share: the `evolve` binary, run from the workspace root, and
//! reading a run's ledger.
#![allow(dead_code)] // Each test crate uses its own part.

pub mod plugin_files;

use rusqlite::Connection;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `evolve` binary under test, started in the workspace root.
pub fn evolve() -> Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut command = Command::new(env!("CARGO_BIN_EXE_evolve"));
    command.current_dir(root);
    command
}

/// Its stdout, after asserting that it succeeded (both streams shown if not).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The single integer `sql` selects.
pub fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The teacher calls a run counts against its budget, and what they cost in micro-USD: the
/// delivered ones at their cost, plus every attempt a kill left undelivered at its quote (the
/// provider may have billed it).
pub fn calls_counted(conn: &Connection) -> (i64, i64) {
    let undelivered = "FROM attempts WHERE state != 'delivered'";
    let calls = count(conn, "SELECT count(*) FROM api_calls") + count(conn, &format!("SELECT count(*) {undelivered}"));
    let cost = count(conn, "SELECT coalesce(sum(cost_micro_usd), 0) FROM api_calls")
        + count(conn, &format!("SELECT coalesce(sum(quoted_micro_usd), 0) {undelivered}"));
    (calls, cost)
}

/// The ledger of the run at `run`.
pub fn ledger(run: &Path) -> Connection {
    Connection::open(run.join("ledger.sqlite")).unwrap()
}

/// A child process killed when dropped (a server a test started).
pub struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `evolve serve` on a free loopback port, with `extra` arguments and `env`; the server
/// (stopped when dropped) and its base URL.
pub fn start_serve(extra: &[&str], env: &[(&str, &str)]) -> (Server, String) {
    let mut command = evolve();
    command.args(["serve", "--addr", "127.0.0.1:0"]).args(extra).envs(env.iter().copied());
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with("/v1"), "{line}");
    (Server(child), url)
}
