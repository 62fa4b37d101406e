//! The admin console's command tree (clap): what `!admin <command> …` accepts, with `--help`
//! at every level. Each doc comment is the help text, and the operator reference in
//! `docs/admin-bot.md` is generated from this tree.

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Manage Switchboard and the homeserver from this room.
#[derive(Debug, Parser)]
#[command(
    name = "!admin",
    no_binary_name = true,
    disable_version_flag = true,
    disable_help_subcommand = true,
    color = clap::ColorChoice::Never
)]
pub struct Console {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Switchboard's health: version, uptime, inbox, last transaction, bridges.
    Status,
    /// A summary of Switchboard's key counters.
    Metrics,
    /// The latest commands run through this bot, with who ran them and how they ended.
    Audit {
        /// How many entries to show.
        #[arg(long, default_value_t = 10)]
        limit: i64,
    },
    /// Switchboard's plug-ins.
    #[command(subcommand)]
    Plugins(Plugins),
    /// The configuration file.
    #[command(subcommand)]
    Config(Config),
    /// Switchboard's health checks: registration, database, homeserver.
    Doctor,
    /// The bridges' portal rooms.
    #[command(subcommand)]
    Portals(Portals),
    /// The bridges' puppets (the users standing for people on other networks).
    #[command(subcommand)]
    Puppets(Puppets),
    /// Local users of the homeserver.
    #[command(subcommand)]
    Users(Users),
    /// Rooms on the homeserver.
    #[command(subcommand)]
    Rooms(Rooms),
    /// Media in the homeserver's store.
    #[command(subcommand)]
    Media(Media),
    /// Registration tokens.
    #[command(subcommand)]
    Tokens(Tokens),
    /// Event reports (content users reported).
    #[command(subcommand)]
    Reports(Reports),
}

/// `plugins …`
#[derive(Debug, Subcommand)]
pub enum Plugins {
    /// The bots and bridges, whether they run, and each bridge's connection to its network.
    List,
    /// Turn a plug-in on again.
    Enable {
        /// The plug-in's id (as in `plugins list`).
        id: String,
    },
    /// Turn a plug-in off until it is enabled again or Switchboard restarts: a bot sees no
    /// events; a bridge's Matrix messages wait in its outbox.
    Disable {
        /// The plug-in's id (as in `plugins list`).
        id: String,
    },
}

/// `config …`
#[derive(Debug, Subcommand)]
pub enum Config {
    /// Read the config file again: show what is wrong with it, or apply the plug-in settings
    /// that can change without a restart and name the rest.
    Reload,
}

/// `portals …`
#[derive(Debug, Subcommand)]
pub enum Portals {
    /// List portal rooms.
    List {
        /// Only this bridge's.
        #[arg(long)]
        bridge: Option<String>,
    },
    /// Show the portal a room is.
    Show(RoomArg),
    /// Stop bridging a room (the room stays; its message map and relay are forgotten).
    Unbridge(RoomArg),
}

/// `puppets …`
#[derive(Debug, Subcommand)]
pub enum Puppets {
    /// List puppets.
    List {
        /// Only this bridge's.
        #[arg(long)]
        bridge: Option<String>,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a puppet: its bridge, remote user and profile.
    Show {
        /// The puppet's user id.
        user: String,
    },
}

/// `users …`
#[derive(Debug, Subcommand)]
pub enum Users {
    /// List local users.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only users whose id or name contains this.
        #[arg(long)]
        search: Option<String>,
        /// Include deactivated users.
        #[arg(long)]
        deactivated: bool,
    },
    /// Show one user.
    Show(UserArg),
    /// Create a user (the password is generated and shown once unless given).
    Create {
        /// The user: a localpart (`bob`) or a user id.
        user: String,
        /// Their password; the command message is removed after use.
        #[arg(long)]
        password: Option<String>,
        /// Their display name.
        #[arg(long)]
        displayname: Option<String>,
        /// Make them a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password (generated and shown once unless given) and log out their devices.
    ResetPassword {
        /// The user: a localpart (`bob`) or a user id.
        user: String,
        /// The new password; the command message is removed after use.
        #[arg(long)]
        password: Option<String>,
        /// Keep their devices logged in.
        #[arg(long)]
        keep_devices: bool,
    },
    /// Deactivate a user for good (asks for confirmation).
    Deactivate {
        /// The user: a localpart (`bob`) or a user id.
        user: String,
        /// Also erase their messages for users who join later (GDPR erasure).
        #[arg(long)]
        erase: bool,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Suspend a user: they can read but not send (Synapse with MSC3823).
    Suspend(UserArg),
    /// Lift a suspension.
    Unsuspend(UserArg),
    /// Lock a user out: they cannot log in or use their sessions.
    Lock(UserArg),
    /// Unlock a locked user.
    Unlock(UserArg),
    /// Grant (or with --revoke, take away) server-admin rights.
    MakeAdmin {
        /// The user: a localpart (`bob`) or a user id.
        user: String,
        /// Take the rights away instead.
        #[arg(long)]
        revoke: bool,
    },
    /// The user's sessions: devices, addresses and when they were last seen.
    Sessions(UserArg),
    /// Join a local user to a room (by id or alias).
    ForceJoin {
        /// The user: a localpart (`bob`) or a user id.
        user: String,
        /// The room id or alias.
        room: String,
    },
}

/// A command's user argument.
#[derive(Args, Debug)]
pub struct UserArg {
    /// The user: a localpart (`bob`) or a user id.
    pub user: String,
}

/// A command's room argument.
#[derive(Args, Debug)]
pub struct RoomArg {
    /// The room id or alias.
    pub room: String,
}

/// `rooms …`
#[derive(Debug, Subcommand)]
pub enum Rooms {
    /// List rooms, largest first.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only rooms whose name, alias or id contains this.
        #[arg(long)]
        search: Option<String>,
    },
    /// Show one room.
    Show(RoomArg),
    /// The room's members.
    Members(RoomArg),
    /// Remove every local user from a room and delete it from the database (asks for
    /// confirmation).
    Delete {
        /// The room id or alias.
        room: String,
        /// Also block the room so nobody can join it again.
        #[arg(long)]
        block: bool,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Block a room: local users can no longer join it.
    Block(RoomArg),
    /// Unblock a room.
    Unblock(RoomArg),
    /// Give a local user the highest power level in a room (default: the first local admin).
    MakeAdmin {
        /// The room id or alias.
        room: String,
        /// The user to promote.
        #[arg(long)]
        user: Option<String>,
    },
}

/// `media …`
#[derive(Debug, Subcommand)]
pub enum Media {
    /// Quarantine a file: nobody can download it any more.
    Quarantine {
        /// The file's `mxc://server/id` URI.
        mxc: String,
    },
    /// Delete a local file (asks for confirmation).
    Delete {
        /// The file's `mxc://server/id` URI.
        mxc: String,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Delete cached copies of remote files not used for some days (asks for confirmation).
    PurgeRemote {
        /// Age in days of the files to purge.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Do it without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// `tokens …`
#[derive(Debug, Subcommand)]
pub enum Tokens {
    /// List registration tokens.
    List,
    /// Create a registration token.
    Create {
        /// How many registrations it allows (default: unlimited).
        #[arg(long)]
        uses: Option<u32>,
        /// Days until it expires (default: never).
        #[arg(long)]
        days: Option<u32>,
        /// The token itself (default: generated).
        #[arg(long)]
        token: Option<String>,
    },
    /// Delete a registration token.
    Delete {
        /// The token.
        token: String,
    },
}

/// `reports …`
#[derive(Debug, Subcommand)]
pub enum Reports {
    /// List the latest event reports.
    List {
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one report, with the reported event.
    Show {
        /// The report's number.
        id: u64,
    },
    /// Resolve (delete) a report.
    Resolve {
        /// The report's number.
        id: u64,
    },
}

impl Command {
    /// Whether it destroys something for good (asked to be confirmed unless `--yes`).
    #[must_use]
    pub fn needs_confirmation(&self) -> bool {
        match self {
            Self::Users(Users::Deactivate { yes, .. })
            | Self::Rooms(Rooms::Delete { yes, .. })
            | Self::Media(Media::Delete { yes, .. } | Media::PurgeRemote { yes, .. }) => !yes,
            _ => false,
        }
    }

    /// Whether it changes something (and is shown in the admin room's audit lines).
    #[must_use]
    pub fn changes_something(&self) -> bool {
        !matches!(
            self,
            Self::Status
                | Self::Metrics
                | Self::Audit { .. }
                | Self::Doctor
                | Self::Plugins(Plugins::List)
                | Self::Portals(Portals::List { .. } | Portals::Show(_))
                | Self::Puppets(_)
                | Self::Users(Users::List { .. } | Users::Show(_) | Users::Sessions(_))
                | Self::Rooms(Rooms::List { .. } | Rooms::Show(_) | Rooms::Members(_))
                | Self::Tokens(Tokens::List)
                | Self::Reports(Reports::List { .. } | Reports::Show { .. })
        )
    }

    /// Whether its message holds a secret (a password typed in), to be removed after use.
    #[must_use]
    pub fn holds_secret(&self) -> bool {
        matches!(
            self,
            Self::Users(
                Users::Create {
                    password: Some(_),
                    ..
                } | Users::ResetPassword {
                    password: Some(_),
                    ..
                }
            )
        )
    }
}

/// The top-level commands with their one-line help, for the framework's command list.
#[must_use]
pub fn top_level() -> Vec<(String, String)> {
    Console::command()
        .get_subcommands()
        .map(|c| {
            (
                c.get_name().to_owned(),
                c.get_about().map(ToString::to_string).unwrap_or_default(),
            )
        })
        .collect()
}

/// The command as typed, with the values of secret options replaced (for logs and the
/// audit log).
#[must_use]
pub fn without_secrets(words: &[String]) -> String {
    let mut out = Vec::with_capacity(words.len());
    let mut hide_next = false;
    for word in words {
        if hide_next {
            out.push("<hidden>".to_owned());
            hide_next = false;
        } else if word == "--password" {
            out.push(word.clone());
            hide_next = true;
        } else if let Some((flag, _)) = word.split_once('=')
            && flag == "--password"
        {
            out.push("--password=<hidden>".to_owned());
        } else {
            out.push(word.clone());
        }
    }
    out.join(" ")
}

/// The command reference in Markdown: every command with its usage and options, generated
/// from the tree (`docs/admin-bot.md` holds it; a test keeps it in sync).
#[must_use]
pub fn reference() -> String {
    let mut out = String::new();
    let mut console = Console::command();
    console.build();
    for command in console.get_subcommands() {
        describe(&mut out, command, "!admin");
    }
    format!("{}\n", out.trim_end())
}

fn describe(out: &mut String, command: &clap::Command, parent: &str) {
    use std::fmt::Write as _;
    let path = format!("{parent} {}", command.get_name());
    if command.has_subcommands() {
        for sub in command.get_subcommands() {
            describe(out, sub, &path);
        }
        return;
    }
    let about = command
        .get_about()
        .map(ToString::to_string)
        .unwrap_or_default();
    let usage: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_id() != "help")
        .map(|a| {
            let name = a.get_id().as_str();
            if a.is_positional() {
                format!("<{name}>")
            } else if a.get_num_args().is_some_and(|n| n.takes_values()) {
                format!("[--{} <{name}>]", a.get_long().unwrap_or(name))
            } else {
                format!("[--{}]", a.get_long().unwrap_or(name))
            }
        })
        .collect();
    let _ = writeln!(
        out,
        "### `{path}{}{}`\n",
        if usage.is_empty() { "" } else { " " },
        usage.join(" ")
    );
    let _ = writeln!(out, "{about}\n");
    for arg in command.get_arguments().filter(|a| a.get_id() != "help") {
        let name = arg.get_long().map_or_else(
            || format!("`<{}>`", arg.get_id()),
            |long| format!("`--{long}`"),
        );
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let default = arg
            .get_default_values()
            .first()
            .map(|d| format!(" (default {})", d.to_string_lossy()))
            .unwrap_or_default();
        let _ = writeln!(out, "- {name}: {help}{default}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Console, clap::Error> {
        Console::try_parse_from(line.split_whitespace())
    }

    #[test]
    fn the_tree_is_consistent() {
        Console::command().debug_assert();
    }

    #[test]
    fn destructive_commands_ask_unless_told_yes() {
        let deactivate = parse("users deactivate bob").expect("parses");
        assert!(deactivate.command.needs_confirmation());
        let confirmed = parse("users deactivate bob --yes").expect("parses");
        assert!(!confirmed.command.needs_confirmation());
        assert!(
            !parse("users list")
                .expect("parses")
                .command
                .needs_confirmation()
        );
        assert!(
            !parse("users list")
                .expect("parses")
                .command
                .changes_something()
        );
        assert!(
            parse("users lock bob")
                .expect("parses")
                .command
                .changes_something()
        );
    }

    #[test]
    fn a_typed_password_is_a_secret_and_hidden_in_the_audit() {
        let create = parse("users create bob --password hunter2").expect("parses");
        assert!(create.command.holds_secret());
        assert!(
            !parse("users create bob")
                .expect("parses")
                .command
                .holds_secret()
        );
        let words: Vec<String> = ["users", "create", "bob", "--password", "hunter2"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            without_secrets(&words),
            "users create bob --password <hidden>"
        );
        let inline = ["users", "reset-password", "bob", "--password=x"].map(String::from);
        assert_eq!(
            without_secrets(&inline),
            "users reset-password bob --password=<hidden>"
        );
    }

    #[test]
    fn wrong_arguments_say_what_is_expected() {
        let error = parse("users create").expect_err("no user").to_string();
        assert!(error.contains("<USER>"), "{error}");
        let error = parse("users frobnicate").expect_err("unknown").to_string();
        assert!(error.contains("frobnicate"), "{error}");
        let help = parse("users --help").expect_err("help").to_string();
        assert!(help.contains("reset-password"), "{help}");
    }

    #[test]
    fn the_reference_lists_every_leaf_command() {
        let reference = reference();
        assert!(
            reference.contains("### `!admin users create <user>"),
            "{reference}"
        );
        assert!(reference.contains("### `!admin status`"), "{reference}");
        assert!(reference.contains("`--password`"), "{reference}");
    }
}
