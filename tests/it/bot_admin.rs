//! The admin bot against a real Synapse: it creates the admin room and invites the admin, who
//! manages users and rooms there through the Synapse Admin API; destructive commands wait for
//! a confirmation; everything run is in the audit log; others are refused.

use std::path::PathBuf;
use std::time::Duration;

use crate::common::switchboard_instance::{Running, Slot};
use crate::common::{MatrixUser, Synapse};
use serde_json::{Value, json};
use switchboard_testing::synapse::encode;

const WAIT: Duration = Duration::from_secs(30);

/// Switchboard with the admin bot for `@root:localhost` (a Synapse admin whose token the bot
/// uses), and root in the admin room the bot created.
struct Console {
    slot: Slot,
    synapse: Synapse,
    running: Running,
    root: MatrixUser,
    room: String,
    _token_dir: tempfile::TempDir,
}

async fn console(name: &str) -> Console {
    console_with(name, "").await
}

/// Like [`console`], with more (top-level) config.
async fn console_with(name: &str, extra: &str) -> Console {
    let token_dir = tempfile::tempdir().expect("tempdir");
    let token_file: PathBuf = token_dir.path().join("admin-token");
    // generate-registration reads the settings: the real token comes once root exists.
    std::fs::write(&token_file, "not-yet").expect("token file");
    let config = format!(
        "  admin:\n    enabled: true\n    admins: [\"@root:localhost\"]\n    \
         admin_token_file: {}\n{extra}",
        token_file.display()
    );
    let slot = Slot::with_config(name, &config).expect("slot");
    let synapse = Synapse::start(&[slot.registration_path()])
        .await
        .expect("Synapse starts");
    let root = synapse.register_user("root", true).await.expect("root");
    std::fs::write(&token_file, &root.access_token).expect("token file");
    slot.point_at(&synapse.base_url()).expect("config");
    let running = slot.start().await.expect("Switchboard starts");
    let admin_room = root
        .join_invite(WAIT)
        .await
        .expect("root is invited to the admin room");
    Console {
        slot,
        synapse,
        running,
        root,
        room: admin_room,
        _token_dir: token_dir,
    }
}

impl Console {
    /// Sends `command` as `user` in `room` and returns the bot's answer to it.
    async fn ask_in(&self, user: &MatrixUser, room: &str, command: &str) -> Value {
        let sent = user.send_text(room, command).await.expect("sent");
        let bot = self.slot.bot();
        user.wait_for_event(room, WAIT, |e| {
            e["sender"] == bot.as_str()
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == sent.as_str()
        })
        .await
        .unwrap_or_else(|e| panic!("no answer to {command:?}: {e}"))
    }

    /// A direct chat root starts with carol of the loopback network, once her puppet joined.
    async fn chat_with_carol(&self) -> (&'static str, String) {
        let carol = "@_loopback_carol:localhost";
        let dm = self
            .root
            .create_room(json!({ "is_direct": true, "invite": [carol] }))
            .await
            .expect("a chat with carol");
        self.root
            .wait_for_event(&dm, WAIT, |e| {
                e["state_key"] == carol && e["content"]["membership"] == "join"
            })
            .await
            .expect("carol's puppet joins");
        (carol, dm)
    }

    /// Root's command in the admin room; the answer's text.
    async fn ask(&self, command: &str) -> String {
        body(&self.ask_in(&self.root, &self.room, command).await)
    }
}

fn body(event: &Value) -> String {
    event["content"]["body"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Root creates a user who can then log in, resets the password, deactivates the user after
/// confirming with a reaction; the typed passwords leave the room; the audit log and the
/// room's audit lines show each action without the passwords.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_users_from_the_admin_room() {
    let c = console("adminusers").await;
    let created = c
        .ask("!admin users create dave --password first-Secret1 --displayname Dave")
        .await;
    assert_eq!(created, "@dave:localhost is created.");
    let dave = c
        .synapse
        .login("dave", "first-Secret1")
        .await
        .expect("dave logs in");
    assert_eq!(dave.user_id, "@dave:localhost");
    let again = c.ask("!admin users create dave").await;
    assert!(again.contains("exists already"), "{again}");

    let reset = c
        .ask("!admin users reset-password dave --password second-Secret2")
        .await;
    assert_eq!(reset, "The password of @dave:localhost is changed.");
    assert!(c.synapse.login("dave", "first-Secret1").await.is_err());
    c.synapse
        .login("dave", "second-Secret2")
        .await
        .expect("the new password works");

    let question = c
        .ask_in(&c.root, &c.room, "!admin users deactivate dave")
        .await;
    assert!(body(&question).contains("React ✅"), "{question}");
    let asked = question["event_id"].as_str().expect("question id");
    let command = question["content"]["m.relates_to"]["m.in_reply_to"]["event_id"]
        .as_str()
        .expect("command id")
        .to_owned();
    assert!(
        c.synapse.login("dave", "second-Secret2").await.is_ok(),
        "nothing happens before the confirmation"
    );
    c.root
        .send_event(
            &c.room,
            "m.reaction",
            &json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": asked, "key": "✅" } }),
        )
        .await
        .expect("reacted");
    let bot = c.slot.bot();
    let done = c
        .root
        .wait_for_event(&c.room, WAIT, |e| {
            e["sender"] == bot.as_str()
                && e["content"]["body"] == "@dave:localhost is deactivated."
                && e["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == command.as_str()
        })
        .await;
    done.expect("deactivated once confirmed");
    assert!(c.synapse.login("dave", "second-Secret2").await.is_err());

    let timeline = c.root.messages(&c.room, 100).await.expect("timeline");
    let texts: Vec<String> = timeline.iter().map(body).collect();
    assert!(
        texts
            .iter()
            .all(|t| !t.contains("first-Secret1") && !t.contains("second-Secret2")),
        "the typed passwords were removed: {texts:?}"
    );
    assert!(
        texts.iter().any(|t| t
            == "📝 @root:localhost ran `users create dave --password <hidden> --displayname Dave`: done"),
        "{texts:?}"
    );
    let audit = c.ask("!admin audit --limit 3").await;
    assert!(audit.contains("users deactivate dave"), "{audit}");
    assert!(
        audit.contains("users reset-password dave --password <hidden>"),
        "{audit}"
    );
    assert!(!audit.contains("second-Secret2"), "{audit}");
    c.running.stop().await.expect("clean stop");
}

/// Rooms are listed; wrong arguments get clap's explanation; `--help` works at every level;
/// someone who is not an admin is refused, and commands outside the admin room point to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_lists_rooms_explains_mistakes_and_refuses_others() {
    let c = console("adminrooms").await;
    let alice = c
        .synapse
        .register_user("alice", false)
        .await
        .expect("alice");
    let garden = alice
        .create_room(json!({ "name": "Alice's garden", "invite": [c.slot.bot()] }))
        .await
        .expect("alice's room");
    let rooms = c.ask("!admin rooms list").await;
    assert!(
        rooms.contains(&garden) && rooms.contains("Alice's garden"),
        "{rooms}"
    );
    let show = c.ask(&format!("!admin rooms show {garden}")).await;
    assert!(show.contains("Alice's garden"), "{show}");

    let missing = c.ask("!admin users create").await;
    assert!(
        missing.contains("<USER>"),
        "names the missing argument: {missing}"
    );
    let help = c.ask("!admin users --help").await;
    assert!(help.contains("reset-password"), "{help}");
    let status = c.ask("!admin status").await;
    assert!(status.contains("inbox depth"), "{status}");

    // Alice shares a room with the bot, but is not an admin.
    let bot = c.slot.bot();
    alice
        .wait_for_event(&garden, WAIT, |e| {
            e["state_key"] == bot.as_str() && e["content"]["membership"] == "join"
        })
        .await
        .expect("the bot joins alice's room");
    let refused = body(&c.ask_in(&alice, &garden, "!admin users list").await);
    assert!(
        refused.contains("admin"),
        "refused for her level: {refused}"
    );
    c.root.join(&garden).await.expect_err("private room");
    alice
        .invite(&garden, &c.root.user_id)
        .await
        .expect("root invited");
    c.root.join(&garden).await.expect("root joins");
    let elsewhere = body(&c.ask_in(&c.root, &garden, "!admin users list").await);
    assert!(
        elsewhere.contains(&c.room),
        "points at the admin room: {elsewhere}"
    );
    let path = format!("/profile/{}", encode("@dave:localhost"));
    assert!(c.root.get(&path).await.is_err(), "nothing was created");
    c.running.stop().await.expect("clean stop");
}

/// Switchboard's own commands: the plug-ins with the bridge's state, a portal started from
/// Matrix and its puppet, and unbridging that portal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboards_own_commands_show_plugins_portals_and_puppets() {
    let c = console_with("adminown", "bridges:\n  loopback:\n    enabled: true\n").await;
    let plugins = c.ask("!admin plugins list").await;
    for expected in [
        "echo",
        "admin",
        "loopback",
        "bridge to Loopback",
        "connected",
    ] {
        assert!(plugins.contains(expected), "{expected}: {plugins}");
    }
    let (carol, dm) = c.chat_with_carol().await;
    let portals = c.ask("!admin portals list --bridge loopback").await;
    assert!(
        portals.contains(&dm) && portals.contains("dm-carol"),
        "{portals}"
    );
    assert!(
        portals.contains("lobby"),
        "the shared portal too: {portals}"
    );
    let puppets = c.ask("!admin puppets list").await;
    assert!(puppets.contains(carol), "{puppets}");
    let shown = c.ask(&format!("!admin puppets show {carol}")).await;
    assert!(shown.contains("Loopback carol"), "{shown}");
    let unbridged = c.ask(&format!("!admin portals unbridge {dm}")).await;
    assert!(
        unbridged.contains("no longer bridged to dm-carol"),
        "{unbridged}"
    );
    let gone = c.ask(&format!("!admin portals show {dm}")).await;
    assert!(gone.contains("is not a portal room"), "{gone}");
    c.running.stop().await.expect("clean stop");
}

/// `doctor` runs the health checks; plug-ins are turned off and on (a bot then misses what
/// came meanwhile, a bridge delivers it from its outbox); `config reload` applies the admin
/// bot's new settings, names what needs a restart, and refuses wrong settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_plugin_switches_and_config_reload() {
    let c = console_with("adminops", "bridges:\n  loopback:\n    enabled: true\n").await;
    let doctor = c.ask("!admin doctor").await;
    let database = if crate::common::switchboard_instance::on_postgres() {
        "database (postgres) answers"
    } else {
        "database (sqlite) answers"
    };
    for expected in ["matches the config", database, "reaches Switchboard"] {
        assert!(doctor.contains(expected), "{expected}: {doctor}");
    }
    assert!(!doctor.contains("fail"), "{doctor}");

    let off = c.ask("!admin plugins disable echo").await;
    assert!(off.contains("echo is off"), "{off}");
    c.root.send_text(&c.room, "ping 1").await.expect("sent");
    c.ask("!admin plugins enable echo").await;
    let bot = c.slot.bot();
    let refused = c.ask("!admin plugins disable admin").await;
    assert!(refused.contains("cannot turn itself off"), "{refused}");

    let (carol, dm) = c.chat_with_carol().await;
    c.ask("!admin plugins disable loopback").await;
    let list = c.ask("!admin plugins list").await;
    assert!(
        list.lines()
            .any(|l| l.starts_with("loopback") && l.contains(" off ")),
        "{list}"
    );
    c.root.send_text(&dm, "while off").await.expect("sent");
    c.ask("!admin plugins enable loopback").await;
    c.root
        .wait_for_event(&dm, WAIT, |e| {
            e["sender"] == carol && e["content"]["body"] == "echo: while off"
        })
        .await
        .expect("delivered from the outbox once the bridge is on");
    c.root.send_text(&c.room, "ping 2").await.expect("sent");
    c.root
        .wait_for_event(&c.room, WAIT, |e| {
            e["sender"] == bot.as_str() && e["content"]["body"] == "pong 2"
        })
        .await
        .expect("echo answers again");
    let timeline = c.root.messages(&c.room, 100).await.expect("timeline");
    assert!(
        !timeline.iter().any(|e| body(e) == "pong 1"),
        "echo was off for ping 1"
    );

    let config = std::fs::read_to_string(&c.slot.config_path).expect("config");
    let quicker = config.replace("    admins:", "    confirm_secs: 5\n    admins:");
    let quicker = quicker.replace("filter: warn,", "filter: info,");
    std::fs::write(&c.slot.config_path, &quicker).expect("config");
    let reloaded = c.ask("!admin config reload").await;
    assert!(reloaded.contains("`bots.admin` reloaded"), "{reloaded}");
    assert!(
        reloaded.contains("`logging` changed; it takes effect at the next restart"),
        "{reloaded}"
    );
    let question = c.ask("!admin users deactivate nobody").await;
    assert!(
        question.contains("within 5 s"),
        "the new setting applies: {question}"
    );
    std::fs::write(
        &c.slot.config_path,
        quicker.replace("confirm_secs: 5", "confirm_secs: soon"),
    )
    .expect("config");
    let wrong = c.ask("!admin config reload").await;
    assert!(
        wrong.contains("bots.admin.confirm_secs") && wrong.contains("not applied"),
        "{wrong}"
    );
    c.running.stop().await.expect("clean stop");
}

/// The other homeserver commands against the real Admin API: registration tokens, locking,
/// admin rights, sessions, force-join, blocking rooms, event reports and quarantined media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_locks_reports_and_media_through_the_admin_api() {
    let c = console("adminmore").await;
    let created = c
        .ask("!admin tokens create --token garden-key --uses 2")
        .await;
    assert_eq!(created, "New registration token: garden-key");
    let tokens = c.ask("!admin tokens list").await;
    assert!(tokens.contains("garden-key"), "{tokens}");
    c.ask("!admin tokens delete garden-key").await;
    assert!(!c.ask("!admin tokens list").await.contains("garden-key"));

    let erin = c
        .synapse
        .register_user_with_password("erin", "erin-Secret1", false)
        .await
        .expect("erin");
    assert_eq!(
        c.ask("!admin users lock erin").await,
        "@erin:localhost is locked."
    );
    assert!(
        c.synapse.login("erin", "erin-Secret1").await.is_err(),
        "locked out"
    );
    c.ask("!admin users unlock erin").await;
    c.synapse
        .login("erin", "erin-Secret1")
        .await
        .expect("unlocked");
    c.ask("!admin users make-admin erin").await;
    let shown = c.ask("!admin users show erin").await;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("admin") && l.contains("true")),
        "{shown}"
    );
    let sessions = c.ask("!admin users sessions erin").await;
    assert!(
        sessions.contains("Sessions of @erin:localhost"),
        "{sessions}"
    );

    let public = erin
        .create_room(json!({ "preset": "public_chat", "name": "Erin's hall" }))
        .await
        .expect("erin's room");
    let joined = c
        .ask(&format!("!admin users force-join root {public}"))
        .await;
    assert_eq!(joined, format!("@root:localhost joined {public}."));
    let members = c.ask(&format!("!admin rooms members {public}")).await;
    assert!(members.contains("@root:localhost"), "{members}");
    assert!(
        c.ask(&format!("!admin rooms block {public}"))
            .await
            .ends_with("is blocked.")
    );
    c.ask(&format!("!admin rooms unblock {public}")).await;

    reports_and_media(&c, &erin, &public).await;
    c.running.stop().await.expect("clean stop");
}

/// Erin's message reported, listed, shown and resolved; her file quarantined; erin suspended
/// (or the homeserver says plainly that it cannot).
async fn reports_and_media(c: &Console, erin: &MatrixUser, public: &str) {
    let reported = erin
        .send_text(public, "something rude")
        .await
        .expect("sent");
    c.root
        .post(
            &format!("/rooms/{}/report/{}", encode(public), encode(&reported)),
            &json!({ "reason": "rude" }),
        )
        .await
        .expect("reported");
    let reports = c.ask("!admin reports list").await;
    assert!(
        reports.contains("rude") && reports.contains(public),
        "{reports}"
    );
    let id = reports
        .lines()
        .find(|l| l.contains("rude"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a report id")
        .to_owned();
    let report = c.ask(&format!("!admin reports show {id}")).await;
    assert!(report.contains("something rude"), "{report}");
    c.ask(&format!("!admin reports resolve {id}")).await;
    assert!(c.ask("!admin reports list").await.contains("No reports."));

    let mxc = erin
        .upload(b"not nice".to_vec(), "text/plain", "rude.txt")
        .await
        .expect("uploaded");
    assert!(
        c.ask(&format!("!admin media quarantine {mxc}"))
            .await
            .ends_with("is quarantined.")
    );
    assert!(
        erin.download(&mxc).await.is_err(),
        "quarantined media cannot be downloaded"
    );
    let suspended = c.ask("!admin users suspend erin").await;
    assert!(
        suspended == "@erin:localhost is suspended." || suspended.contains("does not offer"),
        "either done or said plainly: {suspended}"
    );
}
