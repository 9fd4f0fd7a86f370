//! A PostgreSQL cluster a test can stop and start ([`PrivatePg`]), for
//! the database outages of the fault suite.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use tokio_postgres::NoTls;

use super::{free_port, TestDb};

/// A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl` from the
/// machine's PostgreSQL server package), on a free port in a temp dir, so a
/// test can stop and start its database. As root it runs as `postgres`
/// (initdb refuses root) through `runuser`.
pub struct PrivatePg {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivatePg {
    /// The directory holding `initdb` and `pg_ctl`: `PG_BIN`, else the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub fn bin_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("PG_BIN") {
            return Some(PathBuf::from(dir));
        }
        let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        found.sort();
        found.pop().map(|(_, bin)| bin)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, what: &str, mut cmd: Command) {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        assert!(
            out.status.success(),
            "{what} failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// initdb and start. Panics with a clear message when the server
    /// package is missing (`.ci/run` installs it).
    pub fn start() -> PrivatePg {
        use std::os::unix::fs::PermissionsExt;
        let bin = Self::bin_dir()
            .expect("initdb not found: install Debian's postgresql package (see .ci/run)");
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "countdown-pg-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let pg = PrivatePg {
            port: free_port(),
            dir,
            bin,
            as_postgres: uid == "0",
        };
        let mut initdb = pg.command("initdb");
        initdb.arg("-D").arg(pg.dir.join("data")).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        pg.run("initdb", initdb);
        pg.start_again();
        pg
    }

    /// (Re)starts the server and waits until it accepts connections.
    pub fn start_again(&self) {
        let mut ctl = self.command("pg_ctl");
        ctl.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .args(["-w", "-t", "30", "start"]);
        self.run("pg_ctl start", ctl);
    }

    /// Stops the server (`fast`: open connections are cut, like a crash of
    /// the database host from the bot's point of view).
    pub fn stop(&self) {
        let mut ctl = self.command("pg_ctl");
        ctl.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "-t", "30", "stop"]);
        self.run("pg_ctl stop", ctl);
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A fresh database on this cluster. Its name is unique, so `TestDb`'s
    /// drop (which targets the shared cluster) finds nothing to drop there.
    pub async fn create_db(&self) -> TestDb {
        let name = format!(
            "countdown_private_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        TestDb {
            url: self.url(&name),
            name,
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let mut ctl = self.command("pg_ctl");
        let _ = ctl
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
