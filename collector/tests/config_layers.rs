//! Configuration precedence through the real binary: file < environment < flags.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

/// Runs `admin bootstrap` with the given config file, environment and flags, and reports which
/// of the candidate databases it created.
fn created_by(dir: &Path, env: Option<&str>, flag: Option<&str>) -> Vec<&'static str> {
    let db = |name: &str| format!("sqlite://{}", dir.join(name).display());
    let config = dir.join("collector.toml");
    std::fs::write(&config, format!("storage = \"{}\"\n", db("file.db"))).unwrap();
    let mut cmd = Command::new(common::collector_binary());
    cmd.args(["admin", "bootstrap", "--org", "acme", "--project", "p"]);
    cmd.arg("--config")
        .arg(&config)
        .env_remove("NEUROCLOAK_STORAGE");
    if let Some(name) = env {
        cmd.env("NEUROCLOAK_STORAGE", db(name));
    }
    if let Some(name) = flag {
        cmd.args(["--storage", &db(name)]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ["file.db", "env.db", "flag.db"]
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect()
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(created_by(dir.path(), None, None), vec!["file.db"]);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(created_by(dir.path(), Some("env.db"), None), vec!["env.db"]);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        created_by(dir.path(), Some("env.db"), Some("flag.db")),
        vec!["flag.db"]
    );
}

#[test]
fn bad_configuration_and_arguments_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "grpc_adr = \"127.0.0.1:1\"\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(common::collector_binary())
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let storage = format!("sqlite://{}", dir.path().join("x.db").display());
    let err = run(&["serve", "--config", config.to_str().unwrap()]);
    assert!(err.contains("grpc_adr"), "{err}");
    let err = run(&[
        "admin",
        "bootstrap",
        "--org",
        "Acme Corp",
        "--project",
        "p",
        "--storage",
        &storage,
    ]);
    assert!(err.contains("organization"), "{err}");
    let err = run(&[
        "admin",
        "create-key",
        "--project",
        "nope",
        "--name",
        "k",
        "--storage",
        &storage,
    ]);
    assert!(err.contains("project nope"), "{err}");
    let err = run(&[
        "admin",
        "create-key",
        "--project",
        "p",
        "--name",
        "k",
        "--scopes",
        "write",
        "--storage",
        &storage,
    ]);
    assert!(err.contains("unknown scope"), "{err}");
    let err = run(&[
        "admin",
        "revoke-key",
        "0000000000000000",
        "--storage",
        &storage,
    ]);
    assert!(err.contains("not found"), "{err}");
}
