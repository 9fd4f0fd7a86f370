//! The command grammar (README, "Using the bot") as a pure function: text in,
//! [`Command`] out. No I/O, no allocation beyond the lower-cased text.

/// Largest N a user may ask for.
pub const MAX_TARGET: u16 = 9999;

/// What a message asks the bot to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Count(u16),
    Stop,
    /// What is counting in this channel.
    Status,
    Help,
    Invalid(InvalidReason),
}

/// Why a message is not a command. The label is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// Not `count to`, `stop`, `status` or `help`.
    UnknownCommand,
    /// `count to` without a number.
    MissingNumber,
    /// `count to abc`, `count to 5.5`, `count to ５`.
    NotANumber,
    /// `count to 0`, `count to -3`, `count to 10000`.
    OutOfRange,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 4] = [
        InvalidReason::UnknownCommand,
        InvalidReason::MissingNumber,
        InvalidReason::NotANumber,
        InvalidReason::OutOfRange,
    ];

    pub fn label(self) -> &'static str {
        match self {
            InvalidReason::UnknownCommand => "unknown_command",
            InvalidReason::MissingNumber => "missing_number",
            InvalidReason::NotANumber => "not_a_number",
            InvalidReason::OutOfRange => "out_of_range",
        }
    }
}

/// True when `content` contains the bot's mention token (`<@ID>` or `<@!ID>`).
pub fn mentions(content: &str, bot_id: u64) -> bool {
    mention_tokens(bot_id)
        .iter()
        .any(|token| content.contains(token.as_str()))
}

fn mention_tokens(bot_id: u64) -> [String; 2] {
    [format!("<@{bot_id}>"), format!("<@!{bot_id}>")]
}

/// Parses a message: removes the bot's mention tokens, trims, ignores case.
pub fn parse(content: &str, bot_id: u64) -> Command {
    let mut text = content.to_owned();
    for token in mention_tokens(bot_id) {
        text = text.replace(&token, " ");
    }
    let text = text.trim().to_lowercase();
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [] | ["help"] => Command::Help,
        ["stop"] => Command::Stop,
        ["status"] => Command::Status,
        ["count", "to"] => Command::Invalid(InvalidReason::MissingNumber),
        ["count", "to", n] => match parse_target(n) {
            Ok(n) => Command::Count(n),
            Err(reason) => Command::Invalid(reason),
        },
        _ => Command::Invalid(InvalidReason::UnknownCommand),
    }
}

/// `+5` and `05` are fine; only ASCII digits count, so `５` is not a number.
fn parse_target(raw: &str) -> Result<u16, InvalidReason> {
    let (negative, digits) = match raw.as_bytes().first() {
        Some(b'+') => (false, &raw[1..]),
        Some(b'-') => (true, &raw[1..]),
        _ => (false, raw),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidReason::NotANumber);
    }
    let significant = digits.trim_start_matches('0');
    if negative || significant.is_empty() || significant.len() > 4 {
        return Err(InvalidReason::OutOfRange);
    }
    match significant.parse::<u16>() {
        Ok(n) if (1..=MAX_TARGET).contains(&n) => Ok(n),
        _ => Err(InvalidReason::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::InvalidReason::*;
    use super::*;

    const BOT: u64 = 42;

    #[test]
    fn examples_of_the_design() {
        let cases: &[(&str, Command)] = &[
            ("<@42> count to 20", Command::Count(20)),
            ("<@!42> count to 20", Command::Count(20)),
            ("count to 20 <@42>", Command::Count(20)),
            ("  COUNT   To  7 ", Command::Count(7)),
            ("count to +5", Command::Count(5)),
            ("count to 05", Command::Count(5)),
            ("count to 1", Command::Count(1)),
            ("count to 9999", Command::Count(9999)),
            ("count to 0", Command::Invalid(OutOfRange)),
            ("count to -3", Command::Invalid(OutOfRange)),
            ("count to 10000", Command::Invalid(OutOfRange)),
            (
                "count to 99999999999999999999",
                Command::Invalid(OutOfRange),
            ),
            ("count to 5.5", Command::Invalid(NotANumber)),
            ("count to abc", Command::Invalid(NotANumber)),
            ("count to ５", Command::Invalid(NotANumber)),
            ("count to +", Command::Invalid(NotANumber)),
            ("count to", Command::Invalid(MissingNumber)),
            ("count to 5 please", Command::Invalid(UnknownCommand)),
            ("<@42> stop", Command::Stop),
            ("STOP", Command::Stop),
            ("<@42> status", Command::Status),
            ("  Status ", Command::Status),
            ("status please", Command::Invalid(UnknownCommand)),
            ("<@42> help", Command::Help),
            ("<@42>", Command::Help),
            ("", Command::Help),
            ("   ", Command::Help),
            ("dance", Command::Invalid(UnknownCommand)),
            ("<@43> count to 5", Command::Invalid(UnknownCommand)),
            ("@everyone count to 5", Command::Invalid(UnknownCommand)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text, BOT), *expected, "input {text:?}");
        }
    }

    #[test]
    fn mention_detection_needs_the_exact_id() {
        assert!(mentions("hi <@42>", BOT));
        assert!(mentions("<@!42>count to 3", BOT));
        assert!(!mentions("<@420> count to 3", BOT));
        assert!(!mentions("@countdown count to 3", BOT));
    }

    #[test]
    fn a_mention_glued_to_the_text_still_separates_words() {
        assert_eq!(parse("count<@42>to 3", BOT), Command::Count(3));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_input_panics(s in "\\PC*") {
                let _ = parse(&s, BOT);
                let _ = mentions(&s, BOT);
            }

            #[test]
            fn any_spacing_and_case_round_trips(
                n in 1u16..=9999,
                zeros in 0usize..3,
                plus in any::<bool>(),
                ws in proptest::collection::vec("[ \t\n]{1,3}", 4),
                upper in proptest::collection::vec(any::<bool>(), 7),
                mention in prop_oneof![Just(""), Just("<@42>"), Just("<@!42>")],
            ) {
                let word: String = "countto".chars().zip(&upper)
                    .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                    .collect();
                let number = format!("{}{}{}", if plus { "+" } else { "" }, "0".repeat(zeros), n);
                let text = format!("{}{}{}{}{}{}{}{}",
                    mention, ws[0], &word[..5], ws[1], &word[5..], ws[2], number, ws[3]);
                prop_assert_eq!(parse(&text, BOT), Command::Count(n));
            }
        }
    }
}
