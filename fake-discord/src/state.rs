//! The fake's world model: guilds and channels, DM channels, known users,
//! the messages the bot created (with their nonces), counters, the request
//! log, the fault knobs and the rate-limit state. One `std::sync::Mutex`
//! guards it; it is never held across an `.await`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::gateway::GatewayState;
use crate::payloads::{self, DISCORD_EPOCH_MS};
use crate::ratelimit::Limits;
use crate::{FakeConfig, GuildSpec};

/// Who an injected message comes from.
#[derive(Clone, Debug)]
pub struct Author {
    pub id: u64,
    pub name: String,
    /// `author.bot` in the payload.
    pub bot: bool,
    /// A webhook message: `webhook_id` is set (to `id`) and no `member` is sent.
    pub webhook: bool,
    /// Role ids of the member in guilds (besides `@everyone`), e.g.
    /// [`crate::FakeDiscord::manager_role`].
    pub roles: Vec<u64>,
}

impl Author {
    /// A human user named `user<id>`.
    pub fn user(id: u64) -> Self {
        Author {
            id,
            name: format!("user{id}"),
            bot: false,
            webhook: false,
            roles: Vec::new(),
        }
    }

    /// The same author, with these roles in every guild.
    pub fn with_roles(mut self, roles: &[u64]) -> Self {
        self.roles = roles.to_vec();
        self
    }

    /// Another bot, named `bot<id>`.
    pub fn bot(id: u64) -> Self {
        Author {
            id,
            name: format!("bot{id}"),
            bot: true,
            webhook: false,
            roles: Vec::new(),
        }
    }

    /// A webhook named `webhook<id>`; like Discord, its author object says `bot: true`.
    pub fn webhook(id: u64) -> Self {
        Author {
            id,
            name: format!("webhook{id}"),
            bot: true,
            webhook: true,
            roles: Vec::new(),
        }
    }
}

/// A message the bot created with `POST /channels/{id}/messages`.
#[derive(Clone, Debug)]
pub struct PostedMessage {
    pub id: u64,
    pub channel_id: u64,
    pub content: String,
    /// The request's `nonce`, as a string (numbers are rendered in decimal).
    pub nonce: Option<String>,
    pub enforce_nonce: bool,
    pub allowed_mentions: Option<Value>,
    pub message_reference: Option<Value>,
    pub components: Option<Value>,
    /// The whole request body.
    pub body: Value,
    pub at: Instant,
    /// When its channel's bucket first had room for it, if the bucket was
    /// full before it (see `BucketState::room_from`): the earliest
    /// Discord's per-channel limit let it arrive.
    pub room_from: Option<Instant>,
    /// Milliseconds since the fake started.
    pub at_ms: u64,
}

/// Counters since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// `POST /channels/{id}/messages` requests received (every outcome).
    pub message_posts: u64,
    /// Messages created.
    pub created: u64,
    /// POSTs answered with an existing message because of `enforce_nonce`.
    pub nonce_duplicates: u64,
    /// `GET /channels/{id}/messages` requests with a valid query.
    pub history_lists: u64,
    /// 429 answers served (injected and enforced, global and per channel).
    pub rate_limited: u64,
    /// Of those, 429s of an enforced channel bucket (a message POST over
    /// the channel's limit).
    pub rate_limited_channel: u64,
    /// The most any of those arrived before its window ended, in ms: a few
    /// ms is a race at the window's edge (arrival jitter), a second or more
    /// a request the sender should have known not to send.
    pub channel_429_max_early_ms: u64,
    /// Answers replaced by `fail_next` (plus requests swallowed by `hang_next`).
    pub injected_errors: u64,
    /// Requests swallowed by `hang_next`.
    pub hung: u64,
    /// Messages injected with `inject_message`.
    pub injected_messages: u64,
    /// Gateway IDENTIFYs answered with READY.
    pub identify: u64,
    /// Gateway IDENTIFYs closed with a close code instead (4004, 4010,
    /// 4011, 4013, 4014).
    pub identify_refused: u64,
    /// IDENTIFYs answered although they came sooner than Discord allows:
    /// within 5 s of the last one of their rate-limit bucket
    /// (`shard_id % max_concurrency`).
    pub identify_too_fast: u64,
    /// Gateway RESUMEs answered with RESUMED.
    pub resume: u64,
    /// Every `/api` request.
    pub requests: u64,
}

/// One REST request as the fake answered it.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The status answered; 0 for a request `hang_next` never answered.
    pub status: u16,
    #[serde(skip)]
    pub at: Instant,
    /// Milliseconds since the fake started, when the request arrived.
    pub at_ms: u64,
}

/// One REST exchange with its JSON bodies (see `FakeConfig::record_exchanges`).
#[derive(Clone, Debug, Serialize)]
pub struct Exchange {
    pub method: String,
    /// The path without `/api/v10` and without the query.
    pub path: String,
    pub request: Option<Value>,
    pub status: u16,
    pub response: Option<Value>,
}

/// A message posted through an incoming webhook (`POST /webhooks/{id}/{token}`).
#[derive(Clone, Debug, Serialize)]
pub struct WebhookMessage {
    pub webhook_id: u64,
    pub channel_id: u64,
    pub content: String,
    /// The body as the sender posted it (`embeds` and all).
    pub body: Value,
    #[serde(skip)]
    pub at: Instant,
}

/// A fault armed for the next message POSTs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    Hang,
    Fail(u16),
    RateLimit { retry_after: f64, global: bool },
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub latency: Duration,
    pub hang: usize,
    pub fail: usize,
    pub fail_status: u16,
    pub rate_limit: usize,
    pub rate_limit_retry_after: f64,
    pub rate_limit_global: bool,
}

impl Faults {
    /// Takes the fault for the next message POST, if one is armed.
    pub(crate) fn take(&mut self) -> Option<Fault> {
        if self.hang > 0 {
            self.hang -= 1;
            Some(Fault::Hang)
        } else if self.fail > 0 {
            self.fail -= 1;
            Some(Fault::Fail(self.fail_status))
        } else if self.rate_limit > 0 {
            self.rate_limit -= 1;
            Some(Fault::RateLimit {
                retry_after: self.rate_limit_retry_after,
                global: self.rate_limit_global,
            })
        } else {
            None
        }
    }
}

/// Everything mutable.
pub(crate) struct World {
    last_snowflake: u64,
    /// Known users other than the bot: id → (name, bot).
    pub users: HashMap<u64, (String, bool)>,
    pub dm_by_user: HashMap<u64, u64>,
    pub dm_user: HashMap<u64, u64>,
    pub messages: Vec<PostedMessage>,
    /// channel → indexes in `messages`.
    by_channel: HashMap<u64, Vec<usize>>,
    /// Message objects by id (injected and created), for replies.
    pub message_objects: HashMap<u64, Value>,
    /// (channel, nonce) → (index in `messages`, created at).
    pub nonces: HashMap<(u64, String), (usize, Instant)>,
    /// channel → ids of every message in it (injected and created), oldest
    /// first: the channel's history as `GET /channels/{id}/messages` lists it.
    pub channel_log: HashMap<u64, Vec<u64>>,
    /// Channels whose history the bot may not read (no Read Message
    /// History): listing them answers 403, Missing Access.
    pub history_denied: HashSet<u64>,
    /// Channels where the bot may not post (no Send Messages), each with the
    /// message POSTs refused there since: they answer 403, Missing
    /// Permissions.
    pub send_denied: HashMap<u64, u64>,
    pub stats: Stats,
    pub requests: Vec<RequestRecord>,
    pub exchanges: Vec<Exchange>,
    /// Incoming webhooks by id, and what was posted through them.
    pub webhooks: HashMap<u64, crate::webhooks::Webhook>,
    pub webhook_messages: Vec<WebhookMessage>,
    pub faults: Faults,
    pub limits: Limits,
    pub gw: GatewayState,
    /// Registered application commands: `None` = global, `Some(guild)`.
    pub commands: HashMap<Option<u64>, Vec<Value>>,
    /// Bulk overwrites of commands still to fail (`fail_command_registration`).
    pub fail_commands: usize,
    /// `GET /guilds/{id}` still to fail (`fail_guild_reads`).
    pub fail_guild_reads: usize,
    /// Interactions dispatched, by id, until answered or expired.
    pub interactions: HashMap<u64, PendingInteraction>,
    /// Every callback received, in order (accepted or not).
    pub interaction_responses: Vec<InteractionResponse>,
    /// Every accepted edit of an interaction's answer, in order.
    pub interaction_edits: Vec<InteractionEdit>,
}

/// An edit of an interaction's answer (`PATCH …/messages/@original`).
#[derive(Clone, Debug, Serialize)]
pub struct InteractionEdit {
    pub interaction_id: u64,
    pub channel_id: u64,
    pub content: String,
    pub allowed_mentions: Option<Value>,
    pub body: Value,
    /// From the dispatch of INTERACTION_CREATE to the edit.
    pub elapsed_ms: u64,
}

/// An interaction dispatched to the bot.
#[derive(Clone, Debug)]
pub(crate) struct PendingInteraction {
    pub token: String,
    pub channel_id: u64,
    /// The message a pressed button is on.
    pub message_id: Option<u64>,
    pub dispatched: Instant,
    pub answered: bool,
}

/// A callback (`POST /interactions/{id}/{token}/callback`) the bot made.
#[derive(Clone, Debug, Serialize)]
pub struct InteractionResponse {
    pub interaction_id: u64,
    pub channel_id: u64,
    /// The response type: 4 message, 5 deferred, 6 deferred update, 7 update message.
    #[serde(rename = "type")]
    pub kind: u64,
    /// `data.flags` (64: ephemeral).
    pub flags: u64,
    pub content: Option<String>,
    pub components: Option<Value>,
    pub allowed_mentions: Option<Value>,
    /// The whole request body.
    pub body: Value,
    /// What the fake answered: 204, 404 (unknown or expired: code 10062),
    /// 400 (already acknowledged: 40060, or a malformed body).
    pub status: u16,
    /// From the dispatch of INTERACTION_CREATE to the callback's arrival.
    pub elapsed_ms: u64,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl InteractionResponse {
    pub fn ephemeral(&self) -> bool {
        self.flags & 64 != 0
    }

    /// Discord accepted it (within the window, first answer, valid body).
    pub fn accepted(&self) -> bool {
        self.status == 204
    }
}

/// What [`World::take_history`] took out, dropped by the caller outside
/// the lock.
#[allow(dead_code)] // held only to be dropped
pub(crate) struct History(
    Vec<PostedMessage>,
    HashMap<u64, Vec<usize>>,
    HashMap<u64, Value>,
    HashMap<(u64, String), (usize, Instant)>,
    Vec<RequestRecord>,
    HashMap<u64, Vec<u64>>,
);

impl World {
    /// Takes every recorded message, message object, nonce and request
    /// out of the world (counters stay).
    pub(crate) fn take_history(&mut self) -> History {
        History(
            std::mem::take(&mut self.messages),
            std::mem::take(&mut self.by_channel),
            std::mem::take(&mut self.message_objects),
            std::mem::take(&mut self.nonces),
            std::mem::take(&mut self.requests),
            std::mem::take(&mut self.channel_log),
        )
    }

    /// A fresh snowflake, increasing, with a realistic timestamp part.
    pub(crate) fn snowflake(&mut self) -> u64 {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(DISCORD_EPOCH_MS)
            .saturating_sub(DISCORD_EPOCH_MS);
        let id = (ms << 22).max(self.last_snowflake + 1);
        self.last_snowflake = id;
        id
    }

    /// Notes message `id` in `channel_id`'s history (ids only grow, so the
    /// log stays sorted).
    pub(crate) fn log_message(&mut self, channel_id: u64, id: u64) {
        self.channel_log.entry(channel_id).or_default().push(id);
    }

    /// Records a created message; returns its index in `messages`.
    pub(crate) fn push_message(&mut self, m: PostedMessage) -> usize {
        let idx = self.messages.len();
        self.by_channel.entry(m.channel_id).or_default().push(idx);
        self.messages.push(m);
        idx
    }

    /// An edit of a created message (an interaction's UPDATE_MESSAGE).
    pub(crate) fn update_posted(
        &mut self,
        message_id: u64,
        content: Option<&str>,
        components: Option<&Value>,
    ) {
        if let Some(m) = self.messages.iter_mut().rev().find(|m| m.id == message_id) {
            if let Some(c) = content {
                m.content = c.to_owned();
            }
            if let Some(c) = components {
                m.components = Some(c.clone());
            }
        }
    }

    pub(crate) fn channel_messages(&self, channel_id: u64) -> Vec<PostedMessage> {
        self.by_channel
            .get(&channel_id)
            .map(|idx| idx.iter().map(|i| self.messages[*i].clone()).collect())
            .unwrap_or_default()
    }

    /// The messages of `channel_id` from the `from`-th on (0-based).
    pub(crate) fn channel_messages_from(&self, channel_id: u64, from: usize) -> Vec<PostedMessage> {
        self.by_channel
            .get(&channel_id)
            .and_then(|idx| idx.get(from..))
            .map(|idx| idx.iter().map(|i| self.messages[*i].clone()).collect())
            .unwrap_or_default()
    }

    /// The public user object of a known (or unknown) user id.
    pub(crate) fn user_json(&self, id: u64, bot_id: u64) -> Value {
        if id == bot_id {
            return payloads::current_user(bot_id);
        }
        match self.users.get(&id) {
            Some((name, bot)) => payloads::user(id, name, *bot),
            None => payloads::user(id, &format!("user{id}"), false),
        }
    }

    /// The DM channel with `user_id`, created on first use.
    pub(crate) fn open_dm(&mut self, user_id: u64) -> u64 {
        if let Some(c) = self.dm_by_user.get(&user_id) {
            return *c;
        }
        let c = self.snowflake();
        self.dm_by_user.insert(user_id, c);
        self.dm_user.insert(c, user_id);
        c
    }
}

/// Status of the gateway as seen from the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GatewayStatus {
    /// A bot is connected on a live session of every shard (after READY or
    /// RESUMED).
    pub ready: bool,
    /// Shards connected on a live session.
    pub ready_shards: u32,
    pub identify: u64,
    pub resume: u64,
}

/// Shared by the server tasks and every `FakeDiscord` handle.
pub(crate) struct Shared {
    pub bot_user_id: u64,
    pub application_id: u64,
    pub guilds: Vec<GuildSpec>,
    pub channel_guild: HashMap<u64, u64>,
    pub nonce_ttl: Duration,
    pub privileged_intents: u64,
    /// `GET /gateway/bot`'s recommended shard count (at least 1).
    pub shards: u32,
    /// Refuse an IDENTIFY with fewer shards than `shards` (4011).
    pub sharding_required: bool,
    /// IDENTIFYs allowed per 5 s, one per `shard_id % max_concurrency` (at least 1).
    pub max_concurrency: u32,
    pub echo_own_messages: bool,
    pub record_exchanges: bool,
    pub addr: SocketAddr,
    /// `FakeConfig::public_url`, without a trailing slash.
    pub public_url: Option<String>,
    pub started: Instant,
    /// When the bot "joined" every guild.
    pub joined_at: String,
    /// How long an interaction may wait for its answer (Discord: 3 s).
    pub interaction_window: Duration,
    /// `FakeConfig::withheld_guilds`: no GUILD_CREATE for these.
    pub withheld_guilds: Vec<u64>,
    world: Mutex<World>,
    /// Bumped on every created message.
    pub messages_tx: watch::Sender<u64>,
    pub gateway_tx: watch::Sender<GatewayStatus>,
    /// Bumped on every interaction callback and command registration.
    pub events_tx: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(config: &FakeConfig, addr: SocketAddr) -> Self {
        let channel_guild = config
            .guilds
            .iter()
            .flat_map(|g| g.channels.iter().map(move |c| (*c, g.id)))
            .collect();
        let joined = SystemTime::now() - Duration::from_secs(86_400);
        Shared {
            bot_user_id: config.bot_user_id,
            application_id: config.application_id,
            guilds: config.guilds.clone(),
            channel_guild,
            nonce_ttl: config.nonce_ttl,
            privileged_intents: config.privileged_intents,
            shards: config.shards.max(1),
            sharding_required: config.sharding_required,
            max_concurrency: config.max_concurrency.max(1),
            echo_own_messages: config.echo_own_messages,
            record_exchanges: config.record_exchanges,
            addr,
            public_url: config
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            started: Instant::now(),
            joined_at: payloads::timestamp(joined),
            interaction_window: config.interaction_window,
            withheld_guilds: config.withheld_guilds.clone(),
            world: Mutex::new(World {
                last_snowflake: 0,
                users: HashMap::new(),
                dm_by_user: HashMap::new(),
                dm_user: HashMap::new(),
                messages: Vec::with_capacity(config.history_capacity),
                by_channel: HashMap::new(),
                message_objects: HashMap::with_capacity(config.history_capacity),
                nonces: HashMap::with_capacity(config.history_capacity),
                channel_log: HashMap::new(),
                history_denied: HashSet::new(),
                send_denied: HashMap::new(),
                stats: Stats::default(),
                requests: Vec::with_capacity(config.history_capacity),
                exchanges: Vec::new(),
                webhooks: HashMap::new(),
                webhook_messages: Vec::new(),
                faults: Faults::default(),
                limits: Limits::new(
                    config.global_limit,
                    config.channel_limit,
                    config.channel_model,
                ),
                gw: GatewayState::default(),
                commands: HashMap::new(),
                fail_commands: 0,
                fail_guild_reads: 0,
                interactions: HashMap::new(),
                interaction_responses: Vec::new(),
                interaction_edits: Vec::new(),
            }),
            messages_tx: watch::channel(0).0,
            gateway_tx: watch::channel(GatewayStatus::default()).0,
            events_tx: watch::channel(0).0,
        }
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .expect("fake-discord state mutex poisoned")
    }

    /// Like `world`, but `None` if a panic poisoned the lock (for `Drop`).
    pub(crate) fn try_world(&self) -> Option<MutexGuard<'_, World>> {
        self.world.lock().ok()
    }

    pub(crate) fn base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", self.addr),
        }
    }

    pub(crate) fn gateway_url(&self) -> String {
        match &self.public_url {
            Some(url) => {
                let ws = match url.strip_prefix("https://") {
                    Some(rest) => format!("wss://{rest}"),
                    None => format!("ws://{}", url.strip_prefix("http://").unwrap_or(url)),
                };
                format!("{ws}/gateway")
            }
            None => format!("ws://{}/gateway", self.addr),
        }
    }

    pub(crate) fn ms_since_start(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.started).as_millis() as u64
    }

    /// The guild of a guild channel (`None` for DMs and unknown channels).
    pub(crate) fn guild_of(&self, channel_id: u64) -> Option<u64> {
        self.channel_guild.get(&channel_id).copied()
    }

    /// Whether a channel exists (guild text channel or opened DM).
    pub(crate) fn channel_exists(&self, world: &World, channel_id: u64) -> bool {
        self.channel_guild.contains_key(&channel_id) || world.dm_user.contains_key(&channel_id)
    }

    /// Publishes the gateway status from the world (call with the lock held).
    pub(crate) fn publish_gateway(&self, world: &World) {
        let status = GatewayStatus {
            ready: world.gw.is_ready(),
            ready_shards: world.gw.ready_shards().len() as u32,
            identify: world.stats.identify,
            resume: world.stats.resume,
        };
        self.gateway_tx.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    /// The messages created in `channel_id`, in order.
    pub(crate) fn channel_messages(&self, channel_id: u64) -> Vec<PostedMessage> {
        self.world().channel_messages(channel_id)
    }

    pub(crate) fn channel_messages_from(&self, channel_id: u64, from: usize) -> Vec<PostedMessage> {
        self.world().channel_messages_from(channel_id, from)
    }

    pub(crate) fn channel_message_count(&self, channel_id: u64) -> usize {
        self.world().by_channel.get(&channel_id).map_or(0, Vec::len)
    }

    /// Waits (woken by each new message) until what `read` gives satisfies
    /// `done`. `Err` carries what was there at the deadline.
    async fn wait_for<T>(
        &self,
        timeout: Duration,
        read: impl Fn(&Self) -> Vec<T>,
        mut done: impl FnMut(&[T]) -> bool,
    ) -> Result<Vec<T>, Vec<T>> {
        let mut rx = self.messages_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            let items = read(self);
            if done(&items) {
                return Ok(items);
            }
            // The sender lives in `self`, so `changed` only ends by timing out.
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(read(self));
            }
        }
    }

    /// Waits until the messages of `channel_id` satisfy `done`.
    pub(crate) async fn wait_messages(
        &self,
        channel_id: u64,
        timeout: Duration,
        done: impl FnMut(&[PostedMessage]) -> bool,
    ) -> Result<Vec<PostedMessage>, Vec<PostedMessage>> {
        self.wait_for(timeout, |s| s.channel_messages(channel_id), done)
            .await
    }

    /// Waits until the webhook messages satisfy `done`.
    pub(crate) async fn wait_webhook_messages(
        &self,
        timeout: Duration,
        done: impl FnMut(&[WebhookMessage]) -> bool,
    ) -> Result<Vec<WebhookMessage>, Vec<WebhookMessage>> {
        self.wait_for(timeout, |s| s.world().webhook_messages.clone(), done)
            .await
    }

    /// Waits until the gateway status satisfies `pred`; false on timeout.
    pub(crate) async fn wait_gateway(
        &self,
        timeout: Duration,
        pred: impl FnMut(&GatewayStatus) -> bool,
    ) -> bool {
        let mut rx = self.gateway_tx.subscribe();
        let outcome = tokio::time::timeout(timeout, rx.wait_for(pred)).await;
        matches!(outcome, Ok(Ok(_)))
    }

    /// Wakes everybody waiting for interaction answers or registrations.
    pub(crate) fn bump_events(&self) {
        self.events_tx.send_modify(|v| *v += 1);
    }

    /// Waits (woken by each callback or registration) until `check` finds
    /// something in the world; `None` on timeout.
    pub(crate) async fn wait_event<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&World) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.events_tx.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            rx.borrow_and_update();
            if let Some(found) = check(&self.world()) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Wakes everybody waiting for messages.
    pub(crate) fn bump_messages(&self) {
        self.messages_tx.send_modify(|v| *v += 1);
    }
}

/// A bounded log of dispatched frames, for replay on RESUME.
pub(crate) type FrameLog = VecDeque<(u64, String)>;
