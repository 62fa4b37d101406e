//! Delivering one Matrix event of a portal to its bridge: decoded, checked against the message
//! map (never twice), routed through a login, handed to the capability that carries it, and
//! recorded in the message map.

use ruma::OwnedEventId;
use switchboard_api::event::RoomEvent;

use super::HostedBridge;
use crate::bridge::from_matrix::{
    MatrixEdit, MatrixMembership, MatrixMessage, MatrixReaction, MatrixRedaction, MediaRef,
    Mention, PortalEvent,
};
use crate::bridge::ids::PortalKey;
use crate::bridge::login::Via;
use crate::bridge::media::MatrixMedia;
use crate::bridge::remote::{reaction_key, reaction_part};
use crate::inbox::HandleError;
use crate::isolation::{Handling, retry_panics};
use crate::store::MessageRecord;

impl HostedBridge {
    /// [`Self::deliver`] under panic isolation: a bridge that panics on the event is tried
    /// again a few times, then the event is given up (a permanent failure, told to the sender)
    /// and the portal goes on with its next one.
    pub(super) async fn deliver_isolated(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
    ) -> Result<(), HandleError> {
        let handling = Handling {
            plugin: self.id(),
            room_id: event.room_id.as_str(),
            event: event.event_id.as_str(),
        };
        retry_panics(&self.matrix.metrics.handler_panics, handling, || {
            self.deliver(portal, event, raw)
        })
        .await
    }

    /// Hands one event to the bridge and records what it created on the network. An event
    /// delivered before (a crash came between) is not delivered again.
    pub(super) async fn deliver(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        raw: &str,
    ) -> Result<(), HandleError> {
        let Some(read) = PortalEvent::read(event, raw) else {
            return Ok(());
        };
        let kind = kind_label(&read);
        if self
            .matrix
            .messages
            .by_event(event.event_id.as_str())
            .await?
            .is_some()
        {
            return Ok(());
        }
        let referenced = match read.referenced_event() {
            Some(id) => self.mapped(portal, id).await?,
            None => None,
        }
        // Only a redaction may refer to a reaction; anything else refers to a message.
        .filter(|r| {
            matches!(read, PortalEvent::Redaction { .. }) || reaction_key(&r.part).is_none()
        });
        // A membership change is not sent with anyone's login: it is news about the room.
        let via = if matches!(read, PortalEvent::Membership { .. }) {
            Via::Bridge
        } else if let Some(via) = self.route(portal, event).await? {
            via
        } else {
            self.count(kind, "no_login");
            return Ok(());
        };
        let outcome = self.dispatch(portal, event, read, referenced, via).await;
        self.count(
            kind,
            match &outcome {
                Ok(Delivered::Yes) => "delivered",
                Ok(Delivered::Unmapped) => "unmapped",
                Ok(Delivered::Unsupported) => "unsupported",
                Err(HandleError::Transient(_)) => "retry",
                Err(HandleError::Permanent(_)) => "refused",
            },
        );
        match outcome? {
            Delivered::Unsupported if kind != "reaction" => {
                let what = match kind {
                    "edit" => "Edits",
                    "media" => "Files",
                    "membership" => return Ok(()),
                    _ => "Deletions",
                };
                let reason = format!("{what} are not carried to this network.");
                self.tell_undelivered(event, &reason).await
            }
            _ => Ok(()),
        }
    }

    /// The remote message (and part) a Matrix event of this portal was bridged as.
    pub(super) async fn mapped(
        &self,
        portal: &PortalKey,
        event_id: &OwnedEventId,
    ) -> Result<Option<MessageRecord>, HandleError> {
        Ok(self
            .matrix
            .messages
            .by_event(event_id.as_str())
            .await?
            .filter(|(bridge, record)| bridge == self.id() && record.portal == *portal)
            .map(|(_, record)| record))
    }

    /// Hands a decoded event to the capability that carries it (`via` its login), unless an
    /// admin turned the bridge off; `referenced` is the bridged message it refers to.
    async fn dispatch(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        read: PortalEvent,
        referenced: Option<MessageRecord>,
        via: Via,
    ) -> Result<Delivered, HandleError> {
        if self.is_disabled() {
            return Err(HandleError::Transient(format!(
                "the {} bridge is turned off by an admin",
                self.info().displayname
            )));
        }
        let ctx = &self.ctx;
        let event_id = event.event_id.clone();
        let sender = event.sender.clone();
        match read {
            message @ PortalEvent::Message { .. } => {
                let reply_to = referenced.map(|r| r.remote_message_id);
                return self
                    .deliver_message(portal, event, message, reply_to, via)
                    .await;
            }
            PortalEvent::Media(media) => {
                return self.deliver_media(portal, event, media, via).await;
            }
            PortalEvent::Membership { user, joined } => {
                let membership = MatrixMembership {
                    user_id: user,
                    joined,
                };
                return self.deliver_membership(portal, &membership).await;
            }
            PortalEvent::Edit { body, html, .. } => {
                let Some(target) = referenced else {
                    return Ok(Delivered::Unmapped);
                };
                let Some(handler) = self.bridge.edits() else {
                    return Ok(Delivered::Unsupported);
                };
                let edit = MatrixEdit {
                    via: via.clone(),
                    event_id,
                    sender,
                    target: target.remote_message_id,
                    body,
                    html,
                };
                handler.handle_matrix_edit(ctx, portal, &edit).await?;
            }
            PortalEvent::Reaction { key, .. } => {
                let Some(target) = referenced else {
                    return Ok(Delivered::Unmapped);
                };
                let Some(handler) = self.bridge.reactions() else {
                    return Ok(Delivered::Unsupported);
                };
                let part = reaction_part(sender.as_str(), &key);
                let reaction = MatrixReaction {
                    via: via.clone(),
                    event_id,
                    sender,
                    target: target.remote_message_id.clone(),
                    key,
                };
                handler
                    .handle_matrix_reaction(ctx, portal, &reaction)
                    .await?;
                self.record(portal, event, target.remote_message_id, part)
                    .await?;
            }
            PortalEvent::Redaction { .. } => {
                let Some(target) = referenced else {
                    return Ok(Delivered::Unmapped);
                };
                let redaction = MatrixRedaction {
                    via,
                    event_id,
                    sender,
                    reaction: reaction_key(&target.part).map(str::to_owned),
                    target: target.remote_message_id,
                };
                return self.deliver_redaction(portal, &redaction).await;
            }
        }
        Ok(Delivered::Yes)
    }

    /// Who the mentioned Matrix users are on the network: a puppet's remote user, or a real
    /// user's own (first) login.
    pub(super) async fn mentions(
        &self,
        users: Vec<ruma::OwnedUserId>,
    ) -> Result<Vec<Mention>, HandleError> {
        let mut mentions = Vec::with_capacity(users.len());
        for user_id in users {
            let remote = match self.matrix.naming.remote_user(&user_id) {
                Some(remote) => Some(remote),
                None => self
                    .logins_of(&user_id)
                    .await?
                    .into_iter()
                    .next()
                    .map(|login| crate::bridge::RemoteUserId(login.id.0)),
            };
            mentions.push(Mention { user_id, remote });
        }
        Ok(mentions)
    }

    /// Hands a Matrix message to the bridge (relayed text when it goes through the relay)
    /// and records what it became on the network.
    async fn deliver_message(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        message: PortalEvent,
        reply_to: Option<crate::bridge::RemoteMessageId>,
        via: Via,
    ) -> Result<Delivered, HandleError> {
        let PortalEvent::Message {
            kind,
            body,
            html,
            mentions,
            thread,
            geo_uri,
            ..
        } = message
        else {
            return Ok(Delivered::Unmapped);
        };
        let mentions = self.mentions(mentions).await?;
        let thread = match thread {
            Some(root) => self
                .mapped(portal, &root)
                .await?
                .map(|r| r.remote_message_id),
            None => None,
        };
        let (body, html) = match &via {
            Via::Relay(_) => self.relayed(event, &body, html.as_deref()).await?,
            _ => (body, html),
        };
        let message = MatrixMessage {
            via,
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            kind,
            body,
            html,
            reply_to,
            mentions,
            thread,
            geo_uri,
        };
        let remote_id = self
            .bridge
            .handle_matrix_message(&self.ctx, portal, &message)
            .await?;
        self.record(portal, event, remote_id, String::new()).await?;
        Ok(Delivered::Yes)
    }

    /// Tells the bridge a Matrix user joined or left a portal.
    async fn deliver_membership(
        &self,
        portal: &PortalKey,
        membership: &MatrixMembership,
    ) -> Result<Delivered, HandleError> {
        let Some(handler) = self.bridge.presence() else {
            return Ok(Delivered::Unsupported);
        };
        handler
            .handle_matrix_membership(&self.ctx, portal, membership)
            .await?;
        Ok(Delivered::Yes)
    }

    /// Hands a redaction to the bridge: of a reaction, or of a message.
    async fn deliver_redaction(
        &self,
        portal: &PortalKey,
        redaction: &MatrixRedaction,
    ) -> Result<Delivered, HandleError> {
        if redaction.reaction.is_some() {
            let Some(handler) = self.bridge.reactions() else {
                return Ok(Delivered::Unsupported);
            };
            handler
                .handle_matrix_reaction_removal(&self.ctx, portal, redaction)
                .await?;
        } else {
            let Some(handler) = self.bridge.redactions() else {
                return Ok(Delivered::Unsupported);
            };
            handler
                .handle_matrix_redaction(&self.ctx, portal, redaction)
                .await?;
        }
        Ok(Delivered::Yes)
    }

    /// Downloads a Matrix user's file (within the size limit) and hands it to the bridge.
    async fn deliver_media(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        media: MediaRef,
        via: Via,
    ) -> Result<Delivered, HandleError> {
        let Some(handler) = self.bridge.media() else {
            return Ok(Delivered::Unsupported);
        };
        let max = self.matrix.max_media_bytes;
        let too_large = |size: u64| {
            HandleError::Permanent(format!(
                "the file has {size} bytes, more than the {max} allowed"
            ))
        };
        if let Some(size) = media.size.filter(|s| *s > max) {
            return Err(too_large(size));
        }
        // A file that cannot be fetched (after the client's own retries) is given up with a
        // notice saying why: one file never holds back the portal's next messages.
        let data = self
            .client
            .download_media(&media.url, max)
            .await
            .map_err(|e| {
                tracing::warn!(bridge = %self.id(), url = %media.url, error = %e, "cannot fetch a file");
                HandleError::Permanent(match e {
                    crate::client::ClientError::TooLarge { limit, .. } => {
                        format!("the file has more than the {limit} bytes allowed")
                    }
                    e => format!(
                        "the file could not be fetched from the homeserver ({})",
                        match e.status() {
                            Some(status) => format!("it answered {status}"),
                            None => "it did not answer".to_owned(),
                        }
                    ),
                })
            })?;
        let (filename, caption) = match media.filename {
            Some(name) if name != media.body => (name, Some(media.body)),
            _ => (media.body, None),
        };
        let file = MatrixMedia {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: event.sender.clone(),
            via,
            kind: media.kind,
            filename,
            caption,
            mimetype: media.mimetype,
            data,
        };
        let remote_id = handler
            .handle_matrix_media(&self.ctx, portal, &file)
            .await?;
        self.record(portal, event, remote_id, String::new()).await?;
        Ok(Delivered::Yes)
    }

    /// Records that the Matrix event and the remote message (part) are the same.
    pub(super) async fn record(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
        remote_message_id: crate::bridge::RemoteMessageId,
        part: String,
    ) -> Result<(), HandleError> {
        self.matrix
            .messages
            .record(
                self.id(),
                MessageRecord {
                    portal: portal.clone(),
                    remote_message_id,
                    part,
                    room_id: event.room_id.to_string(),
                    event_id: event.event_id.to_string(),
                },
            )
            .await?;
        Ok(())
    }
}

/// The kind of a portal event, as a metric label.
fn kind_label(event: &PortalEvent) -> &'static str {
    match event {
        PortalEvent::Message { .. } => "message",
        PortalEvent::Media(_) => "media",
        PortalEvent::Membership { .. } => "membership",
        PortalEvent::Edit { .. } => "edit",
        PortalEvent::Reaction { .. } => "reaction",
        PortalEvent::Redaction { .. } => "redaction",
    }
}

/// What became of an event handed to a bridge.
enum Delivered {
    /// The bridge took it.
    Yes,
    /// It refers to an event never bridged (nothing to do).
    Unmapped,
    /// The bridge's network cannot carry this kind of event.
    Unsupported,
}
