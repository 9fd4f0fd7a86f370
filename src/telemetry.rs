//! Logging: a tracing subscriber, pretty or JSON, filtered by `RUST_LOG`,
//! whose writer blanks the token should any library ever print it. Beside
//! it, with a filter of its own, the layer that reads Discord's refusals of
//! the shards from serenity's log ([`crate::discord::refusal`]).

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

pub fn init(format: LogFormat, token: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = Redacting::new(token);
    redact_panics(writer.clone());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let lines = match format {
        LogFormat::Json => lines
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => lines.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(lines)
        .with(crate::discord::refusal::layer())
        .init();
}

/// Panic messages go to stderr through the same redaction. The default
/// hook writes them straight to stderr, past the log writer, so a panic
/// whose message held the token (a `{:?}` of a client, a URL with it) would
/// print it (`tests/faults_secrets.rs` checks this path).
fn redact_panics(redacting: Redacting) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let line = format!("thread '{name}' {info}\n");
        let _ = io::stderr().write_all(&redacting.redact(line.as_bytes()));
    }));
}

/// Writes log lines to stderr with every occurrence of the secret replaced:
/// as text, and in the forms a library dumping bytes prints. At `trace`
/// level tungstenite logs every gateway frame's payload in hex, IDENTIFY
/// and RESUME (which carry the token) included; the plain-text redaction
/// alone would let it through (tested in `tests/faults_secrets.rs`).
#[derive(Clone)]
pub struct Redacting {
    /// The secret as text, lower- and upper-case hex, and a `Debug` byte
    /// list (`66, 111, 116`). Empty when there is nothing to hide.
    forms: std::sync::Arc<[Vec<u8>]>,
}

impl Redacting {
    pub fn new(secret: &str) -> Self {
        let secret = secret.trim();
        // Very short "tokens" would blank ordinary words; real ones are ~70 chars.
        if secret.len() < 8 {
            return Redacting {
                forms: std::sync::Arc::new([]),
            };
        }
        let bytes = secret.as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let decimal = bytes
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let forms = [secret.to_owned(), hex.to_ascii_uppercase(), hex, decimal];
        Redacting {
            forms: forms.into_iter().map(String::into_bytes).collect(),
        }
    }

    pub fn redact(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = buf.to_vec();
        for form in self.forms.iter() {
            out = replace(&out, form);
        }
        out
    }
}

/// `buf` with every occurrence of `secret` replaced by `[redacted]`.
fn replace(buf: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut rest = buf;
    while let Some(at) = rest.windows(secret.len()).position(|w| w == secret) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"[redacted]");
        rest = &rest[at + secret.len()..];
    }
    out.extend_from_slice(rest);
    out
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

    #[test]
    fn the_secret_is_blanked_in_byte_dumps_too() {
        let r = Redacting::new("Bot s3cr3t!");
        let hex: String = b"{\"token\":\"Bot s3cr3t!\"}"
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let out = String::from_utf8(r.redact(format!("payload: 0x{hex}").as_bytes())).unwrap();
        assert_eq!(out, "payload: 0x7b22746f6b656e223a22[redacted]227d");
        let upper = r.redact(hex.to_ascii_uppercase().as_bytes());
        assert!(String::from_utf8(upper).unwrap().contains("[redacted]"));
        let list = format!("{:?}", b"x Bot s3cr3t! y");
        let out = String::from_utf8(r.redact(list.as_bytes())).unwrap();
        assert_eq!(out, "[120, 32, [redacted], 32, 121]");
    }
}
