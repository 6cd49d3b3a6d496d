//! Work kept in flight within two bounds: a count (enough requests to fill
//! a far link) and a cost in bytes (the memory they hold). Items are taken
//! from their iterator only when they fit, so a run that waits costs
//! nothing yet.

use std::future::Future;
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::error::Result;

/// Runs `work` on each item of `items`, at most `limit` at once and their
/// `cost` within `budget` bytes (an item costing more runs alone), handing
/// each output to `done` as it finishes; stops at the first error `done`
/// returns.
///
/// # Errors
/// The first error from `done`.
pub(crate) async fn for_each_bounded<T, O, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    budget: u64,
    cost: impl Fn(&T) -> u64,
    work: impl Fn(T) -> Fut,
    mut done: impl FnMut(O) -> Result<()>,
) -> Result<()>
where
    Fut: Future<Output = O>,
{
    let capacity = budget.div_ceil(1024).clamp(1, u64::from(u32::MAX >> 4)) as u32;
    let gate = Arc::new(Semaphore::new(capacity as usize));
    let mut running = FuturesUnordered::new();
    for item in items {
        let units = (cost(&item).div_ceil(1024)).clamp(1, u64::from(capacity)) as u32;
        let permit = loop {
            if running.len() < limit.max(1) {
                if let Ok(permit) = gate.clone().try_acquire_many_owned(units) {
                    break permit;
                }
            }
            match running.next().await {
                Some(out) => done(out)?,
                // Nothing running: every permit is free.
                None => match gate.clone().acquire_many_owned(units).await {
                    Ok(permit) => break permit,
                    Err(_) => continue,
                },
            }
        };
        let job = work(item);
        running.push(async move {
            let out = job.await;
            drop(permit);
            out
        });
    }
    while let Some(out) = running.next().await {
        done(out)?;
    }
    Ok(())
}
