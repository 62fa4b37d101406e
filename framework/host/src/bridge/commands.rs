//! Chat commands of a bridge: `!<prefix> <command> [arguments]` in any room the bridge bot
//! is in (a portal or a direct chat with the bot). The framework answers the built-in ones —
//! `help` (generated from the definitions and the sender's permission level), `version`,
//! `ping`, `sync`, and for admins `bridge <chat id>` and `unbridge` — and hands the bridge's own to [`super::Bridge::handle_command`]. Every command has
//! a permission level; what a sender may not run, or types wrong, is answered with why.

use crate::command::{CommandSet, CommandSpec, help_command};
use crate::permission::PermissionLevel;

/// The built-in commands of bridges with logins.
fn login_commands() -> Vec<CommandSpec> {
    vec![
        CommandSpec::new("login", "Logs you in to the network with your own account")
            .args("[way]")
            .max_args(1),
        CommandSpec::new("cancel", "Stops the login you are in the middle of").max_args(0),
        CommandSpec::new("list-logins", "Lists your logins").max_args(0),
        CommandSpec::new("logout", "Logs one of your logins out")
            .args("[login id]")
            .max_args(1),
        CommandSpec::new(
            "use-login",
            "Sends your messages in this room through one of your logins",
        )
        .args("<login id>")
        .min_args(1)
        .max_args(1),
        CommandSpec::new(
            "set-relay",
            "Relays messages of users without a login through yours, in this room",
        )
        .max_args(0)
        .permission(PermissionLevel::Admin),
        CommandSpec::new("unset-relay", "Stops relaying in this room")
            .max_args(0)
            .permission(PermissionLevel::Admin),
    ]
}

/// The built-in commands every bridge has.
pub(crate) fn built_in() -> Vec<CommandSpec> {
    vec![
        help_command(),
        CommandSpec::new("version", "Shows which Switchboard runs this bridge")
            .max_args(0)
            .permission(PermissionLevel::Relay),
        CommandSpec::new(
            "ping",
            "Checks that the bridge is running and what it waits for",
        )
        .max_args(0)
        .permission(PermissionLevel::User),
        CommandSpec::new("sync", "Brings this portal up to date with its chat")
            .max_args(0)
            .permission(PermissionLevel::User),
        CommandSpec::new("bridge", "Bridges this room to a chat of the network")
            .args("<chat id>")
            .min_args(1)
            .max_args(1)
            .permission(PermissionLevel::Admin),
        CommandSpec::new("unbridge", "Stops bridging this room")
            .max_args(0)
            .permission(PermissionLevel::Admin),
    ]
}

/// A bridge's command set: the built-in commands and its own, under its prefix. A command of
/// the bridge named like a built-in one (or otherwise unusable) is left out, with a warning in
/// the log.
pub(crate) fn command_set(prefix: &str, has_logins: bool, own: Vec<CommandSpec>) -> CommandSet {
    let logins = if has_logins {
        login_commands()
    } else {
        Vec::new()
    };
    built_in()
        .into_iter()
        .chain(logins)
        .chain(own)
        .fold(CommandSet::new(prefix), CommandSet::with)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_ins_come_first_and_a_bridge_cannot_replace_them() {
        let set = command_set(
            "!lb",
            false,
            vec![CommandSpec::new("say", "Says something").min_args(1)],
        );
        let names: Vec<&str> = set.specs().iter().map(CommandSpec::name).collect();
        assert_eq!(
            names,
            [
                "help", "version", "ping", "sync", "bridge", "unbridge", "say"
            ]
        );
        let clash = command_set("!lb", false, vec![CommandSpec::new("ping", "Mine")]);
        assert_eq!(
            clash.find("ping").map(CommandSpec::summary),
            Some("Checks that the bridge is running and what it waits for")
        );
    }

    #[test]
    fn a_relay_user_sees_only_what_they_may_run() {
        let set = command_set("!lb", true, Vec::new());
        let help = set.help(PermissionLevel::Relay, false);
        assert!(help.contains("!lb help"), "{help}");
        assert!(!help.contains("ping"), "{help}");
    }
}
