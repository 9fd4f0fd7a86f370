//! Building serenity's clients. serenity's own rate limiter is off (with it
//! on, `HttpBuilder::proxy` is ignored); the bot paces itself instead.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serenity::all::{Client, ClientBuilder, GatewayIntents, Http, HttpBuilder};

use crate::config::Settings;

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

/// Shares an [`Http`] between serenity's client and our sender.
pub fn shared(http: &Client) -> Arc<Http> {
    http.http.clone()
}
