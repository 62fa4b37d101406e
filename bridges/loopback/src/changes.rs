//! What echo does with what Matrix users do besides writing: typing and read markers, files,
//! edits, reactions and deletions.

use switchboard_api::PluginError;
use switchboard_api::bridge::{
    BridgeContext, EditHandler, MediaHandler, PresenceHandler, ReactionHandler, RedactionHandler,
};
use switchboard_api::ids::{PortalKey, RemoteMessageId, RemoteUserId};
use switchboard_api::matrix::{
    MatrixEdit, MatrixMedia, MatrixMembership, MatrixReaction, MatrixRead, MatrixRedaction,
    MatrixTyping,
};
use switchboard_api::remote::{RemoteEvent, RemoteMedia, RemoteReaction};

use crate::{ChatMembers, ECHO, LoopbackBridge, answer_id, echo_profile, echo_text, message_id};

#[switchboard_api::async_trait]
impl PresenceHandler for LoopbackBridge {
    /// Echo types while you type.
    async fn handle_matrix_typing(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        typing: &MatrixTyping,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let echo = RemoteEvent::Typing {
            sender: RemoteUserId::from(ECHO),
            typing: typing.typing,
        };
        self.echo(ctx, portal, echo).await
    }

    /// The network keeps who is in each chat (the portal's data), for `who`.
    async fn handle_matrix_membership(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        membership: &MatrixMembership,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let mut chat: ChatMembers = ctx.matrix().portal_data(portal).await?;
        let user = membership.user_id.to_string();
        chat.members.retain(|member| *member != user);
        if membership.joined {
            chat.members.push(user);
        }
        ctx.matrix().set_portal_data(portal, &chat).await?;
        Ok(())
    }

    /// When you have read echo's answer, echo has read your message.
    async fn handle_matrix_read(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        read: &MatrixRead,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let Some(question) = read.target.as_str().strip_prefix("answer-") else {
            return Ok(());
        };
        let echo = RemoteEvent::ReadUpTo {
            sender: RemoteUserId::from(ECHO),
            target: RemoteMessageId(format!("m-{question}")),
        };
        self.echo(ctx, portal, echo).await
    }
}

#[switchboard_api::async_trait]
impl MediaHandler for LoopbackBridge {
    /// Echo sends the file straight back, named `echo-<name>`.
    async fn handle_matrix_media(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        media: &MatrixMedia,
    ) -> Result<RemoteMessageId, PluginError> {
        self.reachable()?;
        let id = message_id(media.event_id.as_str());
        ctx.matrix()
            .map_matrix_event(portal, &id, "", &media.room_id, &media.event_id)
            .await?;
        if let Some(answer) = answer_id(&id) {
            let back = RemoteMedia {
                id: answer,
                part: String::new(),
                sender: RemoteUserId::from(ECHO),
                sender_profile: echo_profile(),
                kind: media.kind,
                filename: format!("echo-{}", media.filename),
                mimetype: media
                    .mimetype
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".to_owned()),
                data: media.data.clone(),
                sent_at_ms: None,
            };
            self.echo(ctx, portal, RemoteEvent::Media(back)).await?;
        }
        Ok(id)
    }
}

#[switchboard_api::async_trait]
impl EditHandler for LoopbackBridge {
    async fn handle_matrix_edit(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        edit: &MatrixEdit,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let Some(answer) = answer_id(&edit.target) else {
            return Ok(());
        };
        let id = RemoteMessageId(format!("answer-edit-{}", edit.event_id));
        let edit = RemoteEvent::Edit {
            target: answer,
            edit: echo_text(id, &edit.body, None),
        };
        self.echo(ctx, portal, edit).await
    }
}

#[switchboard_api::async_trait]
impl ReactionHandler for LoopbackBridge {
    async fn handle_matrix_reaction(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        reaction: &MatrixReaction,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let same = RemoteReaction {
            sender: RemoteUserId::from(ECHO),
            sender_profile: echo_profile(),
            target: reaction.target.clone(),
            key: reaction.key.clone(),
        };
        self.echo(ctx, portal, RemoteEvent::Reaction(same)).await
    }

    async fn handle_matrix_reaction_removal(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        removal: &MatrixRedaction,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let Some(key) = removal.reaction.clone() else {
            return Ok(());
        };
        let same = RemoteReaction {
            sender: RemoteUserId::from(ECHO),
            sender_profile: echo_profile(),
            target: removal.target.clone(),
            key,
        };
        self.echo(ctx, portal, RemoteEvent::ReactionRemoved(same))
            .await
    }
}

#[switchboard_api::async_trait]
impl RedactionHandler for LoopbackBridge {
    async fn handle_matrix_redaction(
        &self,
        ctx: &BridgeContext,
        portal: &PortalKey,
        redaction: &MatrixRedaction,
    ) -> Result<(), PluginError> {
        self.reachable()?;
        let Some(answer) = answer_id(&redaction.target) else {
            return Ok(());
        };
        let deletion = RemoteEvent::Deletion {
            target: answer,
            part: String::new(),
        };
        self.echo(ctx, portal, deletion).await
    }
}
