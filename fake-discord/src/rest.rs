//! The REST API under `/api/v10`: the router, the middleware in front of
//! every route, and the small routes (gateway discovery, the bot user, the
//! application, channels, DMs, typing). Message creation lives in
//! `messages.rs`, application commands in `commands.rs`, interaction
//! callbacks in `interactions.rs`.
//!
//! The middleware checks `Authorization: Bot …`, applies the global limit,
//! adds the configured latency (after the request was processed, before the
//! answer leaves) and records the request.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::Router;
use serde_json::{json, Value};

use crate::commands::{
    get_global_commands, get_guild_commands, post_global_command, put_global_commands,
    put_guild_commands,
};
use crate::messages::{is_message_post, post_message, rate_limited_response};
use crate::payloads;
use crate::state::{Exchange, RequestRecord, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/gateway", get(get_gateway))
        .route("/gateway/bot", get(get_gateway_bot))
        .route("/users/@me", get(get_me))
        .route("/users/@me/channels", post(create_dm))
        .route("/oauth2/applications/@me", get(get_application))
        .route("/applications/@me", get(get_application))
        .route("/channels/{channel_id}", get(get_channel))
        .route("/guilds/{guild_id}", get(get_guild))
        .route(
            "/channels/{channel_id}/messages",
            post(post_message).get(crate::history::list_messages),
        )
        .route("/channels/{channel_id}/typing", post(typing))
        .route(
            "/applications/{app_id}/commands",
            put(put_global_commands)
                .get(get_global_commands)
                .post(post_global_command),
        )
        .route(
            "/applications/{app_id}/guilds/{guild_id}/commands",
            put(put_guild_commands).get(get_guild_commands),
        )
        .route(
            "/interactions/{interaction_id}/{token}/callback",
            post(crate::interactions::callback),
        )
        .route(
            "/webhooks/{webhook_id}/{token}",
            post(crate::webhooks::execute),
        )
        .route(
            "/webhooks/{application_id}/{token}/messages/@original",
            patch(crate::interactions::edit_original),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared, api_layer))
}

// ---------------------------------------------------------------- helpers

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) async fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &payloads::error_body(0, "404: Not Found"),
    )
}

async fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &payloads::error_body(0, "405: Method Not Allowed"),
    )
}

pub(crate) fn unknown_channel() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &payloads::error_body(10003, "Unknown Channel"),
    )
}

pub(crate) fn bad_request(body: Value) -> Response {
    json_response(StatusCode::BAD_REQUEST, &body)
}

pub(crate) fn set_header(resp: &mut Response, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A stable per-route bucket hash, like Discord's `X-RateLimit-Bucket`.
fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bot "))
        .is_some_and(|token| !token.trim().is_empty())
}

/// A snowflake given as a JSON string or number.
pub(crate) fn snowflake_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Rejections are boxed: a `Response` is large.
pub(crate) type Reject = Box<Response>;

pub(crate) fn reject(body: Value) -> Reject {
    Box::new(bad_request(body))
}

pub(crate) fn parse_json(body: &Bytes) -> Result<Value, Reject> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| {
        Box::new(bad_request(payloads::error_body(
            50109,
            "The request body contains invalid JSON.",
        )))
    })
}

// ------------------------------------------------------------- middleware

async fn api_layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !shared.record_exchanges {
        return answer(shared, req, next).await;
    }
    let method = req.method().to_string();
    let path = original_path(&req);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let request = serde_json::from_slice::<Value>(&bytes).ok();
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let resp = answer(shared.clone(), req, next).await;
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    shared.world().exchanges.push(Exchange {
        method,
        path: route_path(&path).to_string(),
        request,
        status: parts.status.as_u16(),
        response: serde_json::from_slice::<Value>(&bytes).ok(),
    });
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// The path without Discord's `/api/v10` (or unversioned `/api`) prefix.
fn route_path(path: &str) -> &str {
    path.strip_prefix("/api/v10")
        .or_else(|| path.strip_prefix("/api"))
        .unwrap_or(path)
}

/// Discord's unversioned `/api` routes the fake serves (an incoming
/// webhook's URL, as Discord gives it out), behind the same middleware as
/// `/api/v10`.
pub(crate) fn unversioned_router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/api/webhooks/{webhook_id}/{token}",
            post(crate::webhooks::execute),
        )
        .route_layer(middleware::from_fn_with_state(shared, api_layer))
}

/// The path as the client sent it (the router strips the `/api/v10` it is
/// nested under).
fn original_path(req: &Request) -> String {
    req.extensions()
        .get::<OriginalUri>()
        .map(|u| u.0.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string())
}

/// What [`api_layer`] does for every request: authorisation, the global
/// limit, the route, the latency, the record.
async fn answer(shared: Arc<Shared>, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let method = req.method().clone();
    let path = original_path(&req);
    // A webhook's token in its path is its authorisation.
    let open_route = (method == Method::GET && route_path(&path) == "/gateway")
        || (method == Method::POST && route_path(&path).starts_with("/webhooks/"));
    let needs_auth = !open_route;
    let mut resp = if needs_auth && !authorized(req.headers()) {
        json_response(
            StatusCode::UNAUTHORIZED,
            &payloads::error_body(0, "401: Unauthorized"),
        )
    } else {
        let global = {
            let mut w = shared.world();
            w.stats.requests += 1;
            let r = w.limits.check_global(at);
            if r.is_err() {
                w.stats.rate_limited += 1;
                if is_message_post(&method, &path) {
                    w.stats.message_posts += 1;
                }
            }
            r
        };
        match global {
            Err(retry) => rate_limited_response(retry.as_secs_f64(), true, None),
            Ok(()) => next.run(req).await,
        }
    };
    let latency = shared.world().faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    set_header(&mut resp, "via", "1.1 google".to_string());
    set_header(&mut resp, "server", "cloudflare".to_string());
    {
        let mut w = shared.world();
        w.requests.push(RequestRecord {
            method: method.to_string(),
            path,
            status: resp.status().as_u16(),
            at,
            at_ms: shared.ms_since_start(at),
        });
    }
    resp
}

// ----------------------------------------------------------------- routes

async fn get_gateway(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &json!({ "url": shared.gateway_url() }))
}

async fn get_gateway_bot(State(shared): State<Arc<Shared>>) -> Response {
    let identified = shared.world().stats.identify;
    let day_ms: u64 = 86_400_000;
    let reset_after = day_ms.saturating_sub(shared.ms_since_start(Instant::now()) % day_ms);
    json_response(
        StatusCode::OK,
        &json!({
            "url": shared.gateway_url(),
            "shards": shared.shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000u64.saturating_sub(identified),
                "reset_after": reset_after,
                "max_concurrency": shared.max_concurrency,
            },
        }),
    )
}

async fn get_me(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &payloads::current_user(shared.bot_user_id))
}

async fn get_application(State(shared): State<Arc<Shared>>) -> Response {
    json_response(
        StatusCode::OK,
        &payloads::application(
            shared.application_id,
            shared.bot_user_id,
            shared.guilds.len(),
        ),
    )
}

/// `GET /guilds/{id}`: a guild of the fake (withheld or not: only its
/// GUILD_CREATE is withheld), or 404 Unknown Guild (10004); 500 while
/// `fail_guild_reads` lasts.
async fn get_guild(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    {
        let mut w = shared.world();
        if w.fail_guild_reads > 0 {
            w.fail_guild_reads -= 1;
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &payloads::error_body(0, "500: Internal Server Error"),
            );
        }
    }
    let spec = id
        .parse::<u64>()
        .ok()
        .and_then(|id| shared.guilds.iter().find(|g| g.id == id));
    match spec {
        Some(g) => json_response(
            StatusCode::OK,
            &payloads::guild(&payloads::GuildView {
                id: g.id,
                channels: &g.channels,
                bot_id: shared.bot_user_id,
                joined_at: &shared.joined_at,
            }),
        ),
        None => json_response(
            StatusCode::NOT_FOUND,
            &payloads::error_body(10004, "Unknown Guild"),
        ),
    }
}

async fn get_channel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return unknown_channel();
    };
    if let Some(guild) = shared.guild_of(id) {
        let position = shared
            .guilds
            .iter()
            .find(|g| g.id == guild)
            .and_then(|g| g.channels.iter().position(|c| *c == id))
            .unwrap_or(0);
        return json_response(
            StatusCode::OK,
            &payloads::guild_channel(guild, id, position),
        );
    }
    let w = shared.world();
    match w.dm_user.get(&id) {
        Some(user) => json_response(
            StatusCode::OK,
            &payloads::dm_channel(id, w.user_json(*user, shared.bot_user_id)),
        ),
        None => unknown_channel(),
    }
}

async fn create_dm(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let v = match parse_json(&body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let Some(user) = snowflake_of(v.get("recipient_id")) else {
        return bad_request(payloads::form_error(
            "recipient_id",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        ));
    };
    let mut w = shared.world();
    let channel = w.open_dm(user);
    json_response(
        StatusCode::OK,
        &payloads::dm_channel(channel, w.user_json(user, shared.bot_user_id)),
    )
}

async fn typing(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let known = id
        .parse::<u64>()
        .is_ok_and(|id| shared.channel_exists(&shared.world(), id));
    if known {
        StatusCode::NO_CONTENT.into_response()
    } else {
        unknown_channel()
    }
}
