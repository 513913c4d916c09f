//! What the end-to-end tests share: the `evolve` binary, run from the workspace root, and
//! reading a run's ledger.
#![allow(dead_code)] // Each test crate uses its own part.

use rusqlite::Connection;
use std::path::Path;
use std::process::{Command, Output};

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

/// The ledger of the run at `run`.
pub fn ledger(run: &Path) -> Connection {
    Connection::open(run.join("ledger.sqlite")).unwrap()
}
