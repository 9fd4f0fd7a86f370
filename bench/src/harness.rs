//! What every scenario needs: a database of its own (optionally behind a
//! counting proxy), the real bot binary as a child process, its metrics,
//! and CPU and memory figures from `/proc`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use fake_discord::FakeDiscord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

pub const TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAx.Gbench.bench-token-never-logged";
pub const USER: u64 = 555_000_000_000_000_001;
/// The schema the bot applies; the bench applies it too before inserting rows.
pub const SCHEMA: &str = include_str!("../../init.sql");

/// Admin connection string of the machine's PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {url} (see README)"))?;
    tokio::spawn(conn);
    Ok(client)
}

// ------------------------------------------------------------------ clock

/// Maps wall-clock times (what PostgreSQL stores) to `Instant`s (what the
/// fake records), from one pair of readings taken together.
#[derive(Clone, Copy)]
pub struct Clock {
    wall: f64,
    mono: Instant,
}

impl Clock {
    pub fn now() -> Clock {
        let mono = Instant::now();
        let wall = epoch_secs(SystemTime::now());
        Clock { wall, mono }
    }

    pub fn wall_now(&self) -> f64 {
        self.wall + self.mono.elapsed().as_secs_f64()
    }

    /// The `Instant` of a wall-clock time in seconds since the epoch.
    pub fn instant_of(&self, wall: f64) -> Instant {
        let d = wall - self.wall;
        if d >= 0.0 {
            self.mono + Duration::from_secs_f64(d)
        } else {
            self.mono - Duration::from_secs_f64(-d)
        }
    }
}

pub fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Signed milliseconds from `b` to `a`.
pub fn ms_between(a: Instant, b: Instant) -> f64 {
    if a >= b {
        (a - b).as_secs_f64() * 1000.0
    } else {
        -((b - a).as_secs_f64() * 1000.0)
    }
}

// --------------------------------------------------------------- database

/// A database of the scenario's own, dropped by [`BenchDb::drop_db`] (or,
/// failing that, when the value is dropped).
pub struct BenchDb {
    pub name: String,
    pub url: String,
    admin: String,
    dropped: bool,
}

/// A `running` row to insert before the bot starts (a countdown "resumed
/// after an outage").
pub struct RunningRow {
    pub channel_id: u64,
    pub guild_id: u64,
    pub target: i32,
    pub last_sent: i32,
    /// When number 1 was due, seconds since the epoch.
    pub created_at: f64,
    pub updated_at: f64,
}

impl BenchDb {
    pub async fn create(label: &str) -> anyhow::Result<BenchDb> {
        let admin = admin_url();
        let name = format!("countdown_bench_{label}_{}", std::process::id());
        let client = connect(&admin).await?;
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let url = match admin.rfind('/') {
            Some(i) => format!("{}/{name}", &admin[..i]),
            None => bail!("malformed BENCH_DATABASE_URL {admin}"),
        };
        Ok(BenchDb {
            name,
            url,
            admin,
            dropped: false,
        })
    }

    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }

    pub async fn apply_schema(&self) -> anyhow::Result<()> {
        self.client().await?.batch_execute(SCHEMA).await?;
        Ok(())
    }

    /// Inserts `running` rows in one statement; returns `(id, channel_id)`.
    pub async fn insert_running(&self, rows: &[RunningRow]) -> anyhow::Result<Vec<(i64, u64)>> {
        let channels: Vec<i64> = rows.iter().map(|r| r.channel_id as i64).collect();
        let guilds: Vec<i64> = rows.iter().map(|r| r.guild_id as i64).collect();
        let users: Vec<i64> = rows.iter().map(|_| USER as i64).collect();
        let targets: Vec<i32> = rows.iter().map(|r| r.target).collect();
        let last: Vec<i32> = rows.iter().map(|r| r.last_sent).collect();
        let created: Vec<f64> = rows.iter().map(|r| r.created_at).collect();
        let updated: Vec<f64> = rows.iter().map(|r| r.updated_at).collect();
        let out = self
            .client()
            .await?
            .query(
                "INSERT INTO tasks (channel_id, guild_id, user_id, target, last_sent, created_at, updated_at) \
                 SELECT c, g, u, t, l, to_timestamp(ca), to_timestamp(ua) \
                 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::int[], \
                             $6::float8[], $7::float8[]) AS x(c, g, u, t, l, ca, ua) \
                 RETURNING id, channel_id",
                &[&channels, &guilds, &users, &targets, &last, &created, &updated],
            )
            .await
            .context("cannot insert the running rows")?;
        Ok(out
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    /// `xact_commit + xact_rollback` of this database (PostgreSQL's
    /// statistics, which lag by up to a second).
    pub async fn transactions(&self) -> anyhow::Result<i64> {
        let client = connect(&self.admin).await?;
        let row = client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
                &[&self.name],
            )
            .await?;
        Ok(row.get(0))
    }

    /// How many tasks have `status`.
    pub async fn tasks_with_status(&self, status: &str) -> anyhow::Result<i64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM tasks WHERE status = $1", &[&status])
            .await?;
        Ok(row.get(0))
    }

    /// Process ids of the server backends connected to this database.
    pub async fn backend_pids(&self) -> anyhow::Result<Vec<i32>> {
        let client = connect(&self.admin).await?;
        let rows = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn drop_db(mut self) {
        self.dropped = true;
        if let Ok(client) = connect(&self.admin).await {
            let _ = client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (name, admin) = (self.name.clone(), self.admin.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(client) = connect(&admin).await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

// ------------------------------------------------------------ round trips

/// What the counting proxy saw from the bot.
#[derive(Default)]
pub struct WireCounts {
    /// Simple-protocol queries (`Q`).
    pub queries: AtomicU64,
    /// Extended-protocol round trips (`Sync`, `S`).
    pub syncs: AtomicU64,
    /// Statements prepared (`Parse`, `P`).
    pub parses: AtomicU64,
    pub connections: AtomicU64,
}

impl WireCounts {
    /// Round trips: every `Q` and every `Sync` waits for the server's answer.
    pub fn round_trips(&self) -> u64 {
        self.queries.load(Ordering::Relaxed) + self.syncs.load(Ordering::Relaxed)
    }

    /// (queries, syncs, parses) so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.queries.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed),
            self.parses.load(Ordering::Relaxed),
        )
    }
}

/// A TCP proxy in front of PostgreSQL that parses the frontend protocol
/// (it does not change a byte) and counts round trips. The bot's
/// `DATABASE_URL` points at it, so the count is exact and immediate, unlike
/// `pg_stat_database`.
pub struct PgProxy {
    pub addr: SocketAddr,
    pub counts: Arc<WireCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(upstream: &str) -> anyhow::Result<PgProxy> {
        let config: tokio_postgres::Config = upstream.parse()?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = format!("{host}:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(WireCounts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let counts = c.clone();
                counts.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        pipe(client, server, counts).await;
                    }
                });
            }
        });
        Ok(PgProxy { addr, counts, task })
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let db = url.rsplit('/').next().unwrap_or("postgres");
        format!("postgres://postgres@{}/{db}", self.addr)
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, counts: Arc<WireCounts>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async move {
        let mut parser = FrontendParser::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            parser.feed(&buf[..n], &counts);
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Splits the frontend byte stream into messages: first untyped ones
/// (SSL/GSS requests, then the startup message: length, code), then typed
/// ones (type byte, length).
#[derive(Default)]
struct FrontendParser {
    started: bool,
    header: [u8; 8],
    have: usize,
    skip: usize,
}

impl FrontendParser {
    fn feed(&mut self, mut buf: &[u8], counts: &WireCounts) {
        while !buf.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(buf.len());
                self.skip -= n;
                buf = &buf[n..];
                continue;
            }
            let need = if self.started { 5 } else { 8 };
            let n = (need - self.have).min(buf.len());
            self.header[self.have..self.have + n].copy_from_slice(&buf[..n]);
            self.have += n;
            buf = &buf[n..];
            if self.have < need {
                continue;
            }
            self.have = 0;
            let h = self.header;
            if self.started {
                let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
                match h[0] {
                    b'Q' => counts.queries.fetch_add(1, Ordering::Relaxed),
                    b'S' => counts.syncs.fetch_add(1, Ordering::Relaxed),
                    b'P' => counts.parses.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                self.skip = len.saturating_sub(4);
            } else {
                let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let code = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                // SSLRequest and GSSENCRequest are followed by the startup message.
                if code != 80_877_103 && code != 80_877_104 {
                    self.started = true;
                }
                self.skip = len.saturating_sub(8);
            }
        }
    }
}

// -------------------------------------------------------------------- bot

/// The real bot binary, running as a child process.
pub struct Bot {
    child: Option<Child>,
    pub pid: i32,
    pub metrics_addr: String,
    pub log: PathBuf,
    pub spawned_at: Instant,
    dir: PathBuf,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Bot {
    /// Starts `bin` against `fake` and the database `database_url`.
    pub fn start(
        bin: &Path,
        fake: &FakeDiscord,
        database_url: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Bot> {
        let dir = std::env::temp_dir().join(format!(
            "countdown-bench-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(free_port())
        ));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("bot.log");
        let log_file = std::fs::File::create(&log)?;
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(bin);
        cmd.current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DISCORD_TOKEN", TOKEN)
            .env("DATABASE_URL", database_url)
            .env("DISCORD_API_URL", fake.base_url())
            .env("METRICS_ADDR", &metrics_addr)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_BOT_LOG").unwrap_or_else(|_| "warn".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawned_at = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        eprintln!("  (bot pid {}, log {})", child.id(), log.display());
        Ok(Bot {
            pid: child.id() as i32,
            child: Some(child),
            metrics_addr,
            log,
            spawned_at,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// Waits until the fake saw IDENTIFY number `identify` and a READY bot,
    /// and `/readyz` says 200.
    pub async fn wait_ready(&self, fake: &FakeDiscord, identify: usize) -> anyhow::Result<()> {
        fake.wait_identify_count(identify, Duration::from_secs(60))
            .await
            .with_context(|| format!("the bot never identified:\n{}", self.log_tail()))?;
        self.wait_readyz(Duration::from_secs(30)).await?;
        Ok(())
    }

    /// Polls `/readyz` every 2 ms (the only way to see it) until 200.
    pub async fn wait_readyz(&self, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("/readyz never answered 200:\n{}", self.log_tail());
            }
            if let Some(status) = self.exited() {
                bail!("the bot exited ({status}):\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        let resp = self
            .http
            .get(format!("http://{}{path}", self.metrics_addr))
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    pub async fn metrics(&self) -> anyhow::Result<Metrics> {
        let (status, text) = self.get("/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(Metrics::parse(&text))
    }

    /// User + system CPU seconds of the bot so far.
    pub fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid).unwrap_or(0.0)
    }

    /// (VmRSS, VmHWM) in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    /// Established TCP connections from the bot to `port` (the fake).
    pub fn connections_to(&self, port: u16) -> usize {
        established_to(port)
    }

    /// Whether the bot exited (a zombie until reaped); `/proc` tells
    /// without the `&mut` that `try_wait` needs.
    pub fn exited(&self) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let state = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .next()?
            .to_owned();
        (state == "Z" || state == "X").then(|| format!("process state {state}"))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }

    /// SIGTERM, then waits (up to `within`) for the exit; kill -9 after that.
    pub async fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// kill -9 and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("BENCH_KEEP_LOGS").is_some() {
            eprintln!("bot log kept in {}", self.log.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------ /proc

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process, in seconds.
pub fn proc_cpu_seconds(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU seconds of this process (the fake Discord and the harness).
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we give it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    if !ok {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Sum of CPU seconds of `pids` (those still alive).
pub fn cpu_of(pids: &[i32]) -> f64 {
    pids.iter().filter_map(|p| proc_cpu_seconds(*p)).sum()
}

/// CPU seconds all cores spent busy (not idle or waiting for I/O) since
/// boot, from `/proc/stat`.
pub fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    // user nice system idle iowait irq softirq steal …
    let busy: f64 = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse::<f64>().ok())
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    busy / clock_ticks()
}

/// `TcpExt: ListenOverflows` (system-wide): connections a full accept
/// queue turned away (the client retries its SYN after 1 s, 2 s, 4 s…).
pub fn listen_overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap_or_default();
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let names: Vec<&str> = names.split_whitespace().collect();
        let values: Vec<&str> = values.split_whitespace().collect();
        if let Some(i) = names.iter().position(|n| *n == "ListenOverflows") {
            return values.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    0
}

/// Established TCP connections whose remote port is `port` (IPv4, loopback).
pub fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[2]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

// ---------------------------------------------------------------- metrics

/// One scrape of `/metrics`: sample (name with labels) → value.
#[derive(Clone, Default)]
pub struct Metrics {
    samples: HashMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Metrics { samples }
    }

    pub fn get(&self, sample: &str) -> f64 {
        self.samples.get(sample).copied().unwrap_or(0.0)
    }

    /// Cumulative buckets `(le, count)` of a histogram, by `le`.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut out: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// The change of a histogram between two scrapes.
pub struct HistogramDelta {
    buckets: Vec<(f64, f64)>,
}

impl HistogramDelta {
    pub fn between(before: &Metrics, after: &Metrics, name: &str) -> HistogramDelta {
        let b = before.buckets(name);
        let a = after.buckets(name);
        let buckets = a
            .iter()
            .map(|(le, n)| {
                let old = b.iter().find(|(l, _)| l == le).map(|x| x.1).unwrap_or(0.0);
                (*le, n - old)
            })
            .collect();
        HistogramDelta { buckets }
    }

    pub fn count(&self) -> f64 {
        self.buckets.last().map(|b| b.1).unwrap_or(0.0)
    }

    /// The upper bound of the bucket holding quantile `q` (seconds): the
    /// histogram says "at most this".
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = (q * total).ceil().max(1.0);
        self.buckets.iter().find(|b| b.1 >= rank).map(|b| b.0)
    }
}

// ----------------------------------------------------------------- figures

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

// ------------------------------------------------------------ machine noise

/// A plain OS thread that sleeps 1 ms at a time and notes how late it woke:
/// what any process on this machine gets from its scheduler, measured
/// during the scenario. A stall it sees (the VM not running us, or every
/// core busy) delays the bot and the fake alike.
pub struct StallProbe {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Instant, f64)>>,
}

/// What a [`StallProbe`] saw: every wake-up's oversleep (ms, sorted) and
/// the stalls of [`StallProbe::STALL_MS`] or more (when they began, ms).
pub struct Noise {
    pub oversleep: Vec<f64>,
    pub stalls: Vec<(Instant, f64)>,
}

impl StallProbe {
    /// A wake-up this late or later counts as a stall.
    pub const STALL_MS: f64 = 5.0;

    pub fn start() -> StallProbe {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(1);
            let mut samples = Vec::with_capacity(200_000);
            while !flag.load(Ordering::Relaxed) {
                let before = Instant::now();
                std::thread::sleep(tick);
                let late = before.elapsed().saturating_sub(tick);
                samples.push((before + tick, late.as_secs_f64() * 1000.0));
            }
            samples
        });
        StallProbe { stop, thread }
    }

    pub fn finish(self) -> Noise {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let stalls = samples
            .iter()
            .filter(|(_, late)| *late >= Self::STALL_MS)
            .copied()
            .collect();
        Noise {
            oversleep: sorted(samples.into_iter().map(|(_, late)| late).collect()),
            stalls,
        }
    }
}

impl Noise {
    /// Whether a stall overlapped `[from, to]`.
    pub fn stalled_during(&self, from: Instant, to: Instant) -> bool {
        self.stalls.iter().any(|(at, ms)| {
            let end = *at + Duration::from_secs_f64(ms / 1000.0);
            *at <= to && end >= from
        })
    }
}
