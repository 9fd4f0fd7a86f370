//! Slash commands and buttons: dispatching an interaction as a user would,
//! waiting for the bot's answer, and what a user sees of it.

use std::time::Duration;

use fake_discord::{Author, FakeDiscord, InteractionResponse, PostedMessage};

/// Dispatches the slash command `name` from `author` in `channel_id` and
/// waits for the bot's answer (accepted or not: check `accepted()`).
pub async fn slash(
    fake: &FakeDiscord,
    channel_id: u64,
    author: Author,
    name: &str,
    options: serde_json::Value,
) -> InteractionResponse {
    let sent = fake
        .slash_command(channel_id, author, name, options)
        .unwrap();
    fake.wait_interaction_response(sent.id, Duration::from_secs(10))
        .await
        .unwrap()
}

/// `/count n:<n>` from `author`.
pub async fn slash_count(
    fake: &FakeDiscord,
    channel_id: u64,
    author: Author,
    n: i64,
) -> InteractionResponse {
    let options = serde_json::json!([{ "name": "n", "type": 4, "value": n }]);
    slash(fake, channel_id, author, "count", options).await
}

/// Presses the button `custom_id` of message `message_id` and waits for the answer.
pub async fn press(
    fake: &FakeDiscord,
    channel_id: u64,
    author: Author,
    message_id: u64,
    custom_id: &str,
) -> InteractionResponse {
    let sent = fake
        .press_button(channel_id, author, message_id, custom_id)
        .unwrap();
    fake.wait_interaction_response(sent.id, Duration::from_secs(10))
        .await
        .unwrap()
}

/// The custom ids of the buttons on a message, in order.
pub fn button_ids(message: &PostedMessage) -> Vec<String> {
    message
        .components
        .iter()
        .flat_map(|rows| rows.as_array().cloned().unwrap_or_default())
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["custom_id"].as_str().map(str::to_owned))
        .collect()
}

/// An interaction answer pinged nobody and said `text` (exactly).
pub fn assert_answer(answer: &InteractionResponse, ephemeral: bool, text: &str) {
    assert!(answer.accepted(), "refused by the fake: {answer:?}");
    assert_eq!(answer.kind, 4, "{answer:?}");
    assert_eq!(answer.ephemeral(), ephemeral, "{answer:?}");
    assert_eq!(answer.content.as_deref(), Some(text), "{answer:?}");
    assert!(
        answer.elapsed < Duration::from_secs(3),
        "answered after {:?}",
        answer.elapsed
    );
    let allowed = answer
        .allowed_mentions
        .as_ref()
        .unwrap_or_else(|| panic!("no allowed_mentions: {answer:?}"));
    assert_eq!(allowed["parse"], serde_json::json!([]), "{answer:?}");
}
