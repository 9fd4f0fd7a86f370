//! The WebSocket gateway: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE,
//! RESUME (in any order relative to HELLO) with replay of missed dispatches,
//! INVALID_SESSION, and MESSAGE_CREATE dispatches for injected messages.
//!
//! Every frame is a TEXT frame with plain JSON (never a binary/zlib frame).
//!
//! Sharding follows Discord. IDENTIFY carries `shard: [shard_id,
//! num_shards]` (none means `[0, 1]`); an out-of-range pair is closed with
//! 4010 (Invalid shard), and with `FakeConfig::sharding_required` a count
//! below the recommended `FakeConfig::shards` is closed with 4011
//! (Sharding required). A guild belongs to shard `(guild_id >> 22) %
//! num_shards`; its READY entry, GUILD_CREATE and every dispatch about it go
//! to that shard's session only, and DMs go to shard 0. IDENTIFYs of one
//! rate-limit bucket (`shard_id % max_concurrency`) closer than 5 s are
//! counted (`Stats::identify_too_fast`) and logged, not refused.
//!
//! There is one session per shard: the last one IDENTIFIED for it. An
//! IDENTIFY with another shard count starts a new layout and ends every
//! session of the old one. (Discord keeps every session and sends each its
//! events; the fake keeps the newest, as a takeover by a new leader wants.) Dispatches get increasing sequence numbers per
//! session and are kept in a bounded log, so a RESUME with `seq` gets every
//! dispatch after `seq` replayed, then RESUMED. Dispatches go only to the
//! connection attached to their shard's session; while none is (between a
//! drop and the RESUME) they are only logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::payloads::{self, intents};
use crate::state::{Author, FrameLog, Shared, Stats, World};

/// Heartbeat interval announced in HELLO (Discord's usual value).
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// Dispatches kept for replay.
const LOG_CAP: usize = 10_000;
/// Discord lets `max_concurrency` IDENTIFYs through per this period, one
/// per rate-limit bucket.
const IDENTIFY_PERIOD: Duration = Duration::from_secs(5);

/// The shard that receives a guild's events among `num_shards`: Discord's
/// `(guild_id >> 22) % num_shards`. DMs go to shard 0.
pub fn shard_of(guild_id: u64, num_shards: u32) -> u32 {
    // The remainder is below `num_shards`, so it fits a u32.
    ((guild_id >> 22) % u64::from(num_shards.max(1))) as u32
}

/// What a connection task is asked to do.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(String),
    /// Everything queued before this was written: the session is usable.
    MarkReady,
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Send a close frame with this code and reason, then hang up.
    Close(u16, &'static str),
}

/// A shard's gateway session (from IDENTIFY until invalidated or replaced).
#[derive(Debug)]
pub(crate) struct Session {
    id: String,
    seq: u64,
    intents: u64,
    log: FrameLog,
    /// The connection attached to the session.
    current: Option<u64>,
    /// READY/RESUMED was written on `current`.
    ready: bool,
}

impl Session {
    fn is_ready(&self) -> bool {
        self.ready && self.current.is_some()
    }
}

#[derive(Debug, Default)]
pub(crate) struct GatewayState {
    next_conn: u64,
    live: HashMap<u64, mpsc::UnboundedSender<Outbound>>,
    /// The shard count of the sessions (the last IDENTIFY's `num_shards`);
    /// 0 before the first IDENTIFY.
    num_shards: u32,
    /// Each shard's session.
    sessions: BTreeMap<u32, Session>,
    resume_refused: bool,
    /// When the last READY was dispatched (IDENTIFY answered).
    ready_sent_at: Option<Instant>,
    /// When each rate-limit bucket (`shard_id % max_concurrency`) last
    /// IDENTIFIED.
    last_identify: HashMap<u32, Instant>,
}

impl GatewayState {
    /// Every shard of the layout has a session with a connection on which
    /// READY or RESUMED was written.
    pub(crate) fn is_ready(&self) -> bool {
        self.num_shards > 0
            && (0..self.num_shards)
                .all(|shard| self.sessions.get(&shard).is_some_and(Session::is_ready))
    }

    /// The shards whose session is ready now, in order.
    pub(crate) fn ready_shards(&self) -> Vec<u32> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.is_ready())
            .map(|(shard, _)| *shard)
            .collect()
    }

    /// The shard count of the sessions; 0 before the first IDENTIFY.
    pub(crate) fn num_shards(&self) -> u32 {
        self.num_shards
    }

    pub(crate) fn ready_sent_at(&self) -> Option<Instant> {
        self.ready_sent_at
    }

    pub(crate) fn set_resume_allowed(&mut self, allowed: bool) {
        self.resume_refused = !allowed;
    }

    /// Drops every live connection (no close frame); dispatches are logged
    /// for replay until the bot resumes.
    pub(crate) fn drop_connections(&mut self) {
        for tx in self.live.values() {
            let _ = tx.send(Outbound::Drop);
        }
        for s in self.sessions.values_mut() {
            s.current = None;
            s.ready = false;
        }
    }

    /// Sends op 7 RECONNECT on every shard's connection (Discord does this
    /// before moving a session); the bot should RESUME on a new connection.
    /// False when no connection is attached to a session.
    pub(crate) fn request_reconnect(&mut self) -> bool {
        let mut sent = false;
        for s in self.sessions.values() {
            if let Some(tx) = s.current.and_then(|c| self.live.get(&c)) {
                sent |= tx.send(Outbound::Frame(op_frame(7, Value::Null))).is_ok();
            }
        }
        sent
    }

    /// The shard of a guild's events (shard 0 for DMs: `None`).
    fn shard_for(&self, guild_id: Option<u64>) -> u32 {
        guild_id.map_or(0, |g| shard_of(g, self.num_shards))
    }

    /// Sends the dispatch `t` about `guild_id` (`None`: a DM) to the
    /// session of its shard (logged for replay). Returns false when that
    /// shard has no session.
    pub(crate) fn dispatch(&mut self, guild_id: Option<u64>, t: &str, d: Value) -> bool {
        let shard = self.shard_for(guild_id);
        self.dispatch_on(shard, t, d)
    }

    /// Sends the dispatch `t` to the session of `shard`.
    fn dispatch_on(&mut self, shard: u32, t: &str, d: Value) -> bool {
        let Some(s) = self.sessions.get_mut(&shard) else {
            return false;
        };
        s.seq += 1;
        // The same JSON as `json!({"t", "s", "op", "d"})`, without building
        // a map around `d` first.
        let frame = format!(r#"{{"d":{d},"op":0,"s":{},"t":{}}}"#, s.seq, Value::from(t));
        s.log.push_back((s.seq, frame.clone()));
        if s.log.len() > LOG_CAP {
            s.log.pop_front();
        }
        if let Some(tx) = s.current.and_then(|c| self.live.get(&c)) {
            let _ = tx.send(Outbound::Frame(frame));
        }
        true
    }

    /// The intents of the session that receives `guild_id`'s events (`None`:
    /// DMs); `None` when that shard has no session.
    pub(crate) fn intents(&self, guild_id: Option<u64>) -> Option<u64> {
        let shard = self.shard_for(guild_id);
        self.sessions.get(&shard).map(|s| s.intents)
    }

    /// The session `conn` is attached to.
    fn session_of_conn(&mut self, conn: u64) -> Option<&mut Session> {
        self.sessions.values_mut().find(|s| s.current == Some(conn))
    }

    /// Notes an IDENTIFY of rate-limit bucket `bucket`; counts it in
    /// `stats` when it came sooner than Discord allows after the last one.
    fn pace_identify(&mut self, bucket: u32, now: Instant, stats: &mut Stats) {
        if let Some(last) = self.last_identify.insert(bucket, now) {
            let gap = now.saturating_duration_since(last);
            if gap < IDENTIFY_PERIOD {
                stats.identify_too_fast += 1;
                tracing::warn!(
                    bucket,
                    gap_ms = gap.as_millis() as u64,
                    "gateway IDENTIFY sooner than Discord allows (one per 5 s per \
                     shard_id % max_concurrency)"
                );
            }
        }
    }
}

/// `GET /gateway` (with any query string, e.g. `?v=10`): the WebSocket.
pub(crate) async fn upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| run_connection(shared, socket))
}

fn op_frame(op: u8, d: Value) -> String {
    json!({ "t": null, "s": null, "op": op, "d": d }).to_string()
}

struct Conn {
    id: u64,
    identified: bool,
    tx: mpsc::UnboundedSender<Outbound>,
}

async fn run_connection(shared: Arc<Shared>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut w = shared.world();
        w.gw.next_conn += 1;
        let id = w.gw.next_conn;
        w.gw.live.insert(id, tx.clone());
        id
    };
    tracing::debug!(conn = id, "gateway connection opened");
    let mut conn = Conn {
        id,
        identified: false,
        tx,
    };
    let hello = op_frame(
        10,
        json!({ "heartbeat_interval": HEARTBEAT_INTERVAL_MS, "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"] }),
    );
    let mut open = socket.send(Message::text(hello)).await.is_ok();
    while open {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Frame(frame)) => {
                    open = socket.send(Message::text(frame)).await.is_ok();
                }
                Some(Outbound::MarkReady) => {
                    let mut w = shared.world();
                    if let Some(session) = w.gw.session_of_conn(id) {
                        session.ready = true;
                        shared.publish_gateway(&w);
                    }
                }
                Some(Outbound::Drop) | None => {
                    tracing::debug!(conn = id, "dropping gateway connection");
                    open = false;
                }
                Some(Outbound::Close(code, reason)) => {
                    tracing::debug!(conn = id, code, reason, "closing gateway connection");
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    let _ = socket.close().await;
                    open = false;
                }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => handle_frame(&shared, &mut conn, text.as_str()),
                Some(Ok(Message::Close(_))) => {
                    // Flushes tungstenite's automatic close reply.
                    let _ = socket.close().await;
                    open = false;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => open = false,
            },
        }
    }
    drop(socket);
    let mut w = shared.world();
    w.gw.live.remove(&id);
    if let Some(session) = w.gw.session_of_conn(id) {
        session.current = None;
        session.ready = false;
        shared.publish_gateway(&w);
    }
    tracing::debug!(conn = id, "gateway connection closed");
}

fn handle_frame(shared: &Shared, conn: &mut Conn, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        let _ = conn
            .tx
            .send(Outbound::Close(4002, "Error while decoding payload."));
        return;
    };
    let d = v.get("d").cloned().unwrap_or(Value::Null);
    match v.get("op").and_then(Value::as_u64) {
        Some(1) => {
            let _ = conn.tx.send(Outbound::Frame(op_frame(11, Value::Null)));
        }
        Some(2) => identify(shared, conn, &d),
        Some(6) => resume(shared, conn, &d),
        // presence update, voice state, request guild members, soundboard
        Some(3 | 4 | 8 | 31) if conn.identified => {}
        Some(3 | 4 | 8 | 31) => {
            let _ = conn.tx.send(Outbound::Close(4003, "Not authenticated."));
        }
        _ => {
            let _ = conn.tx.send(Outbound::Close(4001, "Unknown opcode."));
        }
    }
}

/// Closes `conn` with `code` for a refused IDENTIFY, and counts it.
fn refuse(shared: &Shared, conn: &Conn, code: u16, reason: &'static str) {
    shared.world().stats.identify_refused += 1;
    tracing::info!(conn = conn.id, code, reason, "gateway IDENTIFY refused");
    let _ = conn.tx.send(Outbound::Close(code, reason));
}

/// IDENTIFY's `shard: [shard_id, num_shards]` (absent: `[0, 1]`); `None`
/// when it is no valid pair.
fn shard_pair(shard: Option<&Value>) -> Option<(u32, u32)> {
    let Some(shard) = shard.filter(|s| !s.is_null()) else {
        return Some((0, 1));
    };
    let pair = shard.as_array().filter(|a| a.len() == 2)?;
    let id = u32::try_from(pair[0].as_u64()?).ok()?;
    let total = u32::try_from(pair[1].as_u64()?).ok()?;
    (id < total).then_some((id, total))
}

fn identify(shared: &Shared, conn: &mut Conn, d: &Value) {
    if conn.identified {
        let _ = conn
            .tx
            .send(Outbound::Close(4005, "Already authenticated."));
        return;
    }
    let token_ok = d
        .get("token")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    if !token_ok {
        refuse(shared, conn, 4004, "Authentication failed.");
        return;
    }
    let Some(wanted) = d.get("intents").and_then(Value::as_u64) else {
        refuse(shared, conn, 4013, "Invalid intent(s).");
        return;
    };
    if wanted & intents::PRIVILEGED & !shared.privileged_intents != 0 {
        refuse(shared, conn, 4014, "Disallowed intent(s).");
        return;
    }
    let Some((shard, num_shards)) = shard_pair(d.get("shard")) else {
        refuse(shared, conn, 4010, "Invalid shard.");
        return;
    };
    if shared.sharding_required && num_shards < shared.shards {
        // Discord: the session would hold more guilds than one shard may.
        refuse(shared, conn, 4011, "Sharding required.");
        return;
    }
    conn.identified = true;
    let mut guard = shared.world();
    let w = &mut *guard;
    w.gw.pace_identify(shard % shared.max_concurrency, Instant::now(), &mut w.stats);
    let session_id = format!(
        "{:016x}{:016x}",
        w.snowflake(),
        conn.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    if w.gw.num_shards != num_shards {
        // A new layout: the sessions of the old one get nothing more.
        w.gw.sessions.clear();
        w.gw.num_shards = num_shards;
    }
    w.gw.sessions.insert(
        shard,
        Session {
            id: session_id.clone(),
            seq: 0,
            intents: wanted,
            log: FrameLog::new(),
            current: Some(conn.id),
            ready: false,
        },
    );
    w.stats.identify += 1;
    let guilds: Vec<_> = shared
        .guilds
        .iter()
        .filter(|g| shard_of(g.id, num_shards) == shard)
        .collect();
    let guild_ids: Vec<u64> = guilds.iter().map(|g| g.id).collect();
    let resume_url = shared.gateway_url();
    let ready = payloads::ready(&payloads::ReadyView {
        bot_id: shared.bot_user_id,
        application_id: shared.application_id,
        guild_ids: &guild_ids,
        session_id: &session_id,
        resume_gateway_url: &resume_url,
        shard: d.get("shard").filter(|s| s.is_array()).cloned(),
    });
    w.gw.dispatch_on(shard, "READY", ready);
    w.gw.ready_sent_at = Some(Instant::now());
    for g in guilds
        .into_iter()
        .filter(|g| !shared.withheld_guilds.contains(&g.id))
    {
        let guild = payloads::guild_create(&payloads::GuildView {
            id: g.id,
            channels: &g.channels,
            bot_id: shared.bot_user_id,
            joined_at: &shared.joined_at,
        });
        w.gw.dispatch_on(shard, "GUILD_CREATE", guild);
    }
    let _ = conn.tx.send(Outbound::MarkReady);
    shared.publish_gateway(w);
    tracing::info!(
        conn = conn.id,
        session = %session_id,
        intents = wanted,
        shard,
        num_shards,
        guilds = guild_ids.len(),
        "gateway IDENTIFY → READY"
    );
}

fn resume(shared: &Shared, conn: &mut Conn, d: &Value) {
    let session_id = d.get("session_id").and_then(Value::as_str).unwrap_or("");
    let client_seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let mut w = shared.world();
    let refused = w.gw.resume_refused;
    let shard =
        w.gw.sessions
            .iter()
            .find(|(_, s)| s.id == session_id)
            .map(|(shard, _)| *shard);
    let replay = match shard.and_then(|k| w.gw.sessions.get(&k)) {
        Some(s) if !refused => {
            // Every dispatch after `client_seq` is still in the log.
            let covered = match s.log.front() {
                Some((first, _)) => *first <= client_seq + 1,
                None => true,
            };
            covered.then(|| {
                s.log
                    .iter()
                    .filter(|(seq, _)| *seq > client_seq)
                    .map(|(_, f)| f.clone())
                    .collect::<Vec<_>>()
            })
        }
        _ => None,
    };
    let (Some(shard), Some(replay)) = (shard, replay) else {
        if let Some(shard) = shard {
            // The session dies: the bot must IDENTIFY again.
            w.gw.sessions.remove(&shard);
            shared.publish_gateway(&w);
        }
        let _ = conn
            .tx
            .send(Outbound::Frame(op_frame(9, Value::Bool(false))));
        tracing::info!(conn = conn.id, "gateway RESUME refused → INVALID_SESSION");
        return;
    };
    conn.identified = true;
    // Detach any other connection, attach this one.
    if let Some(s) = w.gw.sessions.get_mut(&shard) {
        s.current = Some(conn.id);
        s.ready = false;
    }
    let replayed = replay.len();
    for frame in replay {
        let _ = conn.tx.send(Outbound::Frame(frame));
    }
    w.gw.dispatch_on(
        shard,
        "RESUMED",
        json!({ "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"] }),
    );
    w.stats.resume += 1;
    let _ = conn.tx.send(Outbound::MarkReady);
    shared.publish_gateway(&w);
    tracing::info!(conn = conn.id, shard, replayed, "gateway RESUME → RESUMED");
}

/// Builds and dispatches MESSAGE_CREATE for a message from `author`.
pub(crate) fn inject_message(
    shared: &Shared,
    channel_id: u64,
    author: &Author,
    content: &str,
) -> anyhow::Result<u64> {
    let guild_id = shared.guild_of(channel_id);
    let mut w = shared.world();
    if !shared.channel_exists(&w, channel_id) {
        anyhow::bail!("fake-discord: unknown channel {channel_id}");
    }
    let Some(session_intents) = w.gw.intents(guild_id) else {
        anyhow::bail!(
            "fake-discord: no bot connected on shard {} (no gateway session; IDENTIFY first)",
            w.gw.shard_for(guild_id)
        );
    };
    if !author.webhook {
        w.users.insert(author.id, (author.name.clone(), author.bot));
    }
    let id = w.snowflake();
    let bot = shared.bot_user_id;
    let mention_ids = payloads::mentioned_user_ids(content);
    let mentions = mention_ids.iter().map(|u| w.user_json(*u, bot)).collect();
    let author_json = if author.webhook {
        payloads::webhook_author(author.id, &author.name, author.bot)
    } else {
        payloads::user(author.id, &author.name, author.bot)
    };
    let member = (guild_id.is_some() && !author.webhook).then(|| {
        let mut m = payloads::member(None, &shared.joined_at);
        m["roles"] = payloads::role_ids(&author.roles);
        m
    });
    let msg = payloads::message(payloads::MessageView {
        id,
        channel_id,
        guild_id,
        author: author_json,
        member,
        content: content.to_string(),
        timestamp: payloads::timestamp(std::time::SystemTime::now()),
        tts: false,
        mentions,
        mention_everyone: payloads::mentions_everyone(content),
        nonce: Some(Value::from(id.to_string())),
        webhook_id: author.webhook.then_some(author.id),
        message_reference: None,
        referenced_message: None,
        components: json!([]),
        flags: 0,
    });
    w.message_objects.insert(id, msg.clone());
    w.log_message(channel_id, id);
    w.stats.injected_messages += 1;
    dispatch_message(
        &mut w,
        bot,
        guild_id,
        session_intents,
        msg,
        author.id,
        &mention_ids,
    );
    Ok(id)
}

/// Dispatches MESSAGE_CREATE if the session's intents ask for it, blanking
/// the content as Discord does without MESSAGE_CONTENT.
pub(crate) fn dispatch_message(
    w: &mut World,
    bot: u64,
    guild_id: Option<u64>,
    session_intents: u64,
    mut msg: Value,
    author_id: u64,
    mention_ids: &[u64],
) {
    let in_guild = guild_id.is_some();
    let wanted = if in_guild {
        session_intents & intents::GUILD_MESSAGES != 0
    } else {
        session_intents & intents::DIRECT_MESSAGES != 0
    };
    if !wanted {
        return;
    }
    let content_visible = !in_guild
        || session_intents & intents::MESSAGE_CONTENT != 0
        || author_id == bot
        || mention_ids.contains(&bot);
    if !content_visible {
        msg["content"] = Value::from("");
        msg["embeds"] = json!([]);
        msg["attachments"] = json!([]);
        msg["components"] = json!([]);
    }
    w.gw.dispatch(guild_id, "MESSAGE_CREATE", msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guild id whose shard among `n` is `(k % n)`: a snowflake with `k`
    /// above its 22 low bits, as Discord's ids have their timestamp there.
    fn guild(k: u64) -> u64 {
        (k << 22) | 0x2a_5a5a
    }

    #[test]
    fn a_guild_goes_to_the_shard_of_its_timestamp_bits() {
        assert_eq!(shard_of(guild(10), 2), 0);
        assert_eq!(shard_of(guild(11), 2), 1);
        assert_eq!(shard_of(guild(11), 3), 2);
        assert_eq!(shard_of(guild(11), 1), 0);
        // The low 22 bits (worker, process, increment) never matter.
        assert_eq!(shard_of(11 << 22, 2), shard_of(guild(11), 2));
        // Discord's own example: 175928847299117063 >> 22 = 41944705796.
        assert_eq!(175_928_847_299_117_063u64 >> 22, 41_944_705_796);
        assert_eq!(shard_of(175_928_847_299_117_063, 16), 4);
        // The ids of the default world are all below 1 << 22: shard 0.
        assert_eq!(shard_of(8000, 2), 0);
    }

    #[test]
    fn identify_shard_pairs_are_checked_like_discord() {
        assert_eq!(shard_pair(None), Some((0, 1)));
        assert_eq!(shard_pair(Some(&Value::Null)), Some((0, 1)));
        assert_eq!(shard_pair(Some(&json!([1, 2]))), Some((1, 2)));
        for invalid in [
            json!([2, 2]),
            json!([0, 0]),
            json!([-1, 2]),
            json!([0]),
            json!([0, 1, 2]),
            json!("0,1"),
            json!([0, 4_294_967_296u64]),
        ] {
            assert_eq!(shard_pair(Some(&invalid)), None, "{invalid}");
        }
    }

    /// A state with `n` shards, each with a session on a live connection
    /// (connection id = shard id + 1), and the receiving end of each.
    fn sharded(n: u32) -> (GatewayState, Vec<mpsc::UnboundedReceiver<Outbound>>) {
        let mut gw = GatewayState {
            num_shards: n,
            ..GatewayState::default()
        };
        let mut rxs = Vec::new();
        for shard in 0..n {
            let (tx, rx) = mpsc::unbounded_channel();
            let conn = u64::from(shard) + 1;
            gw.live.insert(conn, tx);
            gw.sessions.insert(
                shard,
                Session {
                    id: format!("session-{shard}"),
                    seq: 0,
                    intents: u64::from(shard),
                    log: FrameLog::new(),
                    current: Some(conn),
                    ready: false,
                },
            );
            rxs.push(rx);
        }
        (gw, rxs)
    }

    /// The event names received so far.
    fn received(rx: &mut mpsc::UnboundedReceiver<Outbound>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(out) = rx.try_recv() {
            if let Outbound::Frame(f) = out {
                let v: Value = serde_json::from_str(&f).unwrap();
                names.push(format!("{}:{}", v["t"].as_str().unwrap(), v["d"]["n"]));
            }
        }
        names
    }

    #[test]
    fn dispatches_go_to_the_guilds_shard_and_dms_to_shard_0() {
        let (mut gw, mut rx) = sharded(2);
        assert!(gw.dispatch(Some(guild(10)), "MESSAGE_CREATE", json!({ "n": 1 })));
        assert!(gw.dispatch(Some(guild(11)), "MESSAGE_CREATE", json!({ "n": 2 })));
        assert!(gw.dispatch(None, "MESSAGE_CREATE", json!({ "n": 3 })));
        assert!(gw.dispatch(Some(guild(13)), "INTERACTION_CREATE", json!({ "n": 4 })));
        assert_eq!(
            received(&mut rx[0]),
            ["MESSAGE_CREATE:1", "MESSAGE_CREATE:3"]
        );
        assert_eq!(
            received(&mut rx[1]),
            ["MESSAGE_CREATE:2", "INTERACTION_CREATE:4"]
        );
        // Each session numbers its own dispatches.
        assert_eq!(gw.sessions[&0].seq, 2);
        assert_eq!(gw.sessions[&1].seq, 2);
        // The intents asked are those of the guild's shard's session.
        assert_eq!(gw.intents(Some(guild(11))), Some(1));
        assert_eq!(gw.intents(None), Some(0));
    }

    #[test]
    fn a_shard_without_a_session_gets_nothing_and_the_bot_is_not_ready() {
        let (mut gw, mut rx) = sharded(2);
        gw.sessions.remove(&1);
        assert!(!gw.dispatch(Some(guild(11)), "MESSAGE_CREATE", json!({ "n": 1 })));
        assert_eq!(gw.intents(Some(guild(11))), None);
        assert!(received(&mut rx[1]).is_empty());
        assert!(received(&mut rx[0]).is_empty());

        let (mut gw, _rx) = sharded(2);
        assert!(!gw.is_ready());
        gw.session_of_conn(1).unwrap().ready = true;
        assert_eq!(gw.ready_shards(), [0]);
        assert!(!gw.is_ready(), "one shard of two is no READY bot");
        gw.session_of_conn(2).unwrap().ready = true;
        assert_eq!(gw.ready_shards(), [0, 1]);
        assert!(gw.is_ready());
        gw.drop_connections();
        assert!(gw.ready_shards().is_empty());
        assert!(!gw.is_ready());
    }

    #[test]
    fn identifies_of_one_bucket_within_5_s_are_counted() {
        let mut gw = GatewayState::default();
        let mut stats = Stats::default();
        let t0 = Instant::now();
        gw.pace_identify(0, t0, &mut stats);
        gw.pace_identify(0, t0 + Duration::from_millis(5_000), &mut stats);
        assert_eq!(stats.identify_too_fast, 0);
        gw.pace_identify(0, t0 + Duration::from_millis(9_999), &mut stats);
        assert_eq!(stats.identify_too_fast, 1);
        // Another bucket (max_concurrency > 1) has its own pace.
        gw.pace_identify(1, t0 + Duration::from_millis(10_000), &mut stats);
        assert_eq!(stats.identify_too_fast, 1);
    }
}
