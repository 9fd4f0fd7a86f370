//! The fake Discord of a test, in this process. When the test ends,
//! everything that crossed the wire is held against Discord's published
//! schemas ([`super::schema`]).

use fake_discord::{FakeConfig, FakeDiscord};

use super::schema;

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
