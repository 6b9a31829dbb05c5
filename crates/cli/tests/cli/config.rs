//! `check-config`, configuration errors and usage errors.

use crate::support::Cli;

#[tokio::test]
async fn check_config_prints_the_effective_values_with_secrets_redacted() {
    let mut cli = Cli::new();
    cli.env(
        "SECURITY__ENCRYPTION_KEYS",
        "k1:Y2FuYXJ5LWtleS1jYW5hcnkta2V5LWNhbmFyeS0xMjM=",
    )
    .env("STORE__URL", "postgres://oa:canary-password@db/oa")
    .env("GOOGLE__ALLOWED_AZP", "android-1.apps,android-2.apps");
    cli.write("custom.toml", "listen = \"0.0.0.0:9090\"\n");

    let out = cli.run(&["check-config", "--config", "custom.toml"]).await;

    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("listen = \"0.0.0.0:9090\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("android-2.apps"), "{}", out.stdout);
    assert!(
        out.stdout.contains("encryption_keys = \"[REDACTED]\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("url = \"[REDACTED]\""),
        "{}",
        out.stdout
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("Y2FuYXJ5LWtleS1jYW5hcnkta2V5LWNhbmFyeS0xMjM="));
        assert!(!text.contains("canary-password"));
    }
}

#[tokio::test]
async fn an_invalid_value_exits_2_with_one_sentence_naming_the_key() {
    let mut cli = Cli::new();
    cli.env("GOOGLE__LEEWAY_SECS", "301");

    let out = cli.run(&["check-config"]).await;

    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("google.leeway_secs must be at most 300"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
}

#[tokio::test]
async fn a_missing_config_file_exits_2_naming_it() {
    let out = Cli::new()
        .run(&["check-config", "--config", "nowhere.toml"])
        .await;

    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("nowhere.toml"), "{}", out.stderr);
}

#[tokio::test]
async fn a_postgres_store_without_a_url_exits_2_naming_store_url() {
    let mut cli = Cli::new();
    cli.env("STORE__KIND", "postgres");

    let out = cli.run(&["users", "list"]).await;

    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("store.url"), "{}", out.stderr);
}

#[tokio::test]
async fn an_unreachable_postgres_exits_1_naming_store_url_without_its_password() {
    let mut cli = Cli::new();
    cli.env("STORE__KIND", "postgres")
        .env("STORE__URL", "postgres://oa:canary-password@127.0.0.1:1/oa")
        .env(
            "SECURITY__ENCRYPTION_KEYS",
            "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );

    let out = cli.run(&["users", "list"]).await;

    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("store.url"), "{}", out.stderr);
    assert!(!out.stderr.contains("canary-password"), "{}", out.stderr);
}

#[tokio::test]
async fn an_unknown_command_is_a_usage_error_with_exit_code_2() {
    let out = Cli::new().run(&["frobnicate"]).await;

    assert_eq!(out.code, 2);
}

#[tokio::test]
async fn migrate_on_the_file_store_has_nothing_to_do() {
    let out = Cli::new().run(&["migrate"]).await;

    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("nothing to migrate"), "{}", out.stdout);
}

#[tokio::test]
async fn keys_generate_prints_an_entry_that_the_configuration_accepts() {
    let cli = Cli::new();
    let out = cli.run(&["keys", "generate", "--id", "k2026"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let entry = out.stdout.trim().to_owned();
    assert!(entry.starts_with("k2026:"), "{entry}");

    let mut cli = Cli::new();
    cli.env("SECURITY__ENCRYPTION_KEYS", &entry);
    std::fs::create_dir(cli.dir().join("data")).unwrap();
    let out = cli.run(&["users", "list"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("no users stored"), "{}", out.stdout);
}

#[tokio::test]
async fn a_malformed_encryption_key_exits_2_naming_the_setting_without_echoing_it() {
    let mut cli = Cli::new();
    cli.env("SECURITY__ENCRYPTION_KEYS", "k1:c2hvcnQtY2FuYXJ5");

    let out = cli.run(&["users", "list"]).await;

    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("security.encryption_keys"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("c2hvcnQtY2FuYXJ5"), "{}", out.stderr);
}
