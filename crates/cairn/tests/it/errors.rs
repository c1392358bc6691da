//! Every template error a user can make: full message snapshots, exit 2.
//! Each fixture directory holds a template and, optionally, an `args` file
//! with extra arguments for `cairn validate`.

use crate::cairn;

#[test]
fn template_errors() {
    insta::glob!("../fixtures/errors", "*/cairn.*", |path: &Path| {
        let dir = path.parent().unwrap();
        let rel = dir.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let rel = rel.to_str().unwrap();
        let extra = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
        let mut args = vec!["validate", rel];
        args.extend(extra.split_whitespace());
        let out = cairn(&args);
        assert_eq!(out.code, 2, "{}: expected exit 2\n{}", rel, out.stderr);
        assert!(out.stderr.contains("error: "), "{rel}: no summary line");
        insta::assert_snapshot!(out.snapshot());
    });
}

#[test]
fn secrets_never_appear_in_error_messages() {
    let out = cairn(&[
        "validate",
        "tests/fixtures/errors/secret_in_tags",
        "-p",
        "token=s3cr3t-value",
    ]);
    assert_eq!(out.code, 2);
    assert!(!out.stderr.contains("s3cr3t-value"));
    assert!(!out.stdout.contains("s3cr3t-value"));
}

#[test]
fn errors_point_at_file_line_and_column() {
    let out = cairn(&["validate", "tests/fixtures/errors/unknown_property"]);
    assert!(
        out.stderr
            .contains("tests/fixtures/errors/unknown_property/cairn.yaml:7:7"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("did you mean `internet`?"));
}
