//! `streamwatch silence`: add, list and expire silences in the alerts table, against AWS or
//! the local dev stack (the table found as `streamwatch alerts` finds it). The alerter reads
//! the silences in force at each invocation; a silenced alert is recorded, counted
//! (`Silenced`) and not sent (docs/alerting.md).

use std::time::Duration;

use streamwatch_adapters::silences::DynamoDbSilenceStore;
use streamwatch_core::notify::silence::{Silence, SilenceStore};
use streamwatch_core::time::format_micros;

use crate::Failure;
use crate::aws_args::AwsArgs;

#[derive(clap::Subcommand, Debug)]
pub enum SilenceCommand {
    /// Silence the alerts of a rule whose attributes match, for a while; prints the
    /// silence as one JSON line (exit 0; 1: AWS failure; 64: bad arguments).
    Add(AddArgs),
    /// Print the silences in force or starting later, one JSON line each.
    List(TableArgs),
    /// End a silence now (exit 0; 1: no such silence in force, or AWS failure).
    Expire(ExpireArgs),
}

#[derive(clap::Args, Debug)]
pub struct TableArgs {
    /// The alerts table (default: the stack's `AlertsTableName` output).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The rule whose alerts are silenced (e.g. `windspeed-avg`, `accident-severity`).
    #[arg(long)]
    pub rule: String,
    /// `attribute=value` an alert must have (`key`, `severity`, or a detail such as
    /// `County`); repeat for several (all must match). None: every alert of the rule.
    #[arg(long = "match", value_name = "ATTR=VALUE")]
    pub matchers: Vec<String>,
    /// How long: `90s`, `30m`, `2h`, `1d`.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why (shown by `silence list`).
    #[arg(long, default_value = "")]
    pub comment: String,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(clap::Args, Debug)]
pub struct ExpireArgs {
    /// The silence's id (from `silence add` or `silence list`).
    pub id: String,
    #[command(flatten)]
    pub table: TableArgs,
}

pub async fn run(command: SilenceCommand) -> Result<(), Failure> {
    match command {
        SilenceCommand::Add(args) => add(args).await,
        SilenceCommand::List(args) => list(args).await,
        SilenceCommand::Expire(args) => expire(args).await,
    }
}

/// `90s`, `30m`, `2h`, `1d` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let unit = text.chars().last().ok_or("empty duration")?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => {
            return Err(format!(
                "{text}: expected a number and s, m, h or d (e.g. 2h)"
            ));
        }
    };
    let n: u64 = text[..text.len() - 1]
        .parse()
        .map_err(|_| format!("{text}: expected a whole number before the unit (e.g. 2h)"))?;
    if n == 0 {
        return Err(format!("{text}: must be more than zero"));
    }
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn parse_matcher(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!(
            "--match {text}: expected ATTR=VALUE (e.g. key=device3)"
        )),
    }
}

async fn store(args: &TableArgs) -> Result<DynamoDbSilenceStore, Failure> {
    let aws = args.aws.load().await?;
    let table = aws
        .resolve(args.table.as_deref(), "--table", "AlertsTableName")
        .await?;
    Ok(DynamoDbSilenceStore::new(
        aws_sdk_dynamodb::Client::new(&aws.config),
        table,
    ))
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn line(s: &Silence) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "rule": s.rule,
        "matchers": s.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "starts_at": format_micros(s.starts_micros),
        "ends_at": format_micros(s.ends_micros),
        "comment": s.comment,
        "created_by": s.created_by,
    })
}

async fn add(args: AddArgs) -> Result<(), Failure> {
    let duration =
        parse_duration(&args.duration).map_err(|e| Failure::usage(format!("--for {e}")))?;
    let matchers = args
        .matchers
        .iter()
        .map(|m| parse_matcher(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Failure::usage)?;
    if args.rule.trim().is_empty() {
        return Err(Failure::usage("--rule must name a rule"));
    }
    let now = now_micros();
    let silence = Silence {
        id: uuid::Uuid::new_v4().to_string(),
        rule: args.rule,
        matchers,
        starts_micros: now,
        ends_micros: now.saturating_add(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)),
        comment: args.comment,
        created_by: std::env::var("USER").unwrap_or_else(|_| "streamwatch".into()),
    };
    store(&args.table)
        .await?
        .add(&silence)
        .await
        .map_err(|e| Failure::runtime(format!("cannot add the silence: {e}")))?;
    println!("{}", line(&silence));
    Ok(())
}

async fn list(args: TableArgs) -> Result<(), Failure> {
    let silences = store(&args)
        .await?
        .current(now_micros())
        .await
        .map_err(|e| Failure::runtime(format!("cannot list silences: {e}")))?;
    for s in &silences {
        println!("{}", line(s));
    }
    Ok(())
}

async fn expire(args: ExpireArgs) -> Result<(), Failure> {
    let ended = store(&args.table)
        .await?
        .expire(&args.id, now_micros())
        .await
        .map_err(|e| Failure::runtime(format!("cannot expire the silence: {e}")))?;
    if !ended {
        return Err(Failure::runtime(format!(
            "no silence {} in force (see `streamwatch silence list`)",
            args.id
        )));
    }
    println!("{}", serde_json::json!({"id": args.id, "expired": true}));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_matchers_parse_or_say_what_is_wrong() {
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("2 hours").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0m").is_err());
        assert_eq!(
            parse_matcher("County=Harris"),
            Ok(("County".into(), "Harris".into()))
        );
        assert!(parse_matcher("device3").is_err());
        assert!(parse_matcher("=x").is_err());
    }
}
