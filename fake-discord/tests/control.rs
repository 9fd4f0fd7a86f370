//! The `fake-discord` binary and its `/_test` control API.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

struct Bin {
    _child: tokio::process::Child,
    base: String,
    client: Client,
}

impl Bin {
    async fn start(args: &[&str]) -> Bin {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fake-discord"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fake-discord");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(T, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the binary prints its URL")
            .unwrap();
        Bin {
            _child: child,
            base: line.trim().to_string(),
            client: Client::new(),
        }
    }

    async fn control(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/_test{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn post_message(&self, channel: u64, content: &str) -> StatusCode {
        self.client
            .post(format!("{}/api/v10/channels/{channel}/messages", self.base))
            .header("Authorization", "Bot t")
            .json(&json!({ "content": content, "nonce": content, "enforce_nonce": true }))
            .send()
            .await
            .unwrap()
            .status()
    }
}

async fn next_text(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Option<Value> {
    loop {
        match tokio::time::timeout(T, ws.next())
            .await
            .expect("gateway frame in time")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return None,
        }
    }
}

#[tokio::test]
async fn binary_serves_the_control_api() {
    let bin = Bin::start(&["--addr", "127.0.0.1:0", "--discord-limits"]).await;
    assert!(bin.base.starts_with("http://127.0.0.1:"), "{}", bin.base);

    assert_eq!(
        bin.get("/_test/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, body) = bin
        .control(
            "/messages",
            json!({ "channel_id": 1001, "author_id": 5, "content": "hi" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no bot connected: {body}");
    let (_, dm) = bin.control("/dm", json!({ "user_id": "5" })).await;
    assert!(dm["channel_id"].as_u64().is_some());
    assert_eq!(
        bin.get("/_test/guilds").await.1.as_array().unwrap().len(),
        8
    );

    // A bot connects.
    let url = format!("{}/gateway?v=10", bin.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap()["op"], 10);
    let identify = json!({ "op": 2, "d": { "token": "Bot t", "intents": 4609, "properties": {} } });
    ws.send(Message::Text(identify.to_string())).await.unwrap();
    for _ in 0..9 {
        assert_eq!(next_text(&mut ws).await.unwrap()["op"], 0);
    }
    let (status, body) = bin.get("/_test/ready?wait_ms=5000").await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "ready": true })));

    let (status, body) = bin
        .control(
            "/messages",
            json!({ "channel_id": 1001, "author_id": 5, "content": "<@900000000000000001> count to 2" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let frame = next_text(&mut ws).await.unwrap();
    assert_eq!(frame["t"], "MESSAGE_CREATE");
    assert_eq!(frame["d"]["id"], body["id"].as_u64().unwrap().to_string());
    assert_eq!(frame["d"]["guild_id"], "1000");

    // Faults.
    bin.control("/fail", json!({ "n": 1, "status": 503 })).await;
    assert_eq!(
        bin.post_message(1001, "1").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(bin.post_message(1001, "1").await, StatusCode::OK);
    assert_eq!(bin.post_message(1001, "1").await, StatusCode::OK); // deduplicated
    bin.control(
        "/rate_limit",
        json!({ "n": 1, "retry_after": 0.25, "global": false }),
    )
    .await;
    assert_eq!(
        bin.post_message(1001, "2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    bin.control("/latency", json!({ "ms": 0 })).await;
    // --discord-limits: 5 per 5 s per channel.
    for i in 0..5 {
        assert_eq!(
            bin.post_message(1003, &format!("x{i}")).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        bin.post_message(1003, "x5").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    bin.control("/limits", json!({ "channel": null })).await;
    assert_eq!(bin.post_message(1003, "x6").await, StatusCode::OK);

    let (status, msgs) = bin.get("/_test/messages/1003?count=9&wait_ms=50").await;
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(msgs.as_array().unwrap().len(), 6);
    let (_, msgs) = bin.get("/_test/messages/1001?count=1&wait_ms=5000").await;
    let msgs = msgs.as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["content"], "1");
    assert_eq!(msgs[0]["nonce"], "1");
    assert!(msgs[0]["at_ms"].as_u64().is_some());
    let (_, stats) = bin.get("/_test/stats").await;
    assert_eq!(stats["created"], 7);
    assert_eq!(stats["nonce_duplicates"], 1);
    assert_eq!(stats["rate_limited"], 2);
    assert_eq!(stats["injected_errors"], 1);
    assert_eq!(stats["identify"], 1);

    // The bot's own messages are echoed on the gateway, as Discord does.
    let echo = next_text(&mut ws).await.unwrap();
    assert_eq!(
        (echo["t"].as_str(), echo["d"]["content"].as_str()),
        (Some("MESSAGE_CREATE"), Some("1"))
    );

    let (status, _) = bin.control("/drop_gateway", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    loop {
        if next_text(&mut ws).await.is_none() {
            break;
        }
    }
    assert_eq!(
        bin.get("/_test/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn binary_dispatches_interactions_and_takes_their_answers() {
    let bin = Bin::start(&["--addr", "127.0.0.1:0"]).await;
    let (status, _) = bin
        .control(
            "/interactions/command",
            json!({ "channel_id": 1001, "user_id": 5, "name": "stop" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "no bot connected");

    let url = format!("{}/gateway?v=10", bin.base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap()["op"], 10);
    let identify = json!({ "op": 2, "d": { "token": "Bot t", "intents": 4609, "properties": {} } });
    ws.send(Message::Text(identify.to_string())).await.unwrap();
    for _ in 0..9 {
        assert_eq!(next_text(&mut ws).await.unwrap()["op"], 0);
    }

    // Commands: a bulk overwrite, recorded; an injected failure.
    let put = |body: Value| {
        bin.client
            .put(format!("{}/api/v10/applications/1/commands", bin.base))
            .header("Authorization", "Bot t")
            .json(&body)
            .send()
    };
    let r = put(json!([{ "name": "count", "description": "c" }]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, commands) = bin.get("/_test/commands").await;
    assert_eq!(commands[0]["name"], "count");
    let command_id = commands[0]["id"].clone();
    bin.control("/fail_commands", json!({ "n": 1 })).await;
    let r = put(json!([])).await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // A slash command from a moderator, answered once.
    let moderator = 800_000_000_000_000_000u64 + 1000;
    let (status, sent) = bin
        .control(
            "/interactions/command",
            json!({
                "channel_id": 1001, "user_id": 5, "name": "count", "roles": [moderator],
                "options": [{ "name": "n", "type": 4, "value": 20 }],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let frame = next_text(&mut ws).await.unwrap();
    assert_eq!(frame["t"], "INTERACTION_CREATE");
    let d = &frame["d"];
    assert_eq!(
        (d["type"].as_u64(), d["token"].clone()),
        (Some(2), sent["token"].clone())
    );
    assert_eq!(d["data"]["id"], command_id);
    assert_eq!(d["data"]["options"][0]["value"], 20);
    assert_eq!(d["member"]["roles"], json!([moderator.to_string()]));
    let permissions: u64 = d["member"]["permissions"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(permissions & (1 << 13), 0, "Manage Messages");
    let callback = format!(
        "{}/api/v10/interactions/{}/{}/callback",
        bin.base,
        sent["id"],
        sent["token"].as_str().unwrap()
    );
    let answer = json!({ "type": 4, "data": { "content": "ok", "flags": 64 } });
    for expected in [StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST] {
        let r = bin
            .client
            .post(&callback)
            .header("Authorization", "Bot t")
            .json(&answer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected);
    }
    let (_, answers) = bin.get("/_test/interactions").await;
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(
        (answers[0]["type"].as_u64(), answers[0]["status"].as_u64()),
        (Some(4), Some(204))
    );
    assert_eq!(answers[0]["flags"], 64);
    assert!(answers[0]["elapsed_ms"].as_u64().unwrap() < 3000);
    assert_eq!(answers[1]["status"], 400);

    // A button press needs a message of the bot's.
    let (status, _) = bin
        .control(
            "/interactions/component",
            json!({ "channel_id": 1001, "user_id": 5, "message_id": 42, "custom_id": "stop:1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "unknown message");
}
