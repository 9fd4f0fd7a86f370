//! A real serenity 0.12.5 client against the fake: connect, READY +
//! GUILD_CREATE into the cache, receive a mention, reply with a nonce, DM,
//! survive a dropped gateway (RESUME) and a refused resume (IDENTIFY again),
//! all without serenity logging a single deserialization problem.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_discord::{Author, FakeConfig, FakeDiscord};
use serenity::all::{
    ClientBuilder, Context, CreateAllowedMentions, CreateMessage, EventHandler, GatewayIntents,
    GuildId, HttpBuilder, Message, Nonce, Ready,
};
use serenity::async_trait;
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(10);

/// Captures every log line serenity (and the fake) emit.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        // Through the test harness's capture: shown only when the test fails.
        eprint!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

#[derive(Debug)]
struct Seen {
    content: String,
    channel_id: u64,
    guild_id: Option<GuildId>,
    guild_cached: bool,
    reply: Result<u64, String>,
}

struct Handler {
    tx: mpsc::UnboundedSender<Seen>,
    ready: mpsc::UnboundedSender<()>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, _ready: Ready) {
        let _ = self.ready.send(());
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if msg.author.bot {
            return; // our own echoes
        }
        let guild_cached = msg.guild_id.is_some_and(|g| ctx.cache.guild(g).is_some());
        let nonce = format!("1:{}", msg.id.get());
        let reply = msg
            .channel_id
            .send_message(
                &ctx.http,
                CreateMessage::new()
                    .content("ok")
                    .nonce(Nonce::String(nonce))
                    .enforce_nonce(true)
                    .allowed_mentions(CreateAllowedMentions::new()),
            )
            .await
            .map(|m| m.id.get())
            .map_err(|e| e.to_string());
        let _ = self.tx.send(Seen {
            content: msg.content.clone(),
            channel_id: msg.channel_id.get(),
            guild_id: msg.guild_id,
            guild_cached,
            reply,
        });
    }
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("the handler got no message in time")
        .expect("handler channel closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serenity_bot_end_to_end() {
    let logs = LogBuf::default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,serenity=debug".into()),
        )
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();

    let fake = FakeDiscord::start(FakeConfig::default()).await.unwrap();
    let bot = fake.bot_user_id();
    let http = HttpBuilder::new("fake-token")
        .proxy(fake.base_url())
        .ratelimiter_disabled(true)
        .build();
    let intents =
        GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut client = ClientBuilder::new_with_http(http, intents)
        .event_handler(Handler {
            tx,
            ready: ready_tx,
        })
        .await
        .expect("build the serenity client");
    let shard_manager = client.shard_manager.clone();
    let bot_task = tokio::spawn(async move { client.start().await });

    fake.wait_ready(T).await.unwrap();
    tokio::time::timeout(T, ready_rx.recv())
        .await
        .unwrap()
        .unwrap();

    // A guild message mentioning the bot reaches the handler; the cache knows the guild.
    let channel = 3007;
    fake.inject_message(channel, Author::user(42), &format!("<@{bot}> count to 3"))
        .await
        .unwrap();
    let seen = next_seen(&mut rx).await;
    assert_eq!(seen.content, format!("<@{bot}> count to 3"));
    assert_eq!(seen.guild_id, Some(GuildId::new(3000)));
    assert!(seen.guild_cached, "serenity's cache must hold the guild");
    let reply_id = seen
        .reply
        .expect("serenity could send and read back the reply");
    let posted = fake.wait_for_messages(channel, 1, T).await.unwrap();
    assert_eq!(posted[0].id, reply_id);
    assert_eq!(posted[0].content, "ok");
    assert!(posted[0].enforce_nonce);
    assert!(posted[0]
        .nonce
        .as_deref()
        .is_some_and(|n| n.starts_with("1:")));
    assert_eq!(
        posted[0].allowed_mentions,
        Some(serde_json::json!({ "parse": [], "users": [], "roles": [] }))
    );

    // A DM, and the bot answers in the DM channel.
    let dm = fake.open_dm(43).await;
    fake.inject_message(dm, Author::user(43), "count to 2")
        .await
        .unwrap();
    let seen = next_seen(&mut rx).await;
    assert_eq!((seen.channel_id, seen.guild_id), (dm, None));
    seen.reply.expect("reply in DM");
    fake.wait_for_messages(dm, 1, T).await.unwrap();

    // Network failure: serenity resumes at once; events are still delivered.
    let t = Instant::now();
    fake.drop_gateway();
    fake.wait_resume_count(1, T).await.unwrap();
    let resume_took = t.elapsed();
    assert_eq!(fake.resume_count(), 1);
    fake.inject_message(channel, Author::user(42), &format!("<@{bot}> after resume"))
        .await
        .unwrap();
    let seen = next_seen(&mut rx).await;
    assert_eq!(seen.content, format!("<@{bot}> after resume"));
    seen.reply.unwrap();

    // An event injected while the gateway is down is replayed on RESUME.
    fake.drop_gateway();
    fake.inject_message(channel, Author::user(42), &format!("<@{bot}> while down"))
        .await
        .unwrap();
    fake.wait_resume_count(2, T).await.unwrap();
    assert_eq!(
        next_seen(&mut rx).await.content,
        format!("<@{bot}> while down")
    );

    // op 7 RECONNECT: serenity resumes on a new connection.
    assert!(fake.request_reconnect());
    fake.wait_resume_count(3, T).await.unwrap();
    fake.inject_message(channel, Author::user(42), &format!("<@{bot}> after op 7"))
        .await
        .unwrap();
    let seen = next_seen(&mut rx).await;
    assert_eq!(seen.content, format!("<@{bot}> after op 7"));
    seen.reply.unwrap();

    // Resume refused: INVALID_SESSION, then serenity IDENTIFYs again.
    fake.set_resume_allowed(false);
    let t = Instant::now();
    fake.drop_gateway();
    fake.wait_identify_count(2, Duration::from_secs(20))
        .await
        .unwrap();
    let reidentify_took = t.elapsed();
    tokio::time::timeout(T, ready_rx.recv())
        .await
        .unwrap()
        .unwrap();
    fake.inject_message(
        channel,
        Author::user(42),
        &format!("<@{bot}> after identify"),
    )
    .await
    .unwrap();
    let seen = next_seen(&mut rx).await;
    assert_eq!(seen.content, format!("<@{bot}> after identify"));
    seen.reply.unwrap();
    assert_eq!(fake.identify_count(), 2);
    eprintln!("resume took {resume_took:?}, re-identify took {reidentify_took:?}");

    shard_manager.shutdown_all().await;
    let _ = tokio::time::timeout(T, bot_task).await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    for bad in [
        "Err deserializing",
        "Err decompressing",
        "Failed to deserialize",
        "Unhandled error",
        "Could not decode",
        "Sequence off",
        "Shard handler received err",
    ] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains(bad)).collect();
        assert!(
            hits.is_empty(),
            "serenity logged {bad:?}:\n{}",
            hits.join("\n")
        );
    }
    let stats = fake.stats();
    assert_eq!(stats.created, 6);
    assert_eq!(stats.message_posts, 6);
    assert_eq!((stats.identify, stats.resume), (2, 3));
}
