//! The real `countdown` binary as a child process, pointed at the fake
//! Discord and the test's database: starting it (ready or not), its
//! `/readyz`, `/metrics` and log, and stopping it (signal, kill -9). Its log
//! goes to a file in a temp dir of its own and is printed when the test
//! fails (or always, with `TEST_LOG=1`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fake_discord::FakeDiscord;

use super::{eventually, TestDb};

pub const TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAx.Gtest.e2e-secret-token-never-logged";

/// A port nobody listens on at the moment.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How many lines of the bot's log contain `needle`.
pub fn count_lines(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

/// The value of `sample` (name with labels) in a `/metrics` text.
fn sample_in(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok())?
    })
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

    /// Starts the bot with an extra environment and waits for `/healthz`
    /// only (not for READY): for killing it during start-up.
    pub async fn start_unready(fake: &FakeDiscord, db: &TestDb, env: &[(&str, &str)]) -> Bot {
        let bot = Bot::start(fake, db, env);
        let _ = bot.get("/healthz").await;
        bot
    }

    pub async fn wait_readyz(&self) {
        self.wait_readyz_is(200).await;
    }

    /// Waits until `/readyz` answers `status`; returns its body.
    pub async fn wait_readyz_is(&self, status: u16) -> String {
        let answer = eventually(
            &format!("/readyz {status}"),
            Duration::from_secs(20),
            async || self.get("/readyz").await.ok(),
            |answer| answer.as_ref().is_some_and(|(s, _)| *s == status),
        )
        .await;
        answer.map(|(_, body)| body).unwrap_or_default()
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
        sample_in(&text, sample).unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
    }

    /// Polls `sample` until `pred` holds (15 s), returns the value. A bot
    /// that does not answer yet (starting, stopping) is polled again.
    pub async fn wait_metric(&self, sample: &str, pred: impl Fn(f64) -> bool) -> f64 {
        let value = eventually(
            sample,
            Duration::from_secs(15),
            async || match self.get("/metrics").await {
                Ok((200, text)) => sample_in(&text, sample),
                _ => None,
            },
            |value| value.is_some_and(&pred),
        )
        .await;
        value.unwrap_or(f64::NAN)
    }

    /// Waits until this instance is a standby blocked on the leader lock,
    /// not merely starting.
    pub async fn wait_standby(&self) {
        self.wait_metric("countdown_leader", |v| v == 0.0).await;
        self.wait_log("standby: another instance is the leader")
            .await;
        let (status, body) = self.get("/readyz").await.unwrap_or_default();
        assert_eq!(status, 503);
        assert!(body.contains("standby"), "{body}");
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log containing `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        count_lines(&self.logs(), needle)
    }

    /// Waits (20 s) until a line of the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        eventually(
            &format!("a log line with {needle:?}"),
            Duration::from_secs(20),
            async || self.log_count(needle),
            |n| *n > 0,
        )
        .await;
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

    /// Sends `signal` and waits up to `within` for the exit; returns how
    /// long the exit took (measured here, so polled every 10 ms).
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
