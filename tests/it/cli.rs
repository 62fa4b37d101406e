//! The `switchboard` command as an operator uses it: generate-registration, doctor, run with
//! drift warnings and SIGTERM, and the demo.

use std::time::Duration;

use crate::common::Synapse;
use crate::common::switchboard_instance::{BINARY, Slot};
use switchboard_registration::Registration;

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BINARY)
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn generate_registration_keeps_tokens_when_run_again() {
    let slot = Slot::new("regen").expect("slot");
    let first = slot.registration.clone();
    let out = run(&[
        "generate-registration",
        "-c",
        slot.config_path.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tokens kept"));
    let second = Registration::load(&slot.registration_path()).expect("valid");
    assert_eq!(
        (first.as_token, first.hs_token),
        (second.as_token, second.hs_token)
    );
    assert_eq!(second.sender_localpart, "bot_regen");
    assert_eq!(
        second.namespaces.users[0].regex,
        "@_echo_regen_.*:localhost"
    );
    assert_eq!(second.rate_limited, Some(false));
    assert!(second.receive_ephemeral);
}

/// `--double-puppet FILE` writes a URL-less registration covering the server's users, keeps its
/// tokens when run again, and never prints the token.
#[test]
fn generate_registration_writes_the_double_puppet_registration() {
    let slot = Slot::new("dpreg").expect("slot");
    let file = slot.config_path.with_file_name("doublepuppet.yaml");
    let generate = || {
        let out = run(&[
            "generate-registration",
            "-c",
            slot.config_path.to_str().expect("utf-8 path"),
            "--double-puppet",
            file.to_str().expect("utf-8 path"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = generate();
    let first = Registration::load(&file).expect("valid");
    assert_eq!(first.url, None);
    assert_eq!(first.namespaces.users.len(), 1);
    assert_eq!(first.namespaces.users[0].regex, "@.*:localhost");
    assert!(!first.namespaces.users[0].exclusive);
    assert!(
        said.contains("double_puppet:") && said.contains("localhost"),
        "{said}"
    );
    assert!(!said.contains(&first.as_token), "the token is not printed");
    assert!(generate().contains("tokens kept"));
    let second = Registration::load(&file).expect("valid");
    assert_eq!(first.as_token, second.as_token);
}

#[test]
fn every_command_has_help() {
    for command in [
        &["--help"][..],
        &["run", "--help"],
        &["generate-registration", "--help"],
        &["doctor", "--help"],
        &["demo", "--help"],
    ] {
        let out = run(command);
        assert!(out.status.success(), "{command:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage:"),
            "{command:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_a_real_homeserver_and_run_warns_about_drift_and_stops_on_sigterm() {
    let slot = Slot::new("doctor").expect("slot");
    // The operator keeps the registration by hand: ephemeral events turned off, and without
    // the MSC2409 key older homeservers read.
    let path = slot.registration_path();
    let text = std::fs::read_to_string(&path).expect("registration");
    assert!(text.contains("de.sorunome.msc2409.push_ephemeral: true\n"));
    std::fs::write(
        &path,
        text.replace("receive_ephemeral: true", "receive_ephemeral: false")
            .replace("de.sorunome.msc2409.push_ephemeral: true\n", ""),
    )
    .expect("write");
    let synapse = Synapse::start(std::slice::from_ref(&path))
        .await
        .expect("Synapse");
    slot.point_at(&synapse.base_url()).expect("config");

    let out = run(&[
        "doctor",
        "-c",
        slot.config_path.to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("warn  registration receive_ephemeral"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warn  registration de.sorunome.msc2409.push_ephemeral"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the homeserver accepts the as_token"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the homeserver reaches Switchboard"),
        "{stdout}"
    );

    let child = slot.spawn_process().await.expect("runs");
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stops within 20 s")
        .expect("exit status");
    assert!(exit.status.success(), "graceful exit");
    let log = slot.process_log();
    assert!(
        log.contains("typing notifications and read receipts will never arrive"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains(&slot.registration.as_token) && !log.contains(&slot.registration.hs_token)
    );
}

#[test]
fn the_demo_answers_ping_hello() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(&[
        "demo",
        "--once",
        "--dir",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("replied: pong hello"), "{stdout}");
    assert!(
        stdout.contains("@_mqtt_kitchen:localhost said in \"MQTT demo\": 21.5 °C in the kitchen"),
        "the reading published on the embedded broker appears from the device's puppet: {stdout}"
    );
}
