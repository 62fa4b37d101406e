//! The durable inbox: transactions are stored (txn id unique, events included, one database
//! transaction) before they are acknowledged, then drained into per-room ordered queues.
//!
//! Events of one room are handled in arrival order by one actor; different rooms run in
//! parallel. A transaction's events are stored as one batch, which stays in the inbox until
//! every one of its events is handled, so a crash at any point means the unfinished batches are
//! handled again after the restart (at least once); the deterministic transaction ids of what
//! handlers send make the visible effect happen once. When more than `high_water_mark` events
//! are unhandled, new transactions wait before being acknowledged. A room whose current event
//! has been in handling for [`STUCK_AFTER`] (retrying, or a slow plug-in) stops counting towards
//! that mark until it has caught up, so that one stuck room does not hold back every other
//! room; its events wait in memory up to `stuck_room_events_limit`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::InboxConfig;
use crate::metrics::InboxMetrics;
use switchboard_store::{InboxRow, NewInboxEvent, Store, StoreError};

/// Completion messages taken from the channel at once.
const DONE_BATCH: usize = 1024;
/// How long completed batches gather before they are deleted (one write for several).
const DONE_GATHER: Duration = Duration::from_millis(10);
/// Room actors idle for this long are stopped.
const ACTOR_IDLE: Duration = Duration::from_secs(30);
/// A room whose current event has been in handling this long is stuck: its events stop
/// counting towards the high-water mark (they count towards `stuck_room_events_limit`).
pub const STUCK_AFTER: Duration = Duration::from_secs(2);
/// How often the router looks for stuck rooms.
const STUCK_CHECK: Duration = Duration::from_secs(1);

/// An event taken from the inbox for handling.
#[derive(Clone, Debug)]
pub struct InboxItem {
    /// Arrival order.
    pub seq: i64,
    /// The stored batch (transaction) it belongs to, by its first sequence number.
    pub batch: i64,
    /// The key of the transaction it arrived in.
    pub txn_id: Arc<str>,
    /// Which list of the transaction it came from (`pdu`, `ephemeral`, `to_device`, …).
    pub kind: Arc<str>,
    /// The room, if any: the ordering key.
    pub room_id: Option<Arc<str>>,
    /// The event's JSON as received.
    pub body: Arc<str>,
    /// When it was accepted (for the handling-latency histogram).
    pub accepted_at: Instant,
}

impl InboxItem {
    fn from_row(row: InboxRow) -> Self {
        Self {
            seq: row.seq,
            batch: row.batch,
            txn_id: row.txn_id.into(),
            kind: row.kind.into(),
            room_id: row.room_id.map(Into::into),
            body: row.body.into(),
            accepted_at: Instant::now(),
        }
    }
}

/// Why the handling of an event failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// It may succeed later (homeserver down, rate-limited, remote network outage): retried.
    #[error("{0} (will retry)")]
    Transient(String),
    /// It will never succeed: recorded in `inbox_failed` and skipped.
    #[error("{0}")]
    Permanent(String),
}

/// A failing database is a passing condition: what needed it is retried later.
impl From<StoreError> for HandleError {
    fn from(error: StoreError) -> Self {
        Self::Transient(error.to_string())
    }
}

/// A homeserver that is down or rate-limits is a passing condition; a refused request is not.
impl From<switchboard_client::ClientError> for HandleError {
    fn from(error: switchboard_client::ClientError) -> Self {
        if error.is_transient() {
            HandleError::Transient(error.to_string())
        } else {
            HandleError::Permanent(error.to_string())
        }
    }
}

/// The one place a plug-in's error becomes the inbox's policy: what may pass is retried, the
/// rest is given up.
impl From<switchboard_api::PluginError> for HandleError {
    fn from(error: switchboard_api::PluginError) -> Self {
        if error.is_transient() {
            HandleError::Transient(error.to_string())
        } else {
            HandleError::Permanent(error.to_string())
        }
    }
}

/// What handles events taken from the inbox (the plug-in host).
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Handles one event; called again after a restart if the process died before it returned.
    async fn handle(&self, item: &InboxItem) -> Result<(), HandleError>;

    /// Waits until what the handling of every event so far left to be stored later (writes
    /// gathered for a group commit) is stored: events are marked handled only after it
    /// returns `Ok`, so a crash never loses what their handling recorded.
    async fn settle(&self) -> Result<(), HandleError> {
        Ok(())
    }
}

/// Outcome of offering a transaction to the inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Stored; it will be handled.
    New,
    /// Seen before; nothing was stored.
    Duplicate,
}

/// Why a transaction could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The inbox stayed above the high-water mark for the whole back-pressure timeout.
    #[error("the inbox is full ({depth} unhandled events); try again later")]
    Busy {
        /// Unhandled events.
        depth: usize,
    },
    /// The database failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Switchboard is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

/// What inserts share, behind the accept lock.
struct AcceptState {
    /// Hands stored events to the router.
    sender: mpsc::UnboundedSender<InboxItem>,
    /// Sequence number of the next stored event.
    next_seq: i64,
    /// Ids of the room events accepted last.
    recent_ids: RecentIds,
}

/// The ids of the last room events accepted (a bounded window, newest last), to drop an event
/// the homeserver sends again in another transaction — after its own restart, a homeserver
/// resends what it had not recorded as delivered, which is always among the latest events.
/// Loaded from the store at start, so the window survives restarts of Switchboard.
struct RecentIds {
    /// foldhash: several times cheaper than the default SipHash for these short keys, and
    /// still seeded per process.
    ids: HashSet<Arc<str>, foldhash::fast::RandomState>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl RecentIds {
    /// A window of `capacity` ids holding `newest_first` (as the store returns them).
    fn new(capacity: usize, newest_first: &[String]) -> Self {
        // Sized for the full window up front: growing it while busy would rehash every id at
        // once, a pause of a millisecond or more for the events waiting behind it.
        let mut window = Self {
            ids: HashSet::with_capacity_and_hasher(
                capacity.max(newest_first.len()),
                foldhash::fast::RandomState::default(),
            ),
            order: VecDeque::with_capacity(capacity.max(newest_first.len())),
            capacity,
        };
        window.remember(newest_first.iter().rev().map(String::as_str));
        window
    }

    /// The events whose id is neither in the window nor earlier in `events`.
    fn drop_known(&self, events: Vec<NewInboxEvent>) -> Vec<NewInboxEvent> {
        let keep: Vec<bool> = {
            let mut in_this_txn = HashSet::with_hasher(foldhash::fast::RandomState::default());
            events
                .iter()
                .map(|e| {
                    e.event_id
                        .as_deref()
                        .is_none_or(|id| !self.ids.contains(id) && in_this_txn.insert(id))
                })
                .collect()
        };
        events
            .into_iter()
            .zip(keep)
            .filter_map(|(event, keep)| keep.then_some(event))
            .collect()
    }

    /// Adds ids (oldest first), forgetting the oldest beyond the capacity.
    fn remember<'a>(&mut self, ids: impl Iterator<Item = &'a str>) {
        if self.capacity == 0 {
            return;
        }
        for id in ids {
            let id: Arc<str> = id.into();
            if self.ids.insert(Arc::clone(&id)) {
                self.order.push_back(id);
            }
            while self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.ids.remove(&oldest);
                }
            }
        }
    }
}

struct Shared {
    store: Store,
    config: InboxConfig,
    metrics: InboxMetrics,
    depth: AtomicUsize,
    /// Unhandled events of stuck rooms (part of `depth`), kept up to date under each room's
    /// [`RoomLoad`] lock.
    stuck: AtomicUsize,
    room_for_more: Notify,
    /// Serialises insert + hand-off so that arrival order equals sequence order.
    accept_lock: Mutex<AcceptState>,
    done_tx: mpsc::UnboundedSender<Completion>,
    shutdown: CancellationToken,
}

/// Handle to the inbox, cheap to clone.
#[derive(Clone)]
pub struct Inbox {
    shared: Arc<Shared>,
}

/// The running inbox tasks; [`InboxTasks::finish`] waits for them after shutdown.
pub struct InboxTasks {
    tracker: TaskTracker,
}

impl InboxTasks {
    /// Waits until the router, every room actor and the completion writer have stopped (all
    /// in-flight handling finished and recorded).
    pub async fn finish(self) {
        self.tracker.close();
        self.tracker.wait().await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Inbox {
    /// Starts the inbox: loads what a previous run left unhandled, then dispatches it and
    /// everything accepted later to `handler`, until `shutdown`.
    pub async fn start(
        store: Store,
        config: InboxConfig,
        metrics: InboxMetrics,
        handler: Arc<dyn EventHandler>,
        shutdown: CancellationToken,
    ) -> Result<(Self, InboxTasks), StoreError> {
        let pending = store.inbox_pending().await?;
        let next_seq = store.inbox_max_seq().await? + 1;
        let recent_ids = RecentIds::new(
            config.recent_event_ids,
            &store
                .inbox_recent_event_ids(config.recent_event_ids)
                .await?,
        );
        if !pending.is_empty() {
            tracing::info!(
                events = pending.len(),
                "resuming events left unhandled by the previous run"
            );
        }
        let tracker = TaskTracker::new();
        let (item_tx, item_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: store.clone(),
            config,
            metrics: metrics.clone(),
            depth: AtomicUsize::new(pending.len()),
            stuck: AtomicUsize::new(0),
            room_for_more: Notify::new(),
            accept_lock: Mutex::new(AcceptState {
                sender: item_tx.clone(),
                next_seq,
                recent_ids,
            }),
            done_tx: done_tx.clone(),
            shutdown: shutdown.clone(),
        });
        metrics
            .inbox_depth
            .set(i64::try_from(pending.len()).unwrap_or(i64::MAX));
        let mut batch_sizes: Vec<(i64, usize)> = Vec::new();
        for row in &pending {
            match batch_sizes.last_mut() {
                Some((batch, count)) if *batch == row.batch => *count += 1,
                _ => batch_sizes.push((row.batch, 1)),
            }
        }
        for (batch, count) in batch_sizes {
            // The receiver is alive: it is moved into the writer below.
            let _ = done_tx.send(Completion::Stored { batch, count });
        }
        for row in pending {
            // The receiver is alive: it is moved into the router below.
            let _ = item_tx.send(InboxItem::from_row(row));
        }
        drop(item_tx);
        tracker.spawn(record_done(store.clone(), Arc::clone(&handler), done_rx));
        tracker.spawn(route(
            Arc::clone(&shared),
            item_rx,
            handler,
            tracker.clone(),
        ));
        tracker.spawn(prune_txn_ids(Arc::clone(&shared)));
        Ok((Self { shared }, InboxTasks { tracker }))
    }

    /// Number of accepted events not yet handled.
    #[must_use]
    pub fn depth(&self) -> usize {
        self.shared.depth.load(Ordering::Acquire)
    }

    /// Stores a transaction's events (waiting first while the inbox is above the high-water
    /// mark), then queues them for handling. Returns once the transaction is durable.
    /// `body_digest` distinguishes a repeated transaction from a homeserver reusing the id for
    /// new content (Synapse on SQLite does after a restart); room events accepted before are
    /// skipped either way.
    pub async fn accept(
        &self,
        txn_id: &str,
        body_digest: &str,
        events: Vec<NewInboxEvent>,
    ) -> Result<Accepted, AcceptError> {
        let shared = &self.shared;
        let deadline =
            Instant::now() + Duration::from_secs(shared.config.backpressure_timeout_secs);
        loop {
            let notified = shared.room_for_more.notified();
            let depth = self.depth();
            let stuck = shared.stuck.load(Ordering::Acquire);
            if depth.saturating_sub(stuck) < shared.config.high_water_mark
                && stuck <= shared.config.stuck_room_events_limit
            {
                break;
            }
            if shared.shutdown.is_cancelled() {
                return Err(AcceptError::ShuttingDown);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(AcceptError::Busy { depth });
            }
            tracing::debug!(
                depth,
                "inbox above the high-water mark, delaying the acknowledgement"
            );
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(deadline - now) => {}
                () = shared.shutdown.cancelled() => return Err(AcceptError::ShuttingDown),
            }
        }
        let mut state = shared.accept_lock.lock().await;
        let key = format!("{txn_id}/{body_digest}");
        let offered = events.len();
        let events = state.recent_ids.drop_known(events);
        let resent = offered - events.len();
        let first_seq = state.next_seq;
        if !shared
            .store
            .inbox_insert(&key, now_ms(), first_seq, &events)
            .await?
        {
            return Ok(Accepted::Duplicate);
        }
        state
            .recent_ids
            .remember(events.iter().filter_map(|e| e.event_id.as_deref()));
        let accepted_at = Instant::now();
        let count = events.len();
        let txn: Arc<str> = key.into();
        if count > 0 {
            // The writer stops only after the inbox: the receiver is alive.
            let _ = shared.done_tx.send(Completion::Stored {
                batch: first_seq,
                count,
            });
        }
        // A transaction without new events still takes a number (its row's key).
        state.next_seq += i64::try_from(count.max(1)).unwrap_or(i64::MAX);
        if resent > 0 {
            shared.metrics.events_resent.inc_by(resent as u64);
            tracing::info!(resent, "skipped room events the homeserver had sent before");
        }
        shared.depth.fetch_add(count, Ordering::AcqRel);
        shared
            .metrics
            .inbox_depth
            .add(i64::try_from(count).unwrap_or(0));
        for (seq, event) in (first_seq..).zip(events) {
            let item = InboxItem {
                seq,
                batch: first_seq,
                txn_id: Arc::clone(&txn),
                kind: event.kind.into(),
                room_id: event.room_id.map(Into::into),
                body: event.body.into(),
                accepted_at,
            };
            if state.sender.send(item).is_err() {
                // The router stopped (shutdown): the event is stored and resumes after restart.
                break;
            }
        }
        Ok(Accepted::New)
    }
}

struct RoomActor {
    tx: mpsc::UnboundedSender<InboxItem>,
    load: Arc<StdMutex<RoomLoad>>,
    last_used: Instant,
}

impl RoomActor {
    /// Starts the actor of a room that has none.
    fn spawn(shared: &Arc<Shared>, handler: &Arc<dyn EventHandler>, tracker: &TaskTracker) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let load = Arc::new(StdMutex::new(RoomLoad {
            pending: 0,
            head_since: Instant::now(),
            stuck: false,
        }));
        tracker.spawn(run_room(
            Arc::clone(shared),
            rx,
            Arc::clone(handler),
            Arc::clone(&load),
        ));
        Self {
            tx,
            load,
            last_used: Instant::now(),
        }
    }
}

/// What a room has queued; shared by the router (which adds) and the room's actor (which
/// handles).
struct RoomLoad {
    /// Events routed to the room and not yet handled, its current one included.
    pending: usize,
    /// When the current event became the room's head.
    head_since: Instant,
    /// Whether the room is stuck (until its queue is empty again): its pending events are
    /// counted in `Shared::stuck`.
    stuck: bool,
}

fn lock(load: &StdMutex<RoomLoad>) -> MutexGuard<'_, RoomLoad> {
    // The lock is never held across anything that can panic; a poisoned one is still sound.
    load.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Moves `count` events in or out of the stuck count (and its gauge).
    fn add_stuck(&self, count: usize) {
        self.stuck.fetch_add(count, Ordering::AcqRel);
        self.metrics
            .inbox_stuck_events
            .add(i64::try_from(count).unwrap_or(0));
    }

    fn remove_stuck(&self, count: usize) {
        self.stuck.fetch_sub(count, Ordering::AcqRel);
        self.metrics
            .inbox_stuck_events
            .sub(i64::try_from(count).unwrap_or(0));
    }
}

/// Marks rooms whose current event has been in handling for [`STUCK_AFTER`] as stuck, and
/// lets waiting transactions re-check the mark if any was.
fn mark_stuck_rooms(shared: &Shared, actors: &HashMap<Arc<str>, RoomActor>) {
    let now = Instant::now();
    let mut any = false;
    for (room, actor) in actors {
        let mut load = lock(&actor.load);
        if !load.stuck && load.pending > 0 && now.duration_since(load.head_since) >= STUCK_AFTER {
            load.stuck = true;
            shared.add_stuck(load.pending);
            any = true;
            tracing::warn!(
                room_id = %room,
                waiting = load.pending,
                "an event of this room has been in handling for over {} s; the room's events \
                 no longer hold back acknowledgements of other rooms' events",
                STUCK_AFTER.as_secs()
            );
        }
    }
    if any {
        shared.room_for_more.notify_waiters();
    }
}

/// Hands items to one actor per room, creating actors on demand and reaping idle ones.
async fn route(
    shared: Arc<Shared>,
    mut items: mpsc::UnboundedReceiver<InboxItem>,
    handler: Arc<dyn EventHandler>,
    tracker: TaskTracker,
) {
    let mut actors: HashMap<Arc<str>, RoomActor> = HashMap::new();
    let no_room: Arc<str> = Arc::from("");
    let mut reap = tokio::time::interval(ACTOR_IDLE);
    let mut stuck_check = tokio::time::interval(STUCK_CHECK);
    stuck_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let item = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            item = items.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = reap.tick() => {
                let now = Instant::now();
                actors.retain(|_, a| {
                    lock(&a.load).pending > 0 || now.duration_since(a.last_used) < ACTOR_IDLE
                });
                continue;
            }
            _ = stuck_check.tick() => {
                mark_stuck_rooms(&shared, &actors);
                continue;
            }
        };
        let key = item.room_id.clone().unwrap_or_else(|| Arc::clone(&no_room));
        if actors.get(&key).is_some_and(|a| a.tx.is_closed()) {
            // Its actor ended (it cannot, short of a bug): the room gets a new one rather
            // than every room stopping.
            tracing::error!(room_id = %key, "a room's actor had stopped; starting a new one");
            actors.remove(&key);
        }
        let actor = actors
            .entry(Arc::clone(&key))
            .or_insert_with(|| RoomActor::spawn(&shared, &handler, &tracker));
        let now = Instant::now();
        {
            let mut load = lock(&actor.load);
            if load.pending == 0 {
                load.head_since = now;
            }
            load.pending += 1;
            if load.stuck {
                shared.add_stuck(1);
            }
        }
        actor.last_used = now;
        if let Err(lost) = actor.tx.send(item) {
            tracing::error!(
                seq = lost.0.seq,
                "a room's actor stopped; the event is handled after a restart"
            );
        }
    }
    // Dropping the senders lets every actor finish the event in hand and stop.
}

/// Handles one room's events strictly in order.
async fn run_room(
    shared: Arc<Shared>,
    mut items: mpsc::UnboundedReceiver<InboxItem>,
    handler: Arc<dyn EventHandler>,
    load: Arc<StdMutex<RoomLoad>>,
) {
    while let Some(item) = items.recv().await {
        if shared.shutdown.is_cancelled() {
            // Not started: it stays in the inbox and is handled after the restart.
            break;
        }
        let span = tracing::info_span!("event", seq = item.seq, kind = %item.kind, room_id = item.room_id.as_deref().unwrap_or(""));
        let finished = handle_until_settled(&shared, handler.as_ref(), &item)
            .instrument(span)
            .await;
        {
            let mut load = lock(&load);
            load.pending = load.pending.saturating_sub(1);
            load.head_since = Instant::now();
            if load.stuck {
                shared.remove_stuck(1);
                // Caught up: from now on its events count towards the high-water mark again.
                load.stuck = load.pending > 0;
            }
        }
        if !finished {
            break;
        }
        shared
            .metrics
            .handling_seconds
            .observe(item.accepted_at.elapsed().as_secs_f64());
        shared.depth.fetch_sub(1, Ordering::AcqRel);
        shared.metrics.inbox_depth.dec();
        shared.room_for_more.notify_waiters();
    }
}

/// Handles an event, retrying transient failures with backoff. Returns `false` when shutdown
/// interrupted the retries (the event stays in the inbox).
async fn handle_until_settled(
    shared: &Shared,
    handler: &dyn EventHandler,
    item: &InboxItem,
) -> bool {
    let mut pause = Duration::from_millis(500);
    let max_pause = Duration::from_secs(shared.config.retry_max_secs.max(1));
    loop {
        // The handler isolates the plug-ins' panics itself; one that still escapes costs
        // this event, not the room.
        let outcome = AssertUnwindSafe(handler.handle(item))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(HandleError::Permanent(
                    "its handling panicked (a bug; see the log above)".to_owned(),
                ))
            });
        match outcome {
            Ok(()) => {
                // The writer only stops after every actor has stopped.
                let _ = shared
                    .done_tx
                    .send(Completion::Handled { batch: item.batch });
                return true;
            }
            Err(HandleError::Permanent(error)) => {
                tracing::error!(seq = item.seq, %error, "event handling failed permanently; kept in inbox_failed");
                shared.metrics.events_failed.inc();
                let row = InboxRow {
                    seq: item.seq,
                    batch: item.batch,
                    txn_id: item.txn_id.to_string(),
                    kind: item.kind.to_string(),
                    room_id: item.room_id.as_deref().map(str::to_owned),
                    body: item.body.to_string(),
                };
                if let Err(e) = shared.store.inbox_fail(&row, &error, now_ms()).await {
                    // Not marked handled: its batch stays and it is tried again after a restart.
                    tracing::error!(seq = item.seq, error = %e, "cannot record the failed event");
                    return true;
                }
                let _ = shared
                    .done_tx
                    .send(Completion::Handled { batch: item.batch });
                return true;
            }
            Err(HandleError::Transient(error)) => {
                shared.metrics.handling_retries.inc();
                tracing::warn!(seq = item.seq, %error, ?pause, "event handling failed, retrying");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shared.shutdown.cancelled() => return false,
                }
                pause = (pause * 2).min(max_pause);
            }
        }
    }
}

/// What the completion writer is told.
#[derive(Clone, Copy, Debug)]
enum Completion {
    /// A batch of `count` events was stored (sent before any of its events is dispatched).
    Stored {
        /// First sequence number.
        batch: i64,
        /// Events in it.
        count: usize,
    },
    /// One event of `batch` is handled (or kept in `inbox_failed`).
    Handled {
        /// First sequence number of its batch.
        batch: i64,
    },
}

/// Events left per stored batch, and the batches whose events are all handled.
#[derive(Default)]
struct BatchProgress {
    remaining: HashMap<i64, usize>,
    finished: Vec<i64>,
}

impl BatchProgress {
    fn apply(&mut self, message: Completion) {
        match message {
            Completion::Stored { batch, count } => {
                self.remaining.insert(batch, count);
            }
            Completion::Handled { batch } => {
                if let Some(left) = self.remaining.get_mut(&batch) {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        self.remaining.remove(&batch);
                        self.finished.push(batch);
                    }
                }
            }
        }
    }
}

/// Deletes batches once all their events are handled (and what their handling left to be
/// stored is stored: [`EventHandler::settle`]), gathering deletes for a moment; flushes
/// everything before stopping. (A batch whose deletion is not yet written is handled again
/// after a crash, which idempotent sends make harmless.)
async fn record_done(
    store: Store,
    handler: Arc<dyn EventHandler>,
    mut done: mpsc::UnboundedReceiver<Completion>,
) {
    let mut progress = BatchProgress::default();
    let mut messages = Vec::with_capacity(DONE_BATCH);
    loop {
        let open = done.recv_many(&mut messages, DONE_BATCH).await > 0;
        messages.drain(..).for_each(|m| progress.apply(m));
        if !progress.finished.is_empty() {
            if open {
                // Gather: one delete for the batches finishing in the next moments.
                tokio::time::sleep(DONE_GATHER).await;
                while let Ok(message) = done.try_recv() {
                    progress.apply(message);
                }
            }
            let mut attempt = 0u32;
            while let Err(e) =
                settle_then_mark_done(&store, handler.as_ref(), &progress.finished).await
            {
                attempt += 1;
                tracing::error!(error = %e, attempt, "cannot record handled events; retrying");
                if attempt >= 20 {
                    // Handled once more after a restart; their sends are idempotent.
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            progress.finished.clear();
        }
        if !open {
            return;
        }
    }
}

/// Stores what the handling left to be stored, then marks `batches` handled.
async fn settle_then_mark_done(
    store: &Store,
    handler: &dyn EventHandler,
    batches: &[i64],
) -> Result<(), String> {
    handler.settle().await.map_err(|e| e.to_string())?;
    store
        .inbox_batches_done(batches)
        .await
        .map_err(|e| e.to_string())
}

/// Forgets transaction ids older than the retention, hourly.
async fn prune_txn_ids(shared: Arc<Shared>) {
    let retention_ms = i64::from(shared.config.txn_retention_days) * 86_400_000;
    let mut every = tokio::time::interval(Duration::from_hours(1));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = shared.shutdown.cancelled() => return,
        }
        match shared.store.inbox_prune_txns(now_ms() - retention_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "forgot old transaction ids"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old transaction ids"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use tokio::sync::Semaphore;

    use super::*;
    use switchboard_store::SqliteSync;

    /// Records what it handled; waits for a permit per event when gated (only for the events
    /// of `gated_room`, if set).
    struct Recorder {
        seen: StdMutex<Vec<(String, String)>>,
        gate: Option<Arc<Semaphore>>,
        gated_room: Option<&'static str>,
        /// Panics on the event with this body (a handler with a bug).
        panic_on: Option<&'static str>,
    }

    #[async_trait::async_trait]
    impl EventHandler for Recorder {
        async fn handle(&self, item: &InboxItem) -> Result<(), HandleError> {
            let room = item.room_id.as_deref().unwrap_or("").to_owned();
            if let Some(gate) = &self.gate
                && self.gated_room.is_none_or(|gated| gated == room)
            {
                gate.acquire().await.expect("gate open").forget();
            }
            assert!(self.panic_on != Some(&*item.body), "a bug in the handler");
            self.seen
                .lock()
                .expect("lock")
                .push((room, item.body.to_string()));
            Ok(())
        }
    }

    fn event(room: &str, n: u32) -> NewInboxEvent {
        NewInboxEvent {
            kind: "pdu".into(),
            event_id: Some(format!("${room}{n}")),
            room_id: Some(room.to_owned()),
            body: n.to_string(),
        }
    }

    impl Recorder {
        fn new(gate: Option<Arc<Semaphore>>) -> Arc<Self> {
            Arc::new(Self {
                seen: StdMutex::new(Vec::new()),
                gate,
                gated_room: None,
                panic_on: None,
            })
        }

        /// Handles the events of `room` only as `gate` gives permits, the others at once.
        fn gating_room(gate: Arc<Semaphore>, room: &'static str) -> Arc<Self> {
            Arc::new(Self {
                seen: StdMutex::new(Vec::new()),
                gate: Some(gate),
                gated_room: Some(room),
                panic_on: None,
            })
        }

        fn seen_in(&self, room: &str) -> Vec<String> {
            self.seen
                .lock()
                .expect("lock")
                .iter()
                .filter(|(r, _)| r == room)
                .map(|(_, body)| body.clone())
                .collect()
        }
    }

    /// The inbox's tasks and the token that stops them.
    struct Running {
        shutdown: CancellationToken,
        tasks: InboxTasks,
    }

    impl Running {
        /// Drops the handle, stops the inbox and waits for its tasks.
        async fn stop(self, inbox: Inbox) {
            drop(inbox);
            self.shutdown.cancel();
            self.tasks.finish().await;
        }
    }

    async fn start(
        dir: &tempfile::TempDir,
        high_water_mark: usize,
        recorder: Arc<Recorder>,
    ) -> (Inbox, Running) {
        start_with(dir, config(high_water_mark), recorder).await
    }

    async fn start_with(
        dir: &tempfile::TempDir,
        config: InboxConfig,
        recorder: Arc<Recorder>,
    ) -> (Inbox, Running) {
        let shutdown = CancellationToken::new();
        let (inbox, tasks) = Inbox::start(
            store(dir).await,
            config,
            InboxMetrics::default(),
            recorder,
            shutdown.clone(),
        )
        .await
        .expect("inbox starts");
        (inbox, Running { shutdown, tasks })
    }

    /// Waits (at most 10 s) until every accepted event was handled.
    async fn drained(inbox: &Inbox) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while inbox.depth() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("every event handled within 10 s");
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
        Store::connect(&url, 4, SqliteSync::Normal)
            .await
            .expect("store")
    }

    fn config(high_water_mark: usize) -> InboxConfig {
        InboxConfig {
            high_water_mark,
            backpressure_timeout_secs: 5,
            ..InboxConfig::default()
        }
    }

    #[test]
    fn the_recent_id_window_drops_repeats_and_forgets_the_oldest() {
        let ids = |events: &[NewInboxEvent]| -> Vec<String> {
            events.iter().filter_map(|e| e.event_id.clone()).collect()
        };
        let mut window = RecentIds::new(3, &["$a2".into(), "$a1".into()]);
        let kept = window.drop_known(vec![
            event("a", 1),
            event("a", 3),
            event("a", 3),
            NewInboxEvent {
                event_id: None,
                ..event("a", 9)
            },
        ]);
        assert_eq!(ids(&kept), ["$a3"], "known and repeated ids are dropped");
        assert_eq!(kept.len(), 2, "events without an id are always kept");
        window.remember(["$a3", "$a4"].into_iter());
        assert_eq!(
            ids(&window.drop_known(vec![event("a", 1), event("a", 2), event("a", 4)])),
            ["$a1"],
            "the oldest id left the window of 3 ($a2, $a3, $a4 remain)"
        );
        let off = RecentIds::new(0, &["$a1".into()]);
        assert_eq!(ids(&off.drop_known(vec![event("a", 1)])), ["$a1"]);
    }

    #[tokio::test]
    async fn events_of_one_room_are_handled_in_order_and_each_room_progresses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recorder = Recorder::new(None);
        let (inbox, running) = start(&dir, 10_000, Arc::clone(&recorder)).await;
        for t in 0..20u32 {
            let events = (0..10)
                .map(|i| event(if i % 2 == 0 { "!a" } else { "!b" }, t * 10 + i))
                .collect();
            assert_eq!(
                inbox
                    .accept(&format!("t{t}"), "d", events)
                    .await
                    .expect("accepted"),
                Accepted::New
            );
        }
        drained(&inbox).await;
        let seen = recorder.seen.lock().expect("lock").clone();
        for room in ["!a", "!b"] {
            let order: Vec<u32> = seen
                .iter()
                .filter(|(r, _)| r == room)
                .map(|(_, b)| b.parse().expect("number"))
                .collect();
            assert_eq!(order.len(), 100);
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "{room} out of order: {order:?}"
            );
        }
        running.stop(inbox).await;
    }

    #[tokio::test]
    async fn a_panic_costs_one_event_and_its_room_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let recorder = Arc::new(Recorder {
            seen: StdMutex::new(Vec::new()),
            gate: None,
            gated_room: None,
            panic_on: Some("1"),
        });
        let (inbox, running) = start(&dir, 10_000, Arc::clone(&recorder)).await;
        let events = vec![
            event("!a", 1),
            event("!b", 3),
            event("!a", 2),
            event("!b", 4),
        ];
        inbox.accept("t1", "d", events).await.expect("accepted");
        inbox
            .accept("t2", "d", vec![event("!a", 5)])
            .await
            .expect("accepted");
        drained(&inbox).await;
        assert_eq!(recorder.seen_in("!a"), ["2", "5"]);
        assert_eq!(recorder.seen_in("!b"), ["3", "4"]);
        let failed = store(&dir).await.inbox_failed_count().await.expect("count");
        assert_eq!(failed, 1, "the event it panicked on is kept as failed");
        running.stop(inbox).await;
    }

    #[tokio::test]
    async fn acknowledgements_wait_above_the_high_water_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Arc::new(Semaphore::new(0));
        let recorder = Recorder::new(Some(Arc::clone(&gate)));
        let (inbox, running) = start(&dir, 3, Arc::clone(&recorder)).await;
        inbox
            .accept(
                "t1",
                "d",
                vec![event("!a", 1), event("!a", 2), event("!a", 3)],
            )
            .await
            .expect("accepted");
        let waiting = inbox.clone();
        let second = async move { waiting.accept("t2", "d", vec![event("!a", 4)]).await };
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut second)
                .await
                .is_err(),
            "the second transaction must wait while 3 events are unhandled"
        );
        gate.add_permits(1);
        let accepted = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("acknowledged once below the mark");
        assert_eq!(accepted.expect("stored"), Accepted::New);
        gate.add_permits(10);
        running.stop(inbox).await;
    }

    #[tokio::test]
    async fn a_stuck_room_does_not_hold_back_the_other_rooms() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Arc::new(Semaphore::new(0));
        let recorder = Recorder::gating_room(Arc::clone(&gate), "!a");
        let (inbox, running) = start(&dir, 3, Arc::clone(&recorder)).await;
        let stuck: Vec<NewInboxEvent> = (1..=5).map(|n| event("!a", n)).collect();
        inbox.accept("t1", "d", stuck).await.expect("accepted");
        // 5 events of !a wait behind its first: above the mark of 3, so !b's transaction waits
        // until !a counts as stuck (after STUCK_AFTER), then goes through.
        let started = Instant::now();
        let accepted = tokio::time::timeout(
            STUCK_AFTER * 3,
            inbox.accept("t2", "d", vec![event("!b", 1), event("!b", 2)]),
        )
        .await
        .expect("acknowledged although !a is stuck");
        assert_eq!(accepted.expect("stored"), Accepted::New);
        assert!(
            started.elapsed() + Duration::from_millis(100) >= STUCK_AFTER,
            "held back until !a counted as stuck"
        );
        tokio::time::timeout(Duration::from_secs(5), async {
            while recorder.seen_in("!b").len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("!b's events are handled while !a is stuck");
        assert!(recorder.seen_in("!a").is_empty());
        assert_eq!(inbox.shared.metrics.inbox_stuck_events.get(), 5);
        // Once !a moves on, its events are handled in order; caught up, it is no longer stuck.
        gate.add_permits(5);
        drained(&inbox).await;
        assert_eq!(recorder.seen_in("!a"), ["1", "2", "3", "4", "5"]);
        assert_eq!(inbox.shared.stuck.load(Ordering::Acquire), 0);
        assert_eq!(inbox.shared.metrics.inbox_stuck_events.get(), 0);
        running.stop(inbox).await;
    }

    #[tokio::test]
    async fn stuck_rooms_hold_at_most_their_limit_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Arc::new(Semaphore::new(0));
        let recorder = Recorder::gating_room(Arc::clone(&gate), "!a");
        let config = InboxConfig {
            high_water_mark: 3,
            backpressure_timeout_secs: 1,
            stuck_room_events_limit: 4,
            ..InboxConfig::default()
        };
        let (inbox, running) = start_with(&dir, config, Arc::clone(&recorder)).await;
        let stuck: Vec<NewInboxEvent> = (1..=5).map(|n| event("!a", n)).collect();
        inbox.accept("t1", "d", stuck).await.expect("accepted");
        tokio::time::timeout(STUCK_AFTER * 5, async {
            while inbox.shared.stuck.load(Ordering::Acquire) < 5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("!a's 5 events count as stuck");
        assert_eq!(inbox.shared.stuck.load(Ordering::Acquire), 5, "!a is stuck");
        let refused = inbox.accept("t2", "d", vec![event("!b", 1)]).await;
        assert!(
            matches!(refused, Err(AcceptError::Busy { depth: 5 })),
            "5 events wait in stuck rooms, over the limit of 4: {refused:?}"
        );
        gate.add_permits(1);
        let accepted = tokio::time::timeout(
            Duration::from_secs(5),
            inbox.accept("t2", "d", vec![event("!b", 1)]),
        )
        .await
        .expect("acknowledged once below both limits");
        assert_eq!(accepted.expect("stored"), Accepted::New);
        gate.add_permits(10);
        drained(&inbox).await;
        assert_eq!(recorder.seen_in("!b"), ["1"]);
        running.stop(inbox).await;
    }

    #[tokio::test]
    async fn unhandled_events_are_resumed_after_a_restart_and_repeats_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Arc::new(Semaphore::new(2));
        let first = Recorder::new(Some(Arc::clone(&gate)));
        let (inbox, running) = start(&dir, 100, Arc::clone(&first)).await;
        inbox
            .accept("t0", "d", vec![event("!a", 0)])
            .await
            .expect("accepted");
        inbox
            .accept(
                "t1",
                "d",
                vec![event("!a", 1), event("!a", 2), event("!a", 3)],
            )
            .await
            .expect("accepted");
        tokio::time::timeout(Duration::from_secs(5), async {
            while first.seen.lock().expect("lock").len() < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("events 0 and 1 handled");
        // Stop while events 2 and 3 wait: their transaction stays in the inbox.
        let Running { shutdown, tasks } = running;
        drop(inbox);
        shutdown.cancel();
        gate.add_permits(10);
        tasks.finish().await;

        let second = Recorder::new(None);
        let (inbox, running) = start(&dir, 100, Arc::clone(&second)).await;
        assert_eq!(
            inbox
                .accept("t1", "d", vec![event("!a", 1)])
                .await
                .expect("ack"),
            Accepted::Duplicate
        );
        inbox
            .accept("t1", "other-digest", vec![event("!a", 3), event("!a", 4)])
            .await
            .expect("ack");
        drained(&inbox).await;
        let handled: Vec<String> = second
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        let before: Vec<String> = first
            .seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, b)| b.clone())
            .collect();
        assert!(before.starts_with(&["0".to_owned(), "1".to_owned()]));
        assert_eq!(
            handled,
            ["1", "2", "3", "4"],
            "the unfinished transaction is handled again, in order, then the new event \
             (before the restart: {before:?})"
        );
        running.stop(inbox).await;
    }
}
