//! The ops stack against the real bot: a real Prometheus (Debian's binary,
//! or `PROMETHEUS_BIN`) runs a test copy of `prometheus/prometheus.yml`
//! (target: the bot's test port; intervals: 1 s) with the real rule files,
//! scrapes the real bot while it counts, refuses and stops; then every PromQL
//! expression of the Grafana dashboard and every alert rule is evaluated
//! through Prometheus' HTTP API.
//!
//! It fails when a dashboard expression returns no series, names a metric the
//! bot does not export, or reads a counter without rate()/increase(); when an
//! alert rule does not load, names an unknown metric, or fires on a healthy
//! bot; and when CountdownBotDown does not go pending once the bot is killed.
//! A missing `prometheus` binary fails the test (it is installed by `.ci/run`).
//!
//! A second test follows an alert to a person: the bot's target vanishes
//! from discovery, the stack's Alertmanager (Debian's binary, or
//! `ALERTMANAGER_BIN`) posts `CountdownBotAbsent` to a Discord webhook of
//! the fake, and the resolved message when the bot is back.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// What Grafana's `$__rate_interval`, `$__interval` and `$__range` become
/// here. With a 1 s scrape, a minute covers the whole test.
const RATE_INTERVAL: &str = "1m";
const INTERVAL: &str = "15s";
const RANGE: &str = "5m";
/// What the dashboard's variable `$instance` becomes: its "All" value.
const ALL_INSTANCES: &str = ".*";

/// Counters a dashboard panel may read as they are: per process and
/// bounded, and mostly counted before the process's first scrape, where
/// increase() cannot see them (the slash-command registration runs at the
/// start of a leadership term).
const RAW_COUNTERS: [&str; 1] = ["countdown_command_registration_failures_total"];

/// Metrics Prometheus makes itself for each target; alert rules may use them.
const SYNTHETIC: [&str; 1] = ["up"];

/// Samples of an instant query: (labels, value).
type Samples = Vec<(BTreeMap<String, String>, f64)>;

/// An alerting rule as Prometheus loaded it (`/api/v1/rules`).
#[derive(Debug)]
struct AlertRule {
    name: String,
    query: String,
    health: String,
    state: String,
    last_error: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `PROMETHEUS_BIN`, else `prometheus` on PATH; no binary is a failure.
fn prometheus_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PROMETHEUS_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "PROMETHEUS_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no `prometheus` binary on PATH: this test needs a real Prometheus. \
                 Install Debian's package (`apt-get install prometheus`, as .ci/run does) \
                 or set PROMETHEUS_BIN=/path/to/prometheus"
            )
        })
}

/// The repository's prometheus.yml, pointed at the test bot: the DNS
/// discovery of the service `bot` becomes a static target `bot_addr`, Prometheus' own target its test port, every
/// interval 1 s, and the rule files are the repository's (absolute path).
/// Job names, labels and everything else stay as they are.
fn test_config(setup: &Setup, own_addr: &str) -> String {
    let original = std::fs::read_to_string(repo().join("prometheus/prometheus.yml")).unwrap();
    let rules_dir = &setup.rules_dir;
    let mut swapped = BTreeMap::<&str, usize>::new();
    let mut out = String::new();
    for line in original.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let trimmed = line.trim_start();
        let key = [
            "scrape_interval:",
            "scrape_timeout:",
            "evaluation_interval:",
        ]
        .into_iter()
        .find(|key| trimmed.starts_with(key));
        let line = if let Some(key) = key {
            *swapped.entry(key).or_default() += 1;
            format!("{indent}{key} 1s")
        } else if trimmed == "- rules/*.yml" {
            *swapped.entry("rule_files").or_default() += 1;
            format!("{indent}- {}/*.yml", rules_dir.display())
        } else if trimmed == "dns_sd_configs:" {
            *swapped.entry("dns_sd_configs").or_default() += 1;
            match &setup.bot {
                Discovery::Static(_) => format!("{indent}static_configs:"),
                Discovery::File(_) => format!("{indent}file_sd_configs:"),
            }
        } else if trimmed == "- names: [\"bot\"]" {
            *swapped.entry("bot").or_default() += 1;
            match &setup.bot {
                Discovery::Static(addr) => format!("{indent}- targets: [\"{addr}\"]"),
                Discovery::File(path) => format!("{indent}- files: [\"{}\"]", path.display()),
            }
        } else if trimmed == "refresh_interval: 15s" && matches!(setup.bot, Discovery::File(_)) {
            format!("{indent}refresh_interval: 1s")
        } else if ["type: A", "port: 8080", "refresh_interval: 15s"].contains(&trimmed) {
            continue;
        } else if trimmed == "- targets: [\"alertmanager:9093\"]" && setup.alertmanager.is_some() {
            *swapped.entry("alertmanager").or_default() += 1;
            let addr = setup.alertmanager.as_deref().unwrap_or_default();
            format!("{indent}- targets: [\"{addr}\"]")
        } else if line.contains("\"localhost:9090\"") {
            *swapped.entry("localhost:9090").or_default() += 1;
            line.replace("\"localhost:9090\"", &format!("\"{own_addr}\""))
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    for key in [
        "scrape_interval:",
        "evaluation_interval:",
        "rule_files",
        "dns_sd_configs",
        "bot",
        "localhost:9090",
    ] {
        assert!(
            swapped.contains_key(key),
            "prometheus/prometheus.yml changed shape: no {key} to swap for the test \
             (update test_config in tests/e2e_prometheus.rs)"
        );
    }
    assert_eq!(swapped["bot"], 1, "one bot target expected");
    if setup.alertmanager.is_some() {
        assert!(
            swapped.contains_key("alertmanager"),
            "prometheus/prometheus.yml changed shape: no alertmanager target to swap"
        );
    }
    out
}

/// Where the test's Prometheus finds the bot.
enum Discovery {
    /// A fixed target.
    Static(String),
    /// A file of targets (`file_sd_configs`), which the test rewrites: an
    /// empty list is what Docker's DNS gives for a stopped container.
    File(PathBuf),
}

/// What a test's copy of `prometheus.yml` points at.
struct Setup {
    bot: Discovery,
    rules_dir: PathBuf,
    alertmanager: Option<String>,
}

/// A server of this test (Prometheus, Alertmanager): a temp dir of its own
/// (with `data/` and its log), killed by its PID and the dir removed on
/// drop; its log is printed when the test fails.
struct Daemon {
    name: &'static str,
    child: Option<Child>,
    dir: PathBuf,
    /// Where it listens (`127.0.0.1:<free port>`).
    addr: String,
}

impl Daemon {
    /// A temp dir for `name`, with `data/` in it, and a free address.
    fn prepare(name: &'static str) -> (PathBuf, String) {
        let dir = std::env::temp_dir().join(format!(
            "countdown-{name}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        (dir, format!("127.0.0.1:{}", free_port()))
    }

    fn spawn(
        name: &'static str,
        bin: &Path,
        dir: PathBuf,
        addr: String,
        args: &[String],
    ) -> Daemon {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Daemon {
            name,
            child: Some(child),
            dir,
            addr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// Waits for `GET /-/ready` (both servers have it).
    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let url = format!("http://{}/-/ready", self.addr);
        eventually(
            &format!("{} ready", self.name),
            Duration::from_secs(20),
            async || {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("{} exited with {status}", self.name);
                }
                let answer = http.get(&url).send().await;
                answer.ok().map(|r| r.status().as_u16())
            },
            |status| matches!(status, Some(200..=299)),
        )
        .await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals this child's PID only.
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Prometheus server of this test.
struct Prometheus {
    daemon: Daemon,
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(bin: &Path, bot_addr: &str) -> Prometheus {
        Self::start_with(
            bin,
            &Setup {
                bot: Discovery::Static(bot_addr.to_owned()),
                rules_dir: repo().join("prometheus/rules"),
                alertmanager: None,
            },
        )
    }

    fn start_with(bin: &Path, setup: &Setup) -> Prometheus {
        let (dir, addr) = Daemon::prepare("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, test_config(setup, &addr)).unwrap();
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
        ];
        Prometheus {
            base: format!("http://{addr}"),
            daemon: Daemon::spawn("prometheus", bin, dir, addr, &args),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    fn log(&self) -> String {
        self.daemon.log()
    }

    async fn wait_ready(&mut self) {
        self.daemon.wait_ready(&self.http).await;
    }

    /// `data` of a successful API answer; any error fails the test.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} {query:?}: {e}"));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["status"], "success",
            "GET {path} {query:?} failed: {body}"
        );
        body["data"].clone()
    }

    /// An instant query: its samples as (labels, value).
    async fn query(&self, expr: &str) -> Samples {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                        .collect();
                    (labels, parse_value(&s["value"][1]))
                })
                .collect(),
            Some("scalar") => vec![(BTreeMap::new(), parse_value(&data["result"][1]))],
            other => panic!("{expr}: unexpected result type {other:?}: {data}"),
        }
    }

    /// Polls `expr` until its single sample satisfies `check`.
    async fn wait_value(&self, expr: &str, check: impl Fn(f64) -> bool) {
        eventually(
            expr,
            Duration::from_secs(20),
            async || self.query(expr).await,
            |samples| matches!(samples.as_slice(), [(_, v)] if check(*v)),
        )
        .await;
    }

    /// The alerting rules Prometheus loaded.
    async fn alert_rules(&self) -> Vec<AlertRule> {
        let data = self.api("/api/v1/rules", &[("type", "alert")]).await;
        let mut rules = Vec::new();
        for group in data["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                let field = |k: &str| rule[k].as_str().unwrap_or_default().to_owned();
                rules.push(AlertRule {
                    name: field("name"),
                    query: field("query"),
                    health: field("health"),
                    state: field("state"),
                    last_error: field("lastError"),
                });
            }
        }
        rules
    }

    /// Active (pending or firing) alerts: (name, state).
    async fn alerts(&self) -> Vec<(String, String)> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap().to_owned(),
                    a["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str().unwrap() {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap(),
    }
}

/// Sample names (`name` of `name{labels} value`) of the Prometheus text format.
fn exported_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            l.split(|c: char| c == '{' || c.is_whitespace())
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Index just past the string literal starting at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    let quote = c[i];
    i += 1;
    while i < c.len() && c[i] != quote {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// Index just past the bracket closing the one at `i`, strings skipped.
fn skip_balanced(c: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => {
                i = skip_string(c, i);
                continue;
            }
            ch if ch == open => depth += 1,
            ch if ch == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!(
        "unbalanced {open}{close} in {}",
        c.iter().collect::<String>()
    );
}

/// The metric names of a PromQL expression, each with the function call it
/// sits in directly (`rate`, `increase`, …; "" for none or plain parentheses).
/// Strings, label matchers, ranges, numbers, Grafana variables, function and
/// aggregation names, keywords and grouping label lists are skipped.
fn metric_names(expr: &str) -> Vec<(String, String)> {
    const AGGREGATIONS: [&str; 14] = [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];

    let c: Vec<char> = expr.chars().collect();
    let ident = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    let mut names = Vec::new();
    let mut calls: Vec<String> = Vec::new();
    let mut pending_call: Option<String> = None;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => i = skip_string(&c, i),
            '{' => i = skip_balanced(&c, i, '{', '}'),
            '[' => i = skip_balanced(&c, i, '[', ']'),
            '(' => {
                calls.push(pending_call.take().unwrap_or_default());
                i += 1;
            }
            ')' => {
                calls.pop();
                i += 1;
            }
            '$' => {
                i += 1;
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
            }
            ch if ch.is_ascii_digit() || ch == '.' => {
                while i < c.len() && (ident(c[i]) || c[i] == '.') {
                    i += 1;
                }
            }
            ch if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' => {
                let start = i;
                while i < c.len() && ident(c[i]) {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let mut j = i;
                while j < c.len() && c[j].is_whitespace() {
                    j += 1;
                }
                let before_paren = c.get(j) == Some(&'(');
                let lower = word.to_ascii_lowercase();
                if GROUPING.contains(&lower.as_str()) {
                    if before_paren {
                        i = skip_balanced(&c, j, '(', ')');
                    }
                } else if before_paren {
                    pending_call = Some(word);
                } else if !AGGREGATIONS.contains(&lower.as_str())
                    && !KEYWORDS.contains(&lower.as_str())
                {
                    names.push((word, calls.last().cloned().unwrap_or_default()));
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// (panel title, refId, expr) of every query of every panel, rows included.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let ref_id = target["refId"].as_str().unwrap_or_default().to_owned();
                    out.push((title.clone(), ref_id, expr.to_owned()));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__interval", INTERVAL)
        .replace("$__range", RANGE)
        .replace("$instance", ALL_INSTANCES)
}

fn is_counter(name: &str) -> bool {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

#[test]
fn the_metric_name_lexer_reads_promql() {
    let names = |e: &str| metric_names(e);
    assert_eq!(
        names(r#"sum by (le) (rate(a_bucket{kind="x",le=~"1|2"}[$__rate_interval])) * 60"#),
        [("a_bucket".to_owned(), "rate".to_owned())]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum(increase(b_bucket[5m])) by (le)) > 0.5"),
        [("b_bucket".to_owned(), "increase".to_owned())]
    );
    assert_eq!(
        names("time() - max(process_start_time_seconds{job=\"countdown\"})"),
        [("process_start_time_seconds".to_owned(), "max".to_owned())]
    );
    assert_eq!(
        names("x / on (job) group_left y offset 5m and z == bool 1e3"),
        [
            ("x".to_owned(), String::new()),
            ("y".to_owned(), String::new()),
            ("z".to_owned(), String::new())
        ]
    );
    assert_eq!(names("up == 0"), [("up".to_owned(), String::new())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_rules_evaluate_in_a_real_prometheus_scraping_the_real_bot() {
    let bin = prometheus_bin();
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;
    let mut prom = Prometheus::start(&bin, &bot.metrics_addr);
    prom.wait_ready().await;
    prom.wait_value(r#"up{job="countdown"}"#, |v| v == 1.0)
        .await;

    // --- what a maintainer's dashboard should show ---------------------------
    let a = channel(&fake, 0, 0);
    let b = channel(&fake, 0, 1);
    let c = channel(&fake, 0, 2);
    let d = channel(&fake, 1, 0);
    say(&fake, a, &mention(&fake, "count to 3")).await;
    wait_messages(&fake, a, 1).await;
    say(&fake, a, &mention(&fake, "count to 2")).await; // busy_channel
    say(&fake, b, &mention(&fake, "count to 0")).await; // out_of_range
    say(&fake, b, &mention(&fake, "count to abc")).await; // not_a_number
    say(&fake, c, &mention(&fake, "count to 30")).await;
    wait_messages(&fake, c, 2).await;
    say(&fake, c, &mention(&fake, "stop")).await; // stopped, cancelled
    say(&fake, d, &mention(&fake, "stop")).await; // not_counting
    say(&fake, d, &mention(&fake, "help")).await;

    assert_eq!(numbers(&wait_messages(&fake, a, 4).await), [1, 2, 3]); // 3 numbers, 1 reply
    wait_messages(&fake, b, 2).await;
    wait_messages(&fake, d, 2).await;
    let tasks = db
        .wait_tasks("one finished and one stopped countdown", |t| {
            t.len() == 2 && t.iter().all(|r| r.0 != "running")
        })
        .await;
    assert_eq!(tasks[0], ("finished".to_owned(), 3, 3));
    assert_eq!(tasks[1].0, "stopped");
    // The numbers posted in c, then "Stopped at k of 30."
    let stopped_at = usize::try_from(tasks[1].1).unwrap();
    let in_c = wait_messages(&fake, c, stopped_at + 1).await;
    assert!(
        in_c.last().unwrap().content.starts_with("Stopped at"),
        "{:?}",
        contents(&in_c)
    );

    // --- Prometheus has scraped the final values ------------------------------
    // Every countdown_* sample of the bot equals what Prometheus stores (read
    // from the bot each round: a last reply may still be on its way).
    eventually(
        "Prometheus to catch up with the bot",
        Duration::from_secs(20),
        async || {
            let metrics = bot.metrics().await;
            let mut samples = 0;
            let mut behind = Vec::new();
            for line in metrics.lines().filter(|l| l.starts_with("countdown_")) {
                let (sample, value) = line.rsplit_once(' ').unwrap();
                let value: f64 = value.parse().unwrap();
                samples += 1;
                let got = prom.query(sample).await;
                if !matches!(got.as_slice(), [(_, v)] if *v == value) {
                    behind.push(format!("{sample} = {value}, Prometheus has {got:?}"));
                }
            }
            assert!(samples > 30, "too few samples:\n{metrics}");
            behind
        },
        Vec::is_empty,
    )
    .await;

    // --- every dashboard query ---------------------------------------------------
    let exported = exported_names(&bot.metrics().await);
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("grafana/dashboards/countdown.json")).unwrap(),
    )
    .expect("grafana/dashboards/countdown.json is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(
        queries.len() >= 20,
        "only {} dashboard queries",
        queries.len()
    );
    let mut problems = Vec::new();
    let mut results: BTreeMap<(String, String), Samples> = BTreeMap::new();
    for (title, ref_id, expr) in &queries {
        let names = metric_names(expr);
        if names.is_empty() {
            problems.push(format!("{title}/{ref_id}: no metric in `{expr}`"));
        }
        for (name, call) in &names {
            if !exported.contains(name) {
                problems.push(format!(
                    "{title}/{ref_id}: `{name}` is not exported by the bot (`{expr}`)"
                ));
            }
            if is_counter(name)
                && !RAW_COUNTERS.contains(&name.as_str())
                && !["rate", "increase", "irate"].contains(&call.as_str())
            {
                problems.push(format!(
                    "{title}/{ref_id}: counter `{name}` is read without rate()/increase() (`{expr}`)"
                ));
            }
        }
        for window in expr.split('[').skip(1) {
            let window = window.split(']').next().unwrap();
            if !["$__rate_interval", "$__range"].contains(&window) {
                problems.push(format!(
                    "{title}/{ref_id}: range [{window}] is not $__rate_interval or $__range"
                ));
            }
        }
        let samples = prom.query(&grafana_to_promql(expr)).await;
        if samples.is_empty() {
            problems.push(format!("{title}/{ref_id}: no series for `{expr}`"));
        }
        results.insert((title.clone(), ref_id.clone()), samples);
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );

    // The panels show what happened.
    let value = |title: &str, ref_id: &str, label: Option<(&str, &str)>| -> f64 {
        let samples = results
            .get(&(title.to_owned(), ref_id.to_owned()))
            .unwrap_or_else(|| panic!("no panel {title:?} query {ref_id}"));
        let found: Vec<f64> = samples
            .iter()
            .filter(|(labels, _)| {
                label.is_none_or(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
            })
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{title}/{ref_id} {label:?}: {samples:?}");
        found[0]
    };
    let per_minute = "Commands per minute, by command";
    for command in ["count", "stop", "help"] {
        assert!(
            value(per_minute, "A", Some(("command", command))) > 0.0,
            "{command}"
        );
    }
    let by_source = "Commands per minute, by source";
    assert!(value(by_source, "A", Some(("source", "mention"))) > 0.0);
    assert_eq!(value(by_source, "A", Some(("source", "button"))), 0.0);
    let invalid = "Invalid commands per minute, by reason";
    assert!(value(invalid, "A", Some(("reason", "out_of_range"))) > 0.0);
    assert!(value(invalid, "A", Some(("reason", "not_a_number"))) > 0.0);
    assert_eq!(
        value(invalid, "A", Some(("reason", "unknown_command"))),
        0.0
    );
    let refused = "Refused commands per minute, by reason";
    assert!(value(refused, "A", Some(("reason", "busy_channel"))) > 0.0);
    assert!(value(refused, "A", Some(("reason", "not_counting"))) > 0.0);
    assert_eq!(value(refused, "A", Some(("reason", "busy_bot"))), 0.0);
    assert!(value("Cancellations per minute", "A", None) > 0.0);
    let ended = "Countdowns ended per minute, by status";
    assert!(value(ended, "A", Some(("status", "finished"))) > 0.0);
    assert!(value(ended, "A", Some(("status", "stopped"))) > 0.0);
    assert_eq!(value(ended, "A", Some(("status", "failed"))), 0.0);
    assert_eq!(value("Resumed countdowns per minute", "A", None), 0.0);
    assert_eq!(value("Active countdowns", "A", None), 0.0);
    assert_eq!(value("Gateway ready", "A", None), 1.0);
    assert_eq!(value("Rate budget", "A", None), 50.0);
    assert!(value("Commands in range", "A", None) > 0.0);
    assert_eq!(value("429s in range", "A", None), 0.0);
    let sent = "Messages sent per second, against the rate budget";
    assert!(value(sent, "A", None) > 0.0, "numbers");
    assert!(value(sent, "B", None) > 0.0, "replies");
    assert_eq!(value(sent, "C", None), 50.0, "budget");
    for (ref_id, quantile) in [("A", "p50"), ("B", "p99")] {
        let late = value("Tick lateness p50 / p99", ref_id, None);
        assert!(
            late.is_finite() && (0.0..1.0).contains(&late),
            "{quantile} = {late}"
        );
    }
    let requested = &results[&(
        "Requested N, over the time range".to_owned(),
        "A".to_owned(),
    )];
    assert!(
        requested
            .iter()
            .any(|(l, v)| l.get("le").map(String::as_str) == Some("+Inf") && *v > 0.0),
        "{requested:?}"
    );
    let send_errors = &results[&("Send errors per second, by kind".to_owned(), "A".to_owned())];
    assert!(send_errors.len() >= 6 && send_errors.iter().all(|(_, v)| *v == 0.0));
    assert_eq!(value("429s per minute", "A", None), 0.0);
    assert_eq!(value("429s per minute", "B", None), 0.0, "edge races");
    assert_eq!(value("Database errors per minute", "A", None), 0.0);
    assert!(value("Memory", "A", None) > 1e6);
    assert!(value("Uptime", "A", None) > 0.0);
    assert_eq!(value("Leaders", "A", None), 1.0);

    // --- every alert rule ----------------------------------------------------------
    let mut declared = Vec::new();
    for entry in std::fs::read_dir(repo().join("prometheus/rules")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        declared.extend(
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("- alert:"))
                .map(|name| name.trim().to_owned()),
        );
    }
    declared.sort();
    assert!(declared.len() >= 6, "alerts declared: {declared:?}");

    // Evaluated at least once since the final scrape: health "ok".
    let rules = eventually(
        "every alert rule loaded and healthy",
        Duration::from_secs(20),
        async || prom.alert_rules().await,
        |rules| rules.len() == declared.len() && rules.iter().all(|r| r.health == "ok"),
    )
    .await;
    let mut loaded: Vec<String> = rules.iter().map(|r| r.name.clone()).collect();
    loaded.sort();
    assert_eq!(
        loaded, declared,
        "Prometheus loaded other alerts than the rule files declare"
    );
    for rule in &rules {
        let AlertRule { name, query, .. } = rule;
        assert!(rule.last_error.is_empty(), "{name}: {}", rule.last_error);
        let names = metric_names(query);
        assert!(!names.is_empty(), "{name}: no metric in `{query}`");
        for (metric, _) in &names {
            assert!(
                exported.contains(metric) || SYNTHETIC.contains(&metric.as_str()),
                "{name}: `{metric}` is not exported by the bot (`{query}`)"
            );
        }
        // Evaluates (an alert's expression is empty while nothing is wrong).
        prom.query(query).await;
        assert_eq!(
            rule.state, "inactive",
            "{name} is {} on a healthy bot",
            rule.state
        );
    }
    let active = prom.alerts().await;
    assert!(active.is_empty(), "alerts on a healthy bot: {active:?}");

    // --- the bot goes away: CountdownBotDown goes pending ---------------------------
    bot.kill9();
    eventually(
        "CountdownBotDown active after the bot was killed",
        Duration::from_secs(20),
        async || prom.alerts().await,
        |alerts| alerts.iter().any(|(name, _)| name == "CountdownBotDown"),
    )
    .await;
}

/// `ALERTMANAGER_BIN`, else Debian's `prometheus-alertmanager` or
/// `alertmanager` on PATH; none is a failure (`.ci/run` installs it).
fn alertmanager_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ALERTMANAGER_BIN") {
        return PathBuf::from(bin);
    }
    for name in ["prometheus-alertmanager", "alertmanager"] {
        let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file());
        if let Some(path) = found {
            return path;
        }
    }
    panic!(
        "no alertmanager binary: apt-get install prometheus-alertmanager, or set ALERTMANAGER_BIN"
    );
}

/// The stack's `alertmanager.yml`, pointed at `webhook_url` and with
/// intervals of seconds. Debian's Alertmanager (0.25) has no
/// `webhook_url_file` (added in 0.27), so the file's URL goes inline; both
/// post the same body. Everything else (route, grouping, inhibitions, the
/// Discord message) is the stack's.
fn alertmanager_test_config(webhook_url: &str) -> String {
    let original =
        std::fs::read_to_string(repo().join("prometheus/alertmanager/alertmanager.yml")).unwrap();
    let mut swapped = 0;
    let out: Vec<String> = original
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let trimmed = line.trim_start();
            let mut swap = |to: String| {
                swapped += 1;
                to
            };
            if trimmed.starts_with("- webhook_url_file:") {
                swap(format!("{indent}- webhook_url: {webhook_url}"))
            } else if trimmed.starts_with("group_wait:") {
                swap(format!("{indent}group_wait: 1s"))
            } else if trimmed.starts_with("group_interval:") {
                swap(format!("{indent}group_interval: 2s"))
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_eq!(
        swapped, 3,
        "prometheus/alertmanager/alertmanager.yml changed shape (update alertmanager_test_config)"
    );
    out.join("\n")
}

/// The bot's alert rules with every `for:` cut to 2 s: what the rules say
/// stays (promtool's unit tests hold the durations), the test does not
/// wait minutes for it.
fn fast_rules(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(repo().join("prometheus/rules")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let fast: Vec<String> = text
            .lines()
            .map(|line| {
                let indent = &line[..line.len() - line.trim_start().len()];
                if line.trim_start().starts_with("for:") {
                    format!("{indent}for: 2s")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        std::fs::write(dir.join(path.file_name().unwrap()), fast.join("\n")).unwrap();
    }
}

/// An Alertmanager of this test.
struct Alertmanager {
    daemon: Daemon,
}

impl Alertmanager {
    async fn start(webhook_url: &str) -> Alertmanager {
        let (dir, addr) = Daemon::prepare("alertmanager");
        let config = dir.join("alertmanager.yml");
        std::fs::write(&config, alertmanager_test_config(webhook_url)).unwrap();
        let args = [
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address={addr}"),
            // No cluster: no gossip port, nothing leaves 127.0.0.1.
            "--cluster.listen-address=".to_owned(),
        ];
        let mut daemon = Daemon::spawn("alertmanager", &alertmanager_bin(), dir, addr, &args);
        daemon.wait_ready(&reqwest::Client::new()).await;
        Alertmanager { daemon }
    }

    fn log(&self) -> String {
        self.daemon.log()
    }
}

/// The embed titles Alertmanager posted to the Discord webhook.
fn titles(messages: &[fake_discord::WebhookMessage]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m.body["embeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["title"].as_str().map(str::to_owned))
        .collect()
}

/// The whole path to a person: the bot is killed and its target vanishes
/// from discovery (what Docker's DNS does for a stopped container), the
/// stack's rules fire `CountdownBotAbsent`, the stack's Alertmanager posts
/// it to a Discord channel's webhook (the fake's, held against Discord's
/// schema like every request); the bot comes back, and the resolved
/// message follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_gone_from_discovery_reaches_a_discord_channel_and_so_does_its_return() {
    let prometheus = prometheus_bin();
    let fake = fake().await;
    let alerts_channel = channel(&fake, 7, 29);
    let webhook = fake.create_webhook(alerts_channel);
    let am = Alertmanager::start(&webhook).await;
    let db = TestDb::create().await;
    let mut bot = Bot::start_ready(&fake, &db, &[]).await;

    let dir = std::env::temp_dir().join(format!(
        "countdown-alerting-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    fast_rules(&dir.join("rules"));
    let targets = dir.join("bot-targets.json");
    let discover = |addr: Option<&str>| {
        let list = match addr {
            Some(a) => serde_json::json!([{ "targets": [a] }]),
            None => serde_json::json!([]),
        };
        // Written whole, then renamed: Prometheus never reads half a file.
        let tmp = dir.join("bot-targets.json.tmp");
        std::fs::write(&tmp, list.to_string()).unwrap();
        std::fs::rename(&tmp, &targets).unwrap();
    };
    discover(Some(&bot.metrics_addr));
    let mut prom = Prometheus::start_with(
        &prometheus,
        &Setup {
            bot: Discovery::File(targets.clone()),
            rules_dir: dir.join("rules"),
            alertmanager: Some(am.daemon.addr.clone()),
        },
    );
    prom.wait_ready().await;
    prom.wait_value(r#"up{job="countdown"}"#, |v| v == 1.0)
        .await;
    assert!(
        fake.webhook_messages().is_empty(),
        "a healthy bot pages nobody: {:?}",
        titles(&fake.webhook_messages())
    );

    // The container stops: the process is gone, and so is its target.
    bot.kill9();
    discover(None);
    let fired = fake
        .wait_webhook_messages(Duration::from_secs(60), |m| {
            titles(m)
                .iter()
                .any(|t| t.contains("[FIRING:1]") && t.contains("CountdownBotAbsent"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", prom.log(), am.log()));
    let message = fired
        .iter()
        .find(|m| {
            titles(std::slice::from_ref(m))
                .iter()
                .any(|t| t.contains("CountdownBotAbsent"))
        })
        .unwrap();
    assert_eq!(message.channel_id, alerts_channel);
    let description = message.body["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        description.contains("docs/alerts.md#countdownbotabsent"),
        "the message links its runbook: {description}"
    );

    // It comes back.
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    discover(Some(&bot.metrics_addr));
    fake.wait_webhook_messages(Duration::from_secs(60), |m| {
        titles(m)
            .iter()
            .any(|t| t.contains("[RESOLVED]") && t.contains("CountdownBotAbsent"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", prom.log(), am.log()));
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}
