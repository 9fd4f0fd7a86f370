//! Sharding with a raw WebSocket client per shard: the recommended count,
//! each shard's READY and GUILD_CREATEs, every dispatch on the shard of its
//! guild (DMs on shard 0), and the IDENTIFYs Discord refuses (4010, 4011).

use std::time::Duration;

use fake_discord::{shard_of, Author, FakeConfig, FakeDiscord, GuildSpec};
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
/// Guilds on shard 0 and shard 1 of 2: `(id >> 22) % 2` is 0 and 1.
const GUILD_A: u64 = (1_000_000 << 22) | 1;
const GUILD_B: u64 = (1_000_001 << 22) | 1;

fn config() -> FakeConfig {
    FakeConfig {
        guilds: [GUILD_A, GUILD_B]
            .map(|id| GuildSpec {
                id,
                channels: vec![id + 1, id + 2],
            })
            .to_vec(),
        shards: 2,
        sharding_required: true,
        ..FakeConfig::default()
    }
}

async fn connect(fake: &FakeDiscord) -> Ws {
    let url = format!("{}?v=10", fake.gateway_url());
    let mut ws = connect_async(url).await.expect("ws connect").0;
    assert!(matches!(
        event(&recv(&mut ws).await),
        GatewayEvent::Hello(_)
    ));
    ws
}

/// The next frame: JSON, or the close code.
async fn next(ws: &mut Ws) -> Result<Value, u16> {
    loop {
        let msg = tokio::time::timeout(T, ws.next())
            .await
            .expect("timed out waiting for a gateway frame")
            .expect("gateway stream ended")
            .expect("gateway error");
        match msg {
            Message::Text(t) => return Ok(serde_json::from_str(&t).expect("frame is JSON")),
            Message::Close(Some(frame)) => return Err(u16::from(frame.code)),
            Message::Close(None) => return Err(1005),
            _ => {}
        }
    }
}

async fn recv(ws: &mut Ws) -> Value {
    next(ws).await.expect("a frame, not a close")
}

fn event(v: &Value) -> GatewayEvent {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("serenity rejects {v}: {e}"))
}

fn dispatch(v: &Value) -> Event {
    match event(v) {
        GatewayEvent::Dispatch(_, e) => e,
        other => panic!("expected a dispatch, got {other:?}"),
    }
}

async fn identify(ws: &mut Ws, shard: Value) {
    ws.send(Message::Text(
        json!({ "op": 2, "d": {
            "token": "Bot fake-token", "intents": INTENTS, "shard": shard,
            "properties": { "browser": "serenity", "device": "serenity", "os": "linux" },
        }})
        .to_string(),
    ))
    .await
    .expect("ws send");
}

/// IDENTIFYs as `[shard, 2]` and returns the guilds of READY and of the
/// GUILD_CREATEs that follow it.
async fn identify_shard(ws: &mut Ws, shard: u32) -> (Vec<u64>, Vec<u64>) {
    identify(ws, json!([shard, 2])).await;
    let Event::Ready(ready) = dispatch(&recv(ws).await) else {
        panic!("expected READY")
    };
    let shard_info = ready.ready.shard.expect("READY echoes the shard");
    assert_eq!((shard_info.id.0, shard_info.total), (shard, 2));
    let listed: Vec<u64> = ready.ready.guilds.iter().map(|g| g.id.get()).collect();
    let mut created = Vec::new();
    for _ in &listed {
        let Event::GuildCreate(g) = dispatch(&recv(ws).await) else {
            panic!("expected GUILD_CREATE")
        };
        created.push(g.guild.id.get());
    }
    (listed, created)
}

/// The id of the next MESSAGE_CREATE or INTERACTION_CREATE on `ws`.
async fn next_event_id(ws: &mut Ws) -> u64 {
    match dispatch(&recv(ws).await) {
        Event::MessageCreate(m) => m.message.id.get(),
        Event::InteractionCreate(i) => i.interaction.id().get(),
        other => panic!("expected a message or an interaction, got {other:?}"),
    }
}

#[tokio::test]
async fn each_shard_gets_its_guilds_and_dms_go_to_shard_0() {
    assert_eq!(
        (shard_of(GUILD_A, 2), shard_of(GUILD_B, 2)),
        (0, 1),
        "the test's guilds"
    );
    let fake = FakeDiscord::start(config()).await.unwrap();
    let gateway: serenity::model::gateway::BotGateway = reqwest::Client::new()
        .get(format!("{}/api/v10/gateway/bot", fake.base_url()))
        .header("Authorization", "Bot fake-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (gateway.shards, gateway.session_start_limit.max_concurrency),
        (2, 1)
    );

    let mut ws0 = connect(&fake).await;
    assert_eq!(
        identify_shard(&mut ws0, 0).await,
        (vec![GUILD_A], vec![GUILD_A])
    );
    fake.wait_ready_shards(1, T).await.unwrap();
    assert_eq!(fake.ready_shards(), [0]);
    assert_eq!(fake.shard_count(), 2);
    assert!(!fake.is_ready(), "shard 1 has no session yet");
    // Shard 1's guild has nobody to receive its events yet.
    assert!(fake
        .inject_message(GUILD_B + 1, Author::user(5), "early")
        .await
        .is_err());

    let mut ws1 = connect(&fake).await;
    assert_eq!(
        identify_shard(&mut ws1, 1).await,
        (vec![GUILD_B], vec![GUILD_B])
    );
    fake.wait_ready(T).await.unwrap();
    assert_eq!(fake.ready_shards(), [0, 1]);

    let bot = fake.bot_user_id();
    let on_a = fake
        .inject_message(GUILD_A + 1, Author::user(5), &format!("<@{bot}> a"))
        .await
        .unwrap();
    let on_b = fake
        .inject_message(GUILD_B + 2, Author::user(5), &format!("<@{bot}> b"))
        .await
        .unwrap();
    let dm_channel = fake.open_dm(5).await;
    let dm = fake
        .inject_message(dm_channel, Author::user(5), "dm")
        .await
        .unwrap();
    let slash_b = fake
        .slash_command(GUILD_B + 1, Author::user(5), "status", json!([]))
        .unwrap();
    let slash_dm = fake
        .slash_command(dm_channel, Author::user(5), "status", json!([]))
        .unwrap();
    // In order on each shard, and nothing of the other shard in between.
    assert_eq!(next_event_id(&mut ws0).await, on_a);
    assert_eq!(next_event_id(&mut ws0).await, dm);
    assert_eq!(next_event_id(&mut ws0).await, slash_dm.id);
    assert_eq!(next_event_id(&mut ws1).await, on_b);
    assert_eq!(next_event_id(&mut ws1).await, slash_b.id);
    // The bot's own message in guild B is echoed on shard 1.
    let posted: Value = reqwest::Client::new()
        .post(format!(
            "{}/api/v10/channels/{}/messages",
            fake.base_url(),
            GUILD_B + 1
        ))
        .header("Authorization", "Bot fake-token")
        .json(&json!({ "content": "1" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let posted_id: u64 = posted["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(next_event_id(&mut ws1).await, posted_id);
    // A last event on each shard comes next: nothing else was sent there.
    let last_a = fake
        .inject_message(GUILD_A + 2, Author::user(5), "last")
        .await
        .unwrap();
    let last_b = fake
        .inject_message(GUILD_B + 1, Author::user(5), "last")
        .await
        .unwrap();
    assert_eq!(next_event_id(&mut ws0).await, last_a);
    assert_eq!(next_event_id(&mut ws1).await, last_b);

    // Dropping the connections leaves no shard ready.
    fake.drop_gateway();
    assert!(!fake.is_ready());
    assert!(fake.ready_shards().is_empty());
}

#[tokio::test]
async fn identifies_discord_refuses_are_closed_with_its_codes() {
    let fake = FakeDiscord::start(config()).await.unwrap();
    // Unsharded while sharding is required: 4011.
    let mut ws = connect(&fake).await;
    identify(&mut ws, json!([0, 1])).await;
    assert_eq!(next(&mut ws).await, Err(4011));
    // No shard field at all is unsharded too.
    let mut ws = connect(&fake).await;
    identify(&mut ws, Value::Null).await;
    assert_eq!(next(&mut ws).await, Err(4011));
    // A shard id outside the count: 4010.
    let mut ws = connect(&fake).await;
    identify(&mut ws, json!([2, 2])).await;
    assert_eq!(next(&mut ws).await, Err(4010));
    let stats = fake.stats();
    assert_eq!((stats.identify, stats.identify_refused), (0, 3));
    assert!(!fake.is_ready());

    // More shards than recommended are fine, as on Discord.
    let mut ws = connect(&fake).await;
    identify(&mut ws, json!([0, 3])).await;
    assert!(matches!(dispatch(&recv(&mut ws).await), Event::Ready(_)));

    // Without `sharding_required`, one shard gets every guild.
    let fake = FakeDiscord::start(FakeConfig {
        sharding_required: false,
        ..config()
    })
    .await
    .unwrap();
    let mut ws = connect(&fake).await;
    identify(&mut ws, json!([0, 1])).await;
    let Event::Ready(ready) = dispatch(&recv(&mut ws).await) else {
        panic!("expected READY")
    };
    assert_eq!(ready.ready.guilds.len(), 2);
}

#[tokio::test]
async fn identifies_faster_than_max_concurrency_allows_are_counted() {
    // Two shards identifying at once: one per 5 s is the limit of
    // max_concurrency 1, so the second is too fast.
    let fake = FakeDiscord::start(config()).await.unwrap();
    let mut ws0 = connect(&fake).await;
    identify_shard(&mut ws0, 0).await;
    let mut ws1 = connect(&fake).await;
    identify_shard(&mut ws1, 1).await;
    assert_eq!(fake.stats().identify_too_fast, 1);

    // With max_concurrency 2 they are in buckets of their own.
    let fake = FakeDiscord::start(FakeConfig {
        max_concurrency: 2,
        ..config()
    })
    .await
    .unwrap();
    let mut ws0 = connect(&fake).await;
    identify_shard(&mut ws0, 0).await;
    let mut ws1 = connect(&fake).await;
    identify_shard(&mut ws1, 1).await;
    assert_eq!(fake.stats().identify_too_fast, 0);
}
