//! The REST API with a plain HTTP client; answers are also deserialized
//! into serenity 0.12.5's models to prove serenity can read them.

use std::time::Duration;

use fake_discord::{FakeConfig, FakeDiscord};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const CHANNEL: u64 = 1001;

struct Api {
    fake: FakeDiscord,
    client: Client,
}

impl Api {
    async fn start(config: FakeConfig) -> Api {
        let fake = FakeDiscord::start(config).await.expect("start fake");
        Api {
            fake,
            client: Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v10{path}", self.fake.base_url())
    }

    async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .header("Authorization", "Bot fake-token")
            .send()
            .await
            .expect("GET")
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.client
            .post(self.url(path))
            .header("Authorization", "Bot fake-token")
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    async fn post_message(&self, channel: u64, body: Value) -> Response {
        self.post(&format!("/channels/{channel}/messages"), body)
            .await
    }
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn discovery_user_application_and_channels() {
    let api = Api::start(FakeConfig::default()).await;
    let base = api.fake.base_url();
    let port = base.rsplit(':').next().unwrap();

    let r = api.get("/gateway").await;
    assert_eq!(r.status(), StatusCode::OK);
    let g: serenity::model::gateway::Gateway = r.json().await.unwrap();
    assert_eq!(g.url, format!("ws://127.0.0.1:{port}/gateway"));
    let g: serenity::model::gateway::BotGateway =
        api.get("/gateway/bot").await.json().await.unwrap();
    assert_eq!((g.shards, g.session_start_limit.max_concurrency), (1, 1));

    let me: serenity::model::user::CurrentUser = api.get("/users/@me").await.json().await.unwrap();
    assert_eq!(me.id.get(), api.fake.bot_user_id());
    assert!(me.bot);

    let app: serenity::model::application::CurrentApplicationInfo = api
        .get("/oauth2/applications/@me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.id.get(), 900_000_000_000_000_001);

    let c: serenity::model::channel::GuildChannel = api
        .get(&format!("/channels/{CHANNEL}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((c.id.get(), c.guild_id.get()), (CHANNEL, 1000));
    assert_eq!(api.fake.guild_of(8030), Some(8000));
    assert_eq!(api.fake.guild_of(8031), None);

    let r = api
        .post("/users/@me/channels", json!({ "recipient_id": "4242" }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let dm: serenity::model::channel::PrivateChannel = r.json().await.unwrap();
    assert_eq!(dm.recipient.id.get(), 4242);
    assert_eq!(dm.id.get(), api.fake.open_dm(4242).await);
    let again: serenity::model::channel::PrivateChannel = api
        .get(&format!("/channels/{}", dm.id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again.id, dm.id);

    let r = api
        .client
        .put(api.url("/applications/900000000000000001/commands"))
        .header("Authorization", "Bot t")
        .json(
            &json!([{ "name": "count", "description": "Count to n", "options": [
            { "type": 4, "name": "n", "description": "how far", "required": true }
        ] }]),
        )
        .send()
        .await
        .unwrap();
    let cmds: Vec<serenity::model::application::Command> = r.json().await.unwrap();
    assert_eq!(cmds[0].name, "count");

    // Errors look like Discord's.
    let r = api.get("/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "message": "404: Not Found", "code": 0 })
    );
    let r = api.post_message(99, json!({ "content": "x" })).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 10003);
    let r = api.client.get(api.url("/users/@me")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = api.post_message(CHANNEL, json!({ "content": "" })).await;
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 50006);
    let r = api
        .post_message(CHANNEL, json!({ "content": "x", "nonce": "x".repeat(26) }))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let recorded = api.fake.requests();
    assert!(recorded
        .iter()
        .any(|r| r.method == "GET" && r.path == "/api/v10/users/@me" && r.status == 401));
}

#[tokio::test]
async fn enforced_nonce_creates_one_message() {
    let api = Api::start(FakeConfig::default()).await;
    let body = json!({
        "content": "1", "nonce": "17:1", "enforce_nonce": true,
        "allowed_mentions": { "parse": [], "users": [], "roles": [] },
    });
    let first = api.post_message(CHANNEL, body.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-reset-after",
        "x-ratelimit-bucket",
    ] {
        header(&first, h);
    }
    assert_eq!(header(&first, "x-ratelimit-limit"), "5");
    assert_eq!(header(&first, "x-ratelimit-remaining"), "4");
    let first: serenity::model::channel::Message = first.json().await.unwrap();
    assert_eq!(first.content, "1");
    assert_eq!(first.author.id.get(), api.fake.bot_user_id());
    assert!(first.author.bot);

    let second = api.post_message(CHANNEL, body.clone()).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: serenity::model::channel::Message = second.json().await.unwrap();
    assert_eq!(
        second.id, first.id,
        "the repeat answers the existing message"
    );

    // Same nonce elsewhere, or without enforce_nonce: new messages.
    api.post_message(1002, body.clone()).await;
    let mut loose = body.clone();
    loose["enforce_nonce"] = json!(false);
    api.post_message(CHANNEL, loose).await;

    let msgs = api.fake.messages(CHANNEL);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].nonce.as_deref(), Some("17:1"));
    assert!(msgs[0].enforce_nonce);
    assert_eq!(
        msgs[0].allowed_mentions,
        Some(json!({ "parse": [], "users": [], "roles": [] }))
    );
    let s = api.fake.stats();
    assert_eq!((s.message_posts, s.created, s.nonce_duplicates), (4, 3, 1));

    // Expired nonces no longer deduplicate.
    let api = Api::start(FakeConfig {
        nonce_ttl: Duration::ZERO,
        ..FakeConfig::default()
    })
    .await;
    api.post_message(CHANNEL, body.clone()).await;
    api.post_message(CHANNEL, body).await;
    assert_eq!(api.fake.messages(CHANNEL).len(), 2);
}

#[tokio::test]
async fn replies_reference_the_message() {
    let api = Api::start(FakeConfig::default()).await;
    let first: Value = api
        .post_message(CHANNEL, json!({ "content": "a" }))
        .await
        .json()
        .await
        .unwrap();
    let r = api
        .post_message(
            CHANNEL,
            json!({ "content": "b", "message_reference": { "message_id": first["id"], "channel_id": CHANNEL.to_string() } }),
        )
        .await;
    let reply: serenity::model::channel::Message = r.json().await.unwrap();
    assert_eq!(
        reply.kind,
        serenity::model::channel::MessageType::InlineReply
    );
    assert_eq!(
        reply.referenced_message.map(|m| m.content),
        Some("a".to_string())
    );
    let r = api
        .post_message(
            CHANNEL,
            json!({ "content": "c", "message_reference": { "message_id": "12345" } }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn injected_rate_limits_and_failures() {
    let api = Api::start(FakeConfig::default()).await;
    api.fake.rate_limit_next(1, 0.532, false);
    let r = api.post_message(CHANNEL, json!({ "content": "1" })).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "x-ratelimit-scope"), "user");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    header(&r, "x-ratelimit-reset-after");
    assert!(r.headers().get("x-ratelimit-global").is_none());
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "message": "You are being rate limited.", "retry_after": 0.532, "global": false, "code": 0 })
    );

    api.fake.rate_limit_next(1, 2.5, true);
    let r = api.post_message(CHANNEL, json!({ "content": "1" })).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-ratelimit-global"), "true");
    assert_eq!(header(&r, "x-ratelimit-scope"), "global");
    assert_eq!(header(&r, "retry-after"), "3");
    assert_eq!(r.json::<Value>().await.unwrap()["global"], json!(true));

    api.fake.fail_next(2, 502);
    let r = api.post_message(CHANNEL, json!({ "content": "1" })).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("cloudflare"));
    api.fake.fail_next(1, 500);
    let r = api.post_message(CHANNEL, json!({ "content": "1" })).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 0);

    // fail_next(1, 500) replaced the 502 still armed; now requests pass again.
    let r = api.post_message(CHANNEL, json!({ "content": "1" })).await;
    assert_eq!(r.status(), StatusCode::OK);
    let s = api.fake.stats();
    assert_eq!(
        (
            s.message_posts,
            s.created,
            s.rate_limited,
            s.injected_errors
        ),
        (5, 1, 2, 2)
    );

    // hang_next: no answer, nothing created.
    api.fake.hang_next(1);
    let hung = api
        .client
        .post(api.url(&format!("/channels/{CHANNEL}/messages")))
        .header("Authorization", "Bot t")
        .timeout(Duration::from_millis(300))
        .json(&json!({ "content": "2" }))
        .send()
        .await;
    assert!(hung.unwrap_err().is_timeout());
    assert_eq!(api.fake.messages(CHANNEL).len(), 1);
    assert!(api.fake.requests().iter().any(|r| r.status == 0));

    // Latency is added to every answer; the message is created all the same.
    api.fake.set_latency(Duration::from_millis(200));
    let t = std::time::Instant::now();
    assert_eq!(api.get("/users/@me").await.status(), StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn channel_and_global_limits_are_enforced() {
    let api = Api::start(FakeConfig {
        channel_limit: Some((3, Duration::from_millis(400))),
        ..FakeConfig::default()
    })
    .await;
    for i in 0..3 {
        let r = api
            .post_message(CHANNEL, json!({ "content": i.to_string() }))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "x-ratelimit-remaining"), (2 - i).to_string());
    }
    let r = api.post_message(CHANNEL, json!({ "content": "3" })).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "x-ratelimit-scope"), "user");
    let body: Value = r.json().await.unwrap();
    let retry = body["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 0.4, "retry_after {retry}");
    assert_eq!(body["global"], json!(false));
    // Other channels have their own bucket.
    assert_eq!(
        api.post_message(1002, json!({ "content": "x" }))
            .await
            .status(),
        StatusCode::OK
    );
    // After the window, the bucket is full again.
    tokio::time::sleep(Duration::from_secs_f64(retry) + Duration::from_millis(20)).await;
    assert_eq!(
        api.post_message(CHANNEL, json!({ "content": "4" }))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(api.fake.messages(CHANNEL).len(), 4);
    assert_eq!(api.fake.stats().rate_limited, 1);

    api.fake.set_channel_limit(None);
    api.fake.set_global_limit(Some(5));
    // Eight requests at once: five pass, the rest get a global 429.
    let answers = futures_util::future::join_all((0..8).map(|_| api.get("/users/@me"))).await;
    let (limited, passed): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .partition(|r| r.status() == StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((passed.len(), limited.len()), (5, 3));
    let r = &limited[0];
    assert_eq!(header(r, "x-ratelimit-global"), "true");
    assert_eq!(header(r, "x-ratelimit-scope"), "global");
    let retry: f64 = header(r, "retry-after").parse().unwrap();
    assert!(retry <= 1.0);
    assert_eq!(api.fake.stats().rate_limited, 4);
}

#[tokio::test]
async fn discord_limits_preset() {
    let c = FakeConfig::default().with_discord_limits();
    assert_eq!(c.global_limit, Some(50));
    assert_eq!(c.channel_limit, Some((5, Duration::from_secs(5))));
    assert_eq!(c.guilds.len(), 8);
    assert_eq!(c.guilds[7].channels.last(), Some(&8030));
}
