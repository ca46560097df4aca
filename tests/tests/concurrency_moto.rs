//! The DynamoDB path under concurrency, through moto: four shards carrying readings of the
//! same five turbines processed at once on separate tasks (each batch also delivered a
//! second time, as after a lost Lambda response), then two schedule invocations closing the
//! windows at the same time. Every window must hold exactly its readings (versioned
//! conditional writes re-read and re-apply on conflict) and every alert exist once.
//! `CHAOS_SEED`, `CHAOS_RECORDS` scale it.
//!
//! The alerter's concurrent invocations are not tested here: moto's TransactWriteItems
//! snapshots the whole table and restores the snapshot when a transaction is cancelled,
//! erasing writes other requests made meanwhile (11 of 300 acknowledged PutItems lost beside
//! two threads of failing transactions). Two invocations on the same alerts then resend
//! notifications whose `sent` mark moto dropped; real DynamoDB transactions do not do that.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use common::Rng;
use streamwatch_core::KinesisEvent;
use streamwatch_core::kinesis::KinesisEventRecord;
use streamwatch_emulator::esm::{Invocation, MappingConfig, drain_shard};
use streamwatch_tests::MotoServer;
use streamwatch_tests::faults::{env_or, seed_from_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_in_parallel_on_the_same_keys_keep_windows_exact() {
    let seed = seed_from_env();
    let records: usize = env_or("CHAOS_RECORDS", 2_000);
    println!("concurrency: seed {seed} (CHAOS_SEED), {records} readings on 4 shards");
    let started = Instant::now();
    let truth = common::turbines(&mut Rng::new(seed), records, 5, 20, 4);
    let moto = MotoServer::start();
    let ddb = aws_sdk_dynamodb::Client::new(&streamwatch_tests::sdk_config(&moto).await);
    common::create_window_tables(&ddb).await;
    let deps = Arc::new(common::deps(&ddb));
    let conflicts = Arc::new(AtomicU64::new(0));

    // WHEN every shard is drained on its own task, each batch delivered twice
    let tasks: Vec<_> = truth
        .shards
        .iter()
        .cloned()
        .map(|shard| {
            let (deps, conflicts) = (deps.clone(), conflicts.clone());
            tokio::spawn(async move {
                drain_shard(
                    &shard,
                    |r: &KinesisEventRecord| r.kinesis.sequence_number.as_str(),
                    MappingConfig {
                        batch_size: 50,
                        maximum_retry_attempts: 100,
                        bisect_on_error: true,
                    },
                    |batch: Vec<KinesisEventRecord>| {
                        let (deps, conflicts) = (deps.clone(), conflicts.clone());
                        async move {
                            let event = KinesisEvent { records: batch };
                            let mut failed = Vec::new();
                            for _ in 0..2 {
                                let (response, report) =
                                    window_aggregator::process_batch(&deps, &event).await;
                                conflicts.fetch_add(report.conflicts as u64, Ordering::SeqCst);
                                failed = response
                                    .batch_item_failures
                                    .into_iter()
                                    .filter_map(|f| f.item_identifier)
                                    .collect();
                            }
                            Invocation::Response { failed }
                        }
                    },
                )
                .await
            })
        })
        .collect();
    let mut invocations = 0;
    for task in tasks {
        let stats = task.await.expect("shard task");
        assert!(stats.given_up.is_empty());
        invocations += stats.invocations;
    }
    // AND two schedule invocations close the windows at once
    let (a, b) = tokio::join!(
        common::close_everything(&deps),
        common::close_everything(&deps)
    );

    // THEN the tables hold exactly the truth
    let (windows, alerts) = common::assert_tables_hold_truth(&ddb, &truth).await;
    println!(
        "concurrency summary: {} change records on 4 shards in parallel, each batch twice ({} invocations); \
         {} version conflicts re-applied; schedule passes {} + {}; {windows} windows and {alerts} alerts exact; {:.1}s",
        truth.shards.iter().map(Vec::len).sum::<usize>(),
        invocations * 2,
        conflicts.load(Ordering::SeqCst),
        a.0,
        b.0,
        started.elapsed().as_secs_f64()
    );
}
