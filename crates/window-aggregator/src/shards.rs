//! Keeping the shard ledger (`streamwatch_core::progress`) in step with the stream: learning
//! the shards (on the first batch, when a batch comes from a shard the ledger does not know,
//! and on every schedule pass), retiring parents whose children deliver, and probing each
//! live shard so that one with nothing waiting counts as caught up.

use std::collections::BTreeSet;

use streamwatch_core::PortError;
use streamwatch_core::progress::{
    Ledger, ShardInfo, ShardLedger, ShardPosition, ShardProbe, ShardProgress,
};
use streamwatch_core::time::Micros;
use tracing::{info, warn};

use crate::Deps;
use crate::report::BatchReport;

/// Registers the shards of `listing` the ledger does not know yet, each starting from its
/// parents' progress, and marks the stream listed. `ledger` is updated in place.
async fn register<W: ShardLedger, A, P, C>(
    deps: &Deps<W, A, P, C>,
    ledger: &mut Ledger,
    listing: &[ShardInfo],
) -> Result<(), PortError> {
    let fresh: Vec<ShardProgress> = listing
        .iter()
        .filter(|i| ledger.get(&i.shard).is_none())
        .map(|i| ShardProgress {
            shard: i.shard.clone(),
            parents: i.parents.clone(),
            records: ledger.starting_progress(&i.parents),
            ..ShardProgress::default()
        })
        .collect();
    if fresh.is_empty() && ledger.listed {
        return Ok(());
    }
    for s in &fresh {
        info!(shard = %s.shard, parents = ?s.parents, starting = ?s.records, "shard registered");
    }
    deps.store.register(&deps.config.rule.name, &fresh).await?;
    ledger.shards.extend(fresh);
    ledger.listed = true;
    Ok(())
}

/// Makes sure the ledger lists every shard of the batch (and the stream was listed once),
/// and retires the parents of the batch's shards: Lambda finishes a parent shard before it
/// delivers from its children.
pub async fn know<W: ShardLedger, A, P: ShardProbe, C>(
    deps: &Deps<W, A, P, C>,
    ledger: &mut Ledger,
    batch_shards: &BTreeSet<&str>,
) -> Result<(), PortError> {
    if !ledger.listed || batch_shards.iter().any(|s| ledger.get(s).is_none()) {
        let mut listing = deps.probe.list_shards().await?;
        // A shard that delivered but is not listed (a listing that lags): no parents known.
        for s in batch_shards {
            if !listing.iter().any(|i| i.shard == *s) {
                listing.push(ShardInfo {
                    shard: (*s).to_owned(),
                    parents: Vec::new(),
                    closed: false,
                });
            }
        }
        register(deps, ledger, &listing).await?;
    }
    let parents: BTreeSet<String> = batch_shards
        .iter()
        .filter_map(|s| ledger.get(s))
        .flat_map(|s| s.parents.iter().cloned())
        .collect();
    for p in parents {
        if let Some(shard) = ledger
            .shards
            .iter_mut()
            .find(|s| s.shard == p && !s.retired)
        {
            deps.store.retire(&deps.config.rule.name, &p).await?;
            shard.retired = true;
            info!(shard = %p, "parent shard retired: a child delivers");
        }
    }
    Ok(())
}

/// The schedule's look at the stream: learns new shards, then asks about every live one.
/// A shard with nothing waiting is caught up as of `now` minus the grace; a closed one read
/// to its end (or gone from the stream) is retired; one with records waiting stays where
/// its records are, however long the backlog.
pub async fn probe<W: ShardLedger, A, P: ShardProbe, C>(
    deps: &Deps<W, A, P, C>,
    now: Micros,
    report: &mut BatchReport,
) -> Result<Ledger, PortError> {
    let rule = &deps.config.rule.name;
    let mut ledger = deps.store.ledger(rule).await?;
    let listing = deps.probe.list_shards().await?;
    register(deps, &mut ledger, &listing).await?;
    let cut = now - deps.config.grace.as_micros() as Micros;
    for shard in ledger.shards.iter_mut().filter(|s| !s.retired) {
        let Some(info) = listing.iter().find(|i| i.shard == shard.shard) else {
            // Past the stream's retention: nothing of it can be delivered any more.
            deps.store.retire(rule, &shard.shard).await?;
            shard.retired = true;
            continue;
        };
        match deps.probe.position(info, shard.sequence.as_deref()).await? {
            ShardPosition::CaughtUp => {
                deps.store.caught_up(rule, &shard.shard, cut).await?;
                shard.caught_up = shard.caught_up.max(Some(cut));
            }
            ShardPosition::Finished => {
                deps.store.retire(rule, &shard.shard).await?;
                shard.retired = true;
                info!(shard = %shard.shard, "closed shard finished: retired");
            }
            ShardPosition::Behind => {
                report.shards_behind += 1;
                warn!(shard = %shard.shard, progress = ?shard.progress(), "shard behind: its windows wait for its records");
            }
        }
    }
    Ok(ledger)
}
