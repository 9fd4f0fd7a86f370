//! Fault suite: secrets and exposure.
//!
//! - The token is never in the logs at any level (trace, pretty and JSON,
//!   through sends, failures, a refused message, gateway resumes and a
//!   fresh IDENTIFY), in a panic message, in `/metrics`, `/readyz`,
//!   `/healthz`, or in any text column of the database. Besides the token
//!   itself the logs are searched for its secret part, its base64, hex and
//!   byte-list forms (a library dumping a frame's bytes).
//! - Every message the bot posts has `allowed_mentions` empty.
//! - SQL is parameterised: a static check of `src/` (with a self-test on
//!   bad code, so the check is known to bite).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// The part of the test token that is secret (the first part is the
/// base64 of the bot's public id).
fn secret_part() -> &'static str {
    TOKEN.rsplit('.').next().unwrap()
}

/// Encodings of `s` a careless library might print.
fn encodings(s: &str) -> Vec<String> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut b64 = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let decimal = bytes
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    vec![s.to_owned(), b64[..b64.len() - 2].to_owned(), hex, decimal]
}

fn assert_no_secret(what: &str, text: &str) {
    for needle in encodings(TOKEN).into_iter().chain(encodings(secret_part())) {
        assert!(
            !text.contains(&needle),
            "{what} contains the token (as {needle:?})"
        );
    }
}

/// Every text column of every table, searched for the token.
async fn assert_no_secret_in_database(db: &TestDb) {
    let client = db.client().await;
    let columns = client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' \
               AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb')",
            &[],
        )
        .await
        .unwrap();
    assert!(columns.len() >= 5, "the schema has text columns to search");
    let mut searched_rows = 0i64;
    for row in columns {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        // Identifiers come from the catalogue, quoted; the needle is a parameter.
        let sql = format!(
            "SELECT count(*) FILTER (WHERE strpos(\"{column}\"::text, $1) > 0 \
                                        OR strpos(\"{column}\"::text, $2) > 0), \
                    count(*) FROM \"{table}\""
        );
        let found = client
            .query_one(&sql, &[&TOKEN, &secret_part()])
            .await
            .unwrap();
        let (hits, rows): (i64, i64) = (found.get(0), found.get(1));
        assert_eq!(hits, 0, "the token is in {table}.{column}");
        searched_rows += rows;
    }
    assert!(searched_rows > 0, "rows were searched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_in_logs_metrics_or_the_database() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let ch = |i| channel(&fake, 0, i);
    let mut all_logs = String::new();

    for (round, format) in ["pretty", "json"].iter().enumerate() {
        let env = [
            ("RUST_LOG", "trace"),
            ("LOG_FORMAT", *format),
            ("DISCORD_HTTP_TIMEOUT", "1s"),
        ];
        let mut bot = Bot::start_ready(&fake, &db, &env).await;
        let base = round * 10;
        // Numbers, a run of failures, a hung request, an invalid command,
        // a countdown Discord refuses (403: a `send_failed` row with
        // Discord's answer in it).
        say(&fake, ch(base), &mention(&fake, "count to 3")).await;
        wait_messages(&fake, ch(base), 1).await;
        fake.fail_next(2, 503);
        fake.hang_next(1);
        wait_messages(&fake, ch(base), 3).await;
        say(&fake, ch(base + 1), &mention(&fake, "count to everything")).await;
        wait_messages(&fake, ch(base + 1), 1).await;
        fake.fail_next(1, 403);
        say(&fake, ch(base + 2), &mention(&fake, "count to 3")).await;
        db.wait_command_errors(2 * round + 2).await;
        // The gateway: a RESUME, then a refused one and a fresh IDENTIFY.
        fake.drop_gateway();
        fake.wait_resume_count(round + 1, Duration::from_secs(20))
            .await
            .unwrap();
        fake.set_resume_allowed(false);
        let identified = fake.identify_count();
        fake.drop_gateway();
        fake.wait_identify_count(identified + 1, Duration::from_secs(20))
            .await
            .unwrap();
        fake.set_resume_allowed(true);
        bot.wait_readyz().await;

        for path in ["/metrics", "/readyz", "/healthz"] {
            let (_, body) = bot.get(path).await.unwrap();
            assert_no_secret(path, &body);
        }
        let (status, _) = bot.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
        assert!(status.success());
        let logs = bot.logs();
        assert!(
            logs.contains("TRACE") || logs.contains("\"level\":\"TRACE\""),
            "trace logging was on"
        );
        assert_no_secret(&format!("the {format} log"), &logs);
        all_logs.push_str(&logs);
    }
    // Both countdowns Discord refused are rows with Discord's answer.
    let kinds = db.command_error_kinds().await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "send_failed").count(),
        2,
        "{kinds:?}"
    );
    assert_no_secret_in_database(&db).await;
    assert_no_pings(&fake);
    eprintln!(
        "log lines searched: {}, redactions by the log writer: {}",
        all_logs.lines().count(),
        all_logs.matches("[redacted]").count()
    );
}

/// The bot's panic hook (installed with its logging) redacts the token.
/// The test runs itself again as a child process that panics with the
/// token in the message, and reads what the child wrote.
#[test]
fn a_panic_never_prints_the_token() {
    if std::env::var_os("FAULTS_PANIC_CHILD").is_some() {
        countdown::telemetry::init(countdown::config::LogFormat::Pretty, TOKEN);
        let client = format!("Http {{ token: \"Bot {TOKEN}\" }}");
        panic!("a bug that prints its client: {client}");
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panic_never_prints_the_token",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FAULTS_PANIC_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the child panicked");
    assert!(
        stderr.contains("a bug that prints its client: Http { token: \"Bot [redacted]\" }"),
        "{stderr}"
    );
    assert_no_secret("the panic message", &stderr);
    assert_no_secret("the test output", &stdout);
}

// ------------------------------------------------------------------ SQL

/// A `format!` whose text reads as SQL.
fn looks_like_sql(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .map(str::to_ascii_lowercase)
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    (has("select") && has("from"))
        || (has("insert") && has("into"))
        || (has("update") && has("set"))
        || (has("delete") && has("from"))
        || ((has("create") || has("drop") || has("alter") || has("truncate"))
            && (has("table") || has("database") || has("index")))
        || has("where")
}

/// The string literal starting at `code` (after optional whitespace):
/// its contents and the rest of the code. Handles escapes and raw strings.
fn string_literal(code: &str) -> Option<(String, &str)> {
    let code = code.trim_start();
    if let Some(raw) = code.strip_prefix('r') {
        let hashes = raw.chars().take_while(|c| *c == '#').count();
        let body = raw[hashes..].strip_prefix('"')?;
        let end = format!("\"{}", "#".repeat(hashes));
        let at = body.find(&end)?;
        return Some((body[..at].to_owned(), &body[at + end.len()..]));
    }
    let body = code.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    out.push('\\');
                    out.push(e);
                }
            }
            _ => out.push(c),
        }
    }
    None
}

/// `{…}` placeholders of a format string (`{{` escapes skipped).
fn placeholders(fmt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = fmt;
    while let Some(at) = rest.find('{') {
        if rest[at + 1..].starts_with('{') {
            rest = &rest[at + 2..];
            continue;
        }
        let Some(end) = rest[at..].find('}') else {
            break;
        };
        out.push(rest[at + 1..at + end].to_owned());
        rest = &rest[at + end + 1..];
    }
    out
}

/// `const NAME: &str = "…";` items of a file whose text has no placeholder.
fn constant_strs(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        let Some(rest) = line
            .strip_prefix("pub const ")
            .or_else(|| line.strip_prefix("const "))
        else {
            continue;
        };
        let Some((name, ty)) = rest.split_once(':') else {
            continue;
        };
        if ty.trim_start().starts_with("&str") || ty.trim_start().starts_with("&'static str") {
            out.push(name.trim().to_owned());
        }
    }
    out
}

const QUERY_CALLS: &[&str] = &[
    ".query(",
    ".query_one(",
    ".query_opt(",
    ".query_raw(",
    ".execute(",
    ".execute_raw(",
    ".batch_execute(",
    ".simple_query(",
    ".prepare(",
    ".prepare_cached(",
    ".prepare_typed(",
];

/// Every place where `code` builds SQL out of something other than
/// constants: a `format!` reading as SQL with a placeholder that is not a
/// `&str` constant of the file, or positional arguments; and a query call
/// whose SQL argument is not a literal, a constant, `concat!` (literals
/// only) or a `sql` variable built by such a `format!`.
fn sql_violations(file: &str, code: &str) -> Vec<String> {
    let consts = constant_strs(code);
    let mut found = Vec::new();
    let line_of = |at: usize| code[..at].lines().count();

    for (at, _) in code.match_indices("format!(") {
        let Some((fmt, after)) = string_literal(&code[at + "format!(".len()..]) else {
            continue;
        };
        if !looks_like_sql(&fmt) {
            continue;
        }
        let positional_args = after.trim_start().starts_with(',');
        for p in placeholders(&fmt) {
            let name = p.split(':').next().unwrap_or("").trim();
            if name.is_empty() || positional_args || !consts.iter().any(|c| c == name) {
                found.push(format!(
                    "{file}:{}: SQL built with {{{p}}}, not a constant: {fmt:?}",
                    line_of(at)
                ));
            }
        }
    }

    // Query calls are looked for where a database client is in reach.
    let database_code = ["tokio_postgres", "deadpool_postgres", "GenericClient"]
        .iter()
        .any(|c| code.contains(c));
    let calls: &[&str] = if database_code { QUERY_CALLS } else { &[] };
    for call in calls {
        for (at, _) in code.match_indices(call) {
            // `self.execute(…)` is one of ours (commands), not a client's.
            if code[..at].ends_with("self") {
                continue;
            }
            let arg = code[at + call.len()..].trim_start();
            let arg = arg.strip_prefix('&').unwrap_or(arg).trim_start();
            let ident: String = arg
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let ok = arg.starts_with('"')
                || arg.starts_with("r\"")
                || arg.starts_with("r#")
                || arg.starts_with("concat!(")
                || arg.starts_with(')')
                || consts.contains(&ident)
                || (ident == "sql" && code[..at].contains("let sql = format!("))
                || is_prepared_statement(code, arg, &ident);
            if !ok {
                found.push(format!(
                    "{file}:{}: {call}…) with SQL from {:?}",
                    line_of(at),
                    arg.chars().take(40).collect::<String>()
                ));
            }
        }
    }
    found
}

/// A statement prepared in this file: a `let {ident} = ….prepare…(` or a
/// field declared `: Statement`. Its SQL was checked where it was prepared
/// (`.prepare(` and `.prepare_cached(` are among the calls checked).
fn is_prepared_statement(code: &str, arg: &str, ident: &str) -> bool {
    let prepared_let = code
        .match_indices(&format!("let {ident} = "))
        .any(|(at, _)| {
            let rest = &code[at..];
            let end = rest.find(';').unwrap_or(rest.len());
            rest[..end].contains(".prepare")
        });
    let field = arg
        .strip_prefix(ident)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| {
            r.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|f| !f.is_empty());
    let statement_field = field.is_some_and(|f| code.contains(&format!("{f}: Statement")));
    prepared_let || statement_field
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_sql_check_finds_sql_built_from_values() {
    let bad = r#"
        use tokio_postgres::Client;
        const COLUMNS: &str = "id, status";
        async fn a(client: &Client, id: i64, name: &str) {
            let sql = format!("SELECT {COLUMNS} FROM tasks WHERE id = {id}");
            client.query(&sql, &[]).await;
            client.execute(&format!("DELETE FROM tasks WHERE channel_id = {}", id), &[]).await;
            client.batch_execute(&format!("UPDATE tasks SET status = '{name}'")).await;
            let q = String::from("SELECT 1");
            client.simple_query(&q).await;
            let fine = format!("SELECT {COLUMNS} FROM tasks WHERE id = $1");
            client.query_one("SELECT 1 WHERE $1", &[&id]).await;
            let statement = client.prepare("SELECT 1 WHERE $1").await;
            client.execute(&statement, &[&id]).await;
            let built = client.prepare(&format!("SELECT {id}")).await;
            client.execute(&built, &[]).await;
        }
    "#;
    let found = sql_violations("bad.rs", bad);
    assert_eq!(found.len(), 7, "{found:#?}");
    assert!(
        found
            .iter()
            .any(|f| f.contains(".prepare(") && f.contains("format!")),
        "a statement prepared from built SQL: {found:#?}"
    );
    for what in [
        "{id}",
        "{}",
        "{name}",
        "simple_query",
        ".execute(",
        "batch_execute(",
    ] {
        assert!(found.iter().any(|f| f.contains(what)), "{what}: {found:#?}");
    }
}

#[test]
fn all_sql_in_src_is_parameterised() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 10);
    let mut violations = Vec::new();
    let mut sql_calls = 0;
    for file in &files {
        let code = std::fs::read_to_string(file).unwrap();
        sql_calls += QUERY_CALLS
            .iter()
            .map(|c| code.matches(c).count())
            .sum::<usize>();
        let name = file.strip_prefix(root).unwrap().display().to_string();
        violations.extend(sql_violations(&name, &code));
    }
    assert!(sql_calls >= 8, "the check saw the queries ({sql_calls})");
    assert!(violations.is_empty(), "{violations:#?}");
}

/// The schema's SQL is in `src/storage/migrations`, out of the Rust files
/// checked above: it must stay plain SQL files (refinery also runs `.rs`
/// migrations, whose SQL is built at run time), one per version from 1 up.
#[test]
fn migrations_are_plain_sql_files_numbered_from_one() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage/migrations");
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let version = name
            .strip_prefix('V')
            .and_then(|rest| rest.split_once("__"))
            .filter(|(_, what)| what.ends_with(".sql"))
            .and_then(|(v, _)| v.parse::<u32>().ok());
        match version {
            Some(v) => versions.push(v),
            None => panic!("{name}: not a V<n>__<what>.sql migration"),
        }
    }
    versions.sort_unstable();
    assert!(!versions.is_empty(), "no migration in {}", dir.display());
    assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
}
