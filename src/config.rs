//! Settings: the environment (and `config.env`, read by `main` with dotenvy)
//! turned into one typed, validated [`Settings`] value at start.
//!
//! A missing or malformed variable is a [`ConfigError`] that names the
//! variable. Secret values (the token, the database URL and password) are
//! never echoed back, not even when they are malformed.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Everything the bot reads from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub discord_token: SecretString,
    pub database: DatabaseSettings,
    /// Base URL replacing `https://discord.com` (a local fake or an HTTP proxy).
    pub discord_api_url: Option<String>,
    pub metrics_addr: SocketAddr,
    pub max_active: usize,
    pub max_active_per_guild: usize,
    pub global_rate: u32,
    pub resume_max_age: Duration,
    /// `RESUME_CHECK_AFTER`: a countdown resumed whose last progress is older
    /// than this reads its channel before sending (its nonces may have
    /// expired at Discord); `0` checks at every resume.
    pub resume_check_after: Duration,
    /// `RETENTION`: ended countdowns and error rows older than this are
    /// deleted; `0` keeps everything.
    pub retention: Duration,
    /// Timeout of one HTTP request to Discord (serenity's default has none).
    pub http_timeout: Duration,
    pub log_format: LogFormat,
    /// `STOP_POLICY`: who may stop a countdown.
    pub stop_policy: StopPolicy,
    /// `DISCORD_GUILD_ID`: register the slash commands in this guild only
    /// (they appear at once) instead of globally.
    pub command_guild_id: Option<u64>,
    /// `SHARDS`: how many gateway shards this process runs.
    pub shards: Shards,
}

/// `SHARDS`: the gateway shards the leader runs, every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shards {
    /// As many as Discord recommends (`GET /gateway/bot`), asked at every
    /// start.
    #[default]
    Auto,
    /// Shards `0..n` of `n`.
    Fixed(u32),
}

impl std::fmt::Display for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shards::Auto => f.write_str("auto"),
            Shards::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// Where the database is: a URL, or the split `POSTGRES_*` form of `config.env`.
#[derive(Debug, Clone)]
pub enum DatabaseSettings {
    Url(SecretString),
    Split {
        host: String,
        port: u16,
        dbname: String,
        user: String,
        password: SecretString,
    },
}

impl DatabaseSettings {
    /// The tokio-postgres configuration these settings describe.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        match self {
            DatabaseSettings::Url(url) => tokio_postgres::Config::from_str(url.expose_secret())
                .map_err(|_| ConfigError::invalid("DATABASE_URL", "not a valid postgres:// URL")),
            DatabaseSettings::Split {
                host,
                port,
                dbname,
                user,
                password,
            } => {
                let mut cfg = tokio_postgres::Config::new();
                cfg.host(host)
                    .port(*port)
                    .dbname(dbname)
                    .user(user)
                    .password(password.expose_secret());
                Ok(cfg)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A setting that stops the bot at start. The message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("configuration: {0} is not set")]
    Missing(&'static str),
    #[error("configuration: {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

impl ConfigError {
    fn invalid(var: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            var,
            reason: reason.into(),
        }
    }
}

impl Settings {
    /// Reads settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(lookup);
        let discord_token = discord_token(&vars)?;
        let database = database(&vars)?;
        let discord_api_url = discord_api_url(vars.get("DISCORD_API_URL"))?;
        let max_active = vars.at_least_one("MAX_ACTIVE", vars.number("MAX_ACTIVE", 40)?)?;
        let max_active_per_guild = vars.at_least_one(
            "MAX_ACTIVE_PER_GUILD",
            vars.number("MAX_ACTIVE_PER_GUILD", 5)?,
        )?;
        let global_rate = vars.at_least_one("GLOBAL_RATE", vars.number("GLOBAL_RATE", 50)?)?;
        let http_timeout = vars.duration("DISCORD_HTTP_TIMEOUT", "10s")?;
        if http_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "DISCORD_HTTP_TIMEOUT",
                "must be above 0",
            ));
        }
        Ok(Settings {
            discord_token,
            database,
            discord_api_url,
            metrics_addr: vars.number("METRICS_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            max_active,
            max_active_per_guild,
            global_rate,
            resume_max_age: vars.duration("RESUME_MAX_AGE", "1h")?,
            resume_check_after: vars.duration("RESUME_CHECK_AFTER", "60s")?,
            retention: vars.duration("RETENTION", "90d")?,
            http_timeout,
            log_format: log_format(vars.get("LOG_FORMAT"))?,
            stop_policy: match vars.get("STOP_POLICY") {
                None => StopPolicy::default(),
                Some(raw) => raw
                    .parse()
                    .map_err(|reason| ConfigError::invalid("STOP_POLICY", reason))?,
            },
            command_guild_id: command_guild_id(vars.get("DISCORD_GUILD_ID"))?,
            shards: shards(vars.get("SHARDS"))?,
        })
    }
}

/// The environment as the settings read it: a value is trimmed, and an
/// empty one counts as unset.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, key: &str) -> Option<String> {
        (self.0)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A secret comes from `NAME`, or from the file `NAME_FILE` names (a
    /// Docker or Kubernetes secret mounted as a file), never from both.
    fn secret(
        &self,
        var: &'static str,
        file_var: &'static str,
    ) -> Result<Option<String>, ConfigError> {
        match (self.get(var), self.get(file_var)) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                file_var,
                format!("set together with {var}; set one of them"),
            )),
            (Some(value), None) => Ok(Some(value)),
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map(|text| Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
                .map_err(|e| ConfigError::invalid(file_var, format!("cannot read {path}: {e}"))),
            (None, None) => Ok(None),
        }
    }

    /// A value parsed with `FromStr`, or `default` when unset.
    fn number<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::invalid(var, format!("{raw:?}: {e}"))),
        }
    }

    /// A duration such as `90s`, `1h` or `90d`, or `default` when unset.
    fn duration(&self, var: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let raw = self.get(var).unwrap_or_else(|| default.to_owned());
        humantime::parse_duration(&raw).map_err(|e| {
            ConfigError::invalid(
                var,
                format!("{raw:?}: {e} (expected e.g. \"1h\" or \"30s\")"),
            )
        })
    }

    fn at_least_one<T: PartialEq + Default>(
        &self,
        var: &'static str,
        value: T,
    ) -> Result<T, ConfigError> {
        if value == T::default() {
            return Err(ConfigError::invalid(var, "must be at least 1"));
        }
        Ok(value)
    }
}

/// `DISCORD_TOKEN` (or `DISCORD_TOKEN_FILE`): required, one word.
fn discord_token<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<SecretString, ConfigError> {
    let token = vars
        .secret("DISCORD_TOKEN", "DISCORD_TOKEN_FILE")?
        .ok_or(ConfigError::Missing("DISCORD_TOKEN"))?;
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            "DISCORD_TOKEN",
            "contains whitespace or control characters",
        ));
    }
    Ok(SecretString::from(token))
}

/// `DATABASE_URL` (or its `_FILE`), else the `POSTGRES_*` parts; checked
/// here so a bad one is a line at start, not a failure at the first query.
fn database<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<DatabaseSettings, ConfigError> {
    let database = match vars.secret("DATABASE_URL", "DATABASE_URL_FILE")? {
        Some(url) => DatabaseSettings::Url(SecretString::from(url)),
        None => DatabaseSettings::Split {
            host: vars
                .get("POSTGRES_HOST")
                .ok_or(ConfigError::Missing("DATABASE_URL"))?,
            port: vars.number("POSTGRES_PORT", 5432)?,
            dbname: vars
                .get("POSTGRES_DB")
                .ok_or(ConfigError::Missing("POSTGRES_DB"))?,
            user: vars
                .get("POSTGRES_USER")
                .ok_or(ConfigError::Missing("POSTGRES_USER"))?,
            password: SecretString::from(
                vars.secret("POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE")?
                    .unwrap_or_default(),
            ),
        },
    };
    database.pg_config()?;
    Ok(database)
}

/// `DISCORD_API_URL`: an http(s) base URL, without its trailing slash.
fn discord_api_url(raw: Option<String>) -> Result<Option<String>, ConfigError> {
    match raw {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(Some(url.trim_end_matches('/').to_owned()))
        }
        Some(_) => Err(ConfigError::invalid(
            "DISCORD_API_URL",
            "must start with http:// or https://",
        )),
        None => Ok(None),
    }
}

/// `LOG_FORMAT`: `pretty` (the default) or `json`, in any case.
fn log_format(raw: Option<String>) -> Result<LogFormat, ConfigError> {
    match raw.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("pretty") => Ok(LogFormat::Pretty),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(ConfigError::invalid(
            "LOG_FORMAT",
            format!("{other:?} is neither \"pretty\" nor \"json\""),
        )),
    }
}

/// `DISCORD_GUILD_ID`: the one server to register the slash commands in.
fn command_guild_id(raw: Option<String>) -> Result<Option<u64>, ConfigError> {
    match raw.map(|raw| raw.parse::<u64>()) {
        None => Ok(None),
        Some(Ok(id)) if id > 0 => Ok(Some(id)),
        Some(_) => Err(ConfigError::invalid(
            "DISCORD_GUILD_ID",
            "must be a guild id (a positive integer)",
        )),
    }
}

/// `SHARDS`: `auto` (the default, in any case) or a number of shards, 1 or more.
fn shards(raw: Option<String>) -> Result<Shards, ConfigError> {
    match raw {
        None => Ok(Shards::Auto),
        Some(raw) if raw.eq_ignore_ascii_case("auto") => Ok(Shards::Auto),
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Shards::Fixed(n)),
            _ => Err(ConfigError::invalid(
                "SHARDS",
                format!("{raw:?} is neither \"auto\" nor a number of shards (1 or more)"),
            )),
        },
    }
}

/// `STOP_POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopPolicy {
    /// Anyone who can talk to the bot in the channel (the default, as
    /// before slash commands).
    #[default]
    Anyone,
    /// The user who started the countdown, or a member with Manage Messages
    /// in the channel.
    StarterOrManager,
}

impl StopPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            StopPolicy::Anyone => "anyone",
            StopPolicy::StarterOrManager => "starter_or_manager",
        }
    }
}

impl FromStr for StopPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "anyone" => Ok(StopPolicy::Anyone),
            "starter_or_manager" => Ok(StopPolicy::StarterOrManager),
            other => Err(format!(
                "{other:?} is neither \"anyone\" nor \"starter_or_manager\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("DISCORD_TOKEN", "secret-token-value"),
        ("DATABASE_URL", "postgres://u:p@localhost:5432/db"),
    ];

    #[test]
    fn defaults_follow_the_design() {
        let s = settings(&BASE).unwrap();
        assert_eq!(s.metrics_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.max_active, 40);
        assert_eq!(s.max_active_per_guild, 5);
        assert_eq!(s.global_rate, 50);
        assert_eq!(s.resume_max_age, Duration::from_secs(3600));
        assert_eq!(s.resume_check_after, Duration::from_secs(60));
        assert_eq!(s.retention, Duration::from_secs(90 * 86_400));
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert!(s.discord_api_url.is_none());
        assert_eq!(s.stop_policy, StopPolicy::Anyone);
        assert_eq!(s.command_guild_id, None);
        assert_eq!(s.shards, Shards::Auto);
    }

    #[test]
    fn shards_are_auto_or_a_count() {
        for (raw, want) in [
            ("auto", Shards::Auto),
            ("AUTO", Shards::Auto),
            ("1", Shards::Fixed(1)),
            (" 16 ", Shards::Fixed(16)),
        ] {
            let mut vars = BASE.to_vec();
            vars.push(("SHARDS", raw));
            assert_eq!(settings(&vars).unwrap().shards, want, "{raw}");
        }
    }

    #[test]
    fn stop_policy_and_guild_id_are_read() {
        let mut vars = BASE.to_vec();
        vars.push(("STOP_POLICY", "starter_or_manager"));
        vars.push(("DISCORD_GUILD_ID", "1000"));
        let s = settings(&vars).unwrap();
        assert_eq!(s.stop_policy, StopPolicy::StarterOrManager);
        assert_eq!(s.command_guild_id, Some(1000));
    }

    #[test]
    fn missing_token_names_the_variable() {
        let err = settings(&[("DATABASE_URL", "postgres://localhost/db")]).unwrap_err();
        assert_eq!(err.to_string(), "configuration: DISCORD_TOKEN is not set");
    }

    #[test]
    fn missing_database_names_the_variable() {
        let err = settings(&[("DISCORD_TOKEN", "t")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("DATABASE_URL"));
    }

    #[test]
    fn split_database_form_is_accepted() {
        let s = settings(&[
            ("DISCORD_TOKEN", "t"),
            ("POSTGRES_HOST", "db"),
            ("POSTGRES_DB", "countdown"),
            ("POSTGRES_USER", "countdown"),
            ("POSTGRES_PASSWORD", "pw"),
        ])
        .unwrap();
        let cfg = s.database.pg_config().unwrap();
        assert_eq!(cfg.get_dbname(), Some("countdown"));
        assert_eq!(cfg.get_ports(), &[5432]);
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (var, value) in [
            ("MAX_ACTIVE", "many"),
            ("MAX_ACTIVE", "0"),
            ("MAX_ACTIVE_PER_GUILD", "-1"),
            ("GLOBAL_RATE", "1.5"),
            ("RESUME_MAX_AGE", "soon"),
            ("METRICS_ADDR", "localhost"),
            ("LOG_FORMAT", "xml"),
            ("DISCORD_API_URL", "ftp://x"),
            ("STOP_POLICY", "admins"),
            ("DISCORD_GUILD_ID", "guild"),
            ("DISCORD_GUILD_ID", "0"),
            ("SHARDS", "0"),
            ("SHARDS", "-2"),
            ("SHARDS", "two"),
        ] {
            let mut vars = BASE.to_vec();
            vars.push((var, value));
            let err = settings(&vars).unwrap_err().to_string();
            assert!(err.contains(var), "{err} should name {var}");
            assert_eq!(err.lines().count(), 1);
        }
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let err = settings(&[
            ("DISCORD_TOKEN", "secret-token-value"),
            ("DATABASE_URL", "not a url secret-pw"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("DATABASE_URL"));
        assert!(!err.contains("secret-pw"));
        let err = settings(&[("DISCORD_TOKEN", "bad token"), BASE[1]])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("bad token"));
        let debug = format!("{:?}", settings(&BASE).unwrap());
        assert!(!debug.contains("secret-token-value"));
        assert!(!debug.contains("u:p@"));
    }

    #[test]
    fn secrets_come_from_files_too() {
        let dir = std::env::temp_dir().join(format!("countdown-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "file-token\n").unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "pw\n").unwrap();
        let token_path = token.to_str().unwrap();
        let s = settings(&[
            ("DISCORD_TOKEN_FILE", token_path),
            ("POSTGRES_HOST", "db"),
            ("POSTGRES_DB", "countdown"),
            ("POSTGRES_USER", "countdown"),
            ("POSTGRES_PASSWORD_FILE", password.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(s.discord_token.expose_secret(), "file-token");
        match &s.database {
            DatabaseSettings::Split { password, .. } => assert_eq!(password.expose_secret(), "pw"),
            other => panic!("{other:?}"),
        }
        // Both forms at once, or a file that cannot be read: one line naming it.
        let both = settings(&[
            ("DISCORD_TOKEN", "t"),
            ("DISCORD_TOKEN_FILE", token_path),
            ("DATABASE_URL", "postgres://x@h/db"),
        ])
        .unwrap_err();
        assert!(both.to_string().contains("DISCORD_TOKEN_FILE"), "{both}");
        let missing = settings(&[
            ("DISCORD_TOKEN_FILE", "/nonexistent/token"),
            ("DATABASE_URL", "postgres://x@h/db"),
        ])
        .unwrap_err();
        assert!(
            missing.to_string().contains("DISCORD_TOKEN_FILE"),
            "{missing}"
        );
        assert!(!missing.to_string().contains("file-token"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retention_zero_keeps_everything() {
        let s = settings(&[
            ("DISCORD_TOKEN", "t"),
            ("DATABASE_URL", "postgres://x@h/db"),
            ("RETENTION", "0"),
        ])
        .unwrap();
        assert!(s.retention.is_zero());
        assert!(settings(&[
            ("DISCORD_TOKEN", "t"),
            ("DATABASE_URL", "postgres://x@h/db"),
            ("RETENTION", "forever"),
        ])
        .is_err());
    }
}
