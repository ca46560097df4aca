//! The real handler over the embedded sinks, driven by the shared fixtures and the sample
//! events in `events/`: what the sinks hold afterwards, what the response asks Lambda to
//! retry, and what a retry of it leaves behind.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use metrics_publisher::{BatchReport, Config, Deps, process};
use streamwatch_adapters::{EmbeddedAlertOutbox, EmbeddedMetricSink, EmfSink};
use streamwatch_core::kinesis::KinesisEventRecord;
use streamwatch_core::metrics::MetricSink;
use streamwatch_core::time::parse_iso;
use streamwatch_core::{AlertOutbox, AlertRecord, KinesisEvent, PortError, PutOutcome, Retry, kpl};

const KPL_FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/kinesis-accidents-kpl.json");
const KPL_EXPECTED: &str =
    include_str!("../../../tests/fixtures/kinesis-accidents-kpl.expected.jsonl");
const PLAIN_FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/kinesis-accidents-plain.json");
const SAMPLE_KPL: &[u8] = include_bytes!("../../../events/metrics-publisher-kpl.json");
const BAD_INPUT: &[u8] = include_bytes!("../../../events/metrics-publisher-bad-input.json");

/// 2026-11-21T12:30:00Z: half an hour after the fixtures' `Txn_Timestamp`s.
const NOW: i64 = 1_795_264_200_000_000;
const NS: &str = "streamwatch/accidents";
const OPS: &str = "streamwatch/metrics-publisher";

fn config(extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("ALERTS_TABLE".into(), "alerts".into());
    for (k, v) in extra {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_source(&vars).unwrap()
}

fn deps() -> Deps<EmbeddedMetricSink, EmbeddedAlertOutbox> {
    Deps {
        config: config(&[]),
        sink: EmbeddedMetricSink::new(),
        outbox: EmbeddedAlertOutbox::new(),
    }
}

fn event(bytes: &[u8]) -> KinesisEvent {
    serde_json::from_slice(bytes).unwrap()
}

/// (Severity, City, County, second) → count, for the records a fixture's reference
/// decoding says are selected by `Severity > 2`, and the sequence number of each one.
type Series = (String, String, String, i64);

struct Reference {
    counts: BTreeMap<Series, f64>,
    /// Each selected record's series and parent sequence number.
    samples: Vec<(Series, String)>,
    alerts: usize,
}

fn reference(expected_jsonl: &str) -> Reference {
    let mut counts = BTreeMap::new();
    let mut samples = Vec::new();
    let mut alerts = 0;
    for line in expected_jsonl.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let data = base64::engine::general_purpose::STANDARD
            .decode(row["data"].as_str().unwrap())
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&data).unwrap();
        let severity = r["Severity"].as_f64().unwrap();
        if severity >= 4.0 {
            alerts += 1;
        }
        if severity <= 2.0 {
            continue;
        }
        let micros = parse_iso(r["Txn_Timestamp"].as_str().unwrap()).unwrap();
        // CloudWatch takes ASCII dimension values only: the fixture's one non-ASCII city,
        // San José, is published as San Jose.
        let city = r["City"].as_str().unwrap().replace('é', "e");
        assert!(city.is_ascii(), "{city}");
        let key = (
            r["Severity"].to_string(),
            city,
            r["County"].as_str().unwrap().to_owned(),
            micros.div_euclid(1_000_000) * 1_000,
        );
        *counts.entry(key.clone()).or_insert(0.0) += 1.0;
        samples.push((key, row["sequenceNumber"].as_str().unwrap().to_owned()));
    }
    Reference {
        counts,
        samples,
        alerts,
    }
}

/// What the sink holds for the accident metric: series → sample count (and sum).
fn published(sink: &EmbeddedMetricSink) -> BTreeMap<Series, (f64, f64)> {
    let mut out = BTreeMap::new();
    for ((ns, name, dims, ts), stats) in sink.series() {
        if ns != NS {
            continue;
        }
        assert_eq!(name, "accidents");
        let names: Vec<&str> = dims.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["severity_accident", "city_accident", "county_accident"]
        );
        let key = (
            dims[0].value.clone(),
            dims[1].value.clone(),
            dims[2].value.clone(),
            ts,
        );
        let e = out.entry(key).or_insert((0.0, 0.0));
        e.0 += stats.sample_count;
        e.1 += stats.sum;
    }
    out
}

fn ops(sink: &EmbeddedMetricSink, name: &str) -> f64 {
    sink.stats(OPS, name, &[]).sum
}

fn failures(response: &aws_lambda_events::event::streams::KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect()
}

fn sequences(event: &KinesisEvent) -> Vec<String> {
    event
        .records
        .iter()
        .map(|r| r.kinesis.sequence_number.clone())
        .collect()
}

fn suffix(event: &KinesisEvent, from: usize) -> KinesisEvent {
    KinesisEvent {
        records: event.records[from..].to_vec(),
    }
}

#[tokio::test]
async fn kpl_fixture_collapses_1125_selected_records_into_3_calls() {
    // GIVEN the 5.6 MB KPL fixture (16 aggregated records, 3,918 accidents)
    let deps = deps();
    let event = event(KPL_FIXTURE);
    let reference = reference(KPL_EXPECTED);
    // WHEN the handler runs
    let (response, report) = process(&deps, &event, NOW).await;
    // THEN every selected record is in exactly one datum of the right series
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        report,
        BatchReport {
            records_in: 16,
            user_records: 3_918,
            malformed: 0,
            filtered_out: 2_793,
            selected: 1_125,
            datums: reference.counts.len(),
            metric_requests: 3,
            alerts_written: 321,
            alerts_existing: 0,
            alerts_without_key: 0,
            alerts_rejected: 0,
            datums_rejected: 0,
            retry_from: None,
            rejects: Vec::new(),
        }
    );
    let got = published(&deps.sink);
    let want: BTreeMap<Series, (f64, f64)> = reference
        .counts
        .iter()
        .map(|(k, n)| (k.clone(), (*n, *n)))
        .collect();
    assert_eq!(got, want);
    // 1,104 series at 1 s: 1,000 + 104 datums, plus one request of operational metrics;
    // the reference makes 1,125 PutMetricData calls for the same batch.
    assert_eq!(deps.sink.requests(), 3);
    assert_eq!(
        deps.sink.accepted_requests(),
        vec![(NS.into(), 1_000), (NS.into(), 104), (OPS.into(), 7)]
    );
    assert_eq!(ops(&deps.sink, "RecordsIn"), 16.0);
    assert_eq!(ops(&deps.sink, "UserRecords"), 3_918.0);
    assert_eq!(ops(&deps.sink, "Malformed"), 0.0);
    assert_eq!(ops(&deps.sink, "FilteredOut"), 2_793.0);
    assert_eq!(ops(&deps.sink, "DatumsPublished"), 1_104.0);
    assert_eq!(ops(&deps.sink, "AlertsWritten"), 321.0);
    assert_eq!(deps.outbox.alerts().len(), reference.alerts);
}

#[tokio::test]
async fn alerts_carry_what_the_alerter_needs() {
    let deps = deps();
    let event = event(SAMPLE_KPL);
    let (response, report) = process(&deps, &event, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (report.records_in, report.user_records, report.selected),
        (4, 12, 9)
    );
    assert_eq!((report.filtered_out, report.malformed), (3, 0));
    let alerts = deps.outbox.alerts();
    assert_eq!(alerts.len(), 4);
    assert_eq!(report.alerts_written, 4);
    // The first aggregated record's sixth sub-record is a Severity 4 accident.
    let first = &event.records[0];
    let seq = &first.kinesis.sequence_number;
    let a = alerts
        .iter()
        .find(|a| a.source == [format!("shardId-000000000000/{seq}/5")])
        .unwrap();
    // Its id is the accident's own `ID`: any other delivery of it is the same alert.
    assert_eq!(a.id, format!("accident-severity#id#{}", a.key));
    assert!(a.key.starts_with("A-"), "{}", a.key);
    assert_eq!(a.rule, "accident-severity");
    assert_eq!(a.kind, streamwatch_core::AlertKind::Event);
    assert_eq!(a.severity, "4");
    assert!(a.key.starts_with("A-"), "{}", a.key);
    for field in [
        "City",
        "County",
        "State",
        "Severity",
        "Description",
        "Start_Time",
    ] {
        assert!(a.details.contains_key(field), "{field}");
    }
    let d = &a.details;
    assert!(a.summary.starts_with(&format!(
        "Severity 4 accident in {}, {} County, {} at {}: ",
        d["City"], d["County"], d["State"], d["Start_Time"]
    )));
    assert_eq!(
        a.event_time_micros,
        parse_iso(&payload_field(first, 5, "Txn_Timestamp")).unwrap()
    );
    // A plain (not aggregated) record's source has no sub-sequence number.
    let plain = &event.records[1].kinesis.sequence_number;
    assert!(
        alerts
            .iter()
            .any(|a| a.source == [format!("shardId-000000000000/{plain}")])
    );
}

fn payload_field(record: &KinesisEventRecord, sub: usize, field: &str) -> String {
    let data = record.kinesis.data.0.as_ref().unwrap();
    let kpl::Payload::Aggregated(subs) = kpl::deaggregate(data).unwrap() else {
        panic!("aggregated");
    };
    let v: serde_json::Value = serde_json::from_slice(subs[sub].data).unwrap();
    v[field].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_input_is_skipped_and_counted_never_failing_the_batch() {
    // GIVEN the bad-input table of events/metrics-publisher-bad-input.json (17 records)
    let deps = deps();
    let event = event(BAD_INPUT);
    // WHEN the handler runs
    let (response, report) = process(&deps, &event, NOW).await;
    // THEN nothing is retried, and each row has its defined outcome
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.records_in, 17);
    // Broken base64 and a broken aggregate are malformed parents (no user records).
    assert_eq!(report.user_records, 15);
    // Not JSON, an array, no Severity, "high", two 5,000-char cities, no County, a
    // timestamp that is not a time, one ten years old, the two broken parents, and the
    // wrong-digest aggregate that reads as a plain non-JSON record.
    assert_eq!(report.malformed, 12);
    assert_eq!(report.filtered_out, 1);
    assert_eq!(report.selected, 4);
    let t = |s: &str| parse_iso(s).unwrap() / 1_000;
    let dims = |sev: &str| {
        (
            sev.to_owned(),
            "Cincinnati".to_owned(),
            "Hamilton".to_owned(),
        )
    };
    let mut want = BTreeMap::new();
    let (s, c, k) = dims("3");
    want.insert((s, c, k, t("2026-11-21T12:00:14")), (1.0, 1.0));
    // No Txn_Timestamp: the record's arrival time (12:00:00.5) is used.
    let (s, c, k) = dims("3");
    want.insert((s, c, k, t("2026-11-21T12:00:00")), (1.0, 1.0));
    let (s, c, k) = dims("4");
    want.insert((s, c, k, t("2026-11-21T12:00:14")), (1.0, 1.0));
    // "Cañon City" is published as "Canon City" (CloudWatch takes ASCII only).
    let (s, _, k) = dims("3");
    want.insert(
        (s, "Canon City".into(), k, t("2026-11-21T12:00:14")),
        (1.0, 1.0),
    );
    assert_eq!(published(&deps.sink), want);
    assert_eq!(ops(&deps.sink, "Malformed"), 12.0);
    // The Severity 4 record with a 5,000-character city has no metric but still alerts,
    // its details clipped to 1,000 characters.
    let alerts = deps.outbox.alerts();
    let keys: HashSet<&str> = alerts.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, HashSet::from(["A-huge-4", "A-good-4"]));
    let huge = alerts.iter().find(|a| a.key == "A-huge-4").unwrap();
    assert_eq!(huge.details["City"].chars().count(), 1_001);
    assert!(huge.summary.chars().count() < 1_400);
}

#[tokio::test]
async fn every_skipped_record_leaves_a_reject_line_with_its_coordinates_and_bytes() {
    // GIVEN the bad-input table (12 malformed records, counted above)
    let deps = deps();
    let event = event(BAD_INPUT);
    // WHEN the handler runs
    let (_, report) = process(&deps, &event, NOW).await;
    // THEN each malformed record has one reject line for the archive's rejected/ prefix,
    // naming its reason and its place, and holding the bytes the stream held
    assert_eq!(report.rejects.len(), report.malformed);
    assert_eq!(report.rejects.len(), 12);
    let envelope: HashMap<String, (String, Vec<u8>)> = event
        .records
        .iter()
        .map(|r| {
            (
                r.kinesis.sequence_number.clone(),
                (
                    r.kinesis.partition_key.clone(),
                    match &r.kinesis.data.0 {
                        Ok(bytes) => bytes.clone(),
                        // Broken base64: the text as the envelope held it.
                        Err(text) => text.as_bytes().to_vec(),
                    },
                ),
            )
        })
        .collect();
    let mut places = HashSet::new();
    for line in &report.rejects {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["archive"], "rejected", "{line}");
        assert!(!v["reason"].as_str().unwrap().is_empty(), "{line}");
        assert!(
            v["shard"].as_str().unwrap().starts_with("shardId-"),
            "{line}"
        );
        let seq = v["sequence"].as_str().unwrap().to_owned();
        let (key, raw) = &envelope[&seq];
        assert_eq!(v["partition_key"], key.as_str(), "{line}");
        let kept = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().unwrap())
            .unwrap();
        // A plain record (or a broken parent) is kept as the stream held it; a record in an
        // aggregate is its own bytes, which the aggregate contains.
        if v.get("sub_sequence").is_some() {
            assert!(raw.windows(kept.len()).any(|w| w == kept), "{line}");
        } else {
            assert_eq!(&kept, raw, "{line}");
        }
        assert!(
            places.insert((seq, v["sub_sequence"].as_u64())),
            "one line per record"
        );
    }
}

#[tokio::test]
async fn empty_batch_publishes_nothing() {
    let deps = deps();
    let (response, report) = process(&deps, &event(br#"{"Records":[]}"#), NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report, BatchReport::default());
    assert_eq!(deps.sink.requests(), 0);
    assert!(deps.outbox.alerts().is_empty());
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        serde_json::json!({"batchItemFailures": []})
    );
}

/// 10,000 accidents in KPL aggregates over 59 seconds, 40 cities, 2 severities.
fn big_event() -> (KinesisEvent, usize) {
    let mut agg = kpl::Aggregator::new(1_000_000);
    let mut records = Vec::new();
    let mut series = HashSet::new();
    let push = |a: kpl::AggregatedRecord, records: &mut Vec<serde_json::Value>| {
        let seq = format!(
            "4959033827149025660855969253836157109592157698{:010}",
            records.len()
        );
        records.push(serde_json::json!({
            "kinesis": {"partitionKey": a.partition_key, "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(&a.data),
                "approximateArrivalTimestamp": 1795262460.25},
            "eventID": format!("shardId-000000000003:{seq}"),
        }));
    };
    for i in 0..10_000u32 {
        let severity = 3 + (i % 7 == 0) as u32;
        let city = format!("City{}", (i * 7_919) % 40);
        let second = i / 170;
        series.insert((severity, city.clone(), second));
        let row = serde_json::json!({
            "ID": format!("A-{i}"), "Severity": severity, "City": city, "County": "Big",
            "State": "TX", "Description": "test", "Start_Time": "2016-02-08T00:37:00",
            "Txn_Timestamp": format!("2026-11-21T12:01:{second:02}.123456"),
        });
        let data = serde_json::to_vec(&row).unwrap();
        if let Some(a) = agg.add(&format!("A-{i}"), None, &data).unwrap() {
            push(a, &mut records);
        }
    }
    if let Some(a) = agg.finish() {
        push(a, &mut records);
    }
    let event = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
    (event, series.len())
}

#[tokio::test]
async fn ten_thousand_records_cost_a_handful_of_calls() {
    let deps = deps();
    let (event, series) = big_event();
    let (response, report) = process(&deps, &event, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.user_records, 10_000);
    assert_eq!(report.selected, 10_000);
    assert_eq!(report.datums, series);
    assert!(series > 2_000, "{series}");
    // ⌈series / 1,000⌉ requests of accident datums + 1 of operational metrics, against
    // 10,000 calls for one call per record.
    assert_eq!(report.metric_requests, series.div_ceil(1_000) + 1);
    assert_eq!(deps.sink.requests(), report.metric_requests);
    let total: f64 = published(&deps.sink).values().map(|(n, _)| n).sum();
    assert_eq!(total, 10_000.0);
    assert_eq!(
        report.alerts_written,
        (0..10_000).filter(|i| i % 7 == 0).count()
    );
}

#[tokio::test]
async fn the_same_batch_twice_creates_no_second_alert() {
    let deps = deps();
    let event = event(SAMPLE_KPL);
    let (_, first) = process(&deps, &event, NOW).await;
    let before = deps.outbox.alerts();
    let (response, second) = process(&deps, &event, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((first.alerts_written, first.alerts_existing), (4, 0));
    assert_eq!((second.alerts_written, second.alerts_existing), (0, 4));
    assert_eq!(deps.outbox.alerts(), before);
}

/// An outbox whose writes fail transiently for the records of one parent.
struct FlakyOutbox {
    inner: EmbeddedAlertOutbox,
    failing_sequence: String,
}

mod thiserror_free {
    /// A throttling error without pulling in thiserror for one test.
    #[derive(Debug)]
    pub struct Throttled;
    impl std::fmt::Display for Throttled {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ProvisionedThroughputExceededException")
        }
    }
    impl std::error::Error for Throttled {}
}

impl AlertOutbox for FlakyOutbox {
    async fn put_alert(&self, alert: &AlertRecord) -> Result<PutOutcome, PortError> {
        if alert.source[0].contains(&self.failing_sequence) {
            return Err(PortError::transient(
                "dynamodb.PutItem(alert)",
                thiserror_free::Throttled,
            ));
        }
        self.inner.put_alert(alert).await
    }
}

#[tokio::test]
async fn a_failed_alert_holds_back_the_metrics_of_its_parent_and_all_later_ones() {
    // GIVEN an outbox that cannot write the alerts of the KPL fixture's 6th parent
    let event = event(KPL_FIXTURE);
    let seqs = sequences(&event);
    let deps = Deps {
        config: config(&[]),
        sink: EmbeddedMetricSink::new(),
        outbox: FlakyOutbox {
            inner: EmbeddedAlertOutbox::new(),
            failing_sequence: seqs[5].clone(),
        },
    };
    let reference = reference(KPL_EXPECTED);
    // WHEN the handler runs
    let (response, report) = process(&deps, &event, NOW).await;
    // THEN Lambda is asked to retry from that parent, and only earlier parents' samples
    // were published
    assert_eq!(failures(&response), vec![seqs[5].clone()]);
    assert_eq!(report.retry_from.as_deref(), Some(seqs[5].as_str()));
    let early: f64 = reference
        .samples
        .iter()
        .filter(|(_, seq)| seqs[..5].contains(seq))
        .count() as f64;
    let published_now: f64 = published(&deps.sink).values().map(|(n, _)| n).sum();
    assert_eq!(published_now, early);
    assert!(early > 0.0 && early < 1_125.0);

    // WHEN Lambda retries from that parent and the outbox has recovered
    let healthy = Deps {
        config: config(&[]),
        sink: deps.sink,
        outbox: deps.outbox.inner,
    };
    let (response, _) = process(&healthy, &suffix(&event, 5), NOW).await;
    // THEN every series holds exactly its reference count (nothing published twice) and
    // every alert exists once
    assert!(response.batch_item_failures.is_empty());
    let got: BTreeMap<Series, f64> = published(&healthy.sink)
        .into_iter()
        .map(|(k, (n, _))| (k, n))
        .collect();
    assert_eq!(got, reference.counts);
    let ids: HashSet<String> = healthy.outbox.alerts().into_iter().map(|a| a.id).collect();
    assert_eq!(ids.len(), 321);
    assert_eq!(healthy.outbox.alerts().len(), 321);
}

#[tokio::test]
async fn a_failed_metric_request_retries_from_the_first_parent_it_carried() {
    // GIVEN a sink whose second PutMetricData request fails after its retries
    let deps = deps();
    deps.sink.fail_requests(1, 1, Retry::Transient);
    let event = event(KPL_FIXTURE);
    let seqs = sequences(&event);
    let reference = reference(KPL_EXPECTED);
    // WHEN the handler runs
    let (response, _) = process(&deps, &event, NOW).await;
    // THEN it asks for a retry from a parent p such that every parent before p had all
    // of its samples in the accepted request, and p itself had one in the failed request
    let failed = failures(&response);
    assert_eq!(failed.len(), 1);
    let p = seqs.iter().position(|s| *s == failed[0]).unwrap();
    assert!(
        p > 0,
        "the first request succeeded, so some parents are checkpointed"
    );
    let accepted: HashSet<Series> = published(&deps.sink).into_keys().collect();
    for (series, seq) in &reference.samples {
        let parent = seqs.iter().position(|s| s == seq).unwrap();
        if parent < p {
            assert!(
                accepted.contains(series),
                "parent {parent} < {p} not durable"
            );
        }
    }
    assert!(
        reference
            .samples
            .iter()
            .any(|(series, seq)| *seq == seqs[p] && !accepted.contains(series))
    );
    let alerts_before = deps.outbox.alerts().len();
    assert_eq!(alerts_before, 321);

    // WHEN Lambda retries from p with a healthy sink
    let (response, retry) = process(&deps, &suffix(&event, p), NOW).await;
    // THEN every series holds at least its reference count (metrics are at-least-once;
    // the excess is exactly the retried parents' samples that were already accepted),
    // and no alert is written twice
    assert!(response.batch_item_failures.is_empty());
    let got = published(&deps.sink);
    let mut excess = 0.0;
    for (series, n) in &reference.counts {
        let (have, _) = got[series];
        assert!(have >= *n, "{series:?}: {have} < {n}");
        excess += have - n;
    }
    let replayed_accepted = reference
        .samples
        .iter()
        .filter(|(series, seq)| seqs[p..].contains(seq) && accepted.contains(series))
        .count() as f64;
    assert_eq!(excess, replayed_accepted);
    assert_eq!(retry.alerts_written, 0);
    assert_eq!(deps.outbox.alerts().len(), 321);
}

#[tokio::test]
async fn a_permanently_rejected_request_is_logged_not_retried() {
    let deps = deps();
    deps.sink.fail_requests(0, 10, Retry::Permanent);
    let (response, report) = process(&deps, &event(SAMPLE_KPL), NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(report.datums_rejected, report.datums + 7);
    assert!(deps.sink.datums().is_empty());
    // Alerts do not depend on metrics.
    assert_eq!(deps.outbox.alerts().len(), 4);
}

#[tokio::test]
async fn failed_operational_metrics_alone_do_not_retry_the_batch() {
    let deps = deps();
    // Requests: accident datums, then operational metrics; fail only the latter.
    deps.sink.fail_requests(1, 1, Retry::Transient);
    let (response, _) = process(&deps, &event(SAMPLE_KPL), NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(deps.sink.accepted_requests(), vec![(NS.into(), 9)]);
}

#[tokio::test]
async fn response_names_the_retry_point_as_lambda_expects() {
    let deps = deps();
    deps.sink.fail_requests(0, 1, Retry::Transient);
    let event = event(SAMPLE_KPL);
    let (response, _) = process(&deps, &event, NOW).await;
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": event.records[0].kinesis.sequence_number}
        ]})
    );
}

#[tokio::test]
async fn emf_sink_carries_the_same_metrics_as_log_lines() {
    // GIVEN the EMF sink writing to a buffer
    let deps = Deps {
        config: config(&[("METRICS_SINK", "emf")]),
        sink: EmfSink::new(Vec::<u8>::new()),
        outbox: EmbeddedAlertOutbox::new(),
    };
    let reference = reference(KPL_EXPECTED);
    // WHEN the handler runs on the KPL fixture
    let (response, report) = process(&deps, &event(KPL_FIXTURE), NOW).await;
    assert!(response.batch_item_failures.is_empty());
    // THEN every line is valid EMF within the limits, and the samples add up per series
    let text = String::from_utf8(deps.sink.writer().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), report.metric_requests);
    assert_eq!(lines.len(), deps.sink.lines());
    let mut got: BTreeMap<Series, f64> = BTreeMap::new();
    let mut ops_seen = BTreeMap::new();
    for line in &lines {
        assert!(line.len() <= 256 * 1024);
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        let metrics = directive["Metrics"].as_array().unwrap();
        assert!(metrics.len() <= 100);
        if directive["Namespace"] == OPS {
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                ops_seen.insert(name.to_owned(), v[name][0].as_f64().unwrap());
            }
            continue;
        }
        assert_eq!(directive["Namespace"], NS);
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["severity_accident", "city_accident", "county_accident"]])
        );
        assert_eq!(metrics[0]["StorageResolution"], 1);
        assert_eq!(metrics[0]["Unit"], "Count");
        let values = v["accidents"].as_array().unwrap();
        assert!(values.len() <= 100);
        let key = (
            v["severity_accident"].as_str().unwrap().to_owned(),
            v["city_accident"].as_str().unwrap().to_owned(),
            v["county_accident"].as_str().unwrap().to_owned(),
            v["_aws"]["Timestamp"].as_i64().unwrap(),
        );
        *got.entry(key).or_default() += values.iter().map(|x| x.as_f64().unwrap()).sum::<f64>();
    }
    assert_eq!(got, reference.counts);
    assert_eq!(ops_seen["UserRecords"], 3_918.0);
    assert_eq!(ops_seen["AlertsWritten"], 321.0);
}

#[tokio::test]
async fn plain_fixture_and_a_numeric_value_field() {
    // GIVEN the plain fixture, every record selected, value = Distance(mi), 60 s buckets
    let deps = Deps {
        config: config(&[
            ("METRIC_FILTER", "all"),
            ("METRIC_VALUE", "Distance(mi)"),
            ("METRIC_UNIT", "None"),
            ("METRIC_STORAGE_RESOLUTION", "60"),
            ("METRIC_DIMENSIONS", "state=State"),
            ("ALERT_RULE", "off"),
        ]),
        sink: EmbeddedMetricSink::new(),
        outbox: EmbeddedAlertOutbox::new(),
    };
    let event = event(PLAIN_FIXTURE);
    let (response, report) = process(&deps, &event, NOW).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (report.records_in, report.selected, report.malformed),
        (1_000, 1_000, 0)
    );
    // THEN the sum per state is the sum of distances, whatever the bucketing
    let mut want: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for r in &event.records {
        let v: serde_json::Value =
            serde_json::from_slice(r.kinesis.data.0.as_ref().unwrap()).unwrap();
        let e = want
            .entry(v["State"].as_str().unwrap().to_owned())
            .or_default();
        e.0 += 1.0;
        e.1 += v["Distance(mi)"].as_f64().unwrap();
    }
    for (state, (n, sum)) in &want {
        let got = deps.sink.stats(NS, "accidents", &[("state", state)]);
        assert_eq!(got.sample_count, *n, "{state}");
        assert!(
            (got.sum - sum).abs() < 1e-6,
            "{state}: {} vs {sum}",
            got.sum
        );
    }
    assert!(
        deps.sink
            .datums()
            .iter()
            .all(|d| d.series.timestamp_millis % 60_000 == 0)
    );
    assert!(deps.outbox.alerts().is_empty());
}

/// The sink trait is object-agnostic: any sink works with the handler (compile check).
fn _generic<S: MetricSink>(_: &S) {}
