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

#[test]
fn a_target_specific_type_is_refused_by_another_target_at_file_line_and_column() {
    // The example's only environment is aws; without `-e` the implicit
    // `dev` environment deploys to local.
    let dir = "../../examples/aws-roles";
    let out = cairn(&["validate", dir]);
    assert_eq!(out.code, 2, "{}", out.snapshot());
    for (at, kind) in [
        ("cairn.yaml:23:11", "aws.iam_role"),
        ("cairn.yaml:42:11", "aws.iam_instance_profile"),
    ] {
        assert!(
            out.stderr.contains(&format!("{dir}/{at}")),
            "{at}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!(
                "`{kind}` deploys only to the aws target; environment `dev` deploys to local"
            )),
            "{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.contains("cairn::target_mismatch"),
        "{}",
        out.stderr
    );
    let aws = cairn(&["validate", dir, "-e", "aws"]);
    assert_eq!(aws.code, 0, "{}", aws.snapshot());
}
