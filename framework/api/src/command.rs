//! Chat commands that bridges and bots offer to Matrix users: definitions, parsing, help text
//! and the errors shown to users. Pure logic; the host decides where replies go.
//!
//! In a room shared with others a command is the set's prefix, whitespace, then the command
//! (`!lb ping`); in a management room (a DM with the bot) the prefix may be left out and every
//! non-empty message is treated as a command.
//!
//! ```
//! use switchboard_api::command::{CommandInvocation, CommandSet, CommandSpec};
//! use switchboard_api::permission::PermissionLevel;
//!
//! let commands = CommandSet::new("!lb")
//!     .with(CommandSpec::new("ping", "Checks that the bridge is running").alias("p"));
//! let parsed = commands.parse("!lb P now", false, PermissionLevel::User);
//! let expected =
//!     CommandInvocation { name: "ping".into(), args: vec!["now".into()], raw_args: "now".into() };
//! assert_eq!(parsed, Some(Ok(expected)));
//! assert_eq!(commands.parse("hello", false, PermissionLevel::User), None);
//! ```

use std::fmt::Write as _;

use crate::permission::PermissionLevel;

/// One command a plug-in offers. Names and aliases are stored and matched in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSpec {
    name: String,
    summary: String,
    aliases: Vec<String>,
    usage: String,
    min_args: usize,
    max_args: Option<usize>,
    permission: PermissionLevel,
}

impl CommandSpec {
    /// A command `name` described by `summary`; by default it takes any number of arguments and
    /// needs [`PermissionLevel::User`].
    #[must_use]
    pub fn new(name: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            name: name.into().to_lowercase(),
            summary: summary.into(),
            aliases: Vec::new(),
            usage: String::new(),
            min_args: 0,
            max_args: None,
            permission: PermissionLevel::User,
        }
    }

    /// Adds another name for the command; repeating its name or an alias is harmless.
    #[must_use]
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        let alias = alias.into().to_lowercase();
        if alias != self.name && !self.aliases.contains(&alias) {
            self.aliases.push(alias);
        }
        self
    }

    /// The arguments as shown in help and errors, e.g. `<chat id> [name]`.
    #[must_use]
    pub fn args(mut self, usage: impl Into<String>) -> Self {
        self.usage = usage.into();
        self
    }

    /// The fewest arguments the command accepts (default 0).
    #[must_use]
    pub fn min_args(mut self, count: usize) -> Self {
        self.min_args = count;
        self
    }

    /// The most arguments the command accepts (default: no limit).
    #[must_use]
    pub fn max_args(mut self, count: usize) -> Self {
        self.max_args = Some(count);
        self
    }

    /// The level a sender needs to run the command (default [`PermissionLevel::User`]).
    #[must_use]
    pub fn permission(mut self, level: PermissionLevel) -> Self {
        self.permission = level;
        self
    }

    /// The canonical name, in lower case.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The one-line description shown in help.
    #[must_use]
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The other names, in lower case.
    #[must_use]
    pub fn aliases(&self) -> &[String] {
        &self.aliases
    }

    /// The usage string for the arguments (empty when none was set).
    #[must_use]
    pub fn usage(&self) -> &str {
        &self.usage
    }

    /// The level a sender needs to run the command.
    #[must_use]
    pub fn required_level(&self) -> PermissionLevel {
        self.permission
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// `command` followed by the usage string, e.g. `!lb bridge <chat id>`.
    fn usage_line(&self, command: &str) -> String {
        [command, &self.usage].join(" ").trim_end().to_owned()
    }
}

/// A command definition the plug-in got wrong; see [`CommandSet::try_with`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandDefinitionError {
    /// Two commands share a name or alias (compared case-insensitively).
    #[error("command `{command}` cannot use the name `{name}`: command `{existing}` has it")]
    DuplicateName {
        /// The shared name.
        name: String,
        /// The command being added.
        command: String,
        /// The command that already had the name.
        existing: String,
    },
    /// A name is empty or has whitespace, or `min_args` is above `max_args`: it could never run.
    #[error("command `{command}` can never run: {problem}")]
    Unusable {
        /// The command being added.
        command: String,
        /// What is wrong.
        problem: String,
    },
}

/// Why a message addressed to the bot is not a runnable command; `Display` is the reply for
/// the sender. Commands are written as the sender would type them there (`!lb ping` or `ping`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The prefix was sent without a command.
    #[error("No command given. Send `{help}` to see the commands you can use.")]
    NoCommand {
        /// How to ask for help in this room.
        help: String,
    },
    /// No command has this name or alias.
    #[error("Unknown command `{word}`.{} Send `{help}` to see the commands you can use.",
        .suggestion.as_ref().map(|s| format!(" Did you mean `{s}`?")).unwrap_or_default())]
    UnknownCommand {
        /// The word as typed.
        word: String,
        /// The closest command the sender may run, if one is close enough.
        suggestion: Option<String>,
        /// How to ask for help in this room.
        help: String,
    },
    /// The sender's level is below the command's.
    #[error(
        "You cannot use `{command}`: it needs the {needed} permission level, yours is {level}."
    )]
    NotPermitted {
        /// The command.
        command: String,
        /// The level it needs.
        needed: PermissionLevel,
        /// The sender's level.
        level: PermissionLevel,
    },
    /// Too few or too many arguments.
    #[error("`{command}` takes {}, but you gave {given}. Usage: `{usage}`",
        describe_arg_count(*.min, *.max))]
    WrongArgumentCount {
        /// The command.
        command: String,
        /// The fewest arguments accepted.
        min: usize,
        /// The most arguments accepted, if limited.
        max: Option<usize>,
        /// How many were given.
        given: usize,
        /// The usage line, e.g. `!lb bridge <chat id>`.
        usage: String,
    },
    /// A quote was opened and never closed.
    #[error(
        "The {quote} quote is not closed. Close it, or put a backslash before it (\\{quote}) \
             to use it as a normal character."
    )]
    UnclosedQuote {
        /// The opening quote character.
        quote: char,
    },
}

fn describe_arg_count(min: usize, max: Option<usize>) -> String {
    let noun = |n: usize| if n == 1 { "argument" } else { "arguments" };
    match (min, max) {
        (_, Some(0)) => "no arguments".to_owned(),
        (min, Some(max)) if min == max => format!("exactly {min} {}", noun(min)),
        (0, Some(max)) => format!("at most {max} {}", noun(max)),
        (min, Some(max)) => format!("{min} to {max} arguments"),
        (min, None) => format!("at least {min} {}", noun(min)),
    }
}

/// A successfully parsed command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandInvocation {
    /// The canonical name of the command, even when it was typed as an alias.
    pub name: String,
    /// The arguments, split on whitespace with quotes and backslashes removed.
    pub args: Vec<String>,
    /// Everything after the command word as typed (trimmed), for commands taking free text.
    pub raw_args: String,
}

/// What a command answers the sender: plain text, and HTML for clients that show it. An empty
/// text sends nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandReply {
    /// The plain-text answer (also the fallback of `html`).
    pub text: String,
    /// The same answer as HTML (Matrix's allowed subset), if it has one.
    pub html: Option<String>,
}

impl CommandReply {
    /// No answer at all (the plug-in answered some other way, e.g. with a question).
    #[must_use]
    pub fn none() -> Self {
        Self {
            text: String::new(),
            html: None,
        }
    }

    /// An answer with HTML (tables, code blocks…) and its plain-text fallback.
    #[must_use]
    pub fn html(text: impl Into<String>, html: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            html: Some(html.into()),
        }
    }
}

impl From<String> for CommandReply {
    fn from(text: String) -> Self {
        Self { text, html: None }
    }
}

impl From<&str> for CommandReply {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

/// Whether a message's raw content could hold a command (a string starting with `!`): a cheap
/// test that keeps the command parser off the path of ordinary messages.
#[must_use]
pub fn may_hold_command(raw_content: &str) -> bool {
    raw_content.contains("\"!")
}

/// A table in a command's answer: aligned columns in the plain text, a `<table>` in the HTML.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    #[must_use]
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (cells beyond the headers are dropped, missing ones left empty).
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// How many rows it has.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it has no rows.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The answer: `title`, then the table (or `empty` when it has no rows).
    #[must_use]
    pub fn reply(&self, title: &str, empty: &str) -> CommandReply {
        if self.rows.is_empty() {
            return CommandReply::html(
                format!("{title}\n{empty}"),
                format!("<p>{}</p><p>{}</p>", escape_html(title), escape_html(empty)),
            );
        }
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                std::iter::once(&self.headers[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut text = format!("{title}\n{}", line(&self.headers));
        let mut html = format!("<p>{}</p><table><thead><tr>", escape_html(title));
        for header in &self.headers {
            let _ = write!(html, "<th>{}</th>", escape_html(header));
        }
        html.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            text.push('\n');
            text.push_str(&line(row));
            html.push_str("<tr>");
            for cell in row {
                let _ = write!(html, "<td>{}</td>", escape_html(cell));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        CommandReply::html(text, html)
    }
}

/// The `help` command every command set starts with; the host answers it from the set.
#[must_use]
pub fn help_command() -> CommandSpec {
    CommandSpec::new("help", "Shows the commands you can use")
        .alias("?")
        .max_args(0)
        .permission(PermissionLevel::Relay)
}

/// The commands of one plug-in under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSet {
    prefix: String,
    specs: Vec<CommandSpec>,
}

impl CommandSet {
    /// An empty set whose commands start with `prefix` (e.g. `!lb`; surrounding whitespace is
    /// dropped) outside management rooms. The prefix matches ASCII-case-insensitively; an empty
    /// prefix makes every message in every room a command.
    #[must_use]
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into().trim().to_owned(),
            specs: Vec::new(),
        }
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds `spec`, or says why it is a bug in the plug-in: a name or alias already taken, an
    /// empty or multi-word name, or `min_args` above `max_args`. Prefer this in plug-ins.
    pub fn try_with(mut self, spec: CommandSpec) -> Result<Self, CommandDefinitionError> {
        self.check(&spec)?;
        self.specs.push(spec);
        Ok(self)
    }

    /// Adds `spec` like [`try_with`](Self::try_with), but a bad definition is dropped with a
    /// warning in the log, so the first definition of a name wins.
    #[must_use]
    pub fn with(mut self, spec: CommandSpec) -> Self {
        match self.check(&spec) {
            Ok(()) => self.specs.push(spec),
            Err(error) => tracing::warn!(%error, "ignoring a command definition"),
        }
        self
    }

    fn check(&self, spec: &CommandSpec) -> Result<(), CommandDefinitionError> {
        let unusable = |problem: String| {
            let command = spec.name.clone();
            Err(CommandDefinitionError::Unusable { command, problem })
        };
        if let Some(max) = spec.max_args.filter(|max| *max < spec.min_args) {
            return unusable(format!(
                "it needs at least {} arguments but takes at most {max}",
                spec.min_args
            ));
        }
        for name in spec.names() {
            if name.is_empty() || name.contains(char::is_whitespace) {
                return unusable(format!("the name `{name}` is not one word"));
            }
            if let Some(existing) = self.find(name) {
                return Err(CommandDefinitionError::DuplicateName {
                    name: name.to_owned(),
                    command: spec.name.clone(),
                    existing: existing.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The commands, in the order they were added.
    #[must_use]
    pub fn specs(&self) -> &[CommandSpec] {
        &self.specs
    }

    /// The command with this name or alias (case-insensitive).
    #[must_use]
    pub fn find(&self, word: &str) -> Option<&CommandSpec> {
        let word = word.to_lowercase();
        self.specs
            .iter()
            .find(|spec| spec.names().any(|name| name == word))
    }

    /// Reads a message body: `None` when it is not addressed to the bot (an ordinary message),
    /// otherwise the command or the error to show the sender. Checks, in order: the command
    /// exists, the sender may run it, the quoting, the number of arguments.
    #[must_use]
    pub fn parse(
        &self,
        body: &str,
        in_management_room: bool,
        sender_level: PermissionLevel,
    ) -> Option<Result<CommandInvocation, CommandError>> {
        let text = body.trim();
        if text.is_empty() {
            return None;
        }
        let rest = match self.strip_prefix(text) {
            Some(rest) => rest.trim_start(),
            None if in_management_room => text,
            None => return None,
        };
        Some(self.resolve(rest, in_management_room, sender_level))
    }

    fn resolve(
        &self,
        text: &str,
        in_management_room: bool,
        level: PermissionLevel,
    ) -> Result<CommandInvocation, CommandError> {
        let shown = |name: &str| self.shown(name, in_management_room);
        let (word, raw_args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        if word.is_empty() {
            return Err(CommandError::NoCommand {
                help: shown("help"),
            });
        }
        let Some(spec) = self.find(word) else {
            let suggestion = self.suggest(word, level).map(shown);
            return Err(CommandError::UnknownCommand {
                word: word.to_owned(),
                suggestion,
                help: shown("help"),
            });
        };
        let command = shown(&spec.name);
        if level < spec.permission {
            return Err(CommandError::NotPermitted {
                command,
                needed: spec.permission,
                level,
            });
        }
        let raw_args = raw_args.trim_start();
        let args = split_args(raw_args)?;
        let (min, max, given) = (spec.min_args, spec.max_args, args.len());
        if given < min || max.is_some_and(|max| given > max) {
            let usage = spec.usage_line(&command);
            return Err(CommandError::WrongArgumentCount {
                command,
                min,
                max,
                given,
                usage,
            });
        }
        Ok(CommandInvocation {
            name: spec.name.clone(),
            args,
            raw_args: raw_args.to_owned(),
        })
    }

    /// Plain-text help: a line `prefix name usage — summary (aliases: …)` for each command the
    /// `level` may run, sorted by name; the prefix is left out in management rooms.
    #[must_use]
    pub fn help(&self, level: PermissionLevel, in_management_room: bool) -> String {
        let mut text = String::new();
        for (spec, line) in self.help_entries(level, in_management_room) {
            let _ = write!(text, "{line} — {}", spec.summary);
            if !spec.aliases.is_empty() {
                let _ = write!(text, " (aliases: {})", spec.aliases.join(", "));
            }
            text.push('\n');
        }
        let text = text.trim_end();
        if text.is_empty() {
            NO_COMMANDS.to_owned()
        } else {
            text.to_owned()
        }
    }

    /// The listing of [`help`](Self::help) as an HTML list, for a message's `formatted_body`.
    #[must_use]
    pub fn help_html(&self, level: PermissionLevel, in_management_room: bool) -> String {
        let mut html = String::new();
        for (spec, line) in self.help_entries(level, in_management_room) {
            let (line, summary) = (escape_html(&line), escape_html(&spec.summary));
            let _ = write!(html, "<li><code>{line}</code> — {summary}");
            if !spec.aliases.is_empty() {
                let aliases: Vec<String> = spec.aliases.iter().map(|a| escape_html(a)).collect();
                let _ = write!(
                    html,
                    " (aliases: <code>{}</code>)",
                    aliases.join("</code>, <code>")
                );
            }
            html.push_str("</li>");
        }
        if html.is_empty() {
            format!("<p>{NO_COMMANDS}</p>")
        } else {
            format!("<ul>{html}</ul>")
        }
    }

    /// The commands `level` may run, sorted by name, each with its usage line.
    fn help_entries(
        &self,
        level: PermissionLevel,
        in_management_room: bool,
    ) -> Vec<(&CommandSpec, String)> {
        let mut entries: Vec<_> = self
            .specs
            .iter()
            .filter(|spec| level >= spec.permission)
            .map(|spec| {
                (
                    spec,
                    spec.usage_line(&self.shown(&spec.name, in_management_room)),
                )
            })
            .collect();
        entries.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        entries
    }

    /// The text after the prefix, if `text` starts with the prefix and then whitespace.
    fn strip_prefix<'a>(&self, text: &'a str) -> Option<&'a str> {
        let head = text.get(..self.prefix.len())?;
        let rest = text.get(self.prefix.len()..)?;
        let separated =
            self.prefix.is_empty() || rest.is_empty() || rest.starts_with(char::is_whitespace);
        (head.eq_ignore_ascii_case(&self.prefix) && separated).then_some(rest)
    }

    /// The command as the sender would type it in this kind of room.
    fn shown(&self, command: &str, in_management_room: bool) -> String {
        if in_management_room {
            command.to_owned()
        } else {
            format!("{} {command}", self.prefix).trim_start().to_owned()
        }
    }

    /// The closest command the sender may run: its name or an alias is at most 2 edits away,
    /// and fewer edits than the shorter word has characters (so `hi` does not suggest `p`).
    fn suggest(&self, word: &str, level: PermissionLevel) -> Option<&str> {
        let word = word.to_lowercase();
        let length = word.chars().count();
        self.specs
            .iter()
            .filter(|spec| level >= spec.permission)
            .flat_map(|spec| spec.names().map(move |name| (spec.name.as_str(), name)))
            .map(|(canonical, name)| (edit_distance(&word, name), canonical, name))
            .filter(|(edits, _, name)| *edits <= 2 && *edits < length.min(name.chars().count()))
            .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
            .map(|(_, canonical, _)| canonical)
    }
}

const NO_COMMANDS: &str = "There are no commands you can use.";

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Levenshtein distance between two words, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Splits arguments on whitespace. `"…"` and `'…'` (and the typographic `“…”`, `‘…’` phone
/// keyboards insert) group words, adjacent pieces join (`a"b c"` is `ab c`), and a backslash
/// takes the next character literally, inside quotes too. A lone `’` is an apostrophe.
fn split_args(input: &str) -> Result<Vec<String>, CommandError> {
    let (mut args, mut current, mut in_arg) = (Vec::new(), String::new(), false);
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if std::mem::take(&mut in_arg) {
                    args.push(std::mem::take(&mut current));
                }
                continue;
            }
            '\\' => current.push(chars.next().unwrap_or('\\')),
            '"' | '\'' | '“' | '‘' => loop {
                match chars.next() {
                    None => return Err(CommandError::UnclosedQuote { quote: c }),
                    Some('\\') => current.push(chars.next().unwrap_or('\\')),
                    Some(close) if closes(c, close) => break,
                    Some(other) => current.push(other),
                }
            },
            c => current.push(c),
        }
        in_arg = true;
    }
    if in_arg {
        args.push(current);
    }
    Ok(args)
}

fn closes(open: char, close: char) -> bool {
    match open {
        '“' => matches!(close, '”' | '"'),
        '‘' => matches!(close, '’' | '\''),
        _ => close == open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PermissionLevel::{Admin, Relay, User};

    #[test]
    fn tables_align_their_columns_and_escape_their_html() {
        let mut table = Table::new(&["user", "admin"]);
        assert!(table.is_empty());
        table.row(["@a:x", "yes"]);
        table.row(["@longer<b>:x"]);
        assert_eq!(table.len(), 2);
        let reply = table.reply("Users", "none");
        assert_eq!(
            reply.text,
            "Users\nuser          admin\n@a:x          yes\n@longer<b>:x"
        );
        let html = reply.html.expect("html");
        assert!(html.contains("<th>user</th><th>admin</th>"), "{html}");
        assert!(
            html.contains("<td>@longer&lt;b&gt;:x</td><td></td>"),
            "{html}"
        );
        let empty = Table::new(&["user"]).reply("Users", "No users.");
        assert_eq!(empty.text, "Users\nNo users.");
    }

    #[test]
    fn only_contents_with_a_string_starting_with_a_bang_may_hold_commands() {
        assert!(may_hold_command(
            r#"{"body":"!lb help","msgtype":"m.text"}"#
        ));
        assert!(!may_hold_command(r#"{"body":"ping 1","msgtype":"m.text"}"#));
    }

    fn lb() -> CommandSet {
        CommandSet::new("!lb")
            .with(CommandSpec::new("help", "Shows the commands you can use").permission(Relay))
            .with(CommandSpec::new("ping", "Checks that the bridge is running").alias("p"))
            .with(
                CommandSpec::new("bridge", "Bridges this room to a remote chat")
                    .args("<chat id>")
                    .min_args(1)
                    .max_args(1)
                    .permission(Admin),
            )
    }

    fn ok(body: &str, management: bool) -> CommandInvocation {
        lb().parse(body, management, Admin)
            .expect("a command")
            .expect("valid")
    }

    fn err(body: &str, management: bool, level: PermissionLevel) -> String {
        let parsed = lb().parse(body, management, level).expect("a command");
        parsed.expect_err("an error").to_string()
    }

    fn args(input: &str) -> Vec<String> {
        split_args(input).expect("valid quoting")
    }

    #[test]
    fn prefixed_command_parses_with_canonical_name_and_args() {
        let invocation = ok("  !lb bridge  123  ", false);
        assert_eq!(
            (invocation.name.as_str(), invocation.args),
            ("bridge", vec!["123".to_owned()])
        );
        assert_eq!(ok("!lb\tp", false).name, "ping");
    }

    #[test]
    fn names_aliases_and_prefix_match_case_insensitively() {
        assert_eq!(ok("!LB PING", false).name, "ping");
        assert_eq!(ok("P", true).name, "ping");
        let set = CommandSet::new("!x").with(CommandSpec::new("Login", "Logs in"));
        assert_eq!(set.specs()[0].name(), "login");
        assert!(set.find("LOGIN").is_some());
    }

    #[test]
    fn ordinary_messages_outside_management_rooms_are_not_commands() {
        for body in ["ping", "hello !lb ping", "!lbping", "!lb-ping", "", "   "] {
            assert_eq!(lb().parse(body, false, Admin), None, "{body:?}");
        }
    }

    #[test]
    fn management_room_takes_commands_with_or_without_prefix_but_not_empty_bodies() {
        assert_eq!(ok("ping", true).name, "ping");
        assert_eq!(ok("!lb ping", true).name, "ping");
        assert_eq!(lb().parse(" \n ", true, Admin), None);
    }

    #[test]
    fn prefix_alone_asks_for_a_command() {
        let expected = "No command given. Send `!lb help` to see the commands you can use.";
        assert_eq!(err("!lb", false, User), expected);
    }

    #[test]
    fn unknown_command_suggests_a_close_command_and_help() {
        assert_eq!(
            err("!lb pnig", false, User),
            "Unknown command `pnig`. Did you mean `!lb ping`? Send `!lb help` to see the commands \
             you can use."
        );
        assert_eq!(
            err("hlep me", true, User),
            "Unknown command `hlep`. Did you mean `help`? Send `help` to see the commands you can use."
        );
    }

    #[test]
    fn unknown_command_without_a_close_match_only_mentions_help() {
        let expected = "Unknown command `thanks`. Send `help` to see the commands you can use.";
        assert_eq!(err("thanks a lot", true, User), expected);
        let short = "Unknown command `hi`. Send `help` to see the commands you can use.";
        assert_eq!(
            err("hi", true, User),
            short,
            "`p` is two edits away but shares nothing"
        );
        assert_eq!(
            err("!lbping", true, User),
            "Unknown command `!lbping`. Send `help` to see the commands you can use."
        );
    }

    #[test]
    fn suggestions_only_name_commands_the_sender_may_run() {
        let as_user = "Unknown command `brigde`. Send `help` to see the commands you can use.";
        assert_eq!(err("brigde", true, User), as_user);
        assert!(err("brigde", true, Admin).contains("Did you mean `bridge`?"));
    }

    #[test]
    fn command_above_the_sender_level_is_not_permitted_before_arguments_are_checked() {
        let expected =
            "You cannot use `!lb bridge`: it needs the admin permission level, yours is user.";
        assert_eq!(err("!lb bridge", false, User), expected);
        assert!(err("bridge 'unclosed", true, Relay).starts_with("You cannot use `bridge`"));
        assert_eq!(
            lb().parse("!lb help", false, Relay),
            Some(Ok(CommandInvocation {
                name: "help".into(),
                args: vec![],
                raw_args: String::new(),
            }))
        );
    }

    #[test]
    fn wrong_number_of_arguments_shows_the_usage_line() {
        assert_eq!(
            err("!lb bridge", false, Admin),
            "`!lb bridge` takes exactly 1 argument, but you gave 0. Usage: `!lb bridge <chat id>`"
        );
        assert_eq!(
            err("bridge a b", true, Admin),
            "`bridge` takes exactly 1 argument, but you gave 2. Usage: `bridge <chat id>`"
        );
        assert_eq!(ok("bridge 'a b'", true).args, vec!["a b".to_owned()]);
    }

    #[test]
    fn argument_counts_are_described_for_users() {
        assert_eq!(describe_arg_count(0, Some(0)), "no arguments");
        assert_eq!(describe_arg_count(2, Some(2)), "exactly 2 arguments");
        assert_eq!(describe_arg_count(0, Some(1)), "at most 1 argument");
        assert_eq!(describe_arg_count(1, Some(3)), "1 to 3 arguments");
        assert_eq!(describe_arg_count(1, None), "at least 1 argument");
    }

    #[test]
    fn spec_defaults_accept_any_arguments_at_user_level() {
        let spec = CommandSpec::new("say", "Says something");
        assert_eq!(
            (spec.min_args, spec.max_args, spec.required_level()),
            (0, None, User)
        );
        let set = CommandSet::new("!lb").with(spec);
        let invocation = set.parse("!lb say  hello   \"big world\"", false, User);
        let invocation = invocation.expect("a command").expect("valid");
        assert_eq!(invocation.args, ["hello", "big world"]);
        assert_eq!(invocation.raw_args, "hello   \"big world\"");
    }

    #[test]
    fn arguments_split_on_whitespace_with_quotes_and_backslashes() {
        assert_eq!(
            args(r#"a "b c" 'd e' f\ g \"h"#),
            ["a", "b c", "d e", "f g", "\"h"]
        );
        assert_eq!(args(r#"x"y z"w '' "it's""#), ["xy zw", "", "it's"]);
        assert_eq!(
            args(r#""say \"hi\"" 'don\'t' end\"#),
            ["say \"hi\"", "don't", "end\\"]
        );
        assert_eq!(
            args("“smart quotes” ‘work too’ don’t"),
            ["smart quotes", "work too", "don’t"]
        );
        assert!(args(" \t ").is_empty());
    }

    #[test]
    fn unclosed_quote_is_explained_to_the_user() {
        assert_eq!(
            err("!lb ping don't", false, User),
            "The ' quote is not closed. Close it, or put a backslash before it (\\') to use it as \
             a normal character."
        );
        assert_eq!(
            split_args("\"abc\\"),
            Err(CommandError::UnclosedQuote { quote: '"' })
        );
    }

    #[test]
    fn try_with_rejects_a_name_or_alias_already_taken() {
        let error = lb()
            .try_with(CommandSpec::new("PING", "again"))
            .expect_err("duplicate");
        assert_eq!(
            error.to_string(),
            "command `ping` cannot use the name `ping`: command `ping` has it"
        );
        let error = lb()
            .try_with(CommandSpec::new("pong", "x").alias("P"))
            .expect_err("duplicate");
        assert_eq!(
            error.to_string(),
            "command `pong` cannot use the name `p`: command `ping` has it"
        );
        assert!(
            lb().try_with(CommandSpec::new("pong", "x").alias("pong"))
                .is_ok()
        );
    }

    #[test]
    fn with_keeps_the_first_definition_of_a_name() {
        let set = lb().with(CommandSpec::new("ping", "Second ping").permission(Admin));
        assert_eq!(set.specs().len(), 3);
        assert_eq!(
            set.find("ping").map(CommandSpec::summary),
            Some("Checks that the bridge is running")
        );
    }

    #[test]
    fn try_with_rejects_commands_that_could_never_run() {
        let set = || CommandSet::new("!lb");
        let error = set()
            .try_with(CommandSpec::new("two words", "x"))
            .expect_err("bad name");
        assert_eq!(
            error.to_string(),
            "command `two words` can never run: the name `two words` is not one word"
        );
        assert!(
            set()
                .try_with(CommandSpec::new("x", "x").alias(""))
                .is_err()
        );
        let error = set()
            .try_with(CommandSpec::new("x", "x").min_args(2).max_args(1))
            .expect_err("min > max");
        assert_eq!(
            error.to_string(),
            "command `x` can never run: it needs at least 2 arguments but takes at most 1"
        );
    }

    #[test]
    fn help_lists_runnable_commands_sorted_with_prefix_outside_management_rooms() {
        assert_eq!(
            lb().help(Admin, false),
            "!lb bridge <chat id> — Bridges this room to a remote chat\n\
             !lb help — Shows the commands you can use\n\
             !lb ping — Checks that the bridge is running (aliases: p)"
        );
        assert_eq!(
            lb().help(User, true),
            "help — Shows the commands you can use\nping — Checks that the bridge is running (aliases: p)"
        );
        assert_eq!(
            lb().help(Relay, true),
            "help — Shows the commands you can use"
        );
        assert_eq!(
            lb().help(PermissionLevel::None, true),
            "There are no commands you can use."
        );
    }

    #[test]
    fn help_html_escapes_usage_and_lists_aliases_as_code() {
        assert_eq!(
            lb().help_html(Admin, true),
            "<ul><li><code>bridge &lt;chat id&gt;</code> — Bridges this room to a remote chat</li>\
             <li><code>help</code> — Shows the commands you can use</li>\
             <li><code>ping</code> — Checks that the bridge is running (aliases: <code>p</code>)</li></ul>"
        );
        assert_eq!(
            lb().help_html(PermissionLevel::None, false),
            "<p>There are no commands you can use.</p>"
        );
    }

    #[test]
    fn empty_prefix_makes_every_message_a_command() {
        let set = CommandSet::new("").with(CommandSpec::new("ping", "Pings"));
        assert_eq!(
            set.parse("ping", false, User).map(|r| r.map(|i| i.name)),
            Some(Ok("ping".into()))
        );
        assert_eq!(set.help(User, false), "ping — Pings");
    }

    #[test]
    fn edit_distance_counts_character_edits() {
        assert_eq!(edit_distance("ping", "ping"), 0);
        assert_eq!(edit_distance("pnig", "ping"), 2);
        assert_eq!(edit_distance("brdge", "bridge"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("héllo", "hello"), 1);
    }
}
