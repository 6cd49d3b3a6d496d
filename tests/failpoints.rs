//! Guards the crash tests (cli_prune, the fault matrix): the `lifeboat`
//! binary they run must have the engine's crash hooks compiled in (the
//! `failpoints` feature, which scripts/test.sh turns on). Without them
//! `LIFEBOAT_FAILPOINT` is ignored, the prune meant to be killed finishes,
//! and the crash tests no longer test a crash.

use lifeboat_tests::{tree, Sandbox};

#[test]
fn the_binary_dies_at_a_named_failpoint() {
    let sb = Sandbox::new();
    sb.init_repo();
    let src = sb.join("src");
    std::fs::create_dir_all(&src).expect("mkdir src");
    tree::write_generated(&src.join("data.bin"), 1 << 20, 7, false);
    let summary = sb.backup(&[&src]);
    let id = summary["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no snapshot_id: {summary}"));
    sb.repo_cmd(["forget", id]).success();
    // The only snapshot is forgotten: the prune drops its pack, rewrites the
    // index and passes the failpoint right after.
    let killed = sb
        .command()
        .password(lifeboat_tests::PASSWORD)
        .dest(&sb.repo())
        .env("LIFEBOAT_FAILPOINT", "prune-after-index")
        .args(["prune", "--max-unused", "0%", "--grace", "0s"])
        .run();
    assert_eq!(
        killed.signal,
        Some(libc::SIGKILL),
        "LIFEBOAT_FAILPOINT did not kill the binary (exit {}): it was built without the \
         failpoints feature; build it as scripts/test.sh does, or with \
         `cargo build -p lifeboat-cli --features failpoints`\n{}",
        killed.code,
        killed.stderr
    );
}
