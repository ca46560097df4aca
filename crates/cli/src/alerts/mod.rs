//! `streamwatch alerts`: the notifications that could not be sent, read from the alerts
//! table (the outbox and its notification records are the source of truth, not the stream),
//! and their redrive through the alerter's own send path — so a redrive is idempotent: what
//! was sent meanwhile is not sent again. `redrive --queue` redoes the alerts of the
//! metrics-publisher's given-up batches ([`queue`]).

mod queue;

use std::time::Duration;

use alerter::recovery::{Selection, redrive};
use alerter::{Deps, Settings, SystemClock};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
use streamwatch_adapters::groups::DynamoDbGroupStore;
use streamwatch_adapters::sns::SnsNotifier;
use streamwatch_core::notify::{AlertStateStore, NotificationStatus};
use streamwatch_core::time::format_micros;

use crate::Failure;
use crate::aws_args::AwsArgs;

#[derive(clap::Subcommand, Debug)]
pub enum Alerts {
    /// Print the notifications not sent yet (pending, being sent, given up), one JSON line
    /// each, oldest first (exit 0; 1: AWS failure).
    List(ListArgs),
    /// Make given-up (or pending) notifications pending again and send them now, through the
    /// alerter's claim → publish → mark-sent path; or (`--queue`) redo the alerts of the
    /// metrics-publisher's batches in its on-failure queue (exit 0: all done; 1: some not).
    Redrive(RedriveArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only the unsent notifications (the only listing there is; accepted for clarity).
    #[arg(long)]
    pub pending: bool,
    /// The alerts table (default: the stack's `AlertsTableName` output).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["id", "since", "queue"])))]
pub struct RedriveArgs {
    /// The alert id of one notification.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Every unsent notification decided at or after this time (RFC 3339, e.g.
    /// `2026-11-30T22:00:00Z`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// The alerts table (default: the stack's `AlertsTableName` output).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// The topic (default: the stack's `AlertsTopicArn` output).
    #[arg(long, value_name = "ARN")]
    pub topic_arn: Option<String>,
    /// Drain an on-failure queue: `metrics-publisher` (the stack's `MetricsPublisherDLQUrl`
    /// output) or a queue URL. Each batch's records are re-read from the stream and their
    /// alerts written as the function would have; a message is deleted once that is done.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// The template whose metrics-publisher environment (evaluated with the stack's
    /// parameters) gives the alert rule for `--queue` (default: the dev stack's, else
    /// `template.yaml`).
    #[arg(long, value_name = "FILE")]
    pub template: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub aws: AwsArgs,
}

pub async fn run(command: Alerts) -> Result<(), Failure> {
    match command {
        Alerts::List(args) => list(args).await,
        Alerts::Redrive(args) => redrive_command(args).await,
    }
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let aws = args.aws.load().await?;
    let table = aws
        .resolve(args.table.as_deref(), "--table", "AlertsTableName")
        .await?;
    let store = DynamoDbAlertStateStore::new(aws_sdk_dynamodb::Client::new(&aws.config), table);
    let unsent = store
        .unsent(i64::MAX, usize::MAX)
        .await
        .map_err(|e| Failure::runtime(format!("cannot list notifications: {e}")))?;
    for record in unsent {
        let line = serde_json::json!({
            "alert_id": record.alert_id,
            "rule": record.rule,
            "key": record.key,
            "notification": record.kind().map(|k| k.as_str()),
            "status": record.status.as_str(),
            "attempts": record.attempts,
            "decided_at": format_micros(record.decided_at_micros),
            "event_time": format_micros(record.event_time_micros),
            "lease_until": match &record.status {
                NotificationStatus::Sending { lease_until_micros, .. } => Some(format_micros(*lease_until_micros)),
                _ => None,
            },
        });
        println!("{line}");
    }
    Ok(())
}

async fn redrive_command(args: RedriveArgs) -> Result<(), Failure> {
    if let Some(queue) = &args.queue {
        return drain_queue(&args, queue).await;
    }
    let selection = match (&args.id, &args.since) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, Some(since)) => {
            let t = chrono::DateTime::parse_from_rfc3339(since)
                .map_err(|e| Failure::usage(format!("--since {since}: {e}")))?;
            Selection::Since(t.timestamp_micros())
        }
        (None, None) => {
            return Err(Failure::usage(
                "need --id ID, --since TIME or --queue QUEUE",
            ));
        }
    };
    let aws = args.aws.load().await?;
    let table = aws
        .resolve(args.table.as_deref(), "--table", "AlertsTableName")
        .await?;
    let topic = aws
        .resolve(args.topic_arn.as_deref(), "--topic-arn", "AlertsTopicArn")
        .await?;
    // The stack's per-rule topic (AccidentTopicArn), unless --topic-arn names one topic, and
    // its HTTPS format: a redriven notification goes out as the alerter would have sent it.
    let parameters = aws.stack_parameters().await?;
    let https_format = parameters
        .get("HttpsMessageFormat")
        .map(|f| f.parse())
        .transpose()
        .map_err(|e| Failure::runtime(format!("the stack's HttpsMessageFormat: {e}")))?
        .unwrap_or_default();
    let routes = match &args.topic_arn {
        Some(_) => Default::default(),
        None => parameters
            .get("AccidentTopicArn")
            .filter(|arn| !arn.is_empty())
            .map(|arn| alerter::config::parse_routes(&format!("accident-severity={arn}")))
            .transpose()
            .map_err(|e| Failure::runtime(format!("the stack's AccidentTopicArn: {e}")))?
            .unwrap_or_default(),
    };
    let config = &aws.config;
    let dynamodb = aws_sdk_dynamodb::Client::new(config);
    let deps = Deps {
        // Group notifications are redriven too: their alerts are read back from the batch.
        grouping: alerter::Grouping::new(
            DynamoDbGroupStore::new(dynamodb.clone(), &table),
            Default::default(),
        ),
        silences: alerter::Silences::off(),
        store: DynamoDbAlertStateStore::new(dynamodb, table),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(config), topic)
            .with_routes(routes)
            .with_https_format(https_format),
        clock: SystemClock,
        settings: Settings {
            claim_wait: Duration::from_secs(5),
            ..Settings::default()
        },
    };
    let owner = format!("streamwatch-redrive-{}", uuid::Uuid::new_v4());
    let report = redrive(&deps, &selection, &owner)
        .await
        .map_err(|e| Failure::runtime(format!("cannot redrive: {e}")))?;
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    if report.errors > 0 {
        return Err(Failure::runtime(format!(
            "{} notification(s) still not sent; `streamwatch alerts list --pending` shows them",
            report.errors
        )));
    }
    Ok(())
}

/// `redrive --queue`: the metrics-publisher's given-up batches, redone for their alerts.
async fn drain_queue(args: &RedriveArgs, queue: &str) -> Result<(), Failure> {
    let aws = args.aws.load().await?;
    let url = match queue {
        "metrics-publisher" => {
            aws.resolve(None, "--queue URL", "MetricsPublisherDLQUrl")
                .await?
        }
        "alerter" | "window-aggregator" => {
            return Err(Failure::usage(format!(
                "--queue {queue}: only the metrics-publisher's queue holds alerts that exist nowhere else"
            ))
            .hint("the alerter's unsent notifications: `streamwatch alerts redrive --since TIME`"));
        }
        url => url.to_owned(),
    };
    let table = aws
        .resolve(args.table.as_deref(), "--table", "AlertsTableName")
        .await?;
    let config = function_config(&aws, args.template.as_deref(), &table).await?;
    if config.alerts.is_none() {
        return Err(Failure::usage(
            "the metrics-publisher's ALERT_RULE is off: its batches have no alerts to redo",
        ));
    }
    let drain = queue::Drain::new(&aws.config, url, config, table);
    let report = drain.run().await?;
    println!("{}", serde_json::to_string(&report).unwrap_or_default());
    if report.kept() > 0 {
        return Err(Failure::runtime(format!(
            "{} message(s) kept in the queue ({} past the stream's retention, {} failed, {} not a metrics-publisher batch)",
            report.kept(),
            report.expired,
            report.failed,
            report.unreadable
        )));
    }
    Ok(())
}

/// The metrics-publisher's configuration as deployed: its environment in the template,
/// evaluated with the stack's parameters, the alerts table resolved.
async fn function_config(
    aws: &crate::aws_args::Aws,
    template: Option<&std::path::Path>,
    table: &str,
) -> Result<metrics_publisher::Config, Failure> {
    let path = template
        .map(std::path::Path::to_path_buf)
        .or_else(|| aws.local.as_ref().map(|s| s.template.clone()))
        .unwrap_or_else(|| "template.yaml".into());
    let tpl = crate::dev::template::load(&path)
        .map_err(|e| Failure::usage(format!("--template {}: {e}", path.display())))?;
    let overrides: Vec<(String, String)> = aws.stack_parameters().await?.into_iter().collect();
    let mut ctx = crate::dev::template::Context {
        region: aws
            .config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        parameters: crate::dev::template::Context::parameters(&tpl, &overrides)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?,
        ..Default::default()
    };
    // The environment may depend on the stack's conditions (ARCHIVE_REJECTS on `Archive`).
    ctx.evaluate_conditions(&tpl)
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
    let variables =
        tpl["Resources"]["MetricsPublisherFunction"]["Properties"]["Environment"]["Variables"]
            .as_object()
            .ok_or_else(|| {
                Failure::usage(format!(
                    "{}: no MetricsPublisherFunction environment",
                    path.display()
                ))
            })?;
    let mut env = std::collections::HashMap::from([("ALERTS_TABLE".to_owned(), table.to_owned())]);
    for (name, value) in variables.iter().filter(|(n, _)| *n != "ALERTS_TABLE") {
        let value = ctx.string(value).map_err(|e| {
            Failure::usage(format!("{}: metrics-publisher {name}: {e}", path.display()))
        })?;
        env.insert(name.clone(), value);
    }
    metrics_publisher::Config::from_source(&env)
        .map_err(|e| Failure::usage(format!("the metrics-publisher's configuration: {e}")))
}
