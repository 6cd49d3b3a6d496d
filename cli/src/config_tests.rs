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
