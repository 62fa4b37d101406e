//! Hot standby: two Switchboard processes (the real binary) on one PostgreSQL and one
//! registration. The second waits as a standby (`/ready` says `standby`); under a steady stream
//! of pings the active one is killed with SIGKILL, the standby takes over, and every ping is
//! answered exactly once; an active process that loses its database connection stops, and the
//! standby takes over. On SQLite a second process on the same file is refused, naming the
//! first.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::postgres::Postgres;
use crate::common::switchboard_instance::{BINARY, Slot};
use crate::common::{MatrixUser, Synapse, free_port, wait_until};

const WAIT: Duration = Duration::from_mins(1);
/// Pings sent under load; the active process is killed after [`KILL_AFTER`] of them.
const PINGS: usize = 120;
const KILL_AFTER: usize = 40;

/// A copy of `slot`'s config for a second process: the same everything but its metrics port.
fn second_config(slot: &Slot) -> (std::path::PathBuf, u16) {
    let port = free_port().expect("a free port");
    let text = std::fs::read_to_string(&slot.config_path).expect("config");
    let text = text.replace(
        &format!("listen: 127.0.0.1:{}\n", slot.metrics_port),
        &format!("listen: 127.0.0.1:{port}\n"),
    );
    let path = slot.config_path.with_file_name("second.yaml");
    std::fs::write(&path, text).expect("second config");
    (path, port)
}

/// Runs the real binary with `config`, its output in `<log>.log` beside it.
fn spawn_run(config: &std::path::Path, log: &str) -> tokio::process::Child {
    let log = std::fs::File::create(config.with_file_name(format!("{log}.log"))).expect("log");
    tokio::process::Command::new(BINARY)
        .args(["run", "-c"])
        .arg(config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the process starts")
}

/// `/ready` of the process whose metrics listen on `port`: (status, body).
async fn ready(port: u16) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/ready"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Waits until the process with metrics on `port` serves (`/ready` 200).
async fn until_serving(port: u16, what: &str) {
    wait_until(WAIT, what, || async {
        let (status, _) = ready(port).await?;
        (status == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the process with metrics on `port` waits as a standby.
async fn until_standby(port: u16, what: &str) {
    wait_until(WAIT, what, || async {
        let (status, body) = ready(port).await?;
        (status == 503 && body == "standby").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Which of `pong 1` … `pong <pings>` the bot sent never, and more than once.
async fn lost_and_doubled(
    alice: &MatrixUser,
    room: &str,
    bot: &str,
    pings: usize,
) -> (Vec<usize>, Vec<usize>) {
    let timeline = alice.messages(room, 1000).await.expect("timeline");
    let mut lost = Vec::new();
    let mut doubled = Vec::new();
    for n in 1..=pings {
        let body = format!("pong {n}");
        let copies = timeline
            .iter()
            .filter(|e| e["sender"] == bot && e["content"]["body"] == body.as_str())
            .count();
        match copies {
            0 => lost.push(n),
            1 => {}
            _ => doubled.push(n),
        }
    }
    (lost, doubled)
}

/// Sends [`PINGS`] pings, 25 ms apart, killing `active` with SIGKILL after [`KILL_AFTER`];
/// returns how long after the kill the process with metrics on `standby_port` served, and the
/// pings' event ids.
async fn pings_across_a_kill(
    alice: &MatrixUser,
    room: &str,
    active: &mut tokio::process::Child,
    standby_port: u16,
) -> (Duration, Vec<String>) {
    let mut takeover = None;
    let mut pings = Vec::with_capacity(PINGS);
    for n in 1..=PINGS {
        let ping = alice
            .send_text(room, &format!("ping {n}"))
            .await
            .expect("sent");
        pings.push(ping);
        if n == KILL_AFTER {
            active.start_kill().expect("SIGKILL");
            active.wait().await.expect("reaped");
            // Timed from the kill, while the pings go on.
            let killed_at = Instant::now();
            takeover = Some(tokio::spawn(async move {
                until_serving(standby_port, "the standby serves").await;
                killed_at.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (takeover.expect("killed").await.expect("timed"), pings)
}

/// Splits the unanswered pings (numbers) into those that reached the inbox — lost by
/// Switchboard — and those that never did. Synapse can leave one transaction unsent when it
/// marks an appservice up again while a transaction is being queued (a race between its
/// recoverer and its sender, `synapse/appservice/scheduler.py` `_TransactionController.send`
/// against `_Recoverer.retry`; the transaction waits until some later failure): such a ping
/// never reached Switchboard, and is reported apart (see docs/standby.md).
async fn reached_the_inbox(
    pg: &Postgres,
    pings: &[String],
    unanswered: Vec<usize>,
) -> (Vec<usize>, Vec<usize>) {
    let mut lost = Vec::new();
    let mut never_delivered = Vec::new();
    for n in unanswered {
        let id = pings[n - 1].replace('\'', "''");
        let stored = pg
            .psql(
                "standby",
                &format!("SELECT count(*) FROM inbox_batch WHERE event_ids LIKE '%{id}%'"),
            )
            .await
            .expect("psql");
        if stored.trim() == "0" {
            never_delivered.push(n);
        } else {
            lost.push(n);
        }
    }
    (lost, never_delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_a_killed_active_process_and_nothing_is_lost_or_doubled() {
    let pg = Postgres::start().await.expect("PostgreSQL");
    let url = pg.create_database("standby").await.expect("database");
    let slot = Slot::with_config("standby", &format!("database:\n  url: {url}\n")).expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse");
    slot.point_at(&synapse.base_url()).expect("config");
    let (second, second_metrics) = second_config(&slot);

    let mut active = slot
        .spawn_process()
        .await
        .expect("the first process serves");
    let mut standby = spawn_run(&second, "second");
    until_standby(second_metrics, "the second process waits as a standby").await;

    let alice = synapse.register_user("alice", false).await.expect("alice");
    let bot = slot.bot();
    let room = alice
        .create_room(json!({ "invite": [bot] }))
        .await
        .expect("room");
    alice
        .wait_for_event(&room, WAIT, |e| {
            e["type"] == "m.room.member" && e["state_key"] == bot.as_str()
        })
        .await
        .expect("the bot joins");

    let (takeover, pings) = pings_across_a_kill(&alice, &room, &mut active, second_metrics).await;
    alice
        .wait_for_event(&room, WAIT, |e| {
            e["content"]["body"] == format!("pong {PINGS}").as_str()
        })
        .await
        .expect("the last ping answered");
    // Then every pong, not only the last (one may overtake another across the takeover).
    let _ = wait_until(Duration::from_secs(10), "every ping answered", || async {
        let (lost, _) = lost_and_doubled(&alice, &room, &bot, PINGS).await;
        lost.is_empty().then_some(())
    })
    .await;
    let (unanswered, doubled) = lost_and_doubled(&alice, &room, &bot, PINGS).await;
    let (lost, never_delivered) = reached_the_inbox(&pg, &pings, unanswered).await;
    if !never_delivered.is_empty() {
        eprintln!(
            "standby: pings {never_delivered:?} were never sent by Synapse (its recoverer race)"
        );
    }
    eprintln!(
        "standby: {PINGS} pings, SIGKILL after {KILL_AFTER}; the standby was ready {:.1} s after \
         the kill; {} lost, {} doubled",
        takeover.as_secs_f64(),
        lost.len(),
        doubled.len()
    );
    let logs = || {
        let read =
            |name: &str| std::fs::read_to_string(second.with_file_name(name)).unwrap_or_default();
        format!(
            "first:\n{}\nsecond:\n{}",
            slot.process_log(),
            read("second.log")
        )
    };
    assert!(
        lost.is_empty() && doubled.is_empty(),
        "every ping answered exactly once: lost {lost:?}, doubled {doubled:?}\n{}",
        logs()
    );
    assert!(
        takeover < Duration::from_secs(10),
        "took over in {takeover:?}"
    );

    // The first config starts again (now the standby); the active one loses its database
    // connection: it stops at once (exit code 7), and the other takes over.
    let mut third = spawn_run(&slot.config_path, "third");
    until_standby(
        slot.metrics_port,
        "the restarted process waits as a standby",
    )
    .await;
    let terminated = pg
        .psql(
            "standby",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name LIKE 'switchboard lease%' AND pid IN \
             (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
        )
        .await
        .expect("psql");
    assert_eq!(terminated.trim(), "1", "the active lease's connection");
    let stopped = tokio::time::timeout(WAIT, standby.wait())
        .await
        .expect("the active process stops")
        .expect("reaped");
    assert_eq!(stopped.code(), Some(7), "lost its lease");
    until_serving(slot.metrics_port, "the standby serves").await;
    alice.send_text(&room, "ping after").await.expect("sent");
    alice
        .wait_for_event(&room, WAIT, |e| e["content"]["body"] == "pong after")
        .await
        .expect("answered by the new active process");
    third.start_kill().expect("stop");
    let _ = third.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_sqlite_file_is_refused_naming_the_first() {
    // SQLite on both runs of the suite (an empty URL is the data directory's file).
    let slot = Slot::with_config("sqlitelock", "database:\n  url: \"\"\n").expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse");
    slot.point_at(&synapse.base_url()).expect("config");
    let first = slot
        .spawn_process()
        .await
        .expect("the first process serves");
    let (second, _) = second_config(&slot);
    let out = tokio::process::Command::new(BINARY)
        .args(["run", "-c"])
        .arg(&second)
        .output()
        .await
        .expect("the second process runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let pid = first.id().expect("running");
    assert!(
        stderr.contains(&format!("in use by another Switchboard (pid {pid} on ")),
        "{stderr}"
    );
}
