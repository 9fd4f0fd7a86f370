//! Gateway events in: READY starts the resume, messages become commands,
//! connection stages drive `/readyz`.

use serenity::all::{ConnectionStage, Context, EventHandler, Message, Ready, ResumedEvent};
use serenity::async_trait;
use serenity::gateway::ShardStageUpdateEvent;

use crate::commands::{CommandService, Incoming};
use crate::resume::Resumer;
use crate::server::Readiness;

pub struct Handler {
    pub commands: CommandService,
    pub resumer: Resumer,
    pub readiness: Readiness,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(
            user = %ready.user.name,
            guilds = ready.guilds.len(),
            session = %ready.session_id,
            "gateway ready"
        );
        self.commands.set_bot_id(ready.user.id.get());
        self.readiness.set_gateway(true);
        // A second READY (after an invalidated session) resumes again; what
        // already runs here is skipped, so nothing starts twice.
        let resumer = self.resumer.clone();
        tokio::spawn(async move { resumer.resume_all().await });
    }

    async fn resume(&self, _ctx: Context, _event: ResumedEvent) {
        tracing::info!("gateway session resumed");
        self.readiness.set_gateway(true);
    }

    async fn shard_stage_update(&self, _ctx: Context, event: ShardStageUpdateEvent) {
        tracing::debug!(old = %event.old, new = %event.new, "gateway stage");
        if event.new != ConnectionStage::Connected {
            if event.old == ConnectionStage::Connected {
                tracing::warn!(stage = %event.new, "gateway connection lost; reconnecting");
            }
            self.readiness.set_gateway(false);
        }
    }

    async fn message(&self, _ctx: Context, msg: Message) {
        if msg.author.bot || msg.webhook_id.is_some() {
            return;
        }
        self.commands
            .handle(Incoming {
                message_id: msg.id.get(),
                channel_id: msg.channel_id.get(),
                guild_id: msg.guild_id.map(|g| g.get()),
                author_id: msg.author.id.get(),
                content: msg.content,
            })
            .await;
    }
}
