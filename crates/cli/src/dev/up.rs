//! `streamwatch dev up`: the template's Kinesis streams, DynamoDB tables, SNS topics and SQS
//! queues, created in an emulator from template.yaml itself and named
//! `streamwatch-<LogicalId>` (as `tools/moto_resources.py` and Cargo.toml's
//! `[workspace.metadata.lambda.env]` expect). Other resource types (roles, the KMS key, log
//! groups, alarms, the dashboard) play no part locally and are listed as skipped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use serde_json::Value;

use super::template::{self, Context, Resource, STACK_NAME};
use super::{Forward, Stack, error_code, sdk_error};
use crate::Failure;

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Use this emulator (LocalStack, a running moto, …) instead of starting moto.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Port for the moto server `dev up` starts.
    #[arg(long, default_value_t = 5000)]
    pub port: u16,
    /// The moto_server executable (default: $MOTO_SERVER, then .venv/bin/moto_server, then PATH).
    #[arg(long, value_name = "PATH")]
    pub moto_server: Option<PathBuf>,
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    #[arg(long, default_value = "template.yaml")]
    pub template: PathBuf,
    /// A template parameter, NAME=VALUE (repeatable); the others keep their defaults.
    #[arg(long = "parameter", value_name = "NAME=VALUE", value_parser = super::parse_pair)]
    pub parameters: Vec<(String, String)>,
    /// Shards per Kinesis stream (the template's ON_DEMAND streams get this many locally).
    #[arg(long, default_value_t = 2)]
    pub shards: i32,
    /// Where stack.json (and `dev run`'s logs and checkpoints) go.
    #[arg(long, default_value = super::STATE_DIR)]
    pub state_dir: PathBuf,
}

pub async fn run(args: UpArgs) -> Result<(), Failure> {
    if args.shards < 1 {
        return Err(Failure::usage("--shards must be at least 1"));
    }
    let tpl = template::load(&args.template).map_err(Failure::usage)?;
    let mut moto = None;
    let endpoint = match &args.endpoint_url {
        Some(url) => url.clone(),
        None => {
            let (child, url) = start_moto(&args).await?;
            moto = Some(child);
            url
        }
    };
    let result = create(&args, &tpl, &endpoint).await;
    let stack = match result {
        Ok(stack) => stack,
        Err(e) => {
            if let Some(mut child) = moto {
                let _ = child.kill().await;
            }
            return Err(e);
        }
    };
    let path = stack.write(&args.state_dir)?;
    // A new stack has new streams: checkpoints of an earlier one would point nowhere.
    let _ = std::fs::remove_file(args.state_dir.join("checkpoints.json"));
    let _ = std::fs::remove_file(args.state_dir.join(super::archive::CHECKPOINTS));
    print_summary(&stack, &path);
    if let Some(mut child) = moto {
        println!(
            "moto is running at {endpoint} (pid {}); Ctrl-C stops it and its state is gone",
            child.id().unwrap_or(0)
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                let _ = child.kill().await;
            }
            status = child.wait() => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                return Err(Failure::runtime(format!("moto server exited ({status})")));
            }
        }
    }
    Ok(())
}

fn moto_binary(args: &UpArgs) -> PathBuf {
    if let Some(p) = &args.moto_server {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

async fn start_moto(args: &UpArgs) -> Result<(tokio::process::Child, String), Failure> {
    // Something already listening there would answer the readiness check below, and the
    // stack would be made on it (an old moto, another service) while our moto exits.
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", args.port)) {
        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
            "is in use".to_owned()
        } else {
            format!("cannot be used ({e})")
        };
        return Err(Failure::runtime(format!("port {} {why}", args.port)).hint(format!(
            "stop what listens there, pass --port N, or use it with --endpoint-url http://127.0.0.1:{}",
            args.port
        )));
    }
    let binary = moto_binary(args);
    let mut child = tokio::process::Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &args.port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Failure::runtime(format!(
                "cannot start {} ({e}); install moto[server] or pass --endpoint-url",
                binary.display()
            ))
        })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Failure::runtime(format!(
                "{} exited at start ({status})",
                binary.display()
            ))
            .hint(format!("is port {} free?", args.port)));
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", args.port))
            .await
            .is_ok()
        {
            return Ok((child, format!("http://127.0.0.1:{}", args.port)));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill().await;
    Err(Failure::runtime(format!(
        "moto server did not listen on port {} within 60 s",
        args.port
    )))
}

fn physical(logical: &str) -> String {
    format!("{STACK_NAME}-{logical}")
}

/// Creates every resource; an existing one (a second `dev up` on the same emulator) is
/// reused.
async fn create(args: &UpArgs, tpl: &Value, endpoint: &str) -> Result<Stack, Failure> {
    // One attempt per call: an emulator's "not implemented" should not cost backoff.
    let config = super::sdk_config(endpoint, &args.region, 1).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut ctx = Context {
        region: args.region.clone(),
        parameters: Context::parameters(tpl, &args.parameters).map_err(Failure::usage)?,
        ..Default::default()
    };
    ctx.evaluate_conditions(tpl).map_err(Failure::usage)?;

    for (logical, res) in template::resources_of(tpl, "AWS::Kinesis::Stream") {
        if !ctx.enabled(res) {
            continue;
        }
        let name = physical(logical);
        let created = kinesis
            .create_stream()
            .stream_name(&name)
            .shard_count(args.shards)
            .send()
            .await;
        if let Err(e) = created
            && error_code(&e).as_deref() != Some("ResourceInUseException")
        {
            return Err(Failure::runtime(sdk_error("Kinesis CreateStream", &e)));
        }
        let arn = wait_for_stream(&kinesis, &name).await?;
        ctx.resources.insert(
            logical.to_owned(),
            Resource {
                kind: "AWS::Kinesis::Stream".into(),
                reference: name,
                attributes: [("Arn".to_owned(), arn)].into(),
            },
        );
    }
    for (logical, res) in template::resources_of(tpl, "AWS::SNS::Topic") {
        if !ctx.enabled(res) {
            continue;
        }
        let name = physical(logical);
        let out = sns
            .create_topic()
            .name(&name)
            .send()
            .await
            .map_err(|e| Failure::runtime(sdk_error("SNS CreateTopic", &e)))?;
        let arn = out.topic_arn().unwrap_or_default().to_owned();
        ctx.resources.insert(
            logical.to_owned(),
            Resource {
                kind: "AWS::SNS::Topic".into(),
                reference: arn.clone(),
                attributes: [("TopicArn".to_owned(), arn), ("TopicName".to_owned(), name)].into(),
            },
        );
    }
    for (logical, res) in template::resources_of(tpl, "AWS::SQS::Queue") {
        if !ctx.enabled(res) {
            continue;
        }
        let name = physical(logical);
        let out = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .map_err(|e| Failure::runtime(sdk_error("SQS CreateQueue", &e)))?;
        let url = out.queue_url().unwrap_or_default().to_owned();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| Failure::runtime(sdk_error("SQS GetQueueAttributes", &e)))?;
        let arn = attrs
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default();
        ctx.resources.insert(
            logical.to_owned(),
            Resource {
                kind: "AWS::SQS::Queue".into(),
                reference: url,
                attributes: [("Arn".to_owned(), arn), ("QueueName".to_owned(), name)].into(),
            },
        );
    }
    let mut forwards = Vec::new();
    for (logical, res) in template::resources_of(tpl, "AWS::DynamoDB::Table") {
        if !ctx.enabled(res) {
            continue;
        }
        let (resource, forward) = create_table(&ddb, &ctx, logical, &res["Properties"]).await?;
        ctx.resources.insert(logical.to_owned(), resource);
        forwards.extend(forward);
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let archives = super::archive::create(&s3, tpl, &mut ctx).await?;
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    if let Some(all) = tpl["Resources"].as_object() {
        for (logical, res) in all {
            if !ctx.resources.contains_key(logical) {
                *skipped
                    .entry(res["Type"].as_str().unwrap_or("?"))
                    .or_default() += 1;
            }
        }
    }
    let skipped: Vec<String> = skipped.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    eprintln!(
        "dev up: not created locally (no part in a local run, or condition false): {}",
        skipped.join(", ")
    );
    Ok(Stack {
        endpoint: endpoint.to_owned(),
        region: args.region.clone(),
        template: std::fs::canonicalize(&args.template).unwrap_or(args.template.clone()),
        parameters: ctx.parameters,
        resources: ctx.resources,
        forwards,
        archives,
        credentials: Default::default(),
    })
}

async fn wait_for_stream(kinesis: &aws_sdk_kinesis::Client, name: &str) -> Result<String, Failure> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| Failure::runtime(sdk_error("Kinesis DescribeStreamSummary", &e)))?;
        if let Some(s) = out.stream_description_summary() {
            if s.stream_status().as_str() == "ACTIVE" {
                return Ok(s.stream_arn().to_owned());
            }
        }
        if Instant::now() > deadline {
            return Err(Failure::runtime(format!(
                "stream {name} not ACTIVE after 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn str_field<'a>(v: &'a Value, field: &str, what: &str) -> Result<&'a str, Failure> {
    v[field]
        .as_str()
        .ok_or_else(|| Failure::usage(format!("template: {what} has no {field}")))
}

fn key_schema(list: &Value, what: &str) -> Result<Vec<KeySchemaElement>, Failure> {
    list.as_array()
        .ok_or_else(|| Failure::usage(format!("template: {what} has no KeySchema list")))?
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(str_field(k, "AttributeName", what)?)
                .key_type(KeyType::from(str_field(k, "KeyType", what)?))
                .build()
                .map_err(|e| Failure::usage(format!("template: {what}: {e}")))
        })
        .collect()
}

async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    ctx: &Context,
    logical: &str,
    props: &Value,
) -> Result<(Resource, Option<Forward>), Failure> {
    let name = physical(logical);
    let what = format!("table {logical}");
    let request = table_request(ddb, &name, props, &what)?;
    let mut fresh = true;
    if let Err(e) = request.send().await {
        if error_code(&e).as_deref() == Some("ResourceInUseException") {
            fresh = false;
        } else {
            return Err(Failure::runtime(sdk_error("DynamoDB CreateTable", &e)));
        }
    }
    let described = ddb
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .map_err(|e| Failure::runtime(sdk_error("DynamoDB DescribeTable", &e)))?;
    let table = described.table();
    let arn = table
        .and_then(|t| t.table_arn())
        .unwrap_or_default()
        .to_owned();
    let mut stream_arn = table.and_then(|t| t.latest_stream_arn()).map(str::to_owned);
    let ttl = &props["TimeToLiveSpecification"];
    if fresh && let Some(attr) = ttl["AttributeName"].as_str() {
        ddb.update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(ttl["Enabled"].as_bool().unwrap_or(true))
                    .build()
                    .map_err(|e| Failure::usage(format!("template: {what}: {e}")))?,
            )
            .send()
            .await
            .map_err(|e| Failure::runtime(sdk_error("DynamoDB UpdateTimeToLive", &e)))?;
    }
    let forward = kinesis_destination(ddb, ctx, &name, props, &what, &mut stream_arn).await?;
    let mut attributes: BTreeMap<String, String> = [("Arn".to_owned(), arn)].into();
    if let Some(s) = stream_arn {
        attributes.insert("StreamArn".into(), s);
    }
    Ok((
        Resource {
            kind: "AWS::DynamoDB::Table".into(),
            reference: name,
            attributes,
        },
        forward,
    ))
}

/// The template's CreateTable request for a table: keys, attributes, indexes, stream.
fn table_request(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    props: &Value,
    what: &str,
) -> Result<aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder, Failure>
{
    let mut request = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&props["KeySchema"], what)?));
    for a in props["AttributeDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(str_field(a, "AttributeName", what)?)
                .attribute_type(ScalarAttributeType::from(str_field(
                    a,
                    "AttributeType",
                    what,
                )?))
                .build()
                .map_err(|e| Failure::usage(format!("template: {what}: {e}")))?,
        );
    }
    for g in props["GlobalSecondaryIndexes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let projection = &g["Projection"];
        let mut p = Projection::builder();
        if let Some(t) = projection["ProjectionType"].as_str() {
            p = p.projection_type(ProjectionType::from(t));
        }
        for a in projection["NonKeyAttributes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(a) = a.as_str() {
                p = p.non_key_attributes(a);
            }
        }
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(str_field(g, "IndexName", what)?)
                .set_key_schema(Some(key_schema(&g["KeySchema"], what)?))
                .projection(p.build())
                .build()
                .map_err(|e| Failure::usage(format!("template: {what}: {e}")))?,
        );
    }
    if let Some(view) = props["StreamSpecification"]["StreamViewType"].as_str() {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view))
                .build()
                .map_err(|e| Failure::usage(format!("template: {what}: {e}")))?,
        );
    }
    Ok(request)
}

/// The table's Kinesis streaming destination (`KinesisStreamSpecification`). Where the
/// endpoint has none (moto), a DynamoDB stream instead (`stream_arn` set), and what `dev run`
/// must forward from it to the Kinesis stream.
async fn kinesis_destination(
    ddb: &aws_sdk_dynamodb::Client,
    ctx: &Context,
    name: &str,
    props: &Value,
    what: &str,
    stream_arn: &mut Option<String>,
) -> Result<Option<Forward>, Failure> {
    let mut forward = None;
    let spec = &props["KinesisStreamSpecification"];
    if !spec.is_null() {
        let kinesis_arn = ctx
            .string(&spec["StreamArn"])
            .map_err(|e| Failure::usage(format!("template: {what}: StreamArn: {e}")))?;
        let precision = spec["ApproximateCreationDateTimePrecision"]
            .as_str()
            .unwrap_or("MILLISECOND")
            .to_owned();
        let kinesis_name = kinesis_arn
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let enabled = ddb
            .enable_kinesis_streaming_destination()
            .table_name(name)
            .stream_arn(&kinesis_arn)
            .send()
            .await;
        if let Err(e) = enabled {
            // moto 5.2 does not implement it (500); LocalStack and AWS do.
            eprintln!(
                "dev up: {name}: this endpoint has no Kinesis streaming destination ({}); \
                 enabled a DynamoDB stream instead, which `dev run` forwards to {kinesis_name} \
                 in the same record layout",
                error_code(&e).unwrap_or_else(|| "not implemented".into())
            );
            if stream_arn.is_none() {
                let updated = ddb
                    .update_table()
                    .table_name(name)
                    .stream_specification(
                        StreamSpecification::builder()
                            .stream_enabled(true)
                            .stream_view_type(StreamViewType::NewAndOldImages)
                            .build()
                            .map_err(|e| Failure::usage(format!("template: {what}: {e}")))?,
                    )
                    .send()
                    .await
                    .map_err(|e| Failure::runtime(sdk_error("DynamoDB UpdateTable", &e)))?;
                *stream_arn = updated
                    .table_description()
                    .and_then(|t| t.latest_stream_arn())
                    .map(str::to_owned);
            }
            let table_stream_arn = stream_arn.clone().ok_or_else(|| {
                Failure::runtime(format!("{name}: the endpoint enabled no DynamoDB stream"))
            })?;
            forward = Some(Forward {
                table: name.to_owned(),
                table_stream_arn,
                kinesis_stream: kinesis_name,
                precision,
            });
        }
    }
    Ok(forward)
}

fn print_summary(stack: &Stack, path: &std::path::Path) {
    println!(
        "dev stack at {} ({}), written to {}",
        stack.endpoint,
        stack.region,
        path.display()
    );
    for (logical, r) in &stack.resources {
        println!("  {logical:<28} {:<24} {}", r.kind, r.reference);
    }
    if !stack.archives.is_empty() {
        // moto's Firehose reads no Kinesis source and ignores the layout (docs/archive.md).
        println!(
            "  ({} delivery streams: delivered by `dev run` in Firehose's layout, not created in the emulator)",
            stack.archives.len()
        );
    }
    let name = |logical: &str| {
        stack
            .resources
            .get(logical)
            .map(|r| r.reference.clone())
            .unwrap_or_else(|| physical(logical))
    };
    println!("# environment for the functions and the AWS CLI:");
    println!(
        "export AWS_ENDPOINT_URL={} AWS_REGION={} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing",
        stack.endpoint, stack.region
    );
    for (var, logical) in [
        ("READINGS_TABLE", "ReadingsTable"),
        ("READINGS_STREAM", "ReadingsStream"),
        ("ACCIDENTS_STREAM", "AccidentsStream"),
        ("WINDOWS_TABLE", "WindowsTable"),
        ("ALERTS_TABLE", "AlertsTable"),
        ("TOPIC_ARN", "AlertsTopic"),
    ] {
        if stack.resources.contains_key(logical) {
            println!("export {var}={}", name(logical));
        }
    }
    println!(
        "# then, in other terminals (the producers read {} through --stack local):",
        path.display()
    );
    println!("#   streamwatch dev run");
    println!(
        "#   streamwatch simulate turbines --stack local --devices 2 --duration 120 --gust device1:90:60"
    );
    println!(
        "#   streamwatch replay accidents --stack local --csv tests/fixtures/us-accidents-sample.csv"
    );
}
