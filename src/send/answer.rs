//! Reading Discord's answers: what a 2xx answer to a posted message says
//! about its bucket (`X-RateLimit-Remaining`, `X-RateLimit-Reset-After`) and
//! the message, and what a failed one says (a 429's `retry_after` and scope,
//! a 5xx to retry, a refusal not to).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::sink::{Delivered, SendError};

/// What a 2xx answer to `POST /channels/{id}/messages` says: the bucket's
/// state and the message's id and age.
pub fn delivered(headers: &HeaderMap, body: &str) -> Delivered {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    Delivered {
        remaining: header(headers, "x-ratelimit-remaining"),
        reset_after: header::<f64>(headers, "x-ratelimit-reset-after").and_then(seconds),
        age: json.as_ref().and_then(message_age),
        message_id: json.as_ref().and_then(|j| snowflake(j.get("id"))),
    }
}

/// A snowflake as Discord's JSON carries it: a string of digits.
pub fn snowflake(v: Option<&serde_json::Value>) -> Option<u64> {
    v?.as_str()?.parse().ok()
}

/// Turns a non-2xx answer into a [`SendError`].
pub fn failure(status: StatusCode, headers: &HeaderMap, body: &str) -> SendError {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let from_body = json
            .as_ref()
            .and_then(|j| j.get("retry_after"))
            .and_then(serde_json::Value::as_f64);
        let retry_after = from_body
            .or_else(|| header::<f64>(headers, "retry-after"))
            .and_then(seconds)
            .unwrap_or(Duration::from_secs(1));
        let global = json
            .as_ref()
            .and_then(|j| j.get("global"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
            || header::<String>(headers, "x-ratelimit-global").is_some_and(|v| v == "true")
            || header::<String>(headers, "x-ratelimit-scope").is_some_and(|v| v == "global");
        return SendError::RateLimited {
            retry_after,
            global,
        };
    }
    if status.is_server_error() {
        return SendError::Server {
            status: status.as_u16(),
        };
    }
    let message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect());
    SendError::Rejected {
        status: status.as_u16(),
        message,
    }
}

/// Age of a message object, from its `timestamp`.
fn message_age(json: &serde_json::Value) -> Option<Duration> {
    let created = chrono::DateTime::parse_from_rfc3339(json.get("timestamp")?.as_str()?).ok()?;
    (chrono::Utc::now() - created.with_timezone(&chrono::Utc))
        .to_std()
        .ok()
}

fn header<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn rate_limit_answers_are_read_from_body_and_headers() {
        let mut headers = HeaderMap::new();
        let err = failure(
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            r#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#,
        );
        assert_eq!(
            err,
            SendError::RateLimited {
                retry_after: Duration::from_millis(250),
                global: false
            }
        );
        headers.insert("retry-after", HeaderValue::from_static("2"));
        headers.insert("x-ratelimit-global", HeaderValue::from_static("true"));
        let err = failure(StatusCode::TOO_MANY_REQUESTS, &headers, "");
        assert_eq!(
            err,
            SendError::RateLimited {
                retry_after: Duration::from_secs(2),
                global: true
            }
        );
    }

    #[test]
    fn the_age_of_a_returned_message_comes_from_its_timestamp() {
        let old = (chrono::Utc::now() - chrono::Duration::seconds(3)).to_rfc3339();
        let age = message_age(&serde_json::json!({ "id": "1", "timestamp": old })).unwrap();
        assert!(age >= Duration::from_secs(3) && age < Duration::from_secs(4));
        assert_eq!(message_age(&serde_json::json!("<html>")), None);
    }

    #[test]
    fn cloudflare_html_502_is_retryable() {
        let err = failure(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            "<html><body>502 Bad Gateway</body></html>",
        );
        assert_eq!(err, SendError::Server { status: 502 });
        assert!(err.is_retryable());
    }

    #[test]
    fn missing_permission_is_not_retried() {
        let err = failure(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            r#"{"message":"Missing Permissions","code":50013}"#,
        );
        assert_eq!(err.kind(), "rejected");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("Missing Permissions"));
    }
}
