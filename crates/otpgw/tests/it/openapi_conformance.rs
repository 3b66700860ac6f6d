//! The HTTP API against its own OpenAPI document, tested by a tool that did not
//! come from here: schemathesis (PyPI) reads `GET /v1/openapi.json` of a live
//! `otpgw serve` and generates requests from it (examples, boundary values,
//! fuzzing, negative data, stateful sequences), with all its default checks:
//! every answer's status must be documented, its body and headers must match the
//! document, schema-valid requests must be accepted and schema-invalid ones
//! refused, a missing API key must be refused. It must report no failure.
//!
//! One setting: a schema-valid request may also be answered 422, because an
//! `Idempotency-Key` the tool happens to reuse with another body is 422
//! `idempotency_key_reused` (draft-ietf-httpapi-idempotency-key-header), and a
//! valid number may have no route (422 `no_route`).

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::BANK_KEY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    if Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("OTPGW_REQUIRE_SCHEMATHESIS").is_none(),
            "schemathesis is required (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: schemathesis not installed; run scripts/test.sh");
        return;
    }
    let sim = common::sim(|c| c.receipt_delay = Duration::from_millis(5)).await;
    // Failed keys are part of the test: no lock-out, so every request reaches the
    // API's own logic.
    let (mut gw, base) =
        common::serve_http_process(&sim, "openapi-conformance", "lockout_after = 0").await;
    let dir = common::store_dir("schemathesis");
    let cfg = dir.join("schemathesis.toml");
    // A number the schema's pattern allows may still be invalid for its country
    // (its numbering plan is checked, beyond what a pattern can say): 400
    // `invalid_number` is a right answer to schema-valid data.
    std::fs::write(
        &cfg,
        "[checks.positive_data_acceptance]\nexpected-statuses = [\"2XX\", \"400\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\", \"5XX\"]\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("schemathesis")
            .arg("--config-file")
            .arg(&cfg)
            .args(["run", &format!("{base}/v1/openapi.json"), "--url", &base])
            .args(["-H", &format!("Authorization: Bearer {BANK_KEY}")])
            .args(["--max-examples", "40", "--seed", "20261206", "--no-color"])
            .current_dir(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains(" passed") && !report.contains("failed"),
        "schemathesis:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!gw.logs().contains("panicked"), "{}", gw.logs());
    assert_eq!(
        gw.term(Duration::from_secs(10)).await,
        Some(0),
        "{}",
        gw.logs()
    );
    sim.shutdown();
}
