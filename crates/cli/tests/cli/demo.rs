//! `offline-access demo`.

use serde_json::Value;

use crate::support::{Cli, token_like};

#[tokio::test]
async fn the_demo_runs_every_step_and_exits_zero() {
    let out = Cli::new().run(&["demo"]).await;

    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("All 8 steps worked"), "{}", out.stdout);
    assert!(!out.stdout.contains('✗'), "{}", out.stdout);
    for step in [
        "exchanges it at Google",
        "verifies the ID token",
        "profile",
        "encrypted at rest",
        "files.get('appDataFolder')",
        "refreshes it",
        "second sign-in returns no refresh token",
    ] {
        assert!(
            out.stdout.contains(step),
            "missing {step:?} in:\n{}",
            out.stdout
        );
    }
}

#[tokio::test]
async fn the_demo_json_reports_every_step_ok() {
    let out = Cli::new().run(&["demo", "--json"]).await;

    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    let steps = report["steps"].as_array().unwrap();
    let ids: Vec<&str> = steps.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "exchange",
            "id_token",
            "profile",
            "stored_encrypted",
            "drive_appfolder",
            "offline_refresh",
            "second_sign_in",
            "offline_again"
        ]
    );
    for step in steps {
        assert_eq!(step["ok"], true, "{step}");
        assert_eq!(step["status"], "ok", "{step}");
        assert!(!step["details"].as_array().unwrap().is_empty(), "{step}");
    }
}

#[tokio::test]
async fn the_demo_prints_no_token_value() {
    let out = Cli::new().run(&["demo", "--json"]).await;

    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert_eq!(token_like(&out.stdout), None, "{}", out.stdout);
    assert_eq!(token_like(&out.stderr), None, "{}", out.stderr);
}

#[tokio::test]
async fn the_demo_ignores_the_operators_configuration() {
    let mut cli = Cli::new();
    cli.write("offline-access.toml", "listen = \"not an address\"\n");
    cli.env("STORE__KIND", "postgres");

    let out = cli.run(&["demo", "--json"]).await;

    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
}
