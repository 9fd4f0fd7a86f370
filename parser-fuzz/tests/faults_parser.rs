//! Fault suite: the command parser fuzzed with proptest.
//!
//! `parse` is pure, so it is fuzzed directly: random Unicode, and commands
//! with hostile pieces spliced in (unicode digits, zero-width and bidi
//! characters, NUL and control characters, other mentions, `@everyone`,
//! thousands of characters). For every input: no panic; the result equals
//! an independent reference reading of the grammar; a `Count` is within
//! 1..=9999 and its digits are in the text; `mentions` sees exactly the
//! bot's two mention forms.
//!
//! This crate compiles `src/commands/parse.rs` alone (see `src/lib.rs`).
//! `cargo test --workspace` runs 20,000 cases; CI runs a million in a
//! release build:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test --release -p parser-fuzz --test faults_parser -- --ignored
//! ```

use parser_fuzz::parse::{mentions, parse, Command, InvalidReason, MAX_TARGET};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

const BOT: u64 = 900_000_000_000_000_001;

/// The command grammar (README, "Using the bot") read independently of
/// `parse`: mention tokens removed left to right (they never overlap),
/// words split on Unicode whitespace, compared lower-cased.
fn reference(s: &str) -> Command {
    let tokens = [format!("<@{BOT}>"), format!("<@!{BOT}>")];
    let mut text = String::new();
    let mut rest = s;
    'scan: while let Some(c) = rest.chars().next() {
        for t in &tokens {
            if let Some(after) = rest.strip_prefix(t.as_str()) {
                text.push(' ');
                rest = after;
                continue 'scan;
            }
        }
        text.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.extend(c.to_lowercase());
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["help"] => Command::Help,
        ["stop"] => Command::Stop,
        ["status"] => Command::Status,
        ["count", "to"] => Command::Invalid(InvalidReason::MissingNumber),
        ["count", "to", n] => number(n),
        _ => Command::Invalid(InvalidReason::UnknownCommand),
    }
}

fn number(n: &str) -> Command {
    let (negative, digits) = if let Some(d) = n.strip_prefix('+') {
        (false, d)
    } else if let Some(d) = n.strip_prefix('-') {
        (true, d)
    } else {
        (false, n)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Command::Invalid(InvalidReason::NotANumber);
    }
    // Value without overflow: leading zeros off, then at most 4 digits.
    let significant = digits.trim_start_matches('0');
    if negative || significant.is_empty() || significant.len() > 4 {
        return Command::Invalid(InvalidReason::OutOfRange);
    }
    let value = significant
        .chars()
        .fold(0u32, |v, c| v * 10 + c.to_digit(10).unwrap());
    if value > u32::from(MAX_TARGET) {
        Command::Invalid(InvalidReason::OutOfRange)
    } else {
        Command::Count(value as u16)
    }
}

/// Pieces a hostile message is made of.
fn piece() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = vec![
        "count",
        "COUNT",
        "Count",
        "to",
        "TO",
        "tO",
        "stop",
        "status",
        "STATUS",
        "help",
        "count to",
        "+",
        "-",
        "0",
        "00",
        "5",
        "9999",
        "10000",
        "99999999999999999999",
        "５",
        "٥",
        "۵",
        "𝟓",
        "⑤",
        "⁵",
        "五",
        "\u{200b}",
        "\u{200c}",
        "\u{200d}",
        "\u{2060}",
        "\u{feff}",
        "\u{202e}",
        "\u{202d}",
        "\u{200f}",
        "\u{200e}",
        "\u{2066}",
        "\u{2069}",
        "\u{0}",
        "\u{1b}[31m",
        "\u{7f}",
        "\u{85}",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        "\t",
        "\n",
        "\r\n",
        " ",
        "  ",
        "@everyone",
        "@here",
        "<@123456789012345678>",
        "<@!123456789012345678>",
        "<@&1000>",
        "<#1001>",
        "<@900000000000000001>",
        "<@!900000000000000001>",
        "<@900000000000000002>",
        "<@!<@900000000000000001>",
        "<<@900000000000000001>>",
        "<@",
        "<@!",
        ">",
        "İ",
        "ß",
        "\u{301}",
        "\u{337}",
        "'); DROP TABLE tasks; --",
        "%s",
        "{}",
        "\\",
    ];
    prop_oneof![
        8 => proptest::sample::select(fixed).prop_map(str::to_owned),
        2 => "\\PC{0,8}",
        1 => any::<char>().prop_map(String::from),
        1 => (1u32..=20000).prop_map(|n| n.to_string()),
    ]
}

/// Random Unicode, commands with hostile pieces spliced in, long messages.
fn message() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        6 => proptest::collection::vec(piece(), 0..12).prop_map(|p| p.concat()),
        4 => (
            proptest::collection::vec(piece(), 0..3),
            proptest::collection::vec(piece(), 0..3),
            proptest::collection::vec(piece(), 0..3),
            proptest::collection::vec(piece(), 0..3),
        )
            .prop_map(|(a, b, c, d)| format!(
                "{}count{}to{}{}",
                a.concat(),
                b.concat(),
                c.concat(),
                d.concat()
            )),
        1 => (piece(), 1usize..500).prop_map(|(p, n)| p.repeat(n)),
    ]
}

fn check(s: &str) -> Result<(), TestCaseError> {
    let got = parse(s, BOT);
    prop_assert_eq!(got, reference(s), "input {:?}", s);
    if let Command::Count(n) = got {
        prop_assert!((1..=MAX_TARGET).contains(&n));
        prop_assert!(s.contains(&n.to_string()), "{} not in {:?}", n, s);
    }
    if !s.bytes().any(|b| b.is_ascii_digit()) {
        prop_assert!(!matches!(got, Command::Count(_)));
    }
    let token = s.contains(&format!("<@{BOT}>")) || s.contains(&format!("<@!{BOT}>"));
    prop_assert_eq!(mentions(s, BOT), token);
    Ok(())
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // Failures are printed with their input; no regression files in tests/.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

fn cases_from_env(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(config(cases_from_env(20_000)))]
    #[test]
    fn the_parser_agrees_with_the_grammar_on_hostile_input(s in message()) {
        check(&s)?;
    }
}

proptest! {
    #![proptest_config(config(cases_from_env(1_000_000)))]
    #[test]
    #[ignore = "a million cases: run in release by .ci/run"]
    fn a_million_hostile_messages(s in message()) {
        check(&s)?;
    }
}

#[test]
fn the_reference_reads_the_design_examples() {
    let m = format!("<@{BOT}>");
    for (text, expected) in [
        (format!("{m} count to 20"), Command::Count(20)),
        ("  COUNT   To  +07 ".to_owned(), Command::Count(7)),
        (format!("count{m}to 3"), Command::Count(3)),
        (
            "count to ５".to_owned(),
            Command::Invalid(InvalidReason::NotANumber),
        ),
        (
            "count to -3".to_owned(),
            Command::Invalid(InvalidReason::OutOfRange),
        ),
        (
            "count to".to_owned(),
            Command::Invalid(InvalidReason::MissingNumber),
        ),
        (
            "count to 5\u{200b}".to_owned(),
            Command::Invalid(InvalidReason::NotANumber),
        ),
        ("count\u{3000}to\u{a0}5".to_owned(), Command::Count(5)),
        (m.clone(), Command::Help),
        (format!("{m} STATUS "), Command::Status),
        (
            "@everyone count to 5".to_owned(),
            Command::Invalid(InvalidReason::UnknownCommand),
        ),
    ] {
        assert_eq!(reference(&text), expected, "{text:?}");
        assert_eq!(parse(&text, BOT), expected, "{text:?}");
    }
}
