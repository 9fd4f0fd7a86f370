//! A local fake of Discord's REST API and WebSocket gateway, realistic
//! enough for an unmodified serenity 0.12.5 bot (pointed at it with
//! `HttpBuilder::new(token).proxy(base_url).ratelimiter_disabled(true)`).
//!
//! One listening port serves `/api/v10/…` (REST), `/gateway` (WebSocket)
//! and `/_test/…` (the control API of the `fake-discord` binary). Tests
//! drive it in-process through [`FakeDiscord`]: inject user messages, read
//! what the bot posted, and inject faults (latency, 5xx, 429, hangs,
//! gateway drops, refused resumes) or enforce Discord's rate limits.
//!
//! The server stops when the last [`FakeDiscord`] clone is dropped.

#![recursion_limit = "256"]

mod commands;
mod control;
pub mod demo;
mod gateway;
mod history;
mod interactions;
mod messages;
mod payloads;
mod ratelimit;
mod rest;
mod state;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::routing::get;
use axum::Router;

pub use gateway::shard_of;
pub use interactions::InteractionRef;
pub use ratelimit::BucketModel;
pub use state::{
    Author, Exchange, InteractionEdit, InteractionResponse, PostedMessage, RequestRecord, Stats,
    WebhookMessage,
};

use state::Shared;

/// A guild of the fake world and its text channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuildSpec {
    pub id: u64,
    pub channels: Vec<u64>,
}

/// How to start a [`FakeDiscord`].
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub bot_user_id: u64,
    pub application_id: u64,
    pub guilds: Vec<GuildSpec>,
    /// Requests per rolling second over all of `/api` (Discord: 50); `None` = off.
    pub global_limit: Option<u32>,
    /// Message POSTs per channel per period (Discord: 5 per 5 s); `None` = off.
    pub channel_limit: Option<(u32, Duration)>,
    /// The shape of a channel's bucket: [`BucketModel::Leaky`] (Discord's
    /// since 2022, the default) or [`BucketModel::FixedWindow`].
    pub channel_model: BucketModel,
    /// Where to listen (default `127.0.0.1:0`, an ephemeral port).
    pub addr: SocketAddr,
    /// The URL clients reach the fake at, e.g. `http://fake-discord:3000`
    /// in a compose network: what [`FakeDiscord::base_url`] returns and the
    /// gateway URL (`GET /gateway`, READY's `resume_gateway_url`) is built
    /// from. Default `None`: `http://` + the bound address, right when it is
    /// not a wildcard such as 0.0.0.0.
    pub public_url: Option<String>,
    /// How long an enforced nonce deduplicates (default 5 min).
    pub nonce_ttl: Duration,
    /// Privileged intents the application may use (bits of GUILD_MEMBERS,
    /// GUILD_PRESENCES, MESSAGE_CONTENT). IDENTIFY asking for another
    /// privileged intent is closed with 4014, like Discord. Default: none.
    pub privileged_intents: u64,
    /// The shard count `GET /gateway/bot` recommends (Discord: about one
    /// per 1,000 guilds). Default 1. Whatever the bot chooses, a guild's
    /// events go to shard `(guild_id >> 22) % num_shards` and DMs to
    /// shard 0 (see [`shard_of`]).
    pub shards: u32,
    /// Refuse an IDENTIFY with fewer shards than [`shards`](Self::shards)
    /// with close code 4011 (Sharding required), as Discord refuses a
    /// session that would hold too many guilds. Default false.
    pub sharding_required: bool,
    /// `session_start_limit.max_concurrency` of `GET /gateway/bot`:
    /// IDENTIFYs allowed per 5 s, one per `shard_id % max_concurrency`.
    /// Faster ones are counted in [`Stats::identify_too_fast`]. Default 1.
    pub max_concurrency: u32,
    /// Dispatch MESSAGE_CREATE for the bot's own messages, as Discord does
    /// (default true).
    pub echo_own_messages: bool,
    /// Keep every REST exchange's JSON bodies (request and answer), for
    /// tests that hold them against Discord's published schemas (default
    /// false: the benchmarks post hundreds of thousands of messages).
    pub record_exchanges: bool,
    /// How long an interaction may wait for its callback before the fake
    /// answers 404 Unknown interaction (10062), as Discord does after 3 s.
    pub interaction_window: Duration,
    /// Messages (and requests) to make room for up front. Recording grows
    /// the history under the fake's one lock; past 100,000 messages each
    /// doubling of a table held every request for tens of milliseconds,
    /// which a benchmark measures as the bot's lateness. Default 0.
    pub history_capacity: usize,
    /// Guilds whose GUILD_CREATE is not sent after READY (they stay
    /// "unavailable", as during a Discord outage): the bot's cache lacks
    /// them while their channels' messages still arrive. Default none.
    pub withheld_guilds: Vec<u64>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        let guilds = (1..=8u64)
            .map(|g| GuildSpec {
                id: g * 1000,
                channels: (1..=30).map(|c| g * 1000 + c).collect(),
            })
            .collect();
        FakeConfig {
            bot_user_id: 900_000_000_000_000_001,
            application_id: 900_000_000_000_000_001,
            guilds,
            global_limit: None,
            channel_limit: None,
            channel_model: BucketModel::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            nonce_ttl: Duration::from_secs(300),
            privileged_intents: 0,
            shards: 1,
            sharding_required: false,
            max_concurrency: 1,
            echo_own_messages: true,
            record_exchanges: false,
            interaction_window: Duration::from_secs(3),
            history_capacity: 0,
            withheld_guilds: Vec::new(),
        }
    }
}

impl FakeConfig {
    /// Enforces Discord's limits: 50 requests/s globally, 5 message POSTs
    /// per 5 s per channel.
    pub fn with_discord_limits(mut self) -> Self {
        self.global_limit = Some(ratelimit::DISCORD_GLOBAL_LIMIT);
        self.channel_limit = Some(ratelimit::DISCORD_CHANNEL_LIMIT);
        self
    }
}

struct Handle {
    shared: Arc<Shared>,
    server: tokio::task::AbortHandle,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.server.abort();
        // The recorded history is freed here, on the thread that drops the
        // last handle: left to the last connection task, freeing the
        // 100,000 messages of a benchmark took a core for seconds in the
        // middle of the next scenario.
        let history = self.shared.try_world().map(|mut w| {
            w.gw.drop_connections();
            w.take_history()
        });
        drop(history);
    }
}

/// A running fake Discord. Cheap to clone.
#[derive(Clone)]
pub struct FakeDiscord {
    inner: Arc<Handle>,
}

impl FakeDiscord {
    /// Binds `config.addr` and serves REST, gateway and control API on it.
    pub async fn start(config: FakeConfig) -> anyhow::Result<FakeDiscord> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("fake-discord: cannot bind {}", config.addr))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config, addr));
        let app = Router::new()
            .nest("/api/v10", rest::router(shared.clone()))
            .route("/gateway", get(gateway::upgrade))
            .merge(rest::unversioned_router(shared.clone()))
            .nest("/_test", control::router())
            .fallback(rest::not_found)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("fake-discord server stopped: {e}");
            }
        });
        tracing::info!(%addr, "fake-discord listening");
        Ok(FakeDiscord {
            inner: Arc::new(Handle {
                shared,
                server: server.abort_handle(),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// `http://127.0.0.1:PORT` (or `FakeConfig::public_url`): what the bot
    /// gets as DISCORD_API_URL.
    pub fn base_url(&self) -> String {
        self.shared().base_url()
    }

    /// `ws://127.0.0.1:PORT/gateway`, as `GET /gateway` announces it.
    pub fn gateway_url(&self) -> String {
        self.shared().gateway_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    pub fn bot_user_id(&self) -> u64 {
        self.shared().bot_user_id
    }

    pub fn guilds(&self) -> Vec<GuildSpec> {
        self.shared().guilds.clone()
    }

    /// The guild of a guild channel; `None` for DMs and unknown channels.
    pub fn guild_of(&self, channel_id: u64) -> Option<u64> {
        self.shared().guild_of(channel_id)
    }

    // ------------------------------------------------------------ gateway

    /// Resolves once a bot is connected on a live session of every shard:
    /// READY (and the GUILD_CREATEs) or RESUMED was written on each
    /// shard's current connection.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.wait_gateway(timeout, "a READY bot", |s| s.ready).await
    }

    /// Whether a bot is connected on a live session of every shard right now.
    pub fn is_ready(&self) -> bool {
        self.shared().world().gw.is_ready()
    }

    /// The shards whose session is ready now, in order.
    pub fn ready_shards(&self) -> Vec<u32> {
        self.shared().world().gw.ready_shards()
    }

    /// The shard count of the bot's sessions (its last IDENTIFY's
    /// `num_shards`); 0 before the first IDENTIFY.
    pub fn shard_count(&self) -> u32 {
        self.shared().world().gw.num_shards()
    }

    /// Waits until at least `n` shards are connected on a live session.
    pub async fn wait_ready_shards(&self, n: u32, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{n} READY shards");
        self.wait_gateway(timeout, &what, |s| s.ready_shards >= n)
            .await
    }

    /// Waits until `identify_count() >= n` and the bot is ready.
    pub async fn wait_identify_count(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{n} IDENTIFYs and a READY bot");
        self.wait_gateway(timeout, &what, |s| s.ready && s.identify >= n as u64)
            .await
    }

    /// Waits until `resume_count() >= n` and the bot is ready.
    pub async fn wait_resume_count(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("{n} RESUMEs and a READY bot");
        self.wait_gateway(timeout, &what, |s| s.ready && s.resume >= n as u64)
            .await
    }

    async fn wait_gateway(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl FnMut(&state::GatewayStatus) -> bool,
    ) -> anyhow::Result<()> {
        if self.shared().wait_gateway(timeout, pred).await {
            return Ok(());
        }
        let s = *self.shared().gateway_tx.borrow();
        anyhow::bail!(
            "fake-discord: timed out after {timeout:?} waiting for {what} \
             (ready: {}, ready shards: {}, identify: {}, resume: {})",
            s.ready,
            s.ready_shards,
            s.identify,
            s.resume
        )
    }

    /// When the last READY was dispatched, i.e. the last IDENTIFY was
    /// answered (the GUILD_CREATEs follow it). `None` before the first.
    pub fn last_ready_sent_at(&self) -> Option<Instant> {
        self.shared().world().gw.ready_sent_at()
    }

    pub fn identify_count(&self) -> usize {
        self.shared().world().stats.identify as usize
    }

    pub fn resume_count(&self) -> usize {
        self.shared().world().stats.resume as usize
    }

    /// Drops every gateway connection (every shard's) without a close
    /// frame, like a network failure. Dispatches until the bot resumes are
    /// replayed on RESUME.
    pub fn drop_gateway(&self) {
        let shared = self.shared();
        let mut w = shared.world();
        w.gw.drop_connections();
        shared.publish_gateway(&w);
    }

    /// Sends op 7 RECONNECT on every shard's connection, as Discord does
    /// before moving a session: serenity then RESUMEs on a new connection.
    /// Returns false when no connection is attached to a session.
    pub fn request_reconnect(&self) -> bool {
        self.shared().world().gw.request_reconnect()
    }

    /// `false`: RESUME is answered with INVALID_SESSION (d: false) and the
    /// session dies, forcing a fresh IDENTIFY. Default true.
    pub fn set_resume_allowed(&self, allowed: bool) {
        self.shared().world().gw.set_resume_allowed(allowed);
    }

    // ------------------------------------------------------------ injecting

    /// Dispatches MESSAGE_CREATE from `author` in `channel_id` (a guild
    /// channel, or a DM channel from [`open_dm`](Self::open_dm)) and returns
    /// the new message id. Errors when no bot has a gateway session; while
    /// the session is disconnected the event is queued for the RESUME.
    pub async fn inject_message(
        &self,
        channel_id: u64,
        author: Author,
        content: &str,
    ) -> anyhow::Result<u64> {
        gateway::inject_message(self.shared(), channel_id, &author, content)
    }

    /// Dispatches INTERACTION_CREATE for the slash command `name` typed by
    /// `author` in `channel_id`; `options` in Discord's shape, e.g.
    /// `json!([{"name": "n", "type": 4, "value": 20}])`. In a guild the
    /// member carries `author.roles` and its resolved `permissions`.
    pub fn slash_command(
        &self,
        channel_id: u64,
        author: Author,
        name: &str,
        options: serde_json::Value,
    ) -> anyhow::Result<InteractionRef> {
        interactions::slash_command(self.shared(), channel_id, &author, name, options)
    }

    /// Dispatches INTERACTION_CREATE for `author` pressing the button
    /// `custom_id` on the bot's message `message_id`.
    pub fn press_button(
        &self,
        channel_id: u64,
        author: Author,
        message_id: u64,
        custom_id: &str,
    ) -> anyhow::Result<InteractionRef> {
        interactions::press_button(self.shared(), channel_id, &author, message_id, custom_id)
    }

    /// Every interaction callback received, in order.
    pub fn interaction_responses(&self) -> Vec<InteractionResponse> {
        self.shared().world().interaction_responses.clone()
    }

    /// Waits (woken by each callback) for the first callback of
    /// interaction `id`, accepted or not.
    pub async fn wait_interaction_response(
        &self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<InteractionResponse> {
        let found = self
            .shared()
            .wait_event(timeout, |w| {
                w.interaction_responses
                    .iter()
                    .find(|r| r.interaction_id == id)
                    .cloned()
            })
            .await;
        found.ok_or_else(|| {
            anyhow::anyhow!("fake-discord: no answer to interaction {id} within {timeout:?}")
        })
    }

    /// Every edit of an interaction's answer (a deferred answer given), in order.
    pub fn interaction_edits(&self) -> Vec<InteractionEdit> {
        self.shared().world().interaction_edits.clone()
    }

    /// Waits (woken by each edit) for the first edit of interaction `id`'s answer.
    pub async fn wait_interaction_edit(
        &self,
        id: u64,
        timeout: Duration,
    ) -> anyhow::Result<InteractionEdit> {
        let found = self
            .shared()
            .wait_event(timeout, |w| {
                w.interaction_edits
                    .iter()
                    .find(|e| e.interaction_id == id)
                    .cloned()
            })
            .await;
        found.ok_or_else(|| {
            anyhow::anyhow!("fake-discord: no edit of interaction {id} within {timeout:?}")
        })
    }

    /// The commands registered for `guild` (`None`: global), as the fake
    /// stored them (with ids).
    pub fn registered_commands(&self, guild: Option<u64>) -> Vec<serde_json::Value> {
        self.shared()
            .world()
            .commands
            .get(&guild)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until commands are registered for `guild` (`None`: global).
    pub async fn wait_registered_commands(
        &self,
        guild: Option<u64>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let found = self
            .shared()
            .wait_event(timeout, |w| {
                w.commands.get(&guild).filter(|c| !c.is_empty()).cloned()
            })
            .await;
        found.ok_or_else(|| {
            anyhow::anyhow!("fake-discord: no commands registered for {guild:?} within {timeout:?}")
        })
    }

    /// The next `n` bulk overwrites of application commands answer 500.
    pub fn fail_command_registration(&self, n: usize) {
        self.shared().world().fail_commands = n;
    }

    /// The next `n` `GET /guilds/{id}` answer 500.
    pub fn fail_guild_reads(&self, n: usize) {
        self.shared().world().fail_guild_reads = n;
    }

    /// The id of guild `guild_id`'s "Moderator" role, which grants Manage
    /// Messages (give it with [`Author::with_roles`]).
    pub fn manager_role(&self, guild_id: u64) -> u64 {
        payloads::manager_role_id(guild_id)
    }

    /// The DM channel with `user_id` (created on first call).
    pub async fn open_dm(&self, user_id: u64) -> u64 {
        self.shared().world().open_dm(user_id)
    }

    // ------------------------------------------------------------ observing

    /// Messages the bot created in `channel_id`, in order of creation.
    pub fn messages(&self, channel_id: u64) -> Vec<PostedMessage> {
        self.shared().channel_messages(channel_id)
    }

    /// The messages of `channel_id` from the `from`-th on (0-based): what
    /// [`messages`](Self::messages) gives past its first `from`, without
    /// copying those.
    pub fn messages_from(&self, channel_id: u64, from: usize) -> Vec<PostedMessage> {
        self.shared().channel_messages_from(channel_id, from)
    }

    /// How many messages the bot created in `channel_id`.
    pub fn message_count(&self, channel_id: u64) -> usize {
        self.shared().channel_message_count(channel_id)
    }

    pub fn all_messages(&self) -> Vec<PostedMessage> {
        self.shared().world().messages.clone()
    }

    /// Waits (woken by each new message, no polling) until `channel_id`
    /// holds at least `count` created messages, and returns them all.
    pub async fn wait_for_messages(
        &self,
        channel_id: u64,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<PostedMessage>> {
        self.wait_for_messages_until(channel_id, timeout, &format!("{count} messages"), |m| {
            m.len() >= count
        })
        .await
    }

    /// Waits until some message of `channel_id` satisfies `pred`, and returns
    /// all of the channel's messages at that moment.
    pub async fn wait_for_messages_matching(
        &self,
        channel_id: u64,
        timeout: Duration,
        pred: impl Fn(&PostedMessage) -> bool,
    ) -> anyhow::Result<Vec<PostedMessage>> {
        self.wait_for_messages_until(channel_id, timeout, "a matching message", |m| {
            m.iter().any(&pred)
        })
        .await
    }

    async fn wait_for_messages_until(
        &self,
        channel_id: u64,
        timeout: Duration,
        what: &str,
        done: impl FnMut(&[PostedMessage]) -> bool,
    ) -> anyhow::Result<Vec<PostedMessage>> {
        match self.shared().wait_messages(channel_id, timeout, done).await {
            Ok(messages) => Ok(messages),
            Err(got) => {
                let contents: Vec<&str> = got.iter().map(|m| m.content.as_str()).collect();
                anyhow::bail!(
                    "fake-discord: timed out after {timeout:?} waiting for {what} \
                     in channel {channel_id}; got {}: {contents:?}",
                    got.len()
                )
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared().world().stats
    }

    /// Every `/api` request, in order of completion.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared().world().requests.clone()
    }

    /// Every REST exchange with its JSON bodies, when
    /// [`FakeConfig::record_exchanges`] is on.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.shared().world().exchanges.clone()
    }

    /// When the fake started (the zero of every `at_ms`).
    pub fn started_at(&self) -> Instant {
        self.shared().started
    }

    // ------------------------------------------------------------ faults

    /// Delay added to every REST answer (after processing, before the
    /// answer leaves: a timed-out create still happened).
    pub fn set_latency(&self, d: Duration) {
        self.shared().world().faults.latency = d;
    }

    /// The next `n` message POSTs answer `status` and create nothing (502:
    /// Cloudflare's HTML page; other statuses: a Discord JSON error).
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut w = self.shared().world();
        w.faults.fail = n;
        w.faults.fail_status = status;
    }

    /// The next `n` message POSTs answer 429 with Discord's headers and body.
    pub fn rate_limit_next(&self, n: usize, retry_after: f64, global: bool) {
        let mut w = self.shared().world();
        w.faults.rate_limit = n;
        w.faults.rate_limit_retry_after = retry_after;
        w.faults.rate_limit_global = global;
    }

    /// The next `n` message POSTs are never answered and create nothing.
    pub fn hang_next(&self, n: usize) {
        self.shared().world().faults.hang = n;
    }

    pub fn set_global_limit(&self, per_sec: Option<u32>) {
        self.shared().world().limits.global = per_sec;
    }

    pub fn set_channel_limit(&self, l: Option<(u32, Duration)>) {
        self.shared().world().limits.channel = l;
    }

    /// Creates an incoming webhook posting into `channel_id` and returns its
    /// URL, as Discord shows it (`<base>/api/webhooks/<id>/<token>`).
    pub fn create_webhook(&self, channel_id: u64) -> String {
        let id = self.shared().world().snowflake();
        self.create_webhook_with(channel_id, id, &format!("fake-webhook-token-{id}"))
    }

    /// [`create_webhook`](Self::create_webhook) with an id and a token known
    /// in advance (a demo's configuration names the URL before the fake
    /// runs); an existing webhook of that id is replaced.
    pub fn create_webhook_with(&self, channel_id: u64, id: u64, token: &str) -> String {
        self.shared().world().webhooks.insert(
            id,
            webhooks::Webhook {
                channel_id,
                token: token.to_owned(),
            },
        );
        format!("{}/api/webhooks/{id}/{token}", self.base_url())
    }

    /// What was posted through incoming webhooks, in order.
    pub fn webhook_messages(&self) -> Vec<WebhookMessage> {
        self.shared().world().webhook_messages.clone()
    }

    /// Waits until the webhook messages satisfy `done`, and returns them.
    pub async fn wait_webhook_messages(
        &self,
        timeout: Duration,
        done: impl FnMut(&[WebhookMessage]) -> bool,
    ) -> anyhow::Result<Vec<WebhookMessage>> {
        match self.shared().wait_webhook_messages(timeout, done).await {
            Ok(messages) => Ok(messages),
            Err(got) => anyhow::bail!(
                "fake-discord: timed out after {timeout:?} waiting for webhook messages; got {got:?}"
            ),
        }
    }

    /// Takes away (or gives back) the bot's Send Messages in `channel_id`:
    /// while it is away, every message POST there answers 403 Missing
    /// Permissions (50013) and creates nothing, as Discord answers a bot
    /// whose permission a moderator removed.
    pub fn deny_send(&self, channel_id: u64, denied: bool) {
        let mut w = self.shared().world();
        if denied {
            w.send_denied.entry(channel_id).or_insert(0);
        } else {
            w.send_denied.remove(&channel_id);
        }
    }

    /// How many message POSTs [`deny_send`](Self::deny_send) refused in
    /// `channel_id` since it took the permission away; `None` while the bot
    /// may post there.
    pub fn send_refusals(&self, channel_id: u64) -> Option<u64> {
        self.shared().world().send_denied.get(&channel_id).copied()
    }

    /// Takes away (or gives back) the bot's Read Message History in
    /// `channel_id`: listing its messages answers 403, Missing Access.
    pub fn deny_history(&self, channel_id: u64, denied: bool) {
        let mut w = self.shared().world();
        if denied {
            w.history_denied.insert(channel_id);
        } else {
            w.history_denied.remove(&channel_id);
        }
    }

    /// The shape of the channel buckets from now on (see [`BucketModel`]).
    pub fn set_channel_model(&self, model: BucketModel) {
        self.shared().world().limits.model = model;
    }
}
