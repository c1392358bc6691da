//! The seeds' pattern through the real binary on moto: `examples/aws-roles`
//! (a role, an instance profile, servers launched with it). `up`, a clean
//! `drift`, a policy changed behind cairn's back named by `drift` and put
//! back by `up`, `import` of a role made by hand, `--prune` of a planted
//! role, and `destroy` leaving no role or profile. Read back with the SDK.

use std::collections::BTreeMap;

use serde_json::{Value as J, json};

use crate::aws::Moto;

const EXAMPLE: &str = "../../examples/aws-roles";
const DEPLOYMENT: &str = "aws-roles-aws";

fn json(out: &crate::Output) -> J {
    assert_eq!(out.code, 0, "{}", out.snapshot());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn allow(actions: &[&str]) -> J {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
}

/// IAM hands documents back URL-encoded on AWS, plainly on moto.
fn document(text: &str) -> J {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let mut out = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        serde_json::from_slice(&out).unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_roles_for_app_servers_up_drift_import_prune_destroy() {
    let moto = Moto::start("iam");
    let c = moto.clients().await;
    let iam = &c.iam;
    // A customer managed policy for the role (moto loads AWS's only on request).
    let managed = iam
        .create_policy()
        .policy_name("app-metrics")
        .policy_document(allow(&["cloudwatch:PutMetricData"]).to_string())
        .send()
        .await
        .unwrap()
        .policy()
        .and_then(|p| p.arn())
        .unwrap()
        .to_string();
    let params = moto.root.join("params.json");
    std::fs::write(&params, json!({"managed_policies": [managed]}).to_string()).unwrap();
    let params = params.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([EXAMPLE, "-e", "aws", "--param-file", params]);
        moto.run(&all)
    };

    let up = json(&run(&["up", "--yes", "-o", "json"]));
    assert_eq!(up["counts"]["created"], 6, "{up}");

    // The role, read back with the SDK.
    let roles = iam.list_roles().send().await.unwrap();
    assert_eq!(roles.roles().len(), 1, "{roles:?}");
    let role = roles.roles()[0].role_name().to_string();
    assert!(role.starts_with("aws-roles-aws-app-role-"), "{role}");
    let got = iam.get_role().role_name(&role).send().await.unwrap();
    let got = got.role().unwrap();
    let tags: BTreeMap<&str, &str> = got.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags["cairn:deployment"], DEPLOYMENT);
    assert_eq!(tags["team"], "app");
    assert_eq!(
        document(got.assume_role_policy_document().unwrap())["Statement"][0]["Principal"]["Service"],
        "ec2.amazonaws.com"
    );
    let mut inline = iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap()
        .policy_names()
        .to_vec();
    inline.sort();
    assert_eq!(inline, ["read_releases", "write_logs"]);
    let logs = iam
        .get_role_policy()
        .role_name(&role)
        .policy_name("write_logs")
        .send()
        .await
        .unwrap();
    let logs_doc = document(logs.policy_document());
    assert_eq!(
        logs_doc,
        allow(&["logs:CreateLogStream", "logs:PutLogEvents"])
    );
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attached.attached_policies()[0].policy_arn(),
        Some(managed.as_str())
    );

    // The profile holds the role, and both servers run with the profile.
    let profiles = iam.list_instance_profiles().send().await.unwrap();
    assert_eq!(profiles.instance_profiles().len(), 1);
    let profile = &profiles.instance_profiles()[0];
    assert_eq!(profile.roles()[0].role_name(), role);
    let profile = profile.instance_profile_name().to_string();
    let instances: Vec<_> = c
        .ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:cairn:deployment")
                .values(DEPLOYMENT)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .collect();
    assert_eq!(instances.len(), 2);
    for i in &instances {
        let arn = i.iam_instance_profile().and_then(|p| p.arn()).unwrap();
        assert!(
            arn.ends_with(&format!("instance-profile/{profile}")),
            "{arn}"
        );
    }
    let shown = json(&run(&["show", "--address", "app[0]", "-o", "json"]));
    assert_eq!(
        shown["attributes"]["iam_instance_profile"],
        profile.as_str(),
        "{shown}"
    );

    let clean = run(&["drift", "--detailed-exitcode", "-o", "json"]);
    assert_eq!(clean.code, 0, "{}", clean.snapshot());
    let again = run(&["plan", "--detailed-exitcode", "-o", "json"]);
    assert_eq!(
        again.code,
        0,
        "a second plan changes nothing: {}",
        again.snapshot()
    );

    // A policy widened behind cairn's back: drift names it, up puts it back.
    iam.put_role_policy()
        .role_name(&role)
        .policy_name("write_logs")
        .policy_document(allow(&["logs:*"]).to_string())
        .send()
        .await
        .unwrap();
    let drift = run(&["drift", "--detailed-exitcode", "-o", "json"]);
    assert_eq!(drift.code, 3, "{}", drift.snapshot());
    let report: J = serde_json::from_str(&drift.stdout).unwrap();
    let moved = report.as_array().unwrap();
    assert_eq!(moved.len(), 1, "{report}");
    assert_eq!(moved[0]["address"], "app_role");
    assert_eq!(moved[0]["properties"][0]["path"], "inline_policies");
    assert!(
        moved[0]["properties"][0]["actual"]
            .to_string()
            .contains("logs:*"),
        "{report}"
    );
    let up = json(&run(&["up", "--yes", "-o", "json"]));
    assert_eq!(up["counts"]["updated"], 1, "{up}");
    let logs = iam
        .get_role_policy()
        .role_name(&role)
        .policy_name("write_logs")
        .send()
        .await
        .unwrap();
    assert_eq!(document(logs.policy_document()), logs_doc);
    let after = run(&["drift", "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "{}", after.snapshot());

    // --prune finds a role tagged for the deployment that the state lacks.
    let tag = |k: &str, v: &str| {
        aws_sdk_iam::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    };
    iam.create_role()
        .role_name("planted")
        .assume_role_policy_document(allow(&["sts:AssumeRole"]).to_string())
        .tags(tag("cairn:deployment", DEPLOYMENT))
        .tags(tag("cairn:resource", "old_role"))
        .send()
        .await
        .unwrap();
    let pruned = run(&["plan", "--prune", "--detailed-exitcode", "-o", "json"]);
    assert_eq!(pruned.code, 3, "{}", pruned.snapshot());
    let plan: J = serde_json::from_str(&pruned.stdout).unwrap();
    let deletes: Vec<&J> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "delete")
        .collect();
    assert_eq!(deletes.len(), 1, "{plan}");
    assert_eq!(
        deletes[0]["address"], "orphan:aws.iam_role:planted",
        "{plan}"
    );
    let up = json(&run(&["up", "--yes", "--prune", "-o", "json"]));
    assert_eq!(up["counts"]["deleted"], 1, "{up}");
    assert!(iam.get_role().role_name("planted").send().await.is_err());

    // Import: a role made by hand, printed as the YAML that declares it.
    iam.create_role()
        .role_name("hand-made")
        .assume_role_policy_document(allow(&["sts:AssumeRole"]).to_string())
        .description("made by hand")
        .send()
        .await
        .unwrap();
    iam.put_role_policy()
        .role_name("hand-made")
        .policy_name("read")
        .policy_document(allow(&["s3:GetObject"]).to_string())
        .send()
        .await
        .unwrap();
    let imported = json(&run(&[
        "import",
        "aws.iam_role",
        "hand-made",
        "--as",
        "legacy_role",
        "-o",
        "json",
    ]));
    assert_eq!(imported["type"], "aws.iam_role");
    assert_eq!(imported["id"], "hand-made");
    let yaml = imported["yaml"].as_str().unwrap();
    assert!(
        yaml.starts_with("legacy_role:\n  type: aws.iam_role\n  properties:\n"),
        "{yaml}"
    );
    for line in [
        "name: hand-made",
        "description: made by hand",
        "assume_role_policy:",
        "inline_policies:",
        "read:",
        "s3:GetObject",
    ] {
        assert!(yaml.contains(line), "{line} in {yaml}");
    }
    let shown = json(&run(&["show", "--address", "legacy_role", "-o", "json"]));
    assert_eq!(shown["id"], "hand-made", "{shown}");

    // Destroy: no role and no profile left, the imported one included.
    json(&run(&["destroy", "--yes", "-o", "json"]));
    let roles = iam.list_roles().send().await.unwrap();
    assert!(roles.roles().is_empty(), "{roles:?}");
    let profiles = iam.list_instance_profiles().send().await.unwrap();
    assert!(profiles.instance_profiles().is_empty(), "{profiles:?}");
}
