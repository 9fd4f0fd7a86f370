//! What a user writes in a channel and what they see there: mentions of
//! the bot, the numbers posted, their timing, and that nobody was pinged.

use std::time::Duration;

use fake_discord::{Author, FakeDiscord, PostedMessage};

/// The user who writes the commands.
pub const USER: u64 = 555_000_000_000_000_001;

/// `<@bot> text`
pub fn mention(fake: &FakeDiscord, text: &str) -> String {
    format!("<@{}> {text}", fake.bot_user_id())
}

/// Channel `i` (0-based) of guild `g` (0-based) of the default world.
pub fn channel(fake: &FakeDiscord, g: usize, i: usize) -> u64 {
    fake.guilds()[g].channels[i]
}

pub async fn say(fake: &FakeDiscord, channel_id: u64, text: &str) -> u64 {
    fake.inject_message(channel_id, Author::user(USER), text)
        .await
        .unwrap()
}

pub async fn wait_messages(fake: &FakeDiscord, channel_id: u64, n: usize) -> Vec<PostedMessage> {
    fake.wait_for_messages(channel_id, n, Duration::from_secs(30))
        .await
        .unwrap()
}

pub fn contents(messages: &[PostedMessage]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

/// The numbers (not replies) posted in a channel.
pub fn numbers(messages: &[PostedMessage]) -> Vec<u32> {
    messages
        .iter()
        .filter(|m| m.message_reference.is_none())
        .filter_map(|m| m.content.parse().ok())
        .collect()
}

pub fn one_to(n: u32) -> Vec<u32> {
    (1..=n).collect()
}

/// Says `stop` in `channel`, waits for "Stopped at …" and returns the last
/// number posted, checking the numbers before it were 1..=it, once each.
pub async fn stop_and_wait(fake: &FakeDiscord, channel: u64) -> u32 {
    say(fake, channel, &mention(fake, "stop")).await;
    let msgs = fake
        .wait_for_messages_matching(channel, Duration::from_secs(10), |m| {
            m.content.starts_with("Stopped at")
        })
        .await
        .unwrap();
    let stopped_at = *numbers(&msgs).last().unwrap();
    assert_eq!(numbers(&msgs), one_to(stopped_at));
    stopped_at
}

/// Every message the bot ever created pinged nobody: `allowed_mentions`
/// present with `parse: []`, no user or role allowed, no reply ping.
pub fn assert_no_pings(fake: &FakeDiscord) {
    let all = fake.all_messages();
    for m in &all {
        let allowed = m
            .allowed_mentions
            .as_ref()
            .unwrap_or_else(|| panic!("message {:?} has no allowed_mentions", m.content));
        assert_eq!(
            allowed["parse"],
            serde_json::json!([]),
            "message {:?}: {allowed}",
            m.content
        );
        for list in ["users", "roles"] {
            let empty = allowed
                .get(list)
                .is_none_or(|v| v.as_array().is_some_and(|a| a.is_empty()));
            assert!(empty, "message {:?} allows {list}: {allowed}", m.content);
        }
        assert_ne!(
            allowed.get("replied_user"),
            Some(&serde_json::json!(true)),
            "message {:?} pings the replied user",
            m.content
        );
    }
}

/// The largest number of `times` (milliseconds) inside any window of `window_ms`.
pub fn max_in_window(times: &[u64], window_ms: u64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + window_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Gaps in milliseconds between consecutive messages.
pub fn gaps_ms(messages: &[PostedMessage]) -> Vec<u64> {
    messages
        .windows(2)
        .map(|p| p[1].at.duration_since(p[0].at).as_millis() as u64)
        .collect()
}
