//! The WebSocket gateway: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE,
//! RESUME (in any order relative to HELLO) with replay of missed dispatches,
//! INVALID_SESSION, and MESSAGE_CREATE dispatches for injected messages.
//!
//! Every frame is a TEXT frame with plain JSON (never a binary/zlib frame).
//! There is one session at a time: the last one IDENTIFIED. Dispatches get
//! increasing sequence numbers and are kept in a bounded log, so a RESUME
//! with `seq` gets every dispatch after `seq` replayed, then RESUMED.
//! Dispatches go only to the connection attached to the session; while none
//! is (between a drop and the RESUME) they are only logged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::payloads::{self, intents};
use crate::state::{Author, FrameLog, Shared, World};

/// Heartbeat interval announced in HELLO (Discord's usual value).
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// Dispatches kept for replay.
const LOG_CAP: usize = 10_000;

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

/// A gateway session (from IDENTIFY until invalidated or replaced).
#[derive(Debug)]
pub(crate) struct Session {
    id: String,
    seq: u64,
    intents: u64,
    log: FrameLog,
}

#[derive(Debug, Default)]
pub(crate) struct GatewayState {
    next_conn: u64,
    live: HashMap<u64, mpsc::UnboundedSender<Outbound>>,
    /// The connection attached to the session.
    current: Option<u64>,
    /// READY/RESUMED was written on `current`.
    ready: bool,
    session: Option<Session>,
    resume_refused: bool,
    /// When the last READY was dispatched (IDENTIFY answered).
    ready_sent_at: Option<std::time::Instant>,
}

impl GatewayState {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready && self.current.is_some()
    }

    pub(crate) fn ready_sent_at(&self) -> Option<std::time::Instant> {
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
        self.current = None;
        self.ready = false;
    }

    /// Sends op 7 RECONNECT on the current connection (Discord does this
    /// before moving a session); the bot should RESUME on a new connection.
    pub(crate) fn request_reconnect(&mut self) -> bool {
        match self.current.and_then(|c| self.live.get(&c)) {
            Some(tx) => tx.send(Outbound::Frame(op_frame(7, Value::Null))).is_ok(),
            None => false,
        }
    }

    /// Sends the dispatch `t` to the session (logged for replay). Returns
    /// false when there is no session.
    pub(crate) fn dispatch(&mut self, t: &str, d: Value) -> bool {
        let Some(s) = self.session.as_mut() else {
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
        if let Some(tx) = self.current.and_then(|c| self.live.get(&c)) {
            let _ = tx.send(Outbound::Frame(frame));
        }
        true
    }

    /// The intents of the current session.
    pub(crate) fn intents(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.intents)
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
                    if w.gw.current == Some(id) {
                        w.gw.ready = true;
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
    if w.gw.current == Some(id) {
        w.gw.current = None;
        w.gw.ready = false;
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
        let _ = conn
            .tx
            .send(Outbound::Close(4004, "Authentication failed."));
        return;
    }
    let Some(wanted) = d.get("intents").and_then(Value::as_u64) else {
        let _ = conn.tx.send(Outbound::Close(4013, "Invalid intent(s)."));
        return;
    };
    if wanted & intents::PRIVILEGED & !shared.privileged_intents != 0 {
        let _ = conn.tx.send(Outbound::Close(4014, "Disallowed intent(s)."));
        return;
    }
    conn.identified = true;
    let mut w = shared.world();
    let session_id = format!(
        "{:016x}{:016x}",
        w.snowflake(),
        conn.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    w.gw.session = Some(Session {
        id: session_id.clone(),
        seq: 0,
        intents: wanted,
        log: FrameLog::new(),
    });
    w.gw.current = Some(conn.id);
    w.gw.ready = false;
    w.stats.identify += 1;
    let guild_ids: Vec<u64> = shared.guilds.iter().map(|g| g.id).collect();
    let resume_url = shared.gateway_url();
    let ready = payloads::ready(&payloads::ReadyView {
        bot_id: shared.bot_user_id,
        application_id: shared.application_id,
        guild_ids: &guild_ids,
        session_id: &session_id,
        resume_gateway_url: &resume_url,
        shard: d.get("shard").filter(|s| s.is_array()).cloned(),
    });
    w.gw.dispatch("READY", ready);
    w.gw.ready_sent_at = Some(std::time::Instant::now());
    for g in &shared.guilds {
        let guild = payloads::guild_create(&payloads::GuildView {
            id: g.id,
            channels: &g.channels,
            bot_id: shared.bot_user_id,
            joined_at: &shared.joined_at,
        });
        w.gw.dispatch("GUILD_CREATE", guild);
    }
    let _ = conn.tx.send(Outbound::MarkReady);
    shared.publish_gateway(&w);
    tracing::info!(conn = conn.id, session = %session_id, intents = wanted, "gateway IDENTIFY → READY");
}

fn resume(shared: &Shared, conn: &mut Conn, d: &Value) {
    let session_id = d.get("session_id").and_then(Value::as_str).unwrap_or("");
    let client_seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let mut w = shared.world();
    let refused = w.gw.resume_refused;
    let replay = match w.gw.session.as_ref() {
        Some(s) if s.id == session_id && !refused => {
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
    let Some(replay) = replay else {
        if w.gw.session.as_ref().is_some_and(|s| s.id == session_id) {
            // The session dies: the bot must IDENTIFY again.
            w.gw.session = None;
            w.gw.current = None;
            w.gw.ready = false;
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
    w.gw.current = Some(conn.id);
    w.gw.ready = false;
    let replayed = replay.len();
    for frame in replay {
        let _ = conn.tx.send(Outbound::Frame(frame));
    }
    w.gw.dispatch(
        "RESUMED",
        json!({ "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"] }),
    );
    w.stats.resume += 1;
    let _ = conn.tx.send(Outbound::MarkReady);
    shared.publish_gateway(&w);
    tracing::info!(conn = conn.id, replayed, "gateway RESUME → RESUMED");
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
    let Some(session_intents) = w.gw.intents() else {
        anyhow::bail!("fake-discord: no bot connected (no gateway session; IDENTIFY first)");
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
        guild_id.is_some(),
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
    in_guild: bool,
    session_intents: u64,
    mut msg: Value,
    author_id: u64,
    mention_ids: &[u64],
) {
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
    w.gw.dispatch("MESSAGE_CREATE", msg);
}
