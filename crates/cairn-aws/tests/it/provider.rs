//! Provider-level behaviour on moto: idempotent creates, `find`, drift of
//! firewall rules, import-shaped reads, `list` and deletes.

use std::collections::BTreeMap;

use cairn_aws::AwsProvider;
use cairn_engine::provider::*;
use cairn_engine::schema::Kind;
use serde_json::{Value as Json, json};

use crate::moto::Moto;

pub(crate) fn tags(deployment: &str, address: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cairn:deployment".into(), deployment.into()),
        ("cairn:resource".into(), address.into()),
    ])
}

pub(crate) fn req(kind: &str, address: &str, token: &str, properties: Json) -> CreateRequest {
    CreateRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.parse().unwrap(),
        properties,
        tags: tags("d", address),
        target: None,
        token: token.into(),
        sensitive: Vec::new(),
        may_exist: true,
    }
}

pub(crate) fn read_req(kind: &str, id: &str) -> ReadRequest {
    ReadRequest {
        deployment: "d".into(),
        address: kind.into(),
        kind: kind.parse().unwrap(),
        id: id.into(),
    }
}

/// The backends a balancer reads back with, sorted.
pub(crate) async fn backends_of(p: &AwsProvider, lb: &str) -> Vec<String> {
    let seen = p
        .read(read_req("load_balancer", lb))
        .await
        .unwrap()
        .expect("the balancer exists");
    let mut backends: Vec<String> = seen.properties["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    backends.sort();
    backends
}

/// A VPC and a subnet to put things in.
pub(crate) async fn network(p: &AwsProvider) -> (String, String) {
    let net = p
        .create(req(
            "network",
            "net",
            "t-net",
            json!({"cidr": "10.30.0.0/16", "internet": true}),
        ))
        .await
        .unwrap();
    let sub = p
        .create(req(
            "subnet",
            "sub",
            "t-sub",
            json!({"network": net.id, "cidr": "10.30.1.0/24", "public": true}),
        ))
        .await
        .unwrap();
    (net.id, sub.id)
}

/// The firewall's properties as the engine hands them over: every key of
/// every rule present after defaults.
fn firewall_props(net: &str) -> Json {
    json!({
        "name": null,
        "network": net,
        "description": null,
        "ingress": [
            {"protocol": "tcp", "port": 80, "ports": null, "from": "0.0.0.0/0", "to": null, "description": null},
            {"protocol": "tcp", "port": 22, "ports": null, "from": "203.0.113.0/24", "to": null, "description": null},
        ],
        "egress": [
            {"protocol": "all", "port": null, "ports": null, "from": null, "to": "0.0.0.0/0", "description": null},
        ],
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_create_with_the_same_token_makes_no_second_instance() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (_, sub) = network(&p).await;
    let props = json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": [], "user_data": "#!/bin/sh\necho hi\n"});
    let first = p
        .create(req("server", "web[0]", "tok-web", props.clone()))
        .await
        .unwrap();
    let again = p
        .create(req("server", "web[0]", "tok-web", props))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert!(
        first.attributes["private_ip"]
            .as_str()
            .unwrap()
            .starts_with("10.30.1.")
    );

    let ec2 = &p.clients().ec2;
    let out = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:cairn:token")
                .values("tok-web")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let n: usize = out.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(n, 1, "one instance for one token");

    let found = p
        .find(FindRequest {
            deployment: "d".into(),
            address: "web[0]".into(),
            kind: Kind::Server,
            token: "tok-web".into(),
        })
        .await
        .unwrap()
        .expect("find locates the instance");
    assert_eq!(found.id, first.id);
    let none = p
        .find(FindRequest {
            deployment: "d".into(),
            address: "web[1]".into(),
            kind: Kind::Server,
            token: "tok-other".into(),
        })
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_added_behind_cairns_back_is_read_and_removed_by_update() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (net, _) = network(&p).await;
    let props = firewall_props(&net);
    let fw = p
        .create(req("firewall", "web_fw", "t-fw", props.clone()))
        .await
        .unwrap();

    let read = p.read(read_req("firewall", &fw.id)).await.unwrap().unwrap();
    assert_eq!(
        read.properties["ingress"], props["ingress"],
        "read in template shape"
    );
    assert_eq!(read.properties["egress"], props["egress"]);

    // Someone opens PostgreSQL to the world by hand.
    p.clients()
        .ec2
        .authorize_security_group_ingress()
        .group_id(&fw.id)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let drifted = p.read(read_req("firewall", &fw.id)).await.unwrap().unwrap();
    assert_ne!(drifted.properties["ingress"], props["ingress"]);
    let extra = json!({"protocol": "tcp", "port": 5432, "ports": null, "from": "0.0.0.0/0", "to": null, "description": null});
    assert!(
        drifted.properties["ingress"]
            .as_array()
            .unwrap()
            .contains(&extra),
        "{}",
        drifted.properties["ingress"]
    );

    p.update(UpdateRequest {
        deployment: "d".into(),
        address: "web_fw".into(),
        kind: Kind::Firewall,
        id: fw.id.clone(),
        prior: props.clone(),
        properties: props.clone(),
        tags: tags("d", "web_fw"),
        changed: vec!["ingress".into()],
        token: "t-fw-update".into(),
        sensitive: Vec::new(),
    })
    .await
    .unwrap();
    let healed = p.read(read_req("firewall", &fw.id)).await.unwrap().unwrap();
    assert_eq!(healed.properties["ingress"], props["ingress"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_and_a_bucket_made_outside_cairn_read_in_template_shape() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (_, sub) = network(&p).await;
    let ec2 = &p.clients().ec2;
    let run = ec2
        .run_instances()
        .image_id("ami-1e749f67")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&sub)
        .user_data(base64_of("#!/bin/sh\necho imported\n"))
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("Name")
                        .value("legacy")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = run.instances()[0].instance_id().unwrap().to_string();
    let o = p
        .read(read_req("server", &id))
        .await
        .unwrap()
        .expect("the instance");
    let schema = p.schema("server").unwrap();
    let mut want: Vec<&str> = schema
        .property_names()
        .into_iter()
        .filter(|n| *n != "tags")
        .collect();
    let mut got: Vec<&str> = o
        .properties
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every property of the type, nothing else");
    assert_eq!(o.properties["name"], "legacy");
    assert_eq!(o.properties["image"], "ami-1e749f67");
    assert_eq!(o.properties["size"], "micro");
    assert_eq!(o.properties["subnet"], sub.as_str());
    assert_eq!(o.properties["user_data"], "#!/bin/sh\necho imported\n");
    assert_eq!(o.attributes["id"], id.as_str());
    assert!(o.attributes["private_ip"].is_string());

    p.clients()
        .s3
        .create_bucket()
        .bucket("legacy-bucket")
        .send()
        .await
        .unwrap();
    let b = p
        .read(read_req("bucket", "legacy-bucket"))
        .await
        .unwrap()
        .expect("the bucket");
    assert_eq!(
        b.properties,
        json!({"name": "legacy-bucket", "versioning": false, "public": true})
    );
    assert!(
        p.read(read_req("bucket", "no-such-bucket"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        p.read(read_req("server", "i-0123456789abcdef0"))
            .await
            .unwrap()
            .is_none()
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn data_and_keys_round_trip_and_everything_is_listed_then_deleted() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let bucket = p
        .create(req(
            "bucket",
            "assets",
            "t-b",
            json!({"name": null, "versioning": true, "public": false}),
        ))
        .await
        .unwrap();
    let again = p
        .create(req(
            "bucket",
            "assets",
            "t-b",
            json!({"name": null, "versioning": true, "public": false}),
        ))
        .await
        .unwrap();
    assert_eq!(
        bucket.id, again.id,
        "a retried bucket create adopts the first"
    );
    let b = p
        .read(read_req("bucket", &bucket.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.properties["versioning"], true);
    assert_eq!(b.properties["public"], false);

    let secret = p
        .create(req(
            "secret",
            "api_key",
            "t-s",
            json!({"name": null, "value": "s3cr3t", "description": "api"}),
        ))
        .await
        .unwrap();
    let s = p
        .read(read_req("secret", &secret.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.properties["value"], "s3cr3t");
    assert_eq!(s.tags["cairn:deployment"], "d");

    let key = p
        .create(req(
            "key_pair",
            "deployer",
            "t-k",
            json!({"name": "d-deployer", "public_key": null}),
        ))
        .await
        .unwrap();
    assert!(
        key.attributes["private_key"]
            .as_str()
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let k = p
        .read(read_req("key_pair", &key.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(k.attributes["fingerprint"], key.attributes["fingerprint"]);

    let mut listed = p.list("d").await.unwrap();
    listed.sort_by_key(|l| l.kind);
    let kinds: Vec<&str> = listed.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["bucket", "key_pair", "secret"]);
    assert!(
        listed
            .iter()
            .any(|l| l.address.as_deref() == Some("api_key"))
    );
    assert!(p.list("another").await.unwrap().is_empty());

    for l in &listed {
        let del = DeleteRequest {
            deployment: "d".into(),
            address: l.address.clone().unwrap_or_default(),
            kind: l.kind,
            id: l.id.clone(),
            properties: Json::Null,
            token: "del".into(),
        };
        p.delete(del.clone()).await.unwrap();
        // Already gone succeeds.
        p.delete(del).await.unwrap();
    }
    assert!(p.list("d").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_elastic_ip_moves_between_servers_and_is_released() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (_, sub) = network(&p).await;
    let props = json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []});
    let a = p
        .create(req("server", "web[0]", "t-a", props.clone()))
        .await
        .unwrap();
    let b = p
        .create(req("server", "web[1]", "t-b", props))
        .await
        .unwrap();
    let ip = p
        .create(req(
            "ip_address",
            "admin_ip",
            "t-ip",
            json!({"name": null, "server": a.id}),
        ))
        .await
        .unwrap();
    let address = ip.attributes["address"].as_str().unwrap().to_string();
    let server_of = |id: &str| {
        let p = &p;
        let id = id.to_string();
        async move {
            p.read(read_req("ip_address", &id))
                .await
                .unwrap()
                .unwrap()
                .properties["server"]
                .clone()
        }
    };
    assert_eq!(server_of(&ip.id).await, json!(a.id));
    // The server keeps its private address as `address`: its neighbours'
    // view of it does not move when an Elastic IP arrives.
    let seen = p.read(read_req("server", &a.id)).await.unwrap().unwrap();
    assert_eq!(seen.attributes["address"], a.attributes["private_ip"]);
    assert_eq!(seen.attributes["public_ip"], address.as_str());

    let update = |prior: Json, server: Json| UpdateRequest {
        deployment: "d".into(),
        address: "admin_ip".into(),
        kind: Kind::IpAddress,
        id: ip.id.clone(),
        prior,
        properties: json!({"name": null, "server": server}),
        tags: tags("d", "admin_ip"),
        changed: vec!["server".into()],
        token: "t-ip-u".into(),
        sensitive: Vec::new(),
    };
    let moved = p
        .update(update(json!({"server": a.id}), json!(b.id)))
        .await
        .unwrap();
    assert_eq!(
        moved["address"],
        address.as_str(),
        "the same public address"
    );
    assert_eq!(server_of(&ip.id).await, json!(b.id));
    // (The subnet gives public addresses: the first server is back to one
    // of its own.)
    let seen = p.read(read_req("server", &a.id)).await.unwrap().unwrap();
    assert_ne!(seen.attributes["public_ip"], address.as_str());

    p.update(update(json!({"server": b.id}), Json::Null))
        .await
        .unwrap();
    assert_eq!(server_of(&ip.id).await, Json::Null);

    let del = DeleteRequest {
        deployment: "d".into(),
        address: "admin_ip".into(),
        kind: Kind::IpAddress,
        id: ip.id.clone(),
        properties: Json::Null,
        token: "t-ip-d".into(),
    };
    p.delete(del.clone()).await.unwrap();
    p.delete(del).await.unwrap();
    assert!(
        p.read(read_req("ip_address", &ip.id))
            .await
            .unwrap()
            .is_none()
    );
    let left = p.clients().ec2.describe_addresses().send().await.unwrap();
    assert!(left.addresses().is_empty(), "{left:?}");
}

/// EBS and AMIs: a volume, a snapshot of it, a volume made from that
/// snapshot, an image of a server and a server started from the image;
/// each read back, listed for the deployment and deleted (twice: a
/// retried delete of what is gone succeeds).
#[tokio::test(flavor = "multi_thread")]
async fn volumes_snapshots_and_images_round_trip() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (_, sub) = network(&p).await;

    let vol = p
        .create(req(
            "volume",
            "data",
            "t-vol",
            json!({"name": null, "size_gb": 8, "snapshot": null, "zone": null}),
        ))
        .await
        .unwrap();
    let seen = p.read(read_req("volume", &vol.id)).await.unwrap().unwrap();
    assert_eq!(seen.properties["size_gb"], 8);
    assert!(
        seen.properties["zone"]
            .as_str()
            .is_some_and(|z| z.starts_with("us-east-1"))
    );
    assert_eq!(seen.tags["cairn:deployment"], "d");

    let snap = p
        .create(req(
            "snapshot",
            "backup",
            "t-snap",
            json!({"name": null, "volume": vol.id}),
        ))
        .await
        .unwrap();
    assert_eq!(snap.attributes["size_gb"], 8);
    let again = p
        .create(req(
            "snapshot",
            "backup",
            "t-snap",
            json!({"name": null, "volume": vol.id}),
        ))
        .await
        .unwrap();
    assert_eq!(again.id, snap.id, "a retried snapshot adopts the first");
    let seen = p
        .read(read_req("snapshot", &snap.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.properties["volume"], json!(vol.id));

    let restored = p
        .create(req(
            "volume",
            "restored",
            "t-restored",
            json!({"name": null, "size_gb": 8, "snapshot": snap.id, "zone": null}),
        ))
        .await
        .unwrap();
    let seen = p
        .read(read_req("volume", &restored.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.properties["snapshot"], json!(snap.id));

    let server = p
        .create(req(
            "server",
            "golden",
            "t-golden",
            json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []}),
        ))
        .await
        .unwrap();
    let image = p
        .create(req(
            "image",
            "golden_image",
            "t-image",
            json!({"name": "golden-1", "server": server.id}),
        ))
        .await
        .unwrap();
    assert!(image.id.starts_with("ami-"), "{}", image.id);
    let seen = p.read(read_req("image", &image.id)).await.unwrap().unwrap();
    assert_eq!(seen.properties["name"], "golden-1");
    let from_image = p
        .create(req(
            "server",
            "clone",
            "t-clone",
            json!({"image": image.id, "size": "small", "subnet": sub, "firewalls": []}),
        ))
        .await
        .unwrap();
    let instance = p
        .clients()
        .ec2
        .describe_instances()
        .instance_ids(&from_image.id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        instance.reservations()[0].instances()[0].image_id(),
        Some(image.id.as_str())
    );

    let mut listed: Vec<(String, String)> = p
        .list("d")
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.kind.to_string(), l.id))
        .collect();
    listed.sort();
    for (kind, id) in [
        ("image", &image.id),
        ("snapshot", &snap.id),
        ("volume", &vol.id),
        ("volume", &restored.id),
    ] {
        assert!(
            listed.contains(&(kind.to_string(), id.clone())),
            "{kind} {id} not listed: {listed:?}"
        );
    }

    // The image's own snapshots are not the deployment's to list: `--prune`
    // would take them for orphans.
    let snapshots: Vec<&String> = listed
        .iter()
        .filter(|(k, _)| k == "snapshot")
        .map(|(_, id)| id)
        .collect();
    assert_eq!(snapshots, [&snap.id]);

    // Dependents first, as the engine deletes.
    for (kind, id) in [
        ("server", &from_image.id),
        ("image", &image.id),
        ("server", &server.id),
        ("volume", &restored.id),
        ("snapshot", &snap.id),
        ("volume", &vol.id),
    ] {
        let del = DeleteRequest {
            deployment: "d".into(),
            address: kind.into(),
            kind: kind.parse().unwrap(),
            id: id.clone(),
            properties: Json::Null,
            token: format!("del-{id}"),
        };
        p.delete(del.clone()).await.unwrap();
        p.delete(del).await.unwrap();
        assert!(
            p.read(read_req(kind, id)).await.unwrap().is_none(),
            "{kind} {id} still reads after its delete"
        );
    }
}
