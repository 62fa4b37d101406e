//! An in-process fake chat network for testing a bridge without its real network: chats
//! that hold messages, an outage switch, and a way to make the network send. A bridge under
//! test talks to [`FakeNetwork`] where it would talk to its network's client library; the
//! contract tests drive and watch it through [`FakeChat`].

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::ContractSubject;

/// One message on the fake network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkMessage {
    /// The network's id of the message (the same id sent twice is a resend).
    pub id: String,
    /// The chat it is in.
    pub chat: String,
    /// Who sent it, as the network names users.
    pub sender: String,
    /// Its text.
    pub text: String,
}

/// The fake network refuses a message because it is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the fake network is down")]
pub struct NetworkDown;

#[derive(Debug, Default)]
struct State {
    down: bool,
    /// What clients sent to the network, in the order it took them.
    received: Vec<NetworkMessage>,
    next_id: u64,
    /// The receiving end of what the network sends, until the bridge takes it.
    incoming: Option<UnboundedReceiver<NetworkMessage>>,
}

/// The fake network: cheap to clone (every clone is the same network).
#[derive(Clone, Debug)]
pub struct FakeNetwork {
    state: Arc<Mutex<State>>,
    outgoing: UnboundedSender<NetworkMessage>,
}

impl Default for FakeNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeNetwork {
    /// A network that is up and holds no messages.
    #[must_use]
    pub fn new() -> Self {
        let (outgoing, incoming) = unbounded_channel();
        Self {
            state: Arc::new(Mutex::new(State {
                incoming: Some(incoming),
                ..State::default()
            })),
            outgoing,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client (the bridge) sends `text` to `chat` as `sender`; the network's id of the
    /// message, or [`NetworkDown`] while it is down.
    pub fn send(&self, chat: &str, sender: &str, text: &str) -> Result<String, NetworkDown> {
        let mut state = self.state();
        if state.down {
            return Err(NetworkDown);
        }
        state.next_id += 1;
        let id = format!("net-{}", state.next_id);
        state.received.push(NetworkMessage {
            id: id.clone(),
            chat: chat.to_owned(),
            sender: sender.to_owned(),
            text: text.to_owned(),
        });
        Ok(id)
    }

    /// What clients sent to `chat`, in the order the network took it.
    #[must_use]
    pub fn received(&self, chat: &str) -> Vec<NetworkMessage> {
        self.state()
            .received
            .iter()
            .filter(|m| m.chat == chat)
            .cloned()
            .collect()
    }

    /// The network sends `message` to its clients (the bridge); sending the same id again is
    /// the network delivering it twice.
    pub fn deliver(&self, message: NetworkMessage) {
        // The receiving end lives as long as the network: in `State` or with the bridge. If
        // the bridge dropped it, nobody listens, as on a real network.
        let _ = self.outgoing.send(message);
    }

    /// What the network sends to its clients, in order; the first caller (the bridge) gets it,
    /// later callers `None`.
    #[must_use]
    pub fn incoming(&self) -> Option<UnboundedReceiver<NetworkMessage>> {
        self.state().incoming.take()
    }

    /// Takes the network down (`false`) or brings it back (`true`).
    pub fn set_reachable(&self, up: bool) {
        self.state().down = !up;
    }

    /// Whether the network is up.
    #[must_use]
    pub fn is_reachable(&self) -> bool {
        !self.state().down
    }
}

/// One chat of a [`FakeNetwork`], as the contract tests drive and watch it: messages the tests
/// make the network send come from `sender`.
#[derive(Clone, Debug)]
pub struct FakeChat {
    /// The network.
    pub network: FakeNetwork,
    /// The chat (the portal's remote chat id).
    pub chat: String,
    /// Who the network's messages come from.
    pub sender: String,
}

#[async_trait::async_trait]
impl ContractSubject for FakeChat {
    async fn remote_send(&self, id: &str, text: &str) -> Result<(), String> {
        self.network.deliver(NetworkMessage {
            id: id.to_owned(),
            chat: self.chat.clone(),
            sender: self.sender.clone(),
            text: text.to_owned(),
        });
        Ok(())
    }

    async fn received(&self) -> Result<Vec<String>, String> {
        Ok(self
            .network
            .received(&self.chat)
            .into_iter()
            .map(|m| m.text)
            .collect())
    }

    async fn set_reachable(&self, up: bool) -> Result<(), String> {
        self.network.set_reachable(up);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_takes_messages_while_up_and_refuses_them_while_down() {
        let network = FakeNetwork::new();
        let first = network.send("lobby", "alice", "hi").expect("up");
        network.set_reachable(false);
        assert!(!network.is_reachable());
        assert_eq!(network.send("lobby", "alice", "lost?"), Err(NetworkDown));
        network.set_reachable(true);
        let second = network.send("lobby", "alice", "back").expect("up");
        assert_ne!(first, second, "ids are distinct");
        let texts: Vec<String> = network
            .received("lobby")
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["hi", "back"]);
        assert!(network.received("elsewhere").is_empty());
    }

    #[tokio::test]
    async fn what_the_network_sends_reaches_its_one_listener_in_order() {
        let network = FakeNetwork::new();
        let mut incoming = network.incoming().expect("the first listener");
        assert!(network.incoming().is_none(), "only one listener");
        let chat = FakeChat {
            network: network.clone(),
            chat: "lobby".to_owned(),
            sender: "carol".to_owned(),
        };
        chat.remote_send("r1", "one").await.expect("sent");
        chat.remote_send("r1", "one").await.expect("sent again");
        chat.remote_send("r2", "two").await.expect("sent");
        let mut got = Vec::new();
        for _ in 0..3 {
            let message = incoming.recv().await.expect("a message");
            got.push((message.id, message.text, message.sender));
        }
        assert_eq!(got[0], ("r1".into(), "one".into(), "carol".into()));
        assert_eq!(got[1], got[0], "a resend is delivered as such");
        assert_eq!(got[2].0, "r2");
    }
}
