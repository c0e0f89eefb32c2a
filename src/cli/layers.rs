//! Settings in three layers, merged by figment: the `--config` TOML file, then the environment,
//! then the command line, each winning over the one before.
//!
//! clap stays the one place that knows the settings: their names, environment variables,
//! defaults, `--help` and validation. Each layer is read into a figment provider keyed by the
//! setting's id (`allowed_origins`), figment merges them, and the merged values are parsed once
//! more by clap, as flags of a command whose settings read neither the environment (already a
//! layer) nor split values at commas (already split where they should be). So a TOML list keeps
//! each item whole, commas and all, while a comma-separated string, from any layer, is a list.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::Cli;

const SETTING: &str = "--config (TICKETHUB_CONFIG)";

/// Parses `args` again with the three layers merged; `matches` is clap's own parse of them.
pub(super) fn parse(
    args: &[OsString],
    matches: &ArgMatches,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Cli, clap::Error> {
    let cmd = Cli::command();
    let Some((path, leaf, leaf_matches)) = leaf(&cmd, matches) else {
        return Cli::from_arg_matches(matches);
    };
    let merged = merge(&leaf, leaf_matches, file, env)
        .map_err(|e| cmd.clone().error(clap::error::ErrorKind::InvalidValue, e))?;

    let mut argv: Vec<OsString> = vec![args.first().cloned().unwrap_or_else(|| "tickethub".into())];
    if let Some(file) = file {
        argv.push("--config".into());
        argv.push(file.as_os_str().to_owned());
    }
    argv.extend(path.iter().map(OsString::from));
    for (id, value) in &merged {
        let Some(arg) = leaf.get_arguments().find(|a| a.get_id() == id.as_str()) else {
            continue;
        };
        let Some(long) = arg.get_long() else {
            continue;
        };
        if !arg.get_action().takes_values() {
            if truthy(value) {
                argv.push(format!("--{long}").into());
            }
            continue;
        }
        for item in items(value) {
            argv.push(format!("--{long}={item}").into());
        }
    }
    // Positional values come from the command line only, after every flag.
    let positionals: Vec<&clap::Arg> = leaf.get_positionals().collect();
    if !positionals.is_empty() {
        argv.push("--".into());
        for arg in positionals {
            if let Some(raw) = leaf_matches.get_raw(arg.get_id().as_str()) {
                argv.extend(raw.map(OsString::from));
            }
        }
    }
    let final_matches = literal(cmd).try_get_matches_from(argv)?;
    Cli::from_arg_matches(&final_matches)
}

/// The subcommand path that takes settings (`serve`, `users add`), its command and its matches.
fn leaf<'m>(
    cmd: &Command,
    matches: &'m ArgMatches,
) -> Option<(Vec<String>, Command, &'m ArgMatches)> {
    let (mut cmd, mut matches) = (cmd.clone(), matches);
    let mut path = Vec::new();
    while let Some((name, sub)) = matches.subcommand() {
        cmd = cmd.find_subcommand(name)?.clone();
        path.push(name.to_owned());
        matches = sub;
    }
    (!path.is_empty()).then_some((path, cmd, matches))
}

/// The three layers merged: the file's keys under the environment's under the command line's.
fn merge(
    leaf: &Command,
    matches: &ArgMatches,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Dict, String> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        figment = figment.merge(FileLayer::read(leaf, file)?);
    }
    let figment = figment
        .merge(Layer::environment(leaf, env))
        .merge(Layer::command_line(leaf, matches));
    figment
        .extract::<Dict>()
        .map_err(|e| format!("{SETTING}: {e}"))
}

/// Every argument of `cmd` and its subcommands, read literally: no environment, no splitting.
fn literal(cmd: Command) -> Command {
    let cmd = cmd.mut_args(|a| a.env(None).value_delimiter(None));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    names
        .into_iter()
        .fold(cmd, |cmd, name| cmd.mut_subcommand(name, literal))
}

/// Whether a flag that takes no value is set by `value` (clap's reading of `true`, `1`, `yes`,
/// `on` and their opposites in the environment).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(_, b) => *b,
        Value::String(_, s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "f" | "no" | "n" | "off"
        ),
        Value::Num(_, n) => n.to_i128() != Some(0),
        _ => true,
    }
}

/// A value's items as the literal command takes them: a list's items whole, anything else as one.
fn items(value: &Value) -> Vec<String> {
    match value {
        Value::Array(_, list) => list.iter().flat_map(items).collect(),
        Value::String(_, s) => vec![s.clone()],
        Value::Bool(_, b) => vec![b.to_string()],
        Value::Num(_, n) => vec![number(n)],
        Value::Char(_, c) => vec![c.to_string()],
        Value::Empty(..) | Value::Dict(..) => Vec::new(),
    }
}

fn number(n: &figment::value::Num) -> String {
    use figment::value::Num;
    match *n {
        Num::F32(f) => f.to_string(),
        Num::F64(f) => f.to_string(),
        other => other
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| other.to_u128().map(|u| u.to_string()))
            .unwrap_or_default(),
    }
}

/// One layer's values by setting id. A string for a setting that takes a comma-separated list is
/// split here, so that every layer reads `a,b` the same way.
struct Layer {
    name: &'static str,
    values: BTreeMap<String, Value>,
}

impl Layer {
    /// The settings' documented environment variables that are set and not empty.
    fn environment(leaf: &Command, env: &dyn Fn(&str) -> Option<OsString>) -> Self {
        let values = leaf
            .get_arguments()
            .filter_map(|arg| {
                let raw = env(arg.get_env()?.to_str()?)?;
                let text = raw.to_string_lossy().into_owned();
                (!text.is_empty()).then(|| (arg.get_id().to_string(), split(arg, text)))
            })
            .collect();
        Self {
            name: "environment",
            values,
        }
    }

    /// What the command line gave, as clap read it.
    fn command_line(leaf: &Command, matches: &ArgMatches) -> Self {
        let values = leaf
            .get_arguments()
            .filter(|arg| !arg.is_positional())
            .filter(|arg| {
                matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
            })
            .filter_map(|arg| {
                let id = arg.get_id().as_str();
                let value = match arg.get_action() {
                    ArgAction::SetTrue => Value::from(true),
                    ArgAction::SetFalse => Value::from(false),
                    _ => {
                        let raw: Vec<Value> = matches
                            .get_raw(id)?
                            .map(|v| split(arg, v.to_string_lossy().into_owned()))
                            .collect();
                        Value::from(raw)
                    }
                };
                Some((id.to_owned(), value))
            })
            .collect();
        Self {
            name: "command line",
            values,
        }
    }
}

/// `text` as a list if `arg` takes a comma-separated one.
fn split(arg: &clap::Arg, text: String) -> Value {
    match arg.get_value_delimiter() {
        Some(d) => Value::from(text.split(d).map(str::to_owned).collect::<Vec<_>>()),
        None => Value::from(text),
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone().into_iter().collect()))
    }
}

/// The TOML file's keys as setting ids (`allowed-origins` and `allowed_origins` alike), each
/// known to some subcommand; keys for other subcommands (`bind` while running `users add`) are
/// left out.
struct FileLayer {
    toml: figment::providers::Data<Toml>,
    values: Dict,
}

impl FileLayer {
    fn read(leaf: &Command, path: &Path) -> Result<Self, String> {
        let toml = Toml::file_exact(path);
        let data = toml
            .data()
            .map_err(|e| format!("{SETTING}: {}: {e}", path.display()))?;
        let everything = Cli::command();
        let mut values = Dict::new();
        for (key, value) in data.into_values().flatten() {
            let flag = key.replace('_', "-");
            if flag == "config" {
                continue;
            }
            match leaf
                .get_arguments()
                .find(|a| a.get_long() == Some(flag.as_str()))
            {
                Some(arg) => {
                    let value = match value {
                        Value::String(_, s) => split(arg, s),
                        Value::Dict(..) => {
                            return Err(format!(
                                "{SETTING}: {}: `{key}` must be a string, number, boolean or list",
                                path.display()
                            ))
                        }
                        other => other,
                    };
                    values.insert(arg.get_id().to_string(), value);
                }
                None if known_anywhere(&everything, &flag) => {}
                None => {
                    return Err(format!(
                        "{SETTING}: {}: unknown setting `{key}`",
                        path.display()
                    ))
                }
            }
        }
        Ok(Self { toml, values })
    }
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        self.toml.metadata()
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

fn known_anywhere(cmd: &Command, flag: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_long() == Some(flag))
        || cmd.get_subcommands().any(|s| known_anywhere(s, flag))
}
