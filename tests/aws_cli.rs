//! The AWS CLI, with its default settings plus `--endpoint-url`, uploads to
//! the embedded origin (single and multipart, with its default checksums),
//! and the edge then serves what it uploaded. `scripts/test` installs the CLI.

mod common;

use std::process::Command;

use common::{ACCESS_KEY, SECRET, Stack, patterned};

fn aws(stack: &Stack, args: &[&str]) -> std::process::Output {
    Command::new("aws")
        .args(["--endpoint-url", &format!("http://{}", stack.origin.address)])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the AWS CLI is installed (scripts/ensure-deps test installs it)")
}

#[test]
fn aws_cli_uploads_and_the_edge_serves_the_objects() {
    let stack = Stack::start("");
    let dir = tempfile::tempdir().unwrap();
    // 9 MB is above the CLI's 8 MB multipart threshold.
    for (name, size, content_type) in [("small.txt", 1_000, "text/plain"), ("large.mp4", 9_000_000, "video/mp4")] {
        let path = dir.path().join(name);
        std::fs::write(&path, patterned(size)).unwrap();
        let target = format!("s3://{}/cli/{name}", common::BUCKET);
        let output = aws(
            &stack,
            &[
                "s3",
                "cp",
                path.to_str().unwrap(),
                &target,
                "--content-type",
                content_type,
                "--no-progress",
            ],
        );
        assert!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
        let served = stack.get(&stack.signed(&format!("/cli/{name}")));
        assert_eq!(served.status, 200);
        assert_eq!(served.header("content-type"), Some(content_type));
        assert!(served.body == patterned(size), "{name}: the edge served other bytes");
    }
    let wrong_bucket = aws(
        &stack,
        &["s3", "cp", dir.path().join("small.txt").to_str().unwrap(), "s3://other/x"],
    );
    assert!(!wrong_bucket.status.success(), "a key opens its own bucket only");
}
