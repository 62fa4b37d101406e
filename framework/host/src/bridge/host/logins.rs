//! Logins as the host runs them: which login a Matrix event goes to the network with (the
//! sender's own, the portal's relay, or none), relayed text, and the login flows driven from
//! chat — `login`, the fields asked one message at a time, `logout`, `list-logins`,
//! `use-login`, `set-relay`, `unset-relay`, `cancel`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::json;

use super::HostedBridge;
use crate::bridge::ids::PortalKey;
use crate::bridge::login::{Login, LoginField, LoginRequest, LoginStep, Via};
use crate::bridge::status::login_from_record;
use crate::client::Identity;
use crate::command::CommandInvocation;
use crate::inbox::HandleError;
use crate::permission::PermissionLevel;
use crate::store::LoginRecord;
use switchboard_api::PluginError;
use switchboard_api::bridge::{Bridge, BridgeContext, LoginHandler};
use switchboard_api::connection::{Connector, Link};
use switchboard_api::event::RoomEvent;

/// A login a user is in the middle of, in one room (no `Debug`: it holds what they typed).
pub(super) struct PendingLogin {
    flow: String,
    step: u32,
    input: BTreeMap<String, String>,
    /// The fields still to ask, the first being asked now.
    fields: VecDeque<LoginField>,
}

/// Who is logging in where.
pub(super) type PendingKey = (OwnedUserId, OwnedRoomId);

/// One login's connection, as the framework keeps it up: the bridge's
/// [`LoginHandler::connect`].
struct LoginConnection {
    bridge: Arc<dyn Bridge>,
    ctx: BridgeContext,
    login: Login,
}

#[async_trait::async_trait]
impl Connector for LoginConnection {
    async fn run(&self, link: &Link) -> Result<(), PluginError> {
        match self.bridge.logins() {
            Some(handler) => handler.connect(&self.ctx, &self.login, link).await,
            None => Ok(()),
        }
    }
}

impl HostedBridge {
    /// How an event of its sender goes to the network, or `None` when it does not (the sender
    /// is told why when they could do something about it).
    pub(super) async fn route(
        &self,
        portal: &PortalKey,
        event: &RoomEvent,
    ) -> Result<Option<Via>, HandleError> {
        let level = self.permissions.level(&event.sender);
        let Some(handler) = self.bridge.logins() else {
            return Ok((level >= PermissionLevel::User).then_some(Via::Bridge));
        };
        if level >= PermissionLevel::User
            && let Some(own) = self.login_in(portal, &event.sender).await?
        {
            return Ok(Some(Via::Own(own)));
        }
        if let Some(relay) = self.store.portal_relay(self.id(), portal).await?
            && let Some(login) = self
                .store
                .login(self.id(), &relay)
                .await?
                .and_then(login_from_record)
        {
            return Ok(Some(Via::Relay(login)));
        }
        if level >= PermissionLevel::User {
            if !handler.login_required() {
                return Ok(Some(Via::Bridge));
            }
            let text = format!(
                "Not bridged: you are not logged in to {network} and this room has no relay. Send \
                 `{prefix} login` to log in.",
                network = self.matrix.info().displayname,
                prefix = self.commands.prefix(),
            );
            self.reply(event, "no-login", &text, None).await?;
        }
        Ok(None)
    }

    /// The login `user`'s messages in `portal` go through: the one recorded for the portal
    /// (by the bridge or `use-login`), else the one whose id is the portal's receiver (a chat
    /// seen from one login), else their oldest; `None` without logins.
    async fn login_in(
        &self,
        portal: &PortalKey,
        user: &ruma::UserId,
    ) -> Result<Option<Login>, HandleError> {
        let mut logins = self.logins_of(user).await?;
        if logins.len() < 2 {
            return Ok(logins.pop());
        }
        let owner = self
            .store
            .portal_login(self.id(), portal, user.as_str())
            .await?;
        let chosen = owner
            .and_then(|id| logins.iter().position(|l| l.id.as_str() == id))
            .or_else(|| {
                let receiver = portal.receiver.as_ref()?;
                logins
                    .iter()
                    .position(|l| l.id.as_str() == receiver.as_str())
            })
            .unwrap_or(0);
        Ok(Some(logins.swap_remove(chosen)))
    }

    /// The logins of a Matrix user, oldest first.
    pub(crate) async fn logins_of(&self, user: &ruma::UserId) -> Result<Vec<Login>, HandleError> {
        Ok(self
            .store
            .logins_of(self.id(), user.as_str())
            .await?
            .into_iter()
            .filter_map(login_from_record)
            .collect())
    }

    /// A relayed message's text and HTML: the relay template with the sender's name.
    pub(super) async fn relayed(
        &self,
        event: &RoomEvent,
        body: &str,
        html: Option<&str>,
    ) -> Result<(String, Option<String>), HandleError> {
        let displayname = self
            .client
            .displayname_in(&event.room_id, &event.sender)
            .await;
        let data = |name: &str, body: &str| json!({ "displayname": name, "user_id": event.sender, "body": body });
        let text = self.relay_template.render(&data(&displayname, body));
        let html = html.map(|html| {
            self.relay_template.render(&data(
                &switchboard_api::format::clean_text(&displayname),
                html,
            ))
        });
        Ok((text, html))
    }

    /// Whether `sender` is in the middle of a login in `room`.
    pub(super) fn has_pending_login(&self, sender: &ruma::UserId, room: &ruma::RoomId) -> bool {
        self.pending_count.load(Ordering::Relaxed) > 0
            && self
                .pending
                .lock()
                .is_ok_and(|pending| pending.contains_key(&(sender.to_owned(), room.to_owned())))
    }

    fn set_pending(&self, key: PendingKey, login: Option<PendingLogin>) {
        if let Ok(mut pending) = self.pending.lock() {
            match login {
                Some(login) => {
                    pending.insert(key, login);
                }
                None => {
                    pending.remove(&key);
                }
            }
            self.pending_count.store(pending.len(), Ordering::Relaxed);
        }
    }

    /// The login built-in commands; `None` when `name` is not one of them.
    pub(super) async fn login_command(
        &self,
        name: &str,
        invocation: &CommandInvocation,
        event: &RoomEvent,
        portal: Option<&PortalKey>,
    ) -> Option<Result<String, HandleError>> {
        let network = &self.matrix.info().displayname;
        if !matches!(
            name,
            "login"
                | "logout"
                | "list-logins"
                | "set-relay"
                | "unset-relay"
                | "cancel"
                | "use-login"
        ) {
            return None;
        }
        if self.bridge.logins().is_none() {
            return Some(Ok(format!("{network} has no logins.")));
        }
        Some(match name {
            "login" => self.start_login(invocation, event).await,
            "logout" => self.logout(invocation, event).await,
            "list-logins" => self.list_logins(event).await,
            "use-login" => self.use_login(invocation, event, portal).await,
            "cancel" => {
                self.set_pending((event.sender.clone(), event.room_id.clone()), None);
                Ok("Login cancelled.".to_owned())
            }
            _ => self.set_relay(name == "set-relay", event, portal).await,
        })
    }

    async fn start_login(
        &self,
        invocation: &CommandInvocation,
        event: &RoomEvent,
    ) -> Result<String, HandleError> {
        let flows = self
            .bridge
            .logins()
            .map(LoginHandler::login_flows)
            .unwrap_or_default();
        let flow = match invocation.args.first() {
            Some(id) => flows.iter().find(|f| &f.id == id),
            None => flows.first(),
        };
        let Some(flow) = flow else {
            let known: Vec<&str> = flows.iter().map(|f| f.id.as_str()).collect();
            return Ok(format!(
                "No such way to log in. Choose one of: {}.",
                known.join(", ")
            ));
        };
        let pending = PendingLogin {
            flow: flow.id.clone(),
            step: 0,
            input: BTreeMap::new(),
            fields: VecDeque::new(),
        };
        self.advance(event, pending).await
    }

    /// A message of a user in the middle of a login: the value of the field asked.
    pub(super) async fn login_input(
        &self,
        event: &RoomEvent,
        body: &str,
    ) -> Result<(), HandleError> {
        let key = (event.sender.clone(), event.room_id.clone());
        let taken = self.pending.lock().ok().and_then(|mut p| p.remove(&key));
        self.pending_count.store(
            self.pending.lock().map_or(0, |p| p.len()),
            Ordering::Relaxed,
        );
        let Some(mut pending) = taken else {
            return Ok(());
        };
        if let Some(field) = pending.fields.pop_front() {
            if field.secret {
                self.redact_secret(event).await;
            }
            pending.input.insert(field.id, body.trim().to_owned());
        }
        let answer = if let Some(next) = pending.fields.front() {
            let ask = format!("Send your {}.", next.name);
            self.set_pending(key, Some(pending));
            Ok(ask)
        } else {
            self.advance(event, pending).await
        };
        match answer {
            Ok(text) => self.reply(event, "login", &text, None).await,
            Err(e) => Err(e),
        }
    }

    /// Calls the flow of `user` with what they entered so far (`step`, `input`): the step it
    /// returns, with a completed login already stored; `Err(reason)` when the flow failed.
    pub(crate) async fn call_login_flow(
        &self,
        user: &ruma::UserId,
        flow: &str,
        step: u32,
        input: &BTreeMap<String, String>,
    ) -> Result<Result<LoginStep, String>, HandleError> {
        let Some(handler) = self.bridge.logins() else {
            return Ok(Err(format!(
                "{} has no logins",
                self.matrix.info().displayname
            )));
        };
        let request = LoginRequest {
            user: user.to_owned(),
            flow: flow.to_owned(),
            input: input.clone(),
            step,
        };
        // Whatever went wrong is shown to the user, and ends the attempt.
        let outcome = handler
            .login_step(&self.ctx, &request)
            .await
            .map_err(|e| e.to_string());
        if let Ok(LoginStep::Complete(login)) = &outcome {
            let record = LoginRecord {
                login_id: login.id.0.clone(),
                user_id: user.to_string(),
                remote_name: login.remote_name.clone(),
                data: login.data.to_string(),
                created_at: self.ctx.clock().now_ms(),
            };
            self.store.put_login(self.id(), &record).await?;
            tracing::info!(bridge = %self.id(), %user, login = %login.id, "logged in");
            self.connect_login(Login {
                id: login.id.clone(),
                user_id: user.to_owned(),
                remote_name: login.remote_name.clone(),
                data: login.data.clone(),
            });
        }
        Ok(outcome)
    }

    /// Calls the flow with what the user entered in chat and says what comes next.
    async fn advance(
        &self,
        event: &RoomEvent,
        mut pending: PendingLogin,
    ) -> Result<String, HandleError> {
        let outcome = self
            .call_login_flow(&event.sender, &pending.flow, pending.step, &pending.input)
            .await?;
        pending.step += 1;
        let key = (event.sender.clone(), event.room_id.clone());
        Ok(match outcome {
            Err(why) => format!("Login failed: {why}"),
            Ok(LoginStep::UserInput {
                instructions,
                fields,
            }) => {
                let Some(first) = fields.first() else {
                    return Ok(format!("Login failed: {instructions}"));
                };
                let text = format!("{instructions}\nSend your {}.", first.name);
                let secret = fields.iter().find(|f| f.secret).map(|f| f.name.clone());
                pending.fields = fields.into();
                match secret {
                    Some(secret) if !self.may_redact_in(&event.room_id).await => {
                        self.continue_elsewhere(event, pending, &secret, &text)
                            .await?
                    }
                    _ => {
                        self.set_pending(key, Some(pending));
                        text
                    }
                }
            }
            Ok(LoginStep::DisplayAndWait {
                instructions,
                display,
            }) => {
                // Shown now; the flow is called again (it returns once the user is done)
                // when they send anything in this room.
                self.set_pending(key, Some(pending));
                format!("{instructions}\n{display}")
            }
            Ok(LoginStep::Complete(login)) => format!("Logged in as {}.", login.remote_name),
        })
    }

    /// Whether the bot may remove other users' messages in `room` (so that a secret typed
    /// there can be taken out of sight).
    async fn may_redact_in(&self, room: &ruma::RoomId) -> bool {
        self.client
            .may_redact(room, self.client.bot_user_id())
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(bridge = %self.id(), %room, error = %e, "cannot read the room's power levels");
                false
            })
    }

    /// A login is about to ask for `secret` in a room where the bot could not remove it: the
    /// login moves to a private room the bot opens and invites the user to (where it can),
    /// and the answer says so. When that room cannot be made, the user is warned plainly
    /// instead, before they type anything.
    async fn continue_elsewhere(
        &self,
        event: &RoomEvent,
        pending: PendingLogin,
        secret: &str,
        ask: &str,
    ) -> Result<String, HandleError> {
        let network = &self.matrix.info().displayname;
        let room = match self.open_login_room(&event.sender).await {
            Ok(room) => room,
            Err(e) => {
                tracing::warn!(bridge = %self.id(), error = %e, "cannot open a private room for a login");
                self.set_pending((event.sender.clone(), event.room_id.clone()), Some(pending));
                return Ok(format!(
                    "⚠️ I cannot remove messages in this room, so the {secret} you send here \
                     would stay readable by everyone in it. Send `cancel` and log in from a \
                     room where I am a moderator, or go on at your own risk.\n{ask}"
                ));
            }
        };
        self.set_pending((event.sender.clone(), room.clone()), Some(pending));
        let content = ruma::events::room::message::RoomMessageEventContent::notice_plain(ask);
        let txn_id =
            crate::client::derive_txn_id(&[self.id(), event.event_id.as_str(), "login-room"]);
        // Not retried with the event (that would open a second room): the user, invited,
        // finds the question there or answers the one shown here.
        if let Err(e) = self
            .client
            .send_message(&room, txn_id, &content, Identity::bot(), None)
            .await
        {
            tracing::warn!(bridge = %self.id(), %room, error = %e, "cannot ask in the login room");
        }
        Ok(format!(
            "I cannot remove messages in this room, so your {secret} would stay readable here. \
             I opened a private room for logging in to {network} and invited you: go on there."
        ))
    }

    /// A private room for one user's login, made by the bot (so it may remove what is typed
    /// there), the user invited.
    async fn open_login_room(&self, user: &ruma::UserId) -> Result<OwnedRoomId, HandleError> {
        use ruma::api::client::room::create_room;
        let mut request = create_room::v3::Request::new();
        request.name = Some(format!("{} login", self.matrix.info().displayname));
        request.invite = vec![user.to_owned()];
        request.is_direct = true;
        request.preset = Some(create_room::v3::RoomPreset::PrivateChat);
        let room = self.client.send(request, Identity::bot()).await?.room_id;
        self.client
            .remember_membership(&room, self.client.bot_user_id(), true)
            .await;
        tracing::info!(bridge = %self.id(), %user, %room, "opened a private room for a login");
        Ok(room)
    }

    /// Removes a message holding a secret, if the bot may.
    async fn redact_secret(&self, event: &RoomEvent) {
        let txn_id = crate::client::derive_txn_id(&[self.id(), event.event_id.as_str(), "secret"]);
        let request = ruma::api::client::redact::redact_event::v3::Request::new(
            event.room_id.clone(),
            event.event_id.clone(),
            txn_id,
        );
        if let Err(e) = self.client.send(request, Identity::bot()).await {
            tracing::warn!(bridge = %self.id(), error = %e, "cannot remove a message holding a secret (the bot may lack the power to)");
        }
    }

    async fn list_logins(&self, event: &RoomEvent) -> Result<String, HandleError> {
        let logins = self.logins_of(&event.sender).await?;
        if logins.is_empty() {
            return Ok(format!(
                "You have no logins. Send `{} login` to log in.",
                self.commands.prefix()
            ));
        }
        let lines: Vec<String> = logins
            .iter()
            .map(|l| match self.ctx.login_state(&l.id) {
                Some(state) => format!("{} ({}, {state})", l.remote_name, l.id),
                None => format!("{} ({})", l.remote_name, l.id),
            })
            .collect();
        Ok(format!("Your logins: {}.", lines.join(", ")))
    }

    async fn logout(
        &self,
        invocation: &CommandInvocation,
        event: &RoomEvent,
    ) -> Result<String, HandleError> {
        let logins = self.logins_of(&event.sender).await?;
        let login = match invocation.args.first() {
            Some(id) => logins.into_iter().find(|l| l.id.as_str() == id),
            None if logins.len() == 1 => logins.into_iter().next(),
            None => {
                return Ok("Say which login to log out (see `list-logins`).".to_owned());
            }
        };
        let Some(login) = login else {
            return Ok("You have no such login.".to_owned());
        };
        self.log_out(&login).await?;
        Ok(format!("Logged out of {}.", login.remote_name))
    }

    /// Logs `login` out of the network and forgets it (also as a portal's relay): its
    /// connection is closed first (so that it is not reconnected meanwhile), then the bridge
    /// logs it out.
    pub(crate) async fn log_out(&self, login: &Login) -> Result<(), HandleError> {
        let link = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&login.id);
        if let Some(link) = link {
            link.close();
        }
        if let Some(handler) = self.bridge.logins()
            && let Err(why) = handler.logout(&self.ctx, login).await
        {
            tracing::warn!(bridge = %self.id(), login = %login.id, error = %why, "logout from the network failed; the login is forgotten anyway");
        }
        self.store
            .delete_login(self.id(), login.id.as_str())
            .await?;
        self.status.forget_login_state(&login.id);
        Ok(())
    }

    /// Keeps the connection of `login` up ([`LoginHandler::connect`], reconnected with the
    /// handler's backoff) until it is logged out or Switchboard stops; a login connected
    /// before (logged in again) has its old connection closed first. Before the bridge
    /// started this does nothing: its start connects every stored login.
    pub(super) fn connect_login(&self, login: Login) {
        let Some(handler) = self.bridge.logins() else {
            return;
        };
        if !self.started.load(Ordering::SeqCst) {
            return;
        }
        let old = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&login.id);
        if let Some(old) = old {
            old.close();
        }
        let id = login.id.clone();
        let connector = Arc::new(LoginConnection {
            bridge: Arc::clone(&self.bridge),
            ctx: self.ctx.clone(),
            login,
        });
        let link =
            self.ctx
                .keep_login_connected(id.clone(), handler.reconnect_backoff(), connector);
        let replaced = self
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, link);
        if let Some(replaced) = replaced {
            // Connected at the same time by the bridge's start: one connection is enough.
            replaced.close();
        }
    }

    /// `use-login <login id>`: the sender's messages in this portal go through that login.
    async fn use_login(
        &self,
        invocation: &CommandInvocation,
        event: &RoomEvent,
        portal: Option<&PortalKey>,
    ) -> Result<String, HandleError> {
        let Some(portal) = portal else {
            return Ok("This room is not a portal.".to_owned());
        };
        let wanted = invocation
            .args
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let logins = self.logins_of(&event.sender).await?;
        let Some(login) = logins.iter().find(|l| l.id.as_str() == wanted) else {
            return Ok(format!(
                "You have no login {wanted}; see `{} list-logins`.",
                self.commands.prefix()
            ));
        };
        self.store
            .put_portal_login(self.id(), portal, event.sender.as_str(), login.id.as_str())
            .await?;
        Ok(format!(
            "Your messages in this room now go through {}.",
            login.remote_name
        ))
    }

    async fn set_relay(
        &self,
        set: bool,
        event: &RoomEvent,
        portal: Option<&PortalKey>,
    ) -> Result<String, HandleError> {
        let Some(portal) = portal else {
            return Ok("This room is not a portal.".to_owned());
        };
        if !set {
            self.store.set_portal_relay(self.id(), portal, None).await?;
            return Ok("This room has no relay now.".to_owned());
        }
        let Some(login) = self.logins_of(&event.sender).await?.into_iter().next() else {
            return Ok(format!(
                "Log in first (`{} login`): the relay is your login.",
                self.commands.prefix()
            ));
        };
        self.store
            .set_portal_relay(self.id(), portal, Some(login.id.as_str()))
            .await?;
        Ok(format!(
            "Messages of users without their own login are now relayed through {}.",
            login.remote_name
        ))
    }
}
