//! Application commands: `PUT`/`GET /applications/{id}/commands` (and the
//! guild variant) echo and remember the commands with ids, as Discord does.
//! A bulk overwrite (`PUT`) replaces the scope's list; `fail_command_registration`
//! makes the next ones answer 500.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::payloads;
use crate::rest::{bad_request, json_response, parse_json};
use crate::state::{Shared, World};

fn command_object(w: &mut World, app_id: u64, guild_id: Option<u64>, mut c: Value) -> Value {
    if !c.is_object() {
        c = json!({});
    }
    let id = w.snowflake();
    let version = w.snowflake();
    let defaults = [
        ("id", Value::from(id.to_string())),
        ("application_id", Value::from(app_id.to_string())),
        ("version", Value::from(version.to_string())),
        ("type", Value::from(1)),
        ("description", Value::from("")),
        ("options", json!([])),
        ("default_member_permissions", Value::Null),
        ("dm_permission", Value::Bool(true)),
        ("nsfw", Value::Bool(false)),
        ("integration_types", json!([0])),
        ("contexts", Value::Null),
    ];
    for (k, v) in defaults {
        if c.get(k).unwrap_or(&Value::Null).is_null()
            || k == "id"
            || k == "version"
            || k == "application_id"
        {
            c[k] = v;
        }
    }
    if let Some(g) = guild_id {
        c["guild_id"] = Value::from(g.to_string());
    }
    c
}

fn put_commands(shared: &Shared, guild_id: Option<u64>, body: &Bytes) -> Response {
    let v = match parse_json(body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let Value::Array(list) = v else {
        return bad_request(payloads::form_error(
            "_errors",
            "ARRAY_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        ));
    };
    let mut w = shared.world();
    if w.fail_commands > 0 {
        w.fail_commands -= 1;
        return json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &payloads::error_body(0, "500: Internal Server Error"),
        );
    }
    let out: Vec<Value> = list
        .into_iter()
        .map(|c| command_object(&mut w, shared.application_id, guild_id, c))
        .collect();
    w.commands.insert(guild_id, out.clone());
    drop(w);
    shared.bump_events();
    json_response(StatusCode::OK, &Value::Array(out))
}

fn get_commands(shared: &Shared, guild_id: Option<u64>) -> Response {
    let w = shared.world();
    let list = w.commands.get(&guild_id).cloned().unwrap_or_default();
    json_response(StatusCode::OK, &Value::Array(list))
}

pub(crate) async fn put_global_commands(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    put_commands(&shared, None, &body)
}

pub(crate) async fn get_global_commands(State(shared): State<Arc<Shared>>) -> Response {
    get_commands(&shared, None)
}

pub(crate) async fn post_global_command(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Response {
    let v = match parse_json(&body) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let mut w = shared.world();
    let c = command_object(&mut w, shared.application_id, None, v);
    let name = c.get("name").cloned();
    let list = w.commands.entry(None).or_default();
    list.retain(|old| old.get("name") != name.as_ref());
    list.push(c.clone());
    json_response(StatusCode::CREATED, &c)
}

pub(crate) async fn put_guild_commands(
    State(shared): State<Arc<Shared>>,
    Path((_app, guild)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    put_commands(&shared, guild.parse().ok(), &body)
}

pub(crate) async fn get_guild_commands(
    State(shared): State<Arc<Shared>>,
    Path((_app, guild)): Path<(String, String)>,
) -> Response {
    get_commands(&shared, guild.parse().ok())
}
