//! Issue 12, item 10: an unreachable destination never stalls a command.
//! An S3 endpoint that refuses connections is given up within 5 s by every
//! command (one retry layer, a refused connection tried twice); an S3
//! destination without credentials fails with one line naming the variables,
//! without sending a request anywhere; `forget --prune` prunes what it can
//! reach and names what it skipped; `status` tells unreachable from damaged.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_tests::multi::{backup_args, free_port, init, run, status};
use lifeboat_tests::{tree, Sandbox, PASSWORD};

/// An S3 URL whose endpoint refuses connections (nothing listens there).
fn refusing_s3() -> String {
    format!(
        "s3://gone/lb?endpoint=http://127.0.0.1:{}&region=us-east-1",
        free_port()
    )
}

#[test]
fn a_refusing_destination_is_given_up_within_5_seconds_by_every_command() {
    let sb = Sandbox::new();
    let usb = sb.join("usb").display().to_string();
    init(&sb, &[usb.as_str()]);
    let src = sb.join("src");
    tree::write(&src.join("a.txt"), b"alpha");
    run(&sb, &[usb.as_str()], backup_args(&src)).success();
    let dead = refusing_s3();
    let both = [usb.as_str(), dead.as_str()];
    let src_arg = src.display().to_string();
    let cases: [(&[&str], i32); 6] = [
        (&["snapshots"], 0),
        (&["ls", "latest"], 0),
        (&["status"], 0),
        (&["check"], 1),
        (&["backup", src_arg.as_str()], 3),
        (&["forget", "--keep-last", "1", "--prune"], 3),
    ];
    for (args, code) in cases {
        let started = Instant::now();
        let out = run(&sb, &both, args);
        let took = started.elapsed();
        out.assert_code(code).stderr_has("s3-gone");
        assert!(
            took < Duration::from_secs(5),
            "{args:?} took {took:?} with a destination refusing connections"
        );
    }
    // forget --prune pruned the reachable destination and said so.
    let out = run(&sb, &both, ["forget", "--keep-last", "1", "--prune"]);
    out.assert_code(3).stdout_has("for deletion");

    // status: the dead one is unreachable, not damaged, and never "checked".
    let (_, list) = status(&sb, &both);
    let gone = list
        .iter()
        .find(|d| d["name"] == "s3-gone")
        .expect("s3-gone in status");
    assert_eq!(gone["reachable"], false, "{gone}");
    assert_eq!(gone["last_check"], serde_json::Value::Null, "{gone}");
    let text = run(&sb, &both, ["status"]).stdout_text();
    assert!(!text.contains("DAMAGED"), "{text}");
}

#[test]
fn missing_s3_credentials_are_one_line_and_send_no_request() {
    // A listener standing in for the S3 endpoint: it counts connections.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let counter = std::thread::spawn(move || {
        while !stopping.load(Ordering::Relaxed) {
            if listener.accept().is_ok() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });

    let sb = Sandbox::new();
    let url = format!("s3://bucket/lb?endpoint=http://127.0.0.1:{port}&region=us-east-1");
    let started = Instant::now();
    // The sandbox clears the environment: no AWS variable at all.
    let out = sb
        .command()
        .password(PASSWORD)
        .arg("-d")
        .arg(&url)
        .arg("snapshots")
        .run();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    counter.join().expect("counter thread");
    assert_ne!(out.code, 0);
    out.stderr_has("AWS_ACCESS_KEY_ID");
    let error_lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(error_lines.len(), 1, "{}", out.stderr);
    assert!(!out.stderr.contains("169.254"), "{}", out.stderr);
    assert_eq!(
        connections.load(Ordering::Relaxed),
        0,
        "a request was sent without credentials"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
