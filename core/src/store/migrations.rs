//! The ledger's schema, as an append-only list of migrations. `PRAGMA user_version` records
//! how many have been applied; a ledger from a newer evolve is refused rather than guessed at.
//!
//! Never edit a released migration: add a new one.

/// Migration `i` takes a ledger from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // v1: the run ledger.
    r#"
    CREATE TABLE prompts (
        id          INTEGER PRIMARY KEY,
        text        TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE images (
        hash        TEXT PRIMARY KEY CHECK (length(hash) = 64),
        width       INTEGER NOT NULL,
        height      INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE api_calls (
        request_hash    TEXT PRIMARY KEY,
        plugin          TEXT NOT NULL,
        request         TEXT NOT NULL,
        image_hash      TEXT NOT NULL REFERENCES images(hash),
        revised_prompt  TEXT,
        cost_micro_usd  INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
        created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE rounds (
        id           INTEGER PRIMARY KEY,
        step         INTEGER NOT NULL,
        started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        finished_at  TEXT,
        selected     INTEGER NOT NULL DEFAULT 0,
        teacher_wins INTEGER NOT NULL DEFAULT 0,
        added        INTEGER NOT NULL DEFAULT 0,
        deactivated  INTEGER NOT NULL DEFAULT 0,
        mutated      INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE samples (
        id                 INTEGER PRIMARY KEY,
        prompt_id          INTEGER NOT NULL REFERENCES prompts(id),
        image_hash         TEXT NOT NULL REFERENCES images(hash),
        teacher            TEXT NOT NULL,
        origin             TEXT NOT NULL CHECK (origin IN ('seed', 'expansion', 'mutation')),
        parent_id          INTEGER REFERENCES samples(id),
        active             INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        round_added        INTEGER REFERENCES rounds(id),
        round_removed      INTEGER REFERENCES rounds(id),
        last_judged_round  INTEGER REFERENCES rounds(id),
        created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE judgments (
        id                  INTEGER PRIMARY KEY,
        round_id            INTEGER NOT NULL REFERENCES rounds(id),
        sample_id           INTEGER NOT NULL REFERENCES samples(id),
        base_image_hash     TEXT NOT NULL REFERENCES images(hash),
        teacher_image_hash  TEXT NOT NULL REFERENCES images(hash),
        outcome             TEXT NOT NULL CHECK (outcome IN ('teacher_better', 'base_as_good')),
        base_shown_first    INTEGER NOT NULL CHECK (base_shown_first IN (0, 1)),
        confidence          REAL NOT NULL,
        raw                 TEXT NOT NULL,
        created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE TABLE metrics (
        step         INTEGER NOT NULL,
        name         TEXT NOT NULL,
        value        REAL NOT NULL,
        recorded_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
        PRIMARY KEY (name, step)
    );
    "#,
    // v2: indexes for the director's per-round queries (select least recently judged active
    // samples; a sample's judgment history).
    r#"
    CREATE INDEX samples_active_by_judged ON samples(active, last_judged_round);
    CREATE INDEX judgments_by_sample ON judgments(sample_id, round_id);
    "#,
    // v3: the director's durable intentions. A new prompt is written down before any teacher
    // is paid for it, so that a run killed mid-purchase finishes the purchase on resume instead
    // of forgetting it; every teacher's image for it is kept with whether it won the judge's
    // tournament (per-teacher win rates).
    r#"
    CREATE TABLE pending (
        id          INTEGER PRIMARY KEY,
        prompt      TEXT NOT NULL,
        origin      TEXT NOT NULL CHECK (origin IN ('seed', 'expansion', 'mutation')),
        parent_id   INTEGER REFERENCES samples(id),
        round_id    INTEGER REFERENCES rounds(id),
        sample_id   INTEGER REFERENCES samples(id),
        dropped     TEXT,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX pending_open ON pending(sample_id, dropped);
    CREATE TABLE candidates (
        pending_id  INTEGER NOT NULL REFERENCES pending(id),
        teacher     TEXT NOT NULL,
        image_hash  TEXT NOT NULL REFERENCES images(hash),
        won         INTEGER NOT NULL CHECK (won IN (0, 1)),
        PRIMARY KEY (pending_id, teacher)
    );
    ALTER TABLE rounds ADD COLUMN rejudged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE rounds ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
    "#,
    // v4: plugins the host quarantined (a wasm trap, time-out or memory excess): the run went
    // on without them from `round_id` on.
    r#"
    CREATE TABLE plugin_faults (
        instance    TEXT PRIMARY KEY,
        round_id    INTEGER REFERENCES rounds(id),
        reason      TEXT NOT NULL,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    "#,
    // v5: purchases in flight. Every attempt at a paid call is written down before its request
    // leaves, with the job the provider queued as soon as it is known, so that a run killed at
    // any moment collects what it paid for on resume instead of buying it again, and its budget
    // counts every attempt that may have been billed. A delivered attempt is counted in api_calls
    // (kept here, `delivered`, for the audit trail); a refused one is deleted; the rest stay,
    // charged at their quote.
    r#"
    CREATE TABLE attempts (
        id                INTEGER PRIMARY KEY,
        request_hash      TEXT NOT NULL,
        plugin            TEXT NOT NULL,
        request           TEXT NOT NULL,
        quoted_micro_usd  INTEGER NOT NULL CHECK (quoted_micro_usd >= 0),
        state             TEXT NOT NULL CHECK (state IN ('sent', 'accepted', 'charged', 'delivered')),
        job               TEXT,
        reason            TEXT,
        created_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX attempts_by_request ON attempts(request_hash, state);
    "#,
    // v6: the judge audit's probes (`evolve_core::audit`): a comparison asked again with the
    // images swapped, or the teacher's image against pure noise.
    r#"
    CREATE TABLE audit_probes (
        id           INTEGER PRIMARY KEY,
        round_id     INTEGER NOT NULL REFERENCES rounds(id),
        sample_id    INTEGER NOT NULL REFERENCES samples(id),
        kind         TEXT NOT NULL CHECK (kind IN ('known', 'swap')),
        right_first  INTEGER CHECK (right_first IN (0, 1)),
        passed       INTEGER NOT NULL CHECK (passed IN (0, 1)),
        raw          TEXT NOT NULL,
        created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    "#,
    // v7: samples may be imported from an existing dataset (`[prompts] from_dataset`). SQLite
    // cannot change a CHECK constraint in place: the table is rebuilt (foreign keys are off
    // while migrations run and checked before each commits).
    r#"
    CREATE TABLE samples_v7 (
        id                 INTEGER PRIMARY KEY,
        prompt_id          INTEGER NOT NULL REFERENCES prompts(id),
        image_hash         TEXT NOT NULL REFERENCES images(hash),
        teacher            TEXT NOT NULL,
        origin             TEXT NOT NULL CHECK (origin IN ('seed', 'expansion', 'mutation', 'imported')),
        parent_id          INTEGER REFERENCES samples(id),
        active             INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        round_added        INTEGER REFERENCES rounds(id),
        round_removed      INTEGER REFERENCES rounds(id),
        last_judged_round  INTEGER REFERENCES rounds(id),
        created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    INSERT INTO samples_v7 (id, prompt_id, image_hash, teacher, origin, parent_id, active, round_added,
                            round_removed, last_judged_round, created_at)
        SELECT id, prompt_id, image_hash, teacher, origin, parent_id, active, round_added,
               round_removed, last_judged_round, created_at FROM samples;
    DROP TABLE samples;
    ALTER TABLE samples_v7 RENAME TO samples;
    CREATE INDEX samples_active_by_judged ON samples(active, last_judged_round);
    "#,
    // v8: what the judge's calls used and cost (a judge that reports usage: a priced VLM), so
    // that its spending is counted against `max_cost_usd` across restarts and shown apart.
    r#"
    CREATE TABLE judge_calls (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL CHECK (kind IN ('compare', 'expand', 'mutate')),
        input_tokens    INTEGER NOT NULL CHECK (input_tokens >= 0),
        output_tokens   INTEGER NOT NULL CHECK (output_tokens >= 0),
        cost_micro_usd  INTEGER NOT NULL CHECK (cost_micro_usd >= 0),
        failed          INTEGER NOT NULL DEFAULT 0 CHECK (failed IN (0, 1)),
        created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    "#,
    // v9: whether each teacher's image in a tournament was as good as the winner's (it won, or
    // tied with the image that went on): a judge's tie goes to the cheaper image, so wins alone
    // undercount a dearer teacher's quality. Earlier tournaments count their winners only.
    r#"
    ALTER TABLE candidates ADD COLUMN as_good INTEGER NOT NULL DEFAULT 0 CHECK (as_good IN (0, 1));
    UPDATE candidates SET as_good = won;
    "#,
];
