//! `GET /channels/{id}/messages`: a channel's history, as Discord lists it.
//!
//! - At most one of `before`, `after`, `around` (Discord documents them as
//!   mutually exclusive; the fake refuses two with a 400 rather than guess
//!   which one Discord would pick).
//! - `limit` 1–100, default 50; anything else is a 400 "Invalid Form Body".
//! - The page is always newest first. `after=X` gives the `limit` messages
//!   right after X (the oldest ones after it), `before=X` the `limit` right
//!   before it, `around=X` the `limit` around it (X itself included), none
//!   of them the newest `limit`.
//! - Listed messages carry no `nonce` (only the answer to a create does).
//! - A channel whose history the bot may not read answers 403 (50001,
//!   Missing Access); an unknown channel 404 (10003).
//! - The route has its own bucket per channel (another method than posting,
//!   so another bucket), of the posting bucket's size and shape, enforced
//!   when the channel limits are.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use crate::messages::{add_bucket_headers, rate_limited_on};
use crate::payloads;
use crate::rest::{bad_request, json_response, unknown_channel};
use crate::state::Shared;

const HISTORY_ROUTE: &str = "GET /channels/{channel.id}/messages";
pub(crate) const DEFAULT_LIMIT: usize = 50;
pub(crate) const MAX_LIMIT: usize = 100;

/// Which messages a listing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    Latest,
    Before(u64),
    After(u64),
    Around(u64),
}

/// Reads the query as Discord does; `Err` is the body of the 400.
pub(crate) fn parse_query(q: &HashMap<String, String>) -> Result<(Anchor, usize), Value> {
    let snowflake = |field: &str| -> Result<Option<u64>, Value> {
        match q.get(field) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                payloads::form_error(
                    field,
                    "NUMBER_TYPE_COERCE",
                    &format!("Value \"{v}\" is not snowflake."),
                )
            }),
        }
    };
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| {
                payloads::form_error(
                    "limit",
                    "NUMBER_TYPE_COERCE",
                    &format!("Value \"{v}\" is not int."),
                )
            })?;
            if n < 1 {
                return Err(payloads::form_error(
                    "limit",
                    "NUMBER_TYPE_MIN",
                    "int value should be greater than or equal to 1.",
                ));
            }
            if n > MAX_LIMIT as i64 {
                return Err(payloads::form_error(
                    "limit",
                    "NUMBER_TYPE_MAX",
                    "int value should be less than or equal to 100.",
                ));
            }
            n as usize
        }
    };
    let anchors = [
        snowflake("before")?.map(Anchor::Before),
        snowflake("after")?.map(Anchor::After),
        snowflake("around")?.map(Anchor::Around),
    ];
    let mut given = anchors.into_iter().flatten();
    let anchor = given.next().unwrap_or(Anchor::Latest);
    if given.next().is_some() {
        return Err(payloads::form_error(
            "around",
            "BASE_TYPE_BAD_REQUEST",
            "Only one of before, after and around may be given.",
        ));
    }
    Ok((anchor, limit))
}

/// The ids a listing returns from `log` (ids oldest first), newest first.
pub(crate) fn select(log: &[u64], anchor: Anchor, limit: usize) -> Vec<u64> {
    let range = match anchor {
        Anchor::Latest => log.len().saturating_sub(limit)..log.len(),
        Anchor::Before(x) => {
            let end = log.partition_point(|&id| id < x);
            end.saturating_sub(limit)..end
        }
        Anchor::After(x) => {
            let start = log.partition_point(|&id| id <= x);
            start..(start + limit).min(log.len())
        }
        Anchor::Around(x) => {
            let at = log.partition_point(|&id| id < x);
            let start = at.saturating_sub(limit / 2);
            let end = (start + limit).min(log.len());
            end.saturating_sub(limit).min(start)..end
        }
    };
    log[range].iter().rev().copied().collect()
}

pub(crate) async fn list_messages(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let now = Instant::now();
    let Some(channel_id) = channel.parse::<u64>().ok() else {
        return unknown_channel();
    };
    let (anchor, limit) = match parse_query(&query) {
        Ok(q) => q,
        Err(body) => return bad_request(body),
    };
    let mut w = shared.world();
    w.stats.history_lists += 1;
    if !shared.channel_exists(&w, channel_id) {
        return unknown_channel();
    }
    if w.history_denied.contains(&channel_id) {
        return json_response(
            StatusCode::FORBIDDEN,
            &payloads::error_body(50001, "Missing Access"),
        );
    }
    let bucket = match w.limits.check_history(channel_id, now) {
        Ok(b) => b,
        Err(b) => {
            w.stats.rate_limited += 1;
            drop(w);
            return rate_limited_on(HISTORY_ROUTE, b.reset_after.as_secs_f64(), false, Some(b));
        }
    };
    let ids = w
        .channel_log
        .get(&channel_id)
        .map(|log| select(log, anchor, limit))
        .unwrap_or_default();
    let page: Vec<Value> = ids
        .iter()
        .filter_map(|id| w.message_objects.get(id))
        .map(|m| {
            let mut m = m.clone();
            if let Some(obj) = m.as_object_mut() {
                obj.remove("nonce");
            }
            m
        })
        .collect();
    drop(w);
    let mut resp = json_response(StatusCode::OK, &Value::Array(page));
    add_bucket_headers(&mut resp, &bucket, HISTORY_ROUTE);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const LOG: [u64; 6] = [10, 20, 30, 40, 50, 60];

    #[test]
    fn latest_is_the_newest_page_newest_first() {
        assert_eq!(select(&LOG, Anchor::Latest, 3), vec![60, 50, 40]);
        assert_eq!(
            select(&LOG, Anchor::Latest, 100),
            vec![60, 50, 40, 30, 20, 10]
        );
    }

    #[test]
    fn after_is_the_oldest_messages_after_the_anchor_newest_first() {
        assert_eq!(select(&LOG, Anchor::After(20), 2), vec![40, 30]);
        assert_eq!(select(&LOG, Anchor::After(25), 100), vec![60, 50, 40, 30]);
        assert_eq!(select(&LOG, Anchor::After(60), 5), Vec::<u64>::new());
        assert_eq!(select(&LOG, Anchor::After(0), 1), vec![10]);
    }

    #[test]
    fn before_is_the_newest_messages_before_the_anchor() {
        assert_eq!(select(&LOG, Anchor::Before(50), 2), vec![40, 30]);
        assert_eq!(select(&LOG, Anchor::Before(10), 5), Vec::<u64>::new());
    }

    #[test]
    fn around_includes_the_anchor() {
        assert_eq!(select(&LOG, Anchor::Around(30), 1), vec![30]);
        assert_eq!(select(&LOG, Anchor::Around(30), 3), vec![40, 30, 20]);
        assert_eq!(select(&LOG, Anchor::Around(60), 4), vec![60, 50, 40, 30]);
        assert_eq!(select(&LOG, Anchor::Around(10), 4), vec![40, 30, 20, 10]);
    }

    #[test]
    fn the_query_is_read_as_discord_reads_it() {
        assert_eq!(parse_query(&q(&[])), Ok((Anchor::Latest, 50)));
        assert_eq!(
            parse_query(&q(&[("after", "7"), ("limit", "100")])),
            Ok((Anchor::After(7), 100))
        );
        for bad in ["0", "101", "-1", "x", "5.5"] {
            let err = parse_query(&q(&[("limit", bad)])).unwrap_err();
            assert_eq!(err["code"], 50035, "{bad}");
            assert!(err["errors"]["limit"].is_object(), "{bad}");
        }
        assert!(parse_query(&q(&[("after", "abc")])).is_err());
        assert!(parse_query(&q(&[("after", "1"), ("before", "9")])).is_err());
    }
}
