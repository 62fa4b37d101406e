//! The message map as the bridges use it: which remote message (part) is which Matrix event.
//! Every bridged message asks it twice — "is this one bridged already?" before it is sent, and
//! "record it" after — so neither may cost a database round trip of its own:
//!
//! - new entries are kept in memory at once (the recent ones, and always those not yet
//!   stored) and stored by the [`GroupCommit`], many per write;
//! - whether an entry may exist at all is answered by [`KnownKeys`], a Bloom filter of every
//!   key in the database (loaded in the background at start, then kept up to date): a key it
//!   has never seen is certainly absent, so a new message costs no query. A key it may have
//!   seen (a real entry, or about one in a hundred by chance) is looked up in the database.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::bridge::ids::{PortalKey, RemoteMessageId};
use crate::group_commit::GroupCommit;
use crate::store::{GroupWrite, MessageKeys, MessageRecord, Store, StoreResult};

/// Entries kept in memory once stored (those not yet stored are always kept).
const RECENT: usize = 2048;
/// Keys the first stage of the filter holds before a larger one is added.
const FIRST_STAGE_KEYS: usize = 32_768;
/// Bits of filter per key, and bits set per key: about 1 % false positives.
const BITS_PER_KEY: usize = 10;
const HASHES: u64 = 7;

/// The message map of every bridge of the host. Cloning shares it.
#[derive(Clone, Debug)]
pub(crate) struct MessageMap {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    commit: GroupCommit,
    state: Mutex<State>,
    /// Each entry is stored before `record` returns (a map nobody else settles or ticks).
    eager: bool,
}

#[derive(Debug)]
struct State {
    recent: Recent,
    known: KnownKeys,
    /// Whether `known` has seen every key in the database (it answers "absent" only then).
    complete: bool,
}

/// One entry, as kept in memory.
#[derive(Debug)]
struct Entry {
    bridge: String,
    record: MessageRecord,
    /// Its write's number in the group commit: it may leave memory once that is stored.
    write: u64,
}

/// The remote side of an entry as one key.
fn remote_key(bridge: &str, chat: &str, receiver: &str, remote: &str, part: &str) -> String {
    [bridge, chat, receiver, remote, part].join("\u{0}")
}

/// The remote side of a message (part) of `bridge` in `portal` as one key.
fn portal_remote_key(bridge: &str, portal: &PortalKey, remote: &str, part: &str) -> String {
    remote_key(
        bridge,
        portal.chat.as_str(),
        portal.receiver.as_ref().map_or("", |r| r.as_str()),
        remote,
        part,
    )
}

fn record_remote_key(bridge: &str, record: &MessageRecord) -> String {
    portal_remote_key(
        bridge,
        &record.portal,
        record.remote_message_id.as_str(),
        &record.part,
    )
}

/// Recent entries by both keys, oldest first.
#[derive(Debug, Default)]
struct Recent {
    by_remote: HashMap<String, Arc<Entry>>,
    by_event: HashMap<String, Arc<Entry>>,
    order: VecDeque<Arc<Entry>>,
}

impl Recent {
    fn insert(&mut self, entry: Arc<Entry>) {
        self.by_remote.insert(
            record_remote_key(&entry.bridge, &entry.record),
            Arc::clone(&entry),
        );
        self.by_event
            .insert(entry.record.event_id.clone(), Arc::clone(&entry));
        self.order.push_back(entry);
    }

    /// Lets the oldest stored entries go, down to [`RECENT`].
    fn trim(&mut self, written: u64) {
        while self.order.len() > RECENT {
            let Some(oldest) = self.order.front() else {
                return;
            };
            if oldest.write > written {
                return;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.remove(&oldest);
            }
        }
    }

    /// Forgets `entry` (if the maps still hold this very entry).
    fn remove(&mut self, entry: &Arc<Entry>) {
        let key = record_remote_key(&entry.bridge, &entry.record);
        if self
            .by_remote
            .get(&key)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            self.by_remote.remove(&key);
        }
        if self
            .by_event
            .get(&entry.record.event_id)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            self.by_event.remove(&entry.record.event_id);
        }
    }

    /// Forgets the entries `forget` picks.
    fn remove_where(&mut self, forget: impl Fn(&Entry) -> bool) {
        self.by_remote.retain(|_, e| !forget(e));
        self.by_event.retain(|_, e| !forget(e));
        self.order.retain(|e| !forget(e));
    }
}

/// A scalable Bloom filter of keys (remote keys and event ids): it never forgets a key, and
/// says "absent" only for keys it never saw. Stages double in size as keys come.
#[derive(Debug)]
struct KnownKeys {
    stages: Vec<Stage>,
}

#[derive(Debug)]
struct Stage {
    bits: Vec<u64>,
    keys: usize,
    capacity: usize,
}

impl Stage {
    fn new(capacity: usize) -> Self {
        Self {
            bits: vec![0; (capacity * BITS_PER_KEY).div_ceil(64)],
            keys: 0,
            capacity,
        }
    }

    /// The bits of a key's hash.
    fn positions(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let bits = self.bits.len() as u64 * 64;
        let step = (hash >> 32) | 1;
        (0..HASHES).map(move |i| {
            let bit = hash.wrapping_add(i.wrapping_mul(step)) % bits;
            (
                usize::try_from(bit / 64).unwrap_or(usize::MAX),
                1 << (bit % 64),
            )
        })
    }

    fn insert(&mut self, hash: u64) {
        for (word, mask) in self.positions(hash) {
            if let Some(word) = self.bits.get_mut(word) {
                *word |= mask;
            }
        }
        self.keys += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|(word, mask)| self.bits.get(word).is_some_and(|w| w & mask != 0))
    }
}

impl KnownKeys {
    fn new() -> Self {
        Self {
            stages: vec![Stage::new(FIRST_STAGE_KEYS)],
        }
    }

    fn hash(kind: u8, key: &str) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        kind.hash(&mut hasher);
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// Makes room for `more` keys in one stage (sized once, at load, from the row count).
    fn reserve(&mut self, more: usize) {
        if let Some(last) = self.stages.last()
            && last.capacity - last.keys.min(last.capacity) < more
        {
            self.stages
                .push(Stage::new((more + more / 4).max(FIRST_STAGE_KEYS)));
        }
    }

    fn insert(&mut self, kind: u8, key: &str) {
        let hash = Self::hash(kind, key);
        let full = self.stages.last().is_none_or(|s| s.keys >= s.capacity);
        if full {
            let capacity = self
                .stages
                .last()
                .map_or(FIRST_STAGE_KEYS, |s| s.capacity * 2);
            self.stages.push(Stage::new(capacity));
        }
        if let Some(stage) = self.stages.last_mut() {
            stage.insert(hash);
        }
    }

    fn may_contain(&self, kind: u8, key: &str) -> bool {
        let hash = Self::hash(kind, key);
        self.stages.iter().any(|s| s.may_contain(hash))
    }

    fn insert_entry(&mut self, remote: &str, event_id: &str) {
        self.insert(REMOTE, remote);
        self.insert(EVENT, event_id);
    }
}

/// Kinds of keys in the filter.
const REMOTE: u8 = b'r';
const EVENT: u8 = b'e';

/// What memory knows about a key.
enum Answer<T> {
    Known(T),
    Absent,
    AskTheDatabase,
}

impl MessageMap {
    /// The map over `store`, its new entries stored through `commit`. It asks the database
    /// about every key it has not seen until [`MessageMap::load_known`] has run.
    pub(crate) fn new(store: Store, commit: GroupCommit) -> Self {
        Self::with(store, commit, false)
    }

    /// A map of its own, for a Matrix side used outside the host (no ticker stores its
    /// entries): each is stored before `record` returns.
    pub(crate) fn standalone(store: Store) -> Self {
        Self::with(store.clone(), GroupCommit::new(store), true)
    }

    fn with(store: Store, commit: GroupCommit, eager: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                commit,
                state: Mutex::new(State {
                    recent: Recent::default(),
                    known: KnownKeys::new(),
                    complete: false,
                }),
                eager,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads every key in the database into the filter; from then on a new key costs no query.
    /// Entries recorded meanwhile are in the filter already.
    pub(crate) async fn load_known(&self) -> StoreResult<()> {
        let rows = usize::try_from(self.inner.store.message_count().await?).unwrap_or(0);
        self.state().known.reserve(rows * 2);
        self.inner
            .store
            .message_keys(|keys: MessageKeys<'_>| {
                let remote = remote_key(
                    keys.bridge,
                    keys.chat,
                    keys.receiver,
                    keys.remote_message_id,
                    keys.part,
                );
                self.state().known.insert_entry(&remote, keys.event_id);
            })
            .await?;
        self.state().complete = true;
        tracing::debug!(entries = rows, "message map keys loaded");
        Ok(())
    }

    /// The Matrix event a remote message (part) of `bridge` was bridged as, if it was.
    pub(crate) async fn event_of(
        &self,
        bridge: &str,
        portal: &PortalKey,
        remote: &RemoteMessageId,
        part: &str,
    ) -> StoreResult<Option<String>> {
        let key = portal_remote_key(bridge, portal, remote.as_str(), part);
        let answer = {
            let state = self.state();
            match state.recent.by_remote.get(&key) {
                Some(entry) => Answer::Known(entry.record.event_id.clone()),
                None if state.complete && !state.known.may_contain(REMOTE, &key) => Answer::Absent,
                None => Answer::AskTheDatabase,
            }
        };
        match answer {
            Answer::Known(event_id) => Ok(Some(event_id)),
            Answer::Absent => Ok(None),
            Answer::AskTheDatabase => {
                self.inner
                    .store
                    .message_event(bridge, portal, remote, part)
                    .await
            }
        }
    }

    /// The bridge and remote message (part) a Matrix event was bridged as, either way.
    pub(crate) async fn by_event(
        &self,
        event_id: &str,
    ) -> StoreResult<Option<(String, MessageRecord)>> {
        let answer = {
            let state = self.state();
            match state.recent.by_event.get(event_id) {
                Some(entry) => Answer::Known((entry.bridge.clone(), entry.record.clone())),
                None if state.complete && !state.known.may_contain(EVENT, event_id) => {
                    Answer::Absent
                }
                None => Answer::AskTheDatabase,
            }
        };
        match answer {
            Answer::Known(found) => Ok(Some(found)),
            Answer::Absent => Ok(None),
            Answer::AskTheDatabase => self.inner.store.message_by_event(event_id).await,
        }
    }

    /// Records that a remote message (part) of `bridge` and a Matrix event are the same
    /// message — unless either side was mapped before (then nothing changes). Seen by every
    /// lookup at once; stored with the next group ([`MessageMap::settle`] waits for it).
    pub(crate) async fn record(&self, bridge: &str, record: MessageRecord) -> StoreResult<()> {
        let remote = record_remote_key(bridge, &record);
        let ask_the_database = {
            let state = self.state();
            if state.recent.by_remote.contains_key(&remote)
                || state.recent.by_event.contains_key(&record.event_id)
            {
                return Ok(());
            }
            !state.complete
                || state.known.may_contain(REMOTE, &remote)
                || state.known.may_contain(EVENT, &record.event_id)
        };
        if ask_the_database {
            let store = &self.inner.store;
            let (by_remote, by_event) = (
                store
                    .message_event(
                        bridge,
                        &record.portal,
                        &record.remote_message_id,
                        &record.part,
                    )
                    .await?,
                store.message_by_event(&record.event_id).await?,
            );
            if by_remote.is_some() || by_event.is_some() {
                return Ok(());
            }
        }
        if self.insert_new(bridge, &remote, record) && self.inner.eager {
            self.inner.commit.settle().await?;
        }
        Ok(())
    }

    /// Keeps a new entry in memory and queues its write, unless one of its keys was recorded
    /// meanwhile; whether it did.
    fn insert_new(&self, bridge: &str, remote: &str, record: MessageRecord) -> bool {
        let mut state = self.state();
        if state.recent.by_remote.contains_key(remote)
            || state.recent.by_event.contains_key(&record.event_id)
        {
            // Recorded meanwhile.
            return false;
        }
        state.known.insert_entry(remote, &record.event_id);
        let write = self.inner.commit.submit(GroupWrite::Message {
            bridge: bridge.to_owned(),
            record: record.clone(),
        });
        state.recent.insert(Arc::new(Entry {
            bridge: bridge.to_owned(),
            record,
            write,
        }));
        let written = self.inner.commit.written();
        state.recent.trim(written);
        true
    }

    /// Forgets the entry of a Matrix event (a reaction taken back); stored when it returns.
    pub(crate) async fn forget_event(&self, event_id: &str) -> StoreResult<()> {
        // Out of memory at once: the deletion is queued and lands even if this call fails or is
        // cancelled, so the entry must not stay behind in memory.
        {
            let mut state = self.state();
            state.recent.remove_where(|e| e.record.event_id == event_id);
            self.inner.commit.submit(GroupWrite::ForgetEvent {
                event_id: event_id.to_owned(),
            });
        }
        self.inner.commit.settle().await
    }

    /// Forgets a portal of `bridge` with its entries (unbridging); stored when it returns.
    pub(crate) async fn forget_portal(&self, bridge: &str, key: &PortalKey) -> StoreResult<()> {
        // The entries' deletion goes into the queue after every entry recorded so far, so that
        // none of them lands after it.
        {
            let mut state = self.state();
            state
                .recent
                .remove_where(|e| e.bridge == bridge && e.record.portal == *key);
            self.inner.commit.submit(GroupWrite::ForgetPortal {
                bridge: bridge.to_owned(),
                key: key.clone(),
            });
        }
        self.inner.commit.settle().await?;
        self.inner.store.delete_portal(bridge, key).await
    }

    /// The group commit its entries are stored through.
    pub(crate) fn commit(&self) -> &GroupCommit {
        &self.inner.commit
    }

    /// Waits until every entry recorded so far is stored.
    pub(crate) async fn settle(&self) -> StoreResult<()> {
        self.inner.commit.settle().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{sample_record as record, temp_store as store};

    #[test]
    fn the_filter_never_forgets_and_rarely_imagines() {
        let mut known = KnownKeys::new();
        let count = 100_000_u32;
        for n in 0..count {
            known.insert(REMOTE, &format!("key {n}"));
        }
        assert!(known.stages.len() > 1, "it grew: {}", known.stages.len());
        assert!((0..count).all(|n| known.may_contain(REMOTE, &format!("key {n}"))));
        let imagined = (0..count)
            .filter(|n| known.may_contain(REMOTE, &format!("other {n}")))
            .count();
        // About 1 % per stage; two to three stages.
        assert!(imagined < 3_000, "{imagined} false positives in {count}");
    }

    #[tokio::test]
    async fn entries_are_seen_at_once_stored_in_groups_and_found_again_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let map = MessageMap::new(store.clone(), GroupCommit::new(store.clone()));
        map.load_known().await.expect("loaded");
        let key = PortalKey::shared("chat");
        for n in 0..3000 {
            map.record("b", record(n)).await.expect("recorded");
        }
        let id = RemoteMessageId("m5".into());
        assert_eq!(
            map.event_of("b", &key, &id, "")
                .await
                .expect("read")
                .as_deref(),
            Some("$e5")
        );
        assert_eq!(
            store.message_count().await.expect("count"),
            0,
            "not stored yet"
        );
        // Not stored, so never let go of.
        assert_eq!(map.state().recent.order.len(), 3000);
        map.settle().await.expect("settled");
        assert_eq!(store.message_count().await.expect("count"), 3000);
        map.record("b", record(3000)).await.expect("recorded");
        assert!(map.state().recent.order.len() <= RECENT + 1);

        // A new process: nothing in memory, the filter loaded from the database.
        let restarted = MessageMap::new(store.clone(), GroupCommit::new(store.clone()));
        assert_eq!(
            restarted.by_event("$e7").await.expect("read"),
            Some(("b".to_owned(), record(7)))
        );
        restarted.load_known().await.expect("loaded");
        assert_eq!(
            restarted
                .event_of("b", &key, &id, "")
                .await
                .expect("read")
                .as_deref(),
            Some("$e5")
        );
        let new = RemoteMessageId("never sent".into());
        assert_eq!(
            restarted.event_of("b", &key, &new, "").await.expect("read"),
            None
        );
        // A repeat of a stored entry changes nothing, even with another event.
        let mut repeat = record(9);
        repeat.event_id = "$other".into();
        restarted.record("b", repeat).await.expect("recorded");
        assert_eq!(restarted.by_event("$other").await.expect("read"), None);
        restarted.forget_event("$e9").await.expect("forgotten");
        assert_eq!(restarted.by_event("$e9").await.expect("read"), None);
        restarted.forget_portal("b", &key).await.expect("forgotten");
        assert_eq!(
            restarted.event_of("b", &key, &id, "").await.expect("read"),
            None
        );
    }
}
