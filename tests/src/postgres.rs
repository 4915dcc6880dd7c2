//! A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary directory (through
//! `runuser -u postgres` when running as root, since initdb refuses root), the server on a free loopback
//! port, stopped on drop. A watchdog stops it too if the test process dies without dropping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::process::{free_port, is_root, stop_group, watchdog};
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
    settings: Vec<String>,
    server: Option<Child>,
    watchdog: Option<Child>,
}

/// The PostgreSQL binaries: $PG_BIN, else Debian's 15.
fn bin_dir() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// `program args...`, as the postgres user when we are root.
fn command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

/// Settings for tests: durability off (a throwaway cluster), statement statistics on.
pub const TEST_SETTINGS: &[&str] = &[
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track=all",
    "max_connections=300",
];

impl Postgres {
    /// A new cluster with `settings` (`name=value`), started and accepting connections.
    pub fn start(settings: &[&str]) -> Postgres {
        let bin = bin_dir();
        assert!(
            bin.join("initdb").exists(),
            "no initdb in {}: run scripts/test-deps.sh (or set PG_BIN)",
            bin.display()
        );
        let dir = tempfile::Builder::new().prefix("kubeinfer-pg-").tempdir().expect("a temp dir");
        crate::process::remove_when_gone(dir.path());
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(status.is_ok_and(|s| s.success()), "cannot give the data directory to postgres");
        }
        let out = command(&bin, "initdb")
            .args(["-D"])
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres {
            dir,
            port: free_port(),
            bin,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            server: None,
            watchdog: None,
        };
        pg.resume();
        pg
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `database` (trust authentication, loopback).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server again (after `stop`), on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "postgres is already running");
        let mut cmd = command(&self.bin, "postgres");
        cmd.arg("-D").arg(self.dir.path().join("data")).args(["-p", &self.port.to_string()]);
        cmd.args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.path().display()));
        for s in &self.settings {
            cmd.args(["-c", s]);
        }
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        use std::os::unix::process::CommandExt;
        let child = cmd.stdout(Stdio::null()).stderr(log).process_group(0).spawn().expect("postgres starts");
        self.watchdog = Some(watchdog(child.id(), "-INT"));
        self.server = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("postgres did not start: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Freezes every PostgreSQL process (SIGSTOP to the group): a server that accepts connections and
    /// never answers, as a hung host or a network partition looks to its clients.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Signals the server and every process under it: each backend is a session of its own (the
    /// postmaster's children call setsid), so signalling the process group would reach only the
    /// postmaster.
    fn signal(&self, signal: &str) {
        if let Some(child) = &self.server {
            let pids: Vec<String> =
                crate::process::with_descendants(child.id()).iter().map(u32::to_string).collect();
            let _ = Command::new("kill").arg(signal).arg("--").args(pids).stderr(Stdio::null()).status();
        }
    }

    /// Stops the server (fast shutdown); `resume` starts it again on the same data.
    pub fn stop(&mut self) {
        // A frozen server cannot act on SIGINT.
        self.thaw();
        if let Some(mut child) = self.server.take() {
            // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, the data stays.
            stop_group(&mut child, "-INT", Duration::from_secs(15));
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }

    /// Runs SQL through psql against `database` (for set-up that needs no Rust driver).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-t", "-A", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh, empty database; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Inserts `rows` predictions in one statement, for the tests and benchmarks that need a large table:
/// models m0..m7, one row every `seconds_apart` seconds back from now, a client id on every 20th row, an
/// error on every 50th. Ids are UUIDv7 stamped with the row's created_at millisecond, as the server's
/// writer makes them (the rest of the id is a hash of the row's number).
pub async fn seed_predictions(pool: &sqlx::PgPool, rows: i64, seconds_apart: f64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO predictions (id, model, model_version, client_id, created_at, queue_us, compute_us, total_us, \
         batch_size, outcome) \
         SELECT (lpad(to_hex(floor(extract(epoch FROM t) * 1000)::int8), 12, '0') || '7' \
                 || substr(md5(g::text), 1, 3) || '8' || substr(md5(g::text), 4, 15))::uuid, \
                'm' || (g % 8), 1, CASE WHEN g % 20 = 0 THEN 'c' || (g % 500) END, \
                t, 20, 300, 400 + g % 1000, 1 + g % 8, \
                CASE WHEN g % 50 = 0 THEN 'error' ELSE 'success' END \
         FROM generate_series(1, $1) AS g, LATERAL (SELECT now() - make_interval(secs => g * $2) AS t) AS at",
    )
    .bind(rows)
    .bind(seconds_apart)
    .execute(pool)
    .await?;
    Ok(())
}
