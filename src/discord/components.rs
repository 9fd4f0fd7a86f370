//! The Stop button on the first number of every countdown.
//!
//! Its custom id, `stop:<task id>`, names the countdown, not the channel:
//! a press on an old countdown's button cannot stop a newer one in the
//! same channel, and the id stays valid across restarts (the task id is the
//! database row's), so a resumed countdown's button still works.

use serenity::all::{ButtonStyle, CreateActionRow, CreateButton};

const PREFIX: &str = "stop:";

/// The custom id of countdown `task_id`'s Stop button (Discord allows 100
/// characters; this is at most 24).
pub fn stop_custom_id(task_id: i64) -> String {
    format!("{PREFIX}{task_id}")
}

/// The task id of a Stop button's custom id; `None` for anything else.
pub fn parse_stop_custom_id(custom_id: &str) -> Option<i64> {
    let digits = custom_id.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|id| *id > 0)
}

/// The action row holding countdown `task_id`'s Stop button.
pub fn stop_row(task_id: i64) -> CreateActionRow {
    CreateActionRow::Buttons(vec![CreateButton::new(stop_custom_id(task_id))
        .style(ButtonStyle::Danger)
        .label("Stop")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_round_trip() {
        for id in [1, 42, i64::MAX] {
            assert_eq!(parse_stop_custom_id(&stop_custom_id(id)), Some(id));
        }
        assert!(stop_custom_id(i64::MAX).len() <= 100);
    }

    #[test]
    fn other_custom_ids_are_not_stop_buttons() {
        for bad in [
            "",
            "stop",
            "stop:",
            "stop:-1",
            "stop:0",
            "stop:+5",
            "stop:5x",
            "stop: 5",
            "STOP:5",
            "go:5",
            "stop:99999999999999999999",
        ] {
            assert_eq!(parse_stop_custom_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_button_is_a_red_stop_button() {
        let row = serde_json::to_value(stop_row(7)).unwrap();
        assert_eq!(row["type"], 1);
        let button = &row["components"][0];
        assert_eq!(button["type"], 2);
        assert_eq!(button["style"], 4);
        assert_eq!(button["label"], "Stop");
        assert_eq!(button["custom_id"], "stop:7");
    }
}
