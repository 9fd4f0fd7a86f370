//! Building serenity's clients. serenity's own rate limiter is off (with it
//! on, `HttpBuilder::proxy` is ignored); the bot paces itself instead.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serenity::all::{Client, ClientBuilder, GatewayIntents, Http, HttpBuilder};

use crate::config::{Settings, Shards};

/// Messages in guild channels (we only act on mentions, whose content
/// Discord delivers without the privileged MESSAGE_CONTENT intent) and DMs.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES
}

/// The reqwest client every request uses: unlike serenity's default it has
/// a timeout, so a request that hangs fails and is retried.
pub fn reqwest_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
}

pub fn http(settings: &Settings, client: reqwest::Client) -> Http {
    let mut builder = HttpBuilder::new(settings.discord_token.expose_secret())
        .client(client)
        .ratelimiter_disabled(true);
    if let Some(url) = &settings.discord_api_url {
        builder = builder.proxy(url.as_str());
    }
    builder.build()
}

pub async fn gateway_client(
    http: Http,
    handler: impl serenity::client::EventHandler + 'static,
) -> serenity::Result<Client> {
    ClientBuilder::new_with_http(http, intents())
        .event_handler(handler)
        .await
}

/// Runs every shard of `shards` in this process until the gateway fails:
/// serenity's autosharding for `auto` (one `GET /gateway/bot`, asked once
/// for all shards), shards `0..n` of `n` otherwise. Guild events come on
/// shard `(guild_id >> 22) % n`, DMs on shard 0; one handler serves them
/// all. serenity starts one shard every 5 s, whatever `max_concurrency`
/// Discord gives: within the identify limit of every bot (one per 5 s per
/// `shard_id % max_concurrency`), and slower than needed only for bots
/// with many shards and a `max_concurrency` above 1.
pub async fn start(client: &mut Client, shards: Shards) -> serenity::Result<()> {
    match shards {
        Shards::Auto => client.start_autosharded().await,
        Shards::Fixed(n) => client.start_shards(n).await,
    }
}

/// Shares an [`Http`] between serenity's client and our sender.
pub fn shared(http: &Client) -> Arc<Http> {
    http.http.clone()
}
