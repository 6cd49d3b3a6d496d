//! Tests of the config file: parsing, selection, limits.

use super::*;

#[test]
fn s3_credentials_from_the_config_file() {
    let config: ConfigFile = toml::from_str(
        r#"
        [destinations.cloud]
        url = "s3://bucket/lb?endpoint=http://127.0.0.1:9&region=us-east-1"
        aws_access_key_id = "AKID"
        aws_secret_access_key = "s3cret"

        [destinations.half]
        url = "s3://bucket/x?endpoint=http://127.0.0.1:9&region=us-east-1"
        aws_access_key_id = "AKID"

        [destinations.disk]
        url = "/tmp/lb"
        aws_access_key_id = "AKID"
        aws_secret_access_key = "s3cret"
        "#,
    )
    .expect("parses");
    let creds = config.destinations["cloud"]
        .s3_credentials("cloud")
        .expect("valid")
        .expect("some");
    assert_eq!(
        (
            creds.access_key_id.as_str(),
            creds.secret_access_key.as_str()
        ),
        ("AKID", "s3cret")
    );
    let selected = config
        .select(&["cloud".into()], None)
        .expect("opens without any AWS variable");
    assert_eq!(selected.backends[0].name(), "cloud");
    let half = config
        .select(&["half".into()], None)
        .err()
        .expect("half credentials are refused");
    assert!(half.to_string().contains("both"), "{half}");
    let disk = config
        .select(&["disk".into()], None)
        .err()
        .expect("credentials on a disk are refused");
    assert!(
        disk.to_string().contains("s3:// destinations only"),
        "{disk}"
    );
}

#[test]
fn per_destination_uploads_and_attempts() {
    let config: ConfigFile = toml::from_str(
        r#"
        [destinations.far]
        url = "/tmp/lb-far"
        uploads = 8
        reads = 96
        attempts = 3

        [destinations.near]
        url = "/tmp/lb-near"

        [destinations.greedy]
        url = "/tmp/lb-greedy"
        uploads = 500
        "#,
    )
    .expect("parses");
    let set = config
        .select(&["far".into(), "near".into()], None)
        .expect("valid")
        .into_set()
        .expect("a set");
    assert_eq!(set.upload_limit("far"), 8);
    assert_eq!(set.upload_limit("near"), lifeboat_engine::DEFAULT_UPLOADS);
    assert_eq!(set.read_limit("far"), 96);
    assert_eq!(set.read_limit("near"), lifeboat_engine::DEFAULT_READS);
    let err = config
        .select(&["greedy".into()], None)
        .err()
        .expect("out of range");
    assert!(err.to_string().contains("uploads must be from 1"), "{err}");
    let config: ConfigFile = toml::from_str(
        r#"
        [destinations.far]
        url = "/tmp/lb-far"
        reads = 0
        "#,
    )
    .expect("parses");
    let err = config.select(&["far".into()], None).err().expect("zero");
    assert!(err.to_string().contains("reads must be from 1"), "{err}");
}

#[test]
fn destinations_keep_the_file_order() {
    let config: ConfigFile = toml::from_str(
        r#"
        [destinations.zulu]
        url = "/tmp/lb-z"
        [destinations.alpha]
        url = "/tmp/lb-a"
        [destinations.mike]
        url = "/tmp/lb-m"
        "#,
    )
    .expect("parses");
    let selected = config.select(&[], None).expect("valid");
    let names: Vec<&str> = selected.backends.iter().map(|b| b.name()).collect();
    assert_eq!(names, ["zulu", "alpha", "mike"]);
}

/// Issue 15, item 5: a debug print of the config never shows a secret, and
/// a config file holding secrets that others can read is noticed.
#[test]
fn secrets_are_redacted_and_a_readable_secret_file_is_noticed() {
    use std::os::unix::fs::PermissionsExt;
    let text = r#"
        [destinations.cloud]
        url = "s3://bucket/lb?endpoint=http://127.0.0.1:9&region=us-east-1"
        aws_access_key_id = "AKID"
        aws_secret_access_key = "s3cret-value"
        aws_session_token = "t0ken-value"
    "#;
    let config: ConfigFile = toml::from_str(text).unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("s3cret-value") && !shown.contains("t0ken-value"),
        "{shown}"
    );
    assert!(
        shown.contains("<redacted>") && shown.contains("AKID"),
        "{shown}"
    );
    assert!(config.holds_secrets());
    let plain: ConfigFile = toml::from_str("[destinations.d]\nurl = \"/tmp/x\"").unwrap();
    assert!(!plain.holds_secrets());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(readable_by_others(&path));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!readable_by_others(&path));
    assert!(load(Some(&path)).is_ok());
}
