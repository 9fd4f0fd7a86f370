//! Logging: a tracing subscriber, pretty or JSON, filtered by `RUST_LOG`,
//! whose writer blanks the token should any library ever print it.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, token: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = Redacting::new(token);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Writes log lines to stderr with every occurrence of the secret replaced.
#[derive(Clone)]
pub struct Redacting {
    secret: Option<Vec<u8>>,
}

impl Redacting {
    pub fn new(secret: &str) -> Self {
        let secret = secret.trim();
        Redacting {
            // Very short "tokens" would blank ordinary words; real ones are ~70 chars.
            secret: (secret.len() >= 8).then(|| secret.as_bytes().to_vec()),
        }
    }

    pub fn redact(&self, buf: &[u8]) -> Vec<u8> {
        let Some(secret) = &self.secret else {
            return buf.to_vec();
        };
        let mut out = Vec::with_capacity(buf.len());
        let mut rest = buf;
        while let Some(at) = rest
            .windows(secret.len())
            .position(|w| w == secret.as_slice())
        {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(b"[redacted]");
            rest = &rest[at + secret.len()..];
        }
        out.extend_from_slice(rest);
        out
    }
}

pub struct RedactingWriter {
    redacting: Redacting,
}

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().write_all(&self.redacting.redact(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            redacting: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_blanked_everywhere() {
        let r = Redacting::new("MTIzNDU2Nzg5.secret");
        let out = r.redact(b"Bot MTIzNDU2Nzg5.secret and MTIzNDU2Nzg5.secret!");
        assert_eq!(out, b"Bot [redacted] and [redacted]!");
        assert_eq!(r.redact(b"nothing here"), b"nothing here");
    }
}
