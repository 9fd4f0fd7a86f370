//! Gateway events in: READY starts the resume and the slash command
//! registration, messages become commands, interactions go to
//! [`Interactions`], connection stages drive `/readyz`.
//!
//! Every shard calls the same handler. Each READY, RESUMED and stage
//! change counts for its own shard only (`/readyz` wants every shard
//! ready); the resume runs at every READY, and skips what already runs, so
//! a second shard's READY starts nothing twice; the slash commands are
//! registered once per term.

use std::sync::Arc;

use serenity::all::{
    ConnectionStage, Context, EventHandler, Interaction, Message, Ready, ResumedEvent,
};
use serenity::async_trait;
use serenity::gateway::ShardStageUpdateEvent;

use super::interactions::Interactions;
use super::permissions;
use super::registration::Registration;
use crate::commands::policy::StopPolicy;
use crate::commands::{CommandService, Incoming};
use crate::resume::Resumer;
use crate::send::Pacer;
use crate::server::Readiness;

pub struct Handler {
    pub commands: CommandService,
    pub resumer: Resumer,
    pub readiness: Readiness,
    pub interactions: Interactions,
    pub registration: Registration,
    /// Books the permissions look-up (see [`permissions`]).
    pub pacer: Arc<Pacer>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        // serenity always sends `shard` in IDENTIFY, and Discord echoes it.
        let (shard, shards) = ready
            .shard
            .map_or((ctx.shard_id.0, 1), |s| (s.id.0, s.total));
        tracing::info!(
            user = %ready.user.name,
            guilds = ready.guilds.len(),
            session = %ready.session_id,
            shard,
            shards,
            "gateway ready"
        );
        self.commands.set_bot_id(ready.user.id.get());
        self.readiness.shard_ready(shard, shards);
        // Another shard's READY, or a second READY (after an invalidated
        // session), resumes again; what already runs here is skipped, so
        // nothing starts twice.
        let resumer = self.resumer.clone();
        let bot_user_id = ready.user.id.get();
        tokio::spawn(async move { resumer.resume_all(bot_user_id).await });
        self.registration.start(ctx.http.clone());
    }

    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        self.interactions.handle(&ctx, interaction).await;
    }

    async fn resume(&self, ctx: Context, _event: ResumedEvent) {
        tracing::info!(shard = ctx.shard_id.0, "gateway session resumed");
        self.readiness.shard_resumed(ctx.shard_id.0);
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        let shard = event.shard_id.0;
        tracing::debug!(shard, old = %event.old, new = %event.new, "gateway stage");
        if event.new != ConnectionStage::Connected {
            if event.old == ConnectionStage::Connected {
                tracing::warn!(shard, stage = %event.new, "gateway connection lost; reconnecting");
            }
            self.readiness.shard_down(shard);
        }
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if msg.author.bot || msg.webhook_id.is_some() {
            return;
        }
        // Only a policy that asks needs the author's permissions (a cache
        // lookup, a request only when the cache lacks them), and only for a
        // `stop`.
        let manages_messages = match msg.guild_id {
            Some(guild_id)
                if self.commands.stop_policy() == StopPolicy::StarterOrManager
                    && !msg.mentions.is_empty()
                    && self.commands.is_stop(&msg.content) =>
            {
                permissions::manages_messages(
                    &ctx.cache,
                    &ctx.http,
                    &self.pacer,
                    guild_id,
                    msg.channel_id,
                    msg.author.id,
                    msg.member.as_deref(),
                )
                .await
            }
            _ => false,
        };
        self.commands
            .handle(Incoming {
                message_id: msg.id.get(),
                channel_id: msg.channel_id.get(),
                guild_id: msg.guild_id.map(|g| g.get()),
                author_id: msg.author.id.get(),
                content: msg.content,
                manages_messages,
            })
            .await;
    }
}
