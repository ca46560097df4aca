//! `streamwatch alerts`: the notifications that could not be sent, read from the alerts
//! table (the outbox and its notification records are the source of truth, not the stream
//! or its on-failure queue), and their redrive through the alerter's own send path — so a
//! redrive is idempotent: what was sent meanwhile is not sent again.

use std::time::Duration;

use alerter::recovery::{Selection, redrive};
use alerter::{Deps, Settings, SystemClock};
use streamwatch_adapters::alert_state::DynamoDbAlertStateStore;
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
    /// alerter's claim → publish → mark-sent path (exit 0: all sent; 1: some not sent).
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
pub struct RedriveArgs {
    /// The alert id of one notification.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "since",
        required_unless_present = "since"
    )]
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
    let selection = match (&args.id, &args.since) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, Some(since)) => {
            let t = chrono::DateTime::parse_from_rfc3339(since)
                .map_err(|e| Failure::usage(format!("--since {since}: {e}")))?;
            Selection::Since(t.timestamp_micros())
        }
        (None, None) => return Err(Failure::usage("need --id ID or --since TIME")),
    };
    let aws = args.aws.load().await?;
    let table = aws
        .resolve(args.table.as_deref(), "--table", "AlertsTableName")
        .await?;
    let topic = aws
        .resolve(args.topic_arn.as_deref(), "--topic-arn", "AlertsTopicArn")
        .await?;
    let config = &aws.config;
    let deps = Deps {
        store: DynamoDbAlertStateStore::new(aws_sdk_dynamodb::Client::new(config), table),
        notifier: SnsNotifier::new(aws_sdk_sns::Client::new(config), topic),
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
