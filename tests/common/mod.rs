//! End-to-end harness: a fresh PostgreSQL database per test, the fake
//! Discord in-process, and the real `countdown` binary as a child process
//! pointed at both. Logs go to a file in the test's temp dir and are printed
//! when a test fails (set `TEST_LOG=1` to always print them).
#![allow(dead_code)]

pub mod schema;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fake_discord::{Author, FakeConfig, FakeDiscord, PostedMessage};
use tokio_postgres::NoTls;

pub const TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAx.Gtest.e2e-secret-token-never-logged";
pub const USER: u64 = 555_000_000_000_000_001;

/// Admin connection string of the machine's PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of the test's own, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!(
            "countdown_test_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
            .await
            .expect("PostgreSQL must run on 127.0.0.1:5432 (see README)");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("bad TEST_DATABASE_URL"),
        };
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// (status, last_sent, target) of every task, by id.
    pub async fn tasks(&self) -> Vec<(String, i32, i32)> {
        self.client()
            .await
            .query(
                "SELECT status, last_sent, target FROM tasks ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    /// Kinds of `command_errors`, by id.
    pub async fn command_error_kinds(&self) -> Vec<String> {
        self.client()
            .await
            .query("SELECT kind FROM command_errors ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Waits until `check` holds for the tasks table (the journal writes
    /// within a fraction of a second; this polls a database, not a clock).
    pub async fn wait_tasks(
        &self,
        what: &str,
        check: impl Fn(&[(String, i32, i32)]) -> bool,
    ) -> Vec<(String, i32, i32)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tasks = self.tasks().await;
            if check(&tasks) {
                return tasks;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {tasks:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_command_errors(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let kinds = self.command_error_kinds().await;
            if kinds.len() >= n {
                return kinds;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} command errors: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The real bot binary, running.
pub struct Bot {
    child: Option<Child>,
    pub metrics_addr: String,
    pub log: PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    use std::path::PathBuf;

    /// A temp dir removed on drop (the bot runs in it, so no stray config.env is read).
    pub struct Dir(pub PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(format!(
                "countdown-e2e-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Bot {
    /// Starts the bot against `fake` and `db` with extra environment.
    pub fn start(fake: &FakeDiscord, db: &TestDb, env: &[(&str, &str)]) -> Bot {
        let dir = tempdir::Dir::new();
        let log = dir.0.join("bot.log");
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_countdown"));
        cmd.current_dir(&dir.0)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DISCORD_TOKEN", TOKEN)
            .env("DATABASE_URL", &db.url)
            .env("DISCORD_API_URL", fake.base_url())
            .env("METRICS_ADDR", &metrics_addr)
            .env("RUST_LOG", "info,countdown=debug")
            .env("DISCORD_HTTP_TIMEOUT", "3s");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("cannot start the countdown binary");
        Bot {
            child: Some(child),
            metrics_addr,
            log,
            _dir: dir,
        }
    }

    /// Starts the bot and waits until the fake saw it READY and `/readyz` says 200.
    pub async fn start_ready(fake: &FakeDiscord, db: &TestDb, env: &[(&str, &str)]) -> Bot {
        let before = fake.identify_count();
        let bot = Bot::start(fake, db, env);
        // Not `wait_ready` alone: after a kill it may still see the old session.
        fake.wait_identify_count(before + 1, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("bot never identified: {e}\n{}", bot.logs()));
        fake.wait_ready(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("bot not ready: {e}\n{}", bot.logs()));
        bot.wait_readyz().await;
        bot
    }

    pub async fn wait_readyz(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz never 200:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Result<(u16, String), reqwest::Error> {
        let resp = reqwest::get(format!("http://{}{path}", self.metrics_addr)).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.expect("metrics").1
    }

    /// Value of one sample, e.g. `countdown_commands_total{command="count"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == sample).then(|| value.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// serenity deserialized everything the fake sent, and the token never
    /// reached the log.
    pub fn assert_logs_clean(&self) {
        let logs = self.logs();
        for bad in [
            "Err deserializing",
            "Unhandled error",
            "Could not decode",
            TOKEN,
        ] {
            assert!(!logs.contains(bad), "log contains {bad:?}:\n{logs}");
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` and waits up to `within` for the exit.
    pub fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        within: Duration,
    ) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("bot already stopped");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let sent = Instant::now();
        nix::sys::signal::kill(pid, signal).unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, sent.elapsed());
            }
            if sent.elapsed() > within {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "bot did not exit within {within:?} of {signal}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            eprintln!(
                "----- bot log {} -----\n{}",
                self.log.display(),
                self.logs()
            );
        }
    }
}

/// A fake Discord with the default world (8 guilds of 30 channels).
pub async fn fake() -> Fake {
    fake_with(FakeConfig::default()).await
}

/// A fake Discord with `config`. When the test ends, everything that
/// crossed the wire is held against Discord's published schemas.
pub async fn fake_with(config: FakeConfig) -> Fake {
    let fake = FakeDiscord::start(FakeConfig {
        record_exchanges: true,
        ..config
    })
    .await
    .unwrap();
    Fake(fake)
}

/// The fake Discord of a test (see [`fake_with`]).
pub struct Fake(pub FakeDiscord);

impl std::ops::Deref for Fake {
    type Target = FakeDiscord;

    fn deref(&self) -> &FakeDiscord {
        &self.0
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let violations = schema::violations(&self.0.exchanges());
        assert!(
            violations.is_empty(),
            "what crossed the wire breaks Discord's published schemas:\n{}",
            violations.join("\n")
        );
    }
}

/// `<@bot> text`
pub fn mention(fake: &FakeDiscord, text: &str) -> String {
    format!("<@{}> {text}", fake.bot_user_id())
}

/// Channel `i` (0-based) of guild `g` (0-based) of the default world.
pub fn channel(fake: &FakeDiscord, g: usize, i: usize) -> u64 {
    fake.guilds()[g].channels[i]
}

pub async fn say(fake: &FakeDiscord, channel_id: u64, text: &str) -> u64 {
    fake.inject_message(channel_id, Author::user(USER), text)
        .await
        .unwrap()
}

pub async fn wait_messages(fake: &FakeDiscord, channel_id: u64, n: usize) -> Vec<PostedMessage> {
    fake.wait_for_messages(channel_id, n, Duration::from_secs(30))
        .await
        .unwrap()
}

pub fn contents(messages: &[PostedMessage]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

/// The numbers (not replies) posted in a channel.
pub fn numbers(messages: &[PostedMessage]) -> Vec<u32> {
    messages
        .iter()
        .filter(|m| m.message_reference.is_none())
        .filter_map(|m| m.content.parse().ok())
        .collect()
}

pub fn one_to(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

// ------------------------------------------------------------------------
// Fault-suite helpers (tests/faults_*.rs).

/// How many lines of the bot's log contain `needle`.
pub fn count_lines(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

impl Bot {
    /// Starts the bot with an extra environment and waits for `/healthz`
    /// only (not for READY): for killing it during start-up.
    pub async fn start_unready(fake: &FakeDiscord, db: &TestDb, env: &[(&str, &str)]) -> Bot {
        let bot = Bot::start(fake, db, env);
        let _ = bot.get("/healthz").await;
        bot
    }

    /// Lines of the log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        count_lines(&self.logs(), needle)
    }

    /// Polls `sample` until `pred` holds (15 s), returns the value. Another
    /// process's state has no event to await; a bot that does not answer
    /// yet (starting, stopping) is polled again.
    pub async fn wait_metric(&self, sample: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let value = match self.get("/metrics").await {
                Ok((200, text)) => text.lines().find_map(|l| {
                    let (name, v) = l.rsplit_once(' ')?;
                    (name == sample).then(|| v.parse::<f64>().ok())?
                }),
                _ => None,
            };
            if let Some(v) = value.filter(|v| pred(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting on {sample} (last {value:?}):\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until this instance is a standby blocked on the leader lock,
    /// not merely starting.
    pub async fn wait_standby(&self) {
        self.wait_metric("countdown_leader", |v| v == 0.0).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self
            .logs()
            .contains("standby: another instance is the leader")
        {
            assert!(
                Instant::now() < deadline,
                "never became a standby:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = self.get("/readyz").await.unwrap_or_default();
        assert_eq!(status, 503);
        assert!(body.contains("standby"), "{body}");
    }
}

/// Says `stop` in `channel`, waits for "Stopped at …" and returns the last
/// number posted, checking the numbers before it were 1..=it, once each.
pub async fn stop_and_wait(fake: &FakeDiscord, channel: u64) -> u32 {
    say(fake, channel, &mention(fake, "stop")).await;
    let msgs = fake
        .wait_for_messages_matching(channel, Duration::from_secs(10), |m| {
            m.content.starts_with("Stopped at")
        })
        .await
        .unwrap();
    let stopped_at = *numbers(&msgs).last().unwrap();
    assert_eq!(numbers(&msgs), one_to(stopped_at));
    stopped_at
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message the bot ever created pinged nobody: `allowed_mentions`
/// present with `parse: []`, no user or role allowed, no reply ping.
pub fn assert_no_pings(fake: &FakeDiscord) {
    let all = fake.all_messages();
    for m in &all {
        let allowed = m
            .allowed_mentions
            .as_ref()
            .unwrap_or_else(|| panic!("message {:?} has no allowed_mentions", m.content));
        assert_eq!(
            allowed["parse"],
            serde_json::json!([]),
            "message {:?}: {allowed}",
            m.content
        );
        for list in ["users", "roles"] {
            let empty = allowed
                .get(list)
                .is_none_or(|v| v.as_array().is_some_and(|a| a.is_empty()));
            assert!(empty, "message {:?} allows {list}: {allowed}", m.content);
        }
        assert_ne!(
            allowed.get("replied_user"),
            Some(&serde_json::json!(true)),
            "message {:?} pings the replied user",
            m.content
        );
    }
}

/// The largest number of `times` (milliseconds) inside any window of `window_ms`.
pub fn max_in_window(times: &[u64], window_ms: u64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + window_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Gaps in milliseconds between consecutive messages.
pub fn gaps_ms(messages: &[PostedMessage]) -> Vec<u64> {
    messages
        .windows(2)
        .map(|p| p[1].at.duration_since(p[0].at).as_millis() as u64)
        .collect()
}

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

// ------------------------------------------------------------------------
// Interactions (tests/e2e_slash.rs).

/// Dispatches the slash command `name` from `author` in `channel_id` and
/// waits for the bot's answer (accepted or not: check `accepted()`).
pub async fn slash(
    fake: &FakeDiscord,
    channel_id: u64,
    author: Author,
    name: &str,
    options: serde_json::Value,
) -> fake_discord::InteractionResponse {
    let sent = fake
        .slash_command(channel_id, author, name, options)
        .unwrap();
    fake.wait_interaction_response(sent.id, Duration::from_secs(10))
        .await
        .unwrap()
}

/// `/count n:<n>` from `author`.
pub async fn slash_count(
    fake: &FakeDiscord,
    channel_id: u64,
    author: Author,
    n: i64,
) -> fake_discord::InteractionResponse {
    let options = serde_json::json!([{ "name": "n", "type": 4, "value": n }]);
    slash(fake, channel_id, author, "count", options).await
}

/// Presses the button `custom_id` of message `message_id` and waits for the answer.
pub async fn press(
    fake: &FakeDiscord,
    channel_id: u64,
    author: Author,
    message_id: u64,
    custom_id: &str,
) -> fake_discord::InteractionResponse {
    let sent = fake
        .press_button(channel_id, author, message_id, custom_id)
        .unwrap();
    fake.wait_interaction_response(sent.id, Duration::from_secs(10))
        .await
        .unwrap()
}

/// The custom ids of the buttons on a message, in order.
pub fn button_ids(message: &PostedMessage) -> Vec<String> {
    message
        .components
        .iter()
        .flat_map(|rows| rows.as_array().cloned().unwrap_or_default())
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["custom_id"].as_str().map(str::to_owned))
        .collect()
}

/// An interaction answer pinged nobody and said `text` (exactly).
pub fn assert_answer(answer: &fake_discord::InteractionResponse, ephemeral: bool, text: &str) {
    assert!(answer.accepted(), "refused by the fake: {answer:?}");
    assert_eq!(answer.kind, 4, "{answer:?}");
    assert_eq!(answer.ephemeral(), ephemeral, "{answer:?}");
    assert_eq!(answer.content.as_deref(), Some(text), "{answer:?}");
    assert!(
        answer.elapsed < Duration::from_secs(3),
        "answered after {:?}",
        answer.elapsed
    );
    let allowed = answer
        .allowed_mentions
        .as_ref()
        .unwrap_or_else(|| panic!("no allowed_mentions: {answer:?}"));
    assert_eq!(allowed["parse"], serde_json::json!([]), "{answer:?}");
}
