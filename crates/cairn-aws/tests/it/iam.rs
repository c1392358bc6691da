//! IAM on moto: a role with a trust policy, inline and managed policies,
//! an instance profile holding it, and a server running with the profile;
//! each read back equal, updated part by part, found, listed and deleted.

use cairn_aws::AwsProvider;
use cairn_engine::provider::*;
use serde_json::{Value as Json, json};

use crate::moto::Moto;
use crate::provider::{network, read_req, req, tags};

const ROLE: &str = "aws.iam_role";
const PROFILE: &str = "aws.iam_instance_profile";

fn trust(services: &[&str]) -> Json {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": services},
            "Action": "sts:AssumeRole",
        }],
    })
}

fn allow(action: &str, resource: &str) -> Json {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
    })
}

fn update(
    kind: &str,
    address: &str,
    id: &str,
    prior: &Json,
    properties: &Json,
    changed: &[&str],
) -> UpdateRequest {
    let mut t = tags("d", address);
    t.insert("team".into(), "web".into());
    UpdateRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.parse().unwrap(),
        id: id.into(),
        prior: prior.clone(),
        properties: properties.clone(),
        tags: t,
        changed: changed.iter().map(|c| c.to_string()).collect(),
        token: format!("t-{address}-update"),
        sensitive: Vec::new(),
    }
}

/// The properties `read` reports that the template also says.
fn said(observed: &Observed) -> Json {
    let p = &observed.properties;
    json!({
        "description": p["description"],
        "assume_role_policy": p["assume_role_policy"],
        "inline_policies": p["inline_policies"],
        "managed_policies": p["managed_policies"],
    })
}

/// A customer managed policy (moto loads AWS's own only when asked).
async fn customer_policy(p: &AwsProvider, name: &str) -> String {
    p.clients()
        .iam
        .create_policy()
        .policy_name(name)
        .policy_document(allow("logs:PutLogEvents", "*").to_string())
        .send()
        .await
        .unwrap()
        .policy()
        .and_then(|p| p.arn())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_role_profile_and_server_lifecycle() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let custom = customer_policy(&p, "app-logs").await;
    let read_only = customer_policy(&p, "app-read-only").await;

    // Create: the name derived from the token, every part set.
    let props = json!({
        "name": null,
        "description": "the app servers",
        "assume_role_policy": trust(&["ec2.amazonaws.com"]),
        "inline_policies": {"s3": allow("s3:GetObject", "arn:aws:s3:::site/*")},
        "managed_policies": [custom],
    });
    let mut first = req(ROLE, "app_role", "t-role", props.clone());
    first.may_exist = false;
    let role = p.create(first).await.unwrap();
    assert!(role.id.starts_with("d-app-role-"), "{}", role.id);
    assert!(
        role.attributes["arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":role/{}", role.id)),
        "{}",
        role.attributes
    );
    let live = p.read(read_req(ROLE, &role.id)).await.unwrap().unwrap();
    assert_eq!(
        said(&live),
        json!({
            "description": "the app servers",
            "assume_role_policy": trust(&["ec2.amazonaws.com"]),
            "inline_policies": {"s3": allow("s3:GetObject", "arn:aws:s3:::site/*")},
            "managed_policies": [custom],
        })
    );
    assert_eq!(live.properties["name"], json!(role.id));
    assert_eq!(live.tags["cairn:token"], "t-role");
    assert_eq!(live.tags["cairn:resource"], "app_role");

    // A retried create adopts the role its first attempt made; a create
    // for another token meets a name it does not own.
    let again = p
        .create(req(ROLE, "app_role", "t-role", props.clone()))
        .await
        .unwrap();
    assert_eq!(again.id, role.id);
    let mut named = props.clone();
    named["name"] = json!(role.id);
    let clash = p.create(req(ROLE, "other", "t-other", named)).await;
    assert!(
        matches!(clash, Err(ProviderError::Conflict(_))),
        "{clash:?}"
    );
    let found = p
        .find(FindRequest {
            deployment: "d".into(),
            address: "app_role".into(),
            kind: ROLE.parse().unwrap(),
            token: "t-role".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, role.id);

    // Update each part: trust, description, inline (one changed, one new,
    // one gone), managed (swapped), tags.
    let changed = json!({
        "name": null,
        "description": "app servers and lambdas",
        "assume_role_policy": trust(&["ec2.amazonaws.com", "lambda.amazonaws.com"]),
        "inline_policies": {
            "logs": allow("logs:CreateLogStream", "*"),
        },
        "managed_policies": [read_only],
    });
    p.update(update(
        ROLE,
        "app_role",
        &role.id,
        &props,
        &changed,
        &[
            "assume_role_policy",
            "description",
            "inline_policies",
            "managed_policies",
        ],
    ))
    .await
    .unwrap();
    let live = p.read(read_req(ROLE, &role.id)).await.unwrap().unwrap();
    assert_eq!(
        said(&live),
        json!({
            "description": "app servers and lambdas",
            "assume_role_policy": trust(&["ec2.amazonaws.com", "lambda.amazonaws.com"]),
            "inline_policies": {"logs": allow("logs:CreateLogStream", "*")},
            "managed_policies": [read_only],
        })
    );
    assert_eq!(live.tags["team"], "web");
    assert_eq!(live.tags["cairn:token"], "t-role", "the token tag stays");

    // A managed policy IAM does not have: refused, the role still there.
    let mut missing = changed.clone();
    missing["managed_policies"] = json!(["arn:aws:iam::aws:policy/NoSuchPolicy"]);
    let refused = p
        .update(update(
            ROLE,
            "app_role",
            &role.id,
            &changed,
            &missing,
            &["managed_policies"],
        ))
        .await;
    assert!(
        matches!(refused, Err(ProviderError::Permanent(_))),
        "{refused:?}"
    );
    p.update(update(
        ROLE,
        "app_role",
        &role.id,
        &missing,
        &changed,
        &["managed_policies"],
    ))
    .await
    .unwrap();

    // A second role, and a profile that holds the first, then the second.
    let other = p
        .create(req(
            ROLE,
            "batch_role",
            "t-role2",
            json!({"name": "d-batch", "assume_role_policy": trust(&["ec2.amazonaws.com"])}),
        ))
        .await
        .unwrap();
    assert_eq!(other.id, "d-batch");
    let profile = p
        .create(req(
            PROFILE,
            "app_profile",
            "t-prof",
            json!({"name": null, "role": role.id}),
        ))
        .await
        .unwrap();
    let live = p
        .read(read_req(PROFILE, &profile.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.properties["role"], json!(role.id));
    assert_eq!(live.tags["cairn:token"], "t-prof");
    let again = p
        .create(req(
            PROFILE,
            "app_profile",
            "t-prof",
            json!({"name": null, "role": role.id}),
        ))
        .await
        .unwrap();
    assert_eq!(again.id, profile.id, "a retried create adopts");
    p.update(update(
        PROFILE,
        "app_profile",
        &profile.id,
        &json!({"name": null, "role": role.id}),
        &json!({"name": null, "role": other.id}),
        &["role"],
    ))
    .await
    .unwrap();
    let live = p
        .read(read_req(PROFILE, &profile.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.properties["role"], json!(other.id));
    assert_eq!(live.tags["team"], "web");

    // A server running with the profile.
    let (_, sub) = network(&p).await;
    let mut server = req(
        "server",
        "web",
        "t-web",
        json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []}),
    );
    server.target = Some(json!({"iam_instance_profile": profile.id}));
    let web = p.create(server).await.unwrap();
    assert_eq!(web.attributes["iam_instance_profile"], json!(profile.id));
    let described = p
        .clients()
        .ec2
        .describe_instances()
        .instance_ids(&web.id)
        .send()
        .await
        .unwrap();
    let arn = described.reservations()[0].instances()[0]
        .iam_instance_profile()
        .and_then(|i| i.arn())
        .unwrap()
        .to_string();
    assert!(
        arn.ends_with(&format!("instance-profile/{}", profile.id)),
        "{arn}"
    );

    // Listed for the deployment (for --prune), nothing for another.
    let listed = p.list("d").await.unwrap();
    for (kind, id, address) in [
        (ROLE, &role.id, "app_role"),
        (ROLE, &other.id, "batch_role"),
        (PROFILE, &profile.id, "app_profile"),
    ] {
        assert!(
            listed
                .iter()
                .any(|l| l.kind == kind && &l.id == id && l.address.as_deref() == Some(address)),
            "{kind} {id} not in {listed:?}"
        );
    }
    assert!(
        !p.list("another")
            .await
            .unwrap()
            .iter()
            .any(|l| l.kind.as_str().starts_with("aws."))
    );

    // Delete: the role while still in the profile and with its policies;
    // a second delete of each succeeds.
    let delete = |kind: &str, address: &str, id: &str| DeleteRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.parse().unwrap(),
        id: id.into(),
        properties: Json::Null,
        token: format!("t-{address}-delete"),
    };
    p.delete(delete("server", "web", &web.id)).await.unwrap();
    for _ in 0..2 {
        p.delete(delete(ROLE, "app_role", &role.id)).await.unwrap();
        p.delete(delete(ROLE, "batch_role", &other.id))
            .await
            .unwrap();
        p.delete(delete(PROFILE, "app_profile", &profile.id))
            .await
            .unwrap();
    }
    assert!(p.read(read_req(ROLE, &role.id)).await.unwrap().is_none());
    assert!(
        p.read(read_req(PROFILE, &profile.id))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !p.list("d")
            .await
            .unwrap()
            .iter()
            .any(|l| l.kind.as_str().starts_with("aws.")),
        "nothing of IAM left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn iam_documents_as_json_text_are_sent_and_read_as_maps() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let text = trust(&["ec2.amazonaws.com"]).to_string();
    let role = p
        .create(req(
            ROLE,
            "r",
            "t-text",
            json!({"name": "text-role", "assume_role_policy": text, "inline_policies": {"a": allow("s3:ListBucket", "*").to_string()}}),
        ))
        .await
        .unwrap();
    let live = p.read(read_req(ROLE, &role.id)).await.unwrap().unwrap();
    assert_eq!(
        live.properties["assume_role_policy"],
        trust(&["ec2.amazonaws.com"])
    );
    assert_eq!(
        live.properties["inline_policies"]["a"],
        allow("s3:ListBucket", "*")
    );
    assert_eq!(live.properties["managed_policies"], json!([]));
}
