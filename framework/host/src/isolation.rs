//! Panic isolation: a plug-in that panics on one event costs that event — not its room, not
//! the other plug-ins, not the process. Each call into a plug-in made for an event runs under
//! [`catch_unwind`](futures_util::FutureExt::catch_unwind); a panic is logged with the room
//! and the event, counted in `switchboard_handler_panics_total{plugin}`, and then either
//! retried ([`retry_panics`]: handlers that may run again) or answered as a failure
//! ([`catch_panic`]: commands, which are not run twice, and the host's own handling).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt as _;
use prometheus::IntCounterVec;

use crate::inbox::HandleError;

/// Attempts of a handler that panics before its event is given up.
pub const PANIC_ATTEMPTS: u32 = 3;
/// Pause before the first retry of a handler that panicked; doubled before each next one.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The event a plug-in was handling, for the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Handling<'a> {
    /// The plug-in's id (the metric's label).
    pub plugin: &'a str,
    /// The room, or `""`.
    pub room_id: &'a str,
    /// The event id, or what kind of item it was when it has none.
    pub event: &'a str,
}

/// A plug-in panicked. Shown to users, so it leaves out the panic's text (which may hold
/// anything); the log has it.
#[derive(Debug, thiserror::Error)]
#[error("{plugin} failed on this event (a bug: it panicked; the log has the details)")]
pub(crate) struct PluginPanicked {
    /// The plug-in.
    pub plugin: String,
}

/// Runs `call` once; a panic in it is logged, counted and returned as [`PluginPanicked`].
pub(crate) async fn catch_panic<F: Future>(
    panics: &IntCounterVec,
    handling: Handling<'_>,
    call: F,
) -> Result<F::Output, PluginPanicked> {
    match AssertUnwindSafe(call).catch_unwind().await {
        Ok(output) => Ok(output),
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            tracing::error!(
                plugin = handling.plugin,
                room_id = handling.room_id,
                event = handling.event,
                panic = %message,
                "a plug-in panicked while handling an event"
            );
            panics.with_label_values(&[handling.plugin]).inc();
            Err(PluginPanicked {
                plugin: handling.plugin.to_owned(),
            })
        }
    }
}

/// Runs `call` until it returns without panicking, up to [`PANIC_ATTEMPTS`] times with a
/// growing pause; after the last panic the event is given up (`HandleError::Permanent`), so
/// the room goes on with its next event. What `call` returns is passed through.
pub(crate) async fn retry_panics<T, F, Fut>(
    panics: &IntCounterVec,
    handling: Handling<'_>,
    mut call: F,
) -> Result<T, HandleError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HandleError>>,
{
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        match catch_panic(panics, handling, call()).await {
            Ok(outcome) => return outcome,
            Err(panicked) if attempt >= PANIC_ATTEMPTS => {
                return Err(HandleError::Permanent(format!(
                    "{panicked}; given up after {PANIC_ATTEMPTS} attempts"
                )));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
        }
    }
}

/// The text a panic was raised with (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn counter() -> IntCounterVec {
        IntCounterVec::new(prometheus::Opts::new("p", "p"), &["plugin"]).expect("valid metric")
    }

    const HANDLING: Handling<'static> = Handling {
        plugin: "flaky",
        room_id: "!r:hs",
        event: "$e",
    };

    #[tokio::test]
    async fn a_panic_once_is_retried_and_counted() {
        let panics = counter();
        let calls = AtomicU32::new(0);
        let outcome = retry_panics(&panics, HANDLING, || async {
            assert!(
                calls.fetch_add(1, Ordering::Relaxed) > 0,
                "first call fails"
            );
            Ok::<_, HandleError>(7)
        })
        .await;
        assert_eq!(outcome.ok(), Some(7));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        assert_eq!(panics.with_label_values(&["flaky"]).get(), 1);
    }

    #[tokio::test]
    async fn a_handler_that_always_panics_gives_its_event_up() {
        let panics = counter();
        let outcome: Result<(), HandleError> =
            retry_panics(&panics, HANDLING, || async { panic!("bad input") }).await;
        let Err(HandleError::Permanent(why)) = outcome else {
            panic!("expected a permanent failure, got {outcome:?}");
        };
        assert!(
            why.contains("flaky failed") && why.contains("panicked"),
            "{why}"
        );
        assert_eq!(
            panics.with_label_values(&["flaky"]).get(),
            u64::from(PANIC_ATTEMPTS)
        );
    }

    #[tokio::test]
    async fn errors_are_passed_through_untouched() {
        let panics = counter();
        let outcome: Result<(), HandleError> = retry_panics(&panics, HANDLING, || async {
            Err(HandleError::Transient("later".into()))
        })
        .await;
        assert!(matches!(outcome, Err(HandleError::Transient(_))));
        let caught = catch_panic(&panics, HANDLING, async { 1 }).await;
        assert_eq!(caught.ok(), Some(1));
        assert_eq!(panics.with_label_values(&["flaky"]).get(), 0);
    }
}
