//! `sandwatch policy check`: what an analyst sees for good and bad policy files.

mod support;

use support::*;

#[test]
fn policy_check_prints_the_resolved_policy_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "extends: strict\ncpu:\n  limit: \"0.5\"\nmemory:\n  limit: 256M\n",
    )
    .unwrap();
    let out = sandwatch(&["policy", "check", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("limit: 0.5") && text.contains("limit: 256M") && text.contains("max: 128"),
        "{text}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "memory:\n  limit: 1G\nfilesystem:\n  forbidden_paths: [/srv]\n  writable_paths: [/srv/x]\n  colour: red\n").unwrap();
    let out = sandwatch(&["policy", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains(&format!(
            "{}:6: filesystem.colour: unknown field `colour`",
            bad.display()
        )),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");

    let out = sandwatch(&["policy", "check", "strict"]);
    assert_eq!(out.status.code(), Some(0));
}
