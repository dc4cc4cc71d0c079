//! `floe backup` and `floe restore`, through the real binary: a backup taken while floe serves
//! holds what was committed, WAL included; a restore puts exactly that back, keeps what it
//! replaced, leaves no old WAL for SQLite to apply, and refuses anything unsafe untouched.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{ChildServer, NODE_0, client, run_floe};
use serde_json::{Value, json};
use tempfile::TempDir;

/// What one run of `floe backup` or `floe restore` did.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts that the command succeeded.
    fn done(self) -> Self {
        assert!(self.ok, "{}", self.stderr);
        self
    }

    /// Asserts that the command failed, saying `says` on standard error.
    fn refused(&self, says: &str) {
        assert!(!self.ok, "it succeeded: {}", self.stdout);
        assert!(self.stderr.contains(says), "{}", self.stderr);
    }
}

/// Runs `floe COMMAND FILE --data-dir DIR` to completion (bounded).
fn floe(command: &str, file: &Path, data_dir: &Path) -> Ran {
    let (status, stdout, stderr) = run_floe(
        &[
            command.as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
        &[],
    );
    Ran {
        ok: status.success(),
        stdout,
        stderr,
    }
}

async fn create_dataset(server: &ChildServer) -> String {
    let answer = client()
        .post(server.url("/v1/configuration/datasets"))
        .json(&json!({"primary": NODE_0}))
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 201);
    let dataset: Value = answer.json().await.expect("JSON");
    dataset["dataset_id"].as_str().expect("an id").to_string()
}

async fn dataset_ids(server: &ChildServer) -> Vec<String> {
    let list: Vec<Value> = client()
        .get(server.url("/v1/configuration/datasets"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("a JSON list");
    list.iter()
        .map(|dataset| dataset["dataset_id"].as_str().expect("an id").to_string())
        .collect()
}

/// The files in `dir` whose names start with `prefix`.
fn files_starting(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("a directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .collect()
}

#[tokio::test]
async fn a_backup_taken_while_serving_is_what_a_restore_puts_back() {
    let data = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    let backup = elsewhere.path().join("floe-backup.db");
    let mut server = ChildServer::start(data.path(), &[]);
    let kept = vec![create_dataset(&server).await, create_dataset(&server).await];

    let taken = floe("backup", &backup, data.path()).done();
    assert!(
        taken.stdout.contains("revision 2, 2 datasets"),
        "{}",
        taken.stdout
    );
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a backup holds password hashes");

    // Changed after the backup, then killed: the last commits are only in the WAL, which is
    // what a restore must not leave under the backup.
    let later = create_dataset(&server).await;
    server.kill();
    assert!(
        std::fs::metadata(data.path().join("floe.db-wal")).is_ok_and(|wal| wal.len() > 0),
        "the killed server left its WAL"
    );

    let restored = floe("restore", &backup, data.path()).done();
    assert!(
        restored.stdout.contains("revision 2, 2 datasets"),
        "{}",
        restored.stdout
    );
    assert!(
        !data.path().join("floe.db-wal").exists(),
        "no WAL of the replaced store is left"
    );
    let replaced = files_starting(data.path(), "floe.db.before-restore-");
    assert_eq!(
        replaced.len(),
        1,
        "the replaced database is kept: {replaced:?}"
    );

    let server = ChildServer::start(data.path(), &[]);
    assert_eq!(
        dataset_ids(&server).await,
        kept,
        "exactly what the backup held"
    );
    drop(server);

    // What the restore replaced is whole, its WAL's commits included: restored elsewhere, it
    // has the dataset made after the backup.
    let other = TempDir::new().unwrap();
    floe("restore", &replaced[0], other.path()).done();
    let server = ChildServer::start(other.path(), &[]);
    let mut all = kept.clone();
    all.push(later);
    assert_eq!(dataset_ids(&server).await, all);
}

#[tokio::test]
async fn restore_refuses_while_a_server_holds_the_data_directory() {
    let data = TempDir::new().unwrap();
    let backup = data.path().join("backup.db");
    let server = ChildServer::start(data.path(), &[]);
    let id = create_dataset(&server).await;
    floe("backup", &backup, data.path()).done();

    floe("restore", &backup, data.path()).refused("another floe process is using it");
    assert!(
        files_starting(data.path(), "floe.db.").is_empty(),
        "nothing was written"
    );
    assert_eq!(dataset_ids(&server).await, vec![id]);
}

#[tokio::test]
async fn restore_refuses_what_is_not_a_floe_store_and_changes_nothing() {
    let data = TempDir::new().unwrap();
    let server = ChildServer::start(data.path(), &[]);
    let id = create_dataset(&server).await;
    drop(server);
    let database = data.path().join("floe.db");
    let before = std::fs::read(&database).unwrap();

    let candidates = TempDir::new().unwrap();
    let text = candidates.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database at all, but long enough to be read as one ".repeat(20),
    )
    .unwrap();
    let empty_sqlite = candidates.path().join("empty.db");
    rusqlite::Connection::open(&empty_sqlite)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    let newer = candidates.path().join("newer.db");
    floe("backup", &newer, data.path()).done();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 1000)
        .unwrap();
    let missing = candidates.path().join("missing.db");

    for (file, says) in [
        (&text, "not a floe store"),
        (&empty_sqlite, "it holds no floe store"),
        (&newer, "written by a newer floe"),
        (&missing, "does not exist"),
    ] {
        floe("restore", file, data.path()).refused(says);
        assert_eq!(
            std::fs::read(&database).unwrap(),
            before,
            "{file:?} changed the store"
        );
        assert_eq!(
            files_starting(data.path(), "floe.db."),
            Vec::<PathBuf>::new(),
            "{file:?} left a file behind"
        );
    }
    assert!(
        !missing.exists(),
        "reading a missing backup does not create it"
    );
    let server = ChildServer::start(data.path(), &[]);
    assert_eq!(dataset_ids(&server).await, vec![id]);
}

#[test]
fn backup_needs_a_store_and_never_overwrites_a_file() {
    let empty = TempDir::new().unwrap();
    let target = empty.path().join("backup.db");
    floe("backup", &target, &empty.path().join("no-store")).refused("there is no store to back up");
    assert!(!target.exists());
    assert!(
        !empty.path().join("no-store").exists(),
        "a backup creates no data directory"
    );

    let data = TempDir::new().unwrap();
    drop(ChildServer::start(data.path(), &[]));
    std::fs::write(&target, "precious").unwrap();
    floe("backup", &target, data.path()).refused("exists already");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

#[tokio::test]
async fn restoring_twice_keeps_each_replaced_database() {
    let data = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    let backup = elsewhere.path().join("backup.db");
    let server = ChildServer::start(data.path(), &[]);
    create_dataset(&server).await;
    drop(server);
    floe("backup", &backup, data.path()).done();
    // Within the same second, as often as not: the second keeps its own copy all the same.
    for _ in 0..2 {
        floe("restore", &backup, data.path()).done();
    }
    assert_eq!(
        files_starting(data.path(), "floe.db.before-restore-").len(),
        2
    );
    assert_eq!(
        files_starting(data.path(), "floe.db.restoring"),
        Vec::<PathBuf>::new()
    );
}

/// While another process has the database being replaced open, in a read transaction that
/// holds commits in the WAL or idle (its close, as the last connection, would later delete the
/// WAL and shared memory by name: the new store's), the restore changes nothing and says why.
#[tokio::test]
async fn a_restore_changes_nothing_while_another_process_has_the_database_open() {
    for reading in [true, false] {
        let data = TempDir::new().unwrap();
        let elsewhere = TempDir::new().unwrap();
        let backup = elsewhere.path().join("backup.db");
        let mut server = ChildServer::start(data.path(), &[]);
        let first = create_dataset(&server).await;
        floe("backup", &backup, data.path()).done();
        let other = rusqlite::Connection::open(data.path().join("floe.db")).unwrap();
        if reading {
            // The snapshot is taken before the last commit, which it then holds in the WAL.
            other
                .execute_batch("BEGIN; SELECT count(*) FROM datasets;")
                .unwrap();
        } else {
            // One query and then idle, as a shell left open: no lock, but the WAL attached.
            let _: i64 = other
                .query_row("SELECT count(*) FROM datasets", [], |row| row.get(0))
                .unwrap();
        }
        let second = create_dataset(&server).await;
        server.kill();
        let wal = std::fs::read(data.path().join("floe.db-wal")).unwrap();

        floe("restore", &backup, data.path()).refused("nothing was changed");
        assert_eq!(
            files_starting(data.path(), "floe.db."),
            Vec::<PathBuf>::new()
        );
        if reading {
            // The WAL is still there, its commits with it.
            let after = std::fs::read(data.path().join("floe.db-wal")).unwrap();
            assert_eq!(after.len(), wal.len());
            other.execute_batch("COMMIT").unwrap();
        }
        // Its close, as the last connection, folds the WAL in itself.
        drop(other);

        let server = ChildServer::start(data.path(), &[]);
        assert_eq!(dataset_ids(&server).await, vec![first, second]);
    }
}

/// A backup whose file is empty beside a WAL (a copy of a data directory taken at the wrong
/// moment) is refused before SQLite opens it, which would delete that WAL.
#[test]
fn restore_leaves_the_wal_of_an_empty_backup_alone() {
    let data = TempDir::new().unwrap();
    let copied = TempDir::new().unwrap();
    let backup = copied.path().join("floe.db");
    std::fs::write(&backup, b"").unwrap();
    let wal = copied.path().join("floe.db-wal");
    std::fs::write(&wal, b"what may be the only copy of a store").unwrap();
    floe("restore", &backup, data.path()).refused("may be all that is left");
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        b"what may be the only copy of a store"
    );
}

/// A WAL beside a missing or empty database may be all that is left of a store, and SQLite
/// deletes it when it opens that database: neither command touches it.
#[test]
fn a_wal_without_its_database_is_left_alone() {
    let data = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    let backup = elsewhere.path().join("backup.db");
    {
        let server = ChildServer::start(data.path(), &[]);
        drop(server);
    }
    floe("backup", &backup, data.path()).done();
    let wal = data.path().join("floe.db-wal");
    std::fs::write(&wal, b"what may be the only copy of a store").unwrap();
    for empty in [false, true] {
        if empty {
            std::fs::write(data.path().join("floe.db"), b"").unwrap();
        } else {
            std::fs::remove_file(data.path().join("floe.db")).unwrap();
        }
        floe("restore", &backup, data.path()).refused("may be all that is left");
        floe("backup", &elsewhere.path().join("again.db"), data.path())
            .refused("may be all that is left");
        assert_eq!(
            std::fs::read(&wal).unwrap(),
            b"what may be the only copy of a store"
        );
    }
}
