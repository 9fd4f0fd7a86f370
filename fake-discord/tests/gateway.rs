//! The gateway protocol with a raw WebSocket client, every payload checked
//! by deserializing it into serenity 0.12.5's own `GatewayEvent`.

use std::time::Duration;

use fake_discord::{Author, FakeConfig, FakeDiscord};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use serenity::model::event::{Event, GatewayEvent};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const T: Duration = Duration::from_secs(5);
/// GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES
const INTENTS: u64 = 1 | (1 << 9) | (1 << 12);

async fn connect(fake: &FakeDiscord) -> Ws {
    let url = format!("{}?v=10", fake.gateway_url());
    connect_async(url).await.expect("ws connect").0
}

/// The next JSON frame (text only, as serenity reads them).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(T, ws.next())
            .await
            .expect("timed out waiting for a gateway frame")
            .expect("gateway stream ended")
            .expect("gateway error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("frame is JSON"),
            Message::Binary(_) => panic!("the fake must never send binary frames"),
            Message::Close(c) => panic!("unexpected close: {c:?}"),
            _ => {}
        }
    }
}

/// Deserializes a frame exactly as serenity does.
fn event(v: &Value) -> GatewayEvent {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("serenity rejects {v}: {e}"))
}

fn dispatch(v: &Value) -> (u64, Event) {
    match event(v) {
        GatewayEvent::Dispatch(seq, e) => (seq, e),
        other => panic!("expected a dispatch, got {other:?}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string()))
        .await
        .expect("ws send");
}

async fn identify(ws: &mut Ws, intents: u64) {
    send(
        ws,
        json!({ "op": 2, "d": {
            "token": "Bot fake-token", "intents": intents, "compress": true,
            "large_threshold": 250, "shard": [0, 1],
            "properties": { "browser": "serenity", "device": "serenity", "os": "linux" },
        }}),
    )
    .await;
}

/// Connects, checks HELLO, IDENTIFYs and reads READY + all GUILD_CREATEs.
async fn connect_ready(fake: &FakeDiscord) -> (Ws, String) {
    let mut ws = connect(fake).await;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Hello(41_250)
    ));
    identify(&mut ws, INTENTS).await;
    let (seq, ready) = dispatch(&recv(&mut ws).await);
    assert_eq!(seq, 1);
    let Event::Ready(ready) = ready else {
        panic!("expected READY, got {ready:?}")
    };
    for _ in fake.guilds() {
        let (_, e) = dispatch(&recv(&mut ws).await);
        assert!(
            matches!(e, Event::GuildCreate(_)),
            "expected GUILD_CREATE, got {e:?}"
        );
    }
    fake.wait_ready(T).await.expect("ready");
    (ws, ready.ready.session_id)
}

#[tokio::test]
async fn identify_gets_ready_and_guilds_serenity_can_read() {
    let fake = FakeDiscord::start(FakeConfig::default()).await.unwrap();
    let bot = fake.bot_user_id();
    let mut ws = connect(&fake).await;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Hello(41_250)
    ));
    send(&mut ws, json!({ "op": 1, "d": null })).await;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::HeartbeatAck
    ));
    assert!(
        fake.inject_message(1001, Author::user(7), "hi")
            .await
            .is_err(),
        "no session yet"
    );

    identify(&mut ws, INTENTS).await;
    let (seq, e) = dispatch(&recv(&mut ws).await);
    let Event::Ready(ready) = e else {
        panic!("expected READY")
    };
    assert_eq!(seq, 1);
    assert_eq!(ready.ready.user.id.get(), bot);
    assert!(ready.ready.user.bot);
    assert_eq!(ready.ready.guilds.len(), 8);
    assert_eq!(ready.ready.application.id.get(), 900_000_000_000_000_001);
    assert_eq!(ready.ready.version, 10);
    for (i, spec) in fake.guilds().iter().enumerate() {
        let (seq, e) = dispatch(&recv(&mut ws).await);
        assert_eq!(seq, i as u64 + 2);
        let Event::GuildCreate(g) = e else {
            panic!("expected GUILD_CREATE")
        };
        let g = g.guild;
        assert_eq!(g.id.get(), spec.id);
        assert_eq!(g.channels.len(), 30);
        let everyone = &g.roles[&serenity::model::id::RoleId::new(spec.id)];
        assert!(everyone.permissions.send_messages() && everyone.permissions.view_channel());
        assert!(g
            .members
            .contains_key(&serenity::model::id::UserId::new(bot)));
        let first = &g.channels[&serenity::model::id::ChannelId::new(spec.channels[0])];
        assert_eq!(first.guild_id.get(), spec.id);
        assert_eq!(first.kind, serenity::model::channel::ChannelType::Text);
    }
    fake.wait_ready(T).await.unwrap();
    assert_eq!(fake.identify_count(), 1);

    // A guild message that mentions the bot: content, guild_id, member, mentions.
    let id = fake
        .inject_message(1001, Author::user(42), &format!("<@{bot}> count to 3"))
        .await
        .unwrap();
    let (_, e) = dispatch(&recv(&mut ws).await);
    let Event::MessageCreate(m) = e else {
        panic!("expected MESSAGE_CREATE")
    };
    let m = m.message;
    assert_eq!(m.id.get(), id);
    assert_eq!(m.content, format!("<@{bot}> count to 3"));
    assert_eq!(m.guild_id.map(|g| g.get()), Some(1000));
    assert!(m.member.is_some());
    assert_eq!(m.author.id.get(), 42);
    assert!(!m.author.bot);
    assert_eq!(m.mentions.len(), 1);
    assert_eq!(m.mentions[0].id.get(), bot);
    assert!(m.webhook_id.is_none());

    // Without MESSAGE_CONTENT, a guild message not mentioning the bot has no content.
    fake.inject_message(1002, Author::user(42), "count to 3")
        .await
        .unwrap();
    let Event::MessageCreate(m) = dispatch(&recv(&mut ws).await).1 else {
        panic!()
    };
    assert_eq!(m.message.content, "");
    assert_eq!(m.message.channel_id.get(), 1002);

    // A DM: no guild_id, no member, content visible.
    let dm = fake.open_dm(42).await;
    assert_eq!(fake.open_dm(42).await, dm);
    assert_eq!(fake.guild_of(dm), None);
    fake.inject_message(dm, Author::user(42), "count to 2")
        .await
        .unwrap();
    let Event::MessageCreate(m) = dispatch(&recv(&mut ws).await).1 else {
        panic!()
    };
    assert_eq!(m.message.guild_id, None);
    assert!(m.message.member.is_none());
    assert_eq!(m.message.content, "count to 2");

    // Webhooks and bots.
    fake.inject_message(1001, Author::webhook(77), &format!("<@!{bot}> stop"))
        .await
        .unwrap();
    let Event::MessageCreate(m) = dispatch(&recv(&mut ws).await).1 else {
        panic!()
    };
    assert_eq!(m.message.webhook_id.map(|w| w.get()), Some(77));
    assert!(m.message.member.is_none());
    assert!(m.message.author.bot);
    fake.inject_message(1001, Author::bot(78), &format!("<@{bot}> @everyone"))
        .await
        .unwrap();
    let Event::MessageCreate(m) = dispatch(&recv(&mut ws).await).1 else {
        panic!()
    };
    assert!(m.message.author.bot);
    assert!(m.message.mention_everyone);
    assert_eq!(fake.stats().injected_messages, 5);
}

#[tokio::test]
async fn resume_before_hello_replays_missed_dispatches() {
    let fake = FakeDiscord::start(FakeConfig::default()).await.unwrap();
    let (mut ws, session_id) = connect_ready(&fake).await;
    let last_seq = 1 + fake.guilds().len() as u64;

    fake.drop_gateway();
    // A TCP drop without a close frame.
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("drop seen") {
            None | Some(Err(_)) => break,
            Some(Ok(Message::Close(_))) => panic!("drop_gateway must not send a close frame"),
            Some(Ok(_)) => {}
        }
    }
    assert!(!fake.is_ready());
    let a = fake
        .inject_message(2005, Author::user(5), "while away 1")
        .await
        .unwrap();
    let b = fake
        .inject_message(2005, Author::user(5), "while away 2")
        .await
        .unwrap();

    // serenity sends RESUME at once, before reading HELLO.
    let mut ws = connect(&fake).await;
    send(
        &mut ws,
        json!({ "op": 6, "d": { "session_id": session_id, "token": "Bot fake-token", "seq": last_seq } }),
    )
    .await;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Hello(_)
    ));
    for (i, want) in [a, b].into_iter().enumerate() {
        let (seq, e) = dispatch(&recv(&mut ws).await);
        assert_eq!(seq, last_seq + 1 + i as u64);
        let Event::MessageCreate(m) = e else {
            panic!("expected replayed MESSAGE_CREATE")
        };
        assert_eq!(m.message.id.get(), want);
    }
    let (seq, e) = dispatch(&recv(&mut ws).await);
    assert_eq!(seq, last_seq + 3);
    assert!(
        matches!(e, Event::Resumed(_)),
        "expected RESUMED, got {e:?}"
    );
    fake.wait_resume_count(1, T).await.unwrap();
    assert_eq!((fake.identify_count(), fake.resume_count()), (1, 1));

    // Live dispatches continue on the resumed connection.
    let c = fake
        .inject_message(2005, Author::user(5), "live")
        .await
        .unwrap();
    let (seq, e) = dispatch(&recv(&mut ws).await);
    assert_eq!(seq, last_seq + 4);
    let Event::MessageCreate(m) = e else { panic!() };
    assert_eq!(m.message.id.get(), c);

    assert!(fake.request_reconnect());
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Reconnect
    ));
}

#[tokio::test]
async fn refused_resume_invalidates_the_session() {
    let fake = FakeDiscord::start(FakeConfig::default()).await.unwrap();
    let (_ws, session_id) = connect_ready(&fake).await;
    fake.set_resume_allowed(false);
    fake.drop_gateway();

    let mut ws = connect(&fake).await;
    send(
        &mut ws,
        json!({ "op": 6, "d": { "session_id": session_id, "token": "Bot fake-token", "seq": 9 } }),
    )
    .await;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Hello(_)
    ));
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::InvalidateSession(false)
    ));
    assert!(fake
        .inject_message(1001, Author::user(1), "lost")
        .await
        .is_err());
    assert!(!fake.is_ready());

    // A fresh IDENTIFY (serenity opens a new connection for it).
    let (_ws2, new_session) = connect_ready(&fake).await;
    assert_ne!(new_session, session_id);
    assert_eq!((fake.identify_count(), fake.resume_count()), (2, 0));
}

#[tokio::test]
async fn unknown_session_gets_invalid_session() {
    let fake = FakeDiscord::start(FakeConfig::default()).await.unwrap();
    let mut ws = connect(&fake).await;
    send(
        &mut ws,
        json!({ "op": 6, "d": { "session_id": "nope", "token": "Bot x", "seq": 3 } }),
    )
    .await;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Hello(_)
    ));
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::InvalidateSession(false)
    ));
}

#[tokio::test]
async fn privileged_intents_are_refused_with_4014() {
    let fake = FakeDiscord::start(FakeConfig::default()).await.unwrap();
    let mut ws = connect(&fake).await;
    recv(&mut ws).await; // HELLO
    identify(&mut ws, INTENTS | (1 << 15)).await;
    let code = loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("close expected")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 4014);

    // Granted privileged intents work and show every message's content.
    let fake = FakeDiscord::start(FakeConfig {
        privileged_intents: 1 << 15,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let mut ws = connect(&fake).await;
    recv(&mut ws).await;
    identify(&mut ws, INTENTS | (1 << 15)).await;
    for _ in 0..=fake.guilds().len() {
        recv(&mut ws).await;
    }
    fake.inject_message(1001, Author::user(3), "plain")
        .await
        .unwrap();
    let Event::MessageCreate(m) = dispatch(&recv(&mut ws).await).1 else {
        panic!()
    };
    assert_eq!(m.message.content, "plain");
}
