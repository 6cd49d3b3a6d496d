//! The fault matrix: every case runs an operation under a fault, then proves
//! that every snapshot that should exist restores bit for bit from the
//! surviving destinations, and that `check` is clean after `sync` (or names
//! what no destination holds). It ends by printing a table; a case that loses
//! a byte fails the suite.
//!
//!   cargo test -p lifeboat-tests --test fault_matrix -- --nocapture
//!   LIFEBOAT_FAULT_SEEDS=20 cargo test -p lifeboat-tests --test fault_matrix -- --nocapture
//!
//! Cases that go through the real binary (SIGKILL, full disks, dead servers)
//! are in `matrix/process.rs`; the ones that wrap real backends in a seeded
//! [`ChaosBackend`] are in `matrix/chaos.rs`.

mod matrix;

use matrix::{Row, Table};

/// Seeds per case (`LIFEBOAT_FAULT_SEEDS`, default 1: the README's test command).
fn seeds() -> u64 {
    std::env::var("LIFEBOAT_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

#[test]
fn fault_matrix() {
    let seeds = seeds();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // LIFEBOAT_FAULT_CASE=text runs only the cases whose name contains it
    // (to replay one), LIFEBOAT_FAULT_SEED=n only that seed.
    let only = std::env::var("LIFEBOAT_FAULT_CASE").unwrap_or_default();
    let seed_list: Vec<u64> = match std::env::var("LIFEBOAT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(one) => vec![one],
        None => (0..seeds).collect(),
    };
    let mut table = Table::default();
    for case in matrix::chaos::CASES
        .iter()
        .filter(|c| c.name.contains(&only))
    {
        let mut row = Row::new(case.name);
        for &seed in &seed_list {
            let outcome = runtime.block_on((case.run)(seed));
            row.add(seed, outcome);
        }
        table.push(row);
    }
    for case in matrix::process::CASES
        .iter()
        .chain(matrix::sources::CASES)
        .filter(|c| c.name.contains(&only))
    {
        let mut row = Row::new(case.name);
        for &seed in &seed_list {
            // The binary's helpers assert as they go: a panic is a failed run.
            let result = std::panic::catch_unwind(|| (case.run)(seed)).unwrap_or_else(|p| {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(format!("panicked: {why}"))
            });
            row.add(seed, result);
        }
        table.push(row);
    }
    table.print();
    table.assert_no_loss();
}
