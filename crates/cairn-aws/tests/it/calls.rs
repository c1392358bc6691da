//! Fewer calls, same guarantees: a run's first create looks for no earlier
//! attempt, yet recovery (an intent journaled, the answer lost) finds what
//! it made by its token; what a create knows is not read back; reads of
//! many resources share calls and each still gets its own; deletes that
//! try the one call first fall back when it does not fit; deletes made at
//! once share calls, and one that does not fit fails only itself; a
//! balancer's backends this run saw running are not described again, and
//! terminated instances are not described at all.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_aws::AwsProvider;
use cairn_engine::provider::*;
use cairn_engine::schema::Kind;
use serde_json::{Value as Json, json};

use crate::moto::Moto;
use crate::provider::{backends_of, read_req, req};
use crate::recorder::Recorder;

/// A run's first attempt: nothing can exist yet.
fn first(kind: &str, address: &str, token: &str, properties: Json) -> CreateRequest {
    CreateRequest {
        may_exist: false,
        ..req(kind, address, token, properties)
    }
}

async fn found(p: &AwsProvider, kind: &str, address: &str, token: &str) -> Option<Created> {
    p.find(FindRequest {
        deployment: "d".into(),
        address: address.into(),
        kind: kind.parse().unwrap(),
        token: token.into(),
    })
    .await
    .unwrap()
}

fn delete_req(kind: &str, id: &str, properties: Json) -> DeleteRequest {
    DeleteRequest {
        deployment: "d".into(),
        address: kind.into(),
        kind: kind.parse().unwrap(),
        id: id.into(),
        properties,
        token: "del".into(),
    }
}

fn server_props(subnet: &str, firewall: &str) -> Json {
    json!({"image": "ubuntu-16.04", "size": "small", "subnet": subnet, "firewalls": [firewall], "user_data": "#!/bin/sh\necho hi\n"})
}

#[tokio::test(flavor = "multi_thread")]
async fn first_attempts_look_for_nothing_yet_recovery_finds_each_by_its_token() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let net = p
        .create(first(
            "network",
            "net",
            "r-net",
            json!({"cidr": "10.40.0.0/16", "internet": true}),
        ))
        .await
        .unwrap();
    let sub = p
        .create(first(
            "subnet",
            "sub",
            "r-sub",
            json!({"network": net.id, "cidr": "10.40.1.0/24"}),
        ))
        .await
        .unwrap();
    let fw = p
        .create(first(
            "firewall",
            "fw",
            "r-fw",
            json!({
                "network": net.id,
                "ingress": [{"protocol": "tcp", "port": 80, "from": "0.0.0.0/0"}],
                "egress": [{"protocol": "all", "to": "0.0.0.0/0"}],
            }),
        ))
        .await
        .unwrap();
    // Two servers at once: their polls share calls.
    let (a, b) = tokio::join!(
        p.create(first(
            "server",
            "web[0]",
            "r-web0",
            server_props(&sub.id, &fw.id)
        )),
        p.create(first(
            "server",
            "web[1]",
            "r-web1",
            server_props(&sub.id, &fw.id)
        )),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.id, b.id);
    let ips = vec![
        a.attributes["address"].as_str().unwrap().to_string(),
        b.attributes["address"].as_str().unwrap().to_string(),
    ];
    let lb = p
        .create(first(
            "load_balancer",
            "lb",
            "r-lb",
            json!({
                "listen": {"protocol": "http", "port": 80},
                "backends": ips,
                "backend_port": 8080,
                "health_check": {"path": "/", "interval": "5s"},
                "firewalls": [fw.id],
            }),
        ))
        .await
        .unwrap();
    let bucket = p
        .create(first(
            "bucket",
            "box",
            "r-box",
            json!({"versioning": false, "public": false}),
        ))
        .await
        .unwrap();
    let secret = p
        .create(first(
            "secret",
            "token",
            "r-token",
            json!({"value": "s3cr3t"}),
        ))
        .await
        .unwrap();
    let zone = p
        .create(first(
            "dns_zone",
            "zone",
            "r-zone",
            json!({"name": "recover.test"}),
        ))
        .await
        .unwrap();

    // What a first attempt skipped reading is what the target holds.
    let s = p.read(read_req("subnet", &sub.id)).await.unwrap().unwrap();
    assert_eq!(s.properties["public"], false);
    let f = p.read(read_req("firewall", &fw.id)).await.unwrap().unwrap();
    let rules = |key: &str| {
        f.properties[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["protocol"].clone(), r["port"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(rules("ingress"), [(json!("tcp"), json!(80))]);
    assert_eq!(rules("egress"), [(json!("all"), Json::Null)]);
    let mut want = ips.clone();
    want.sort();
    assert_eq!(backends_of(&p, &lb.id).await, want);
    let l = p
        .read(read_req("load_balancer", &lb.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l.properties["listen"]["port"], 80);
    let bk = p
        .read(read_req("bucket", &bucket.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bk.properties["versioning"], false);
    assert_eq!(bk.properties["public"], false);

    // A run killed after each call went out and before its answer was
    // journaled: the next run's recovery finds every one by its token.
    for (kind, address, token, made) in [
        ("network", "net", "r-net", &net),
        ("subnet", "sub", "r-sub", &sub),
        ("firewall", "fw", "r-fw", &fw),
        ("server", "web[0]", "r-web0", &a),
        ("load_balancer", "lb", "r-lb", &lb),
        ("bucket", "box", "r-box", &bucket),
        ("secret", "token", "r-token", &secret),
        ("dns_zone", "zone", "r-zone", &zone),
    ] {
        let got = found(&p, kind, address, token)
            .await
            .unwrap_or_else(|| panic!("recovery finds the {kind} made by {token}"));
        assert_eq!(&got.id, &made.id, "{kind}");
    }
    assert!(found(&p, "server", "web[2]", "r-web2").await.is_none());

    // A retried create (the answer to the first lost) adopts, not doubles.
    let again = p
        .create(req(
            "server",
            "web[1]",
            "r-web1",
            server_props(&sub.id, &fw.id),
        ))
        .await
        .unwrap();
    assert_eq!(again.id, b.id);
    let lb_again = p
        .create(req(
            "load_balancer",
            "lb",
            "r-lb",
            json!({
                "listen": {"protocol": "http", "port": 80},
                "backends": ips,
                "backend_port": 8080,
                "health_check": {"path": "/", "interval": "5s"},
                "firewalls": [fw.id],
            }),
        ))
        .await
        .unwrap();
    assert_eq!(lb_again.id, lb.id);
    let balancers = p
        .clients()
        .elb
        .describe_load_balancers()
        .send()
        .await
        .unwrap();
    assert_eq!(balancers.load_balancers().len(), 1);
}

/// Every call at once (as a refresh or a destroy makes them), answers in
/// order.
async fn at_once<T: Send + 'static>(
    calls: impl IntoIterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let mut running = tokio::task::JoinSet::new();
    for (i, call) in calls.into_iter().enumerate() {
        running.spawn(async move { (i, call.await) });
    }
    let mut out: Vec<Option<T>> = (0..running.len()).map(|_| None).collect();
    while let Some(done) = running.join_next().await {
        let (i, r) = done.unwrap();
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("every call answered"))
        .collect()
}

async fn read_all(p: &Arc<AwsProvider>, ids: &[String]) -> Vec<ProviderResult<Option<Observed>>> {
    at_once(ids.iter().map(|id| {
        let (p, id) = (p.clone(), id.clone());
        async move { p.read(read_req("server", &id)).await }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn many_servers_read_at_once_each_get_their_own_and_the_gone_read_none() {
    let moto = Moto::start();
    let p = Arc::new(moto.provider().await);
    let (_, sub) = crate::provider::network(&p).await;
    let props = json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []});
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (p, props) = (p.clone(), props.clone());
        creates.spawn(async move {
            let address = format!("web[{i}]");
            let made = p
                .create(first("server", &address, &format!("m-web{i}"), props))
                .await;
            (i, made)
        });
    }
    let mut made = vec![None; 4];
    while let Some(done) = creates.join_next().await {
        let (i, c) = done.unwrap();
        made[i] = Some(c.unwrap());
    }
    let made: Vec<Created> = made.into_iter().map(Option::unwrap).collect();
    let mut ids: Vec<String> = made.iter().map(|c| c.id.clone()).collect();
    ids.push("i-0123456789abcdef0".into());
    let seen = read_all(&p, &ids).await;
    for (c, o) in made.iter().zip(&seen) {
        let o = o.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(o.attributes["id"], json!(c.id));
        assert_eq!(o.attributes["address"], c.attributes["address"]);
    }
    assert_eq!(seen.last().unwrap(), &Ok(None), "an id that never was");

    p.delete(delete_req("server", &made[0].id, Json::Null))
        .await
        .unwrap();
    let after = read_all(&p, &ids[..4]).await;
    assert_eq!(after[0], Ok(None), "terminated is gone");
    assert!(after[1..].iter().all(|o| matches!(o, Ok(Some(_)))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_is_deleted_as_recorded_or_as_found_when_it_changed() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let zone = p
        .create(first(
            "dns_zone",
            "zone",
            "z",
            json!({"name": "calls.test"}),
        ))
        .await
        .unwrap();
    let props = |values: &[&str]| json!({"zone": zone.id, "name": "www", "type": "A", "ttl": 60, "values": values});
    let www = p
        .create(first("dns_record", "www", "w", props(&["10.0.0.1"])))
        .await
        .unwrap();
    let names = || async {
        let out = p
            .clients()
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&zone.id)
            .send()
            .await
            .unwrap();
        out.resource_record_sets()
            .iter()
            .filter(|s| s.r#type().as_str() == "A")
            .map(|s| s.name().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["www.calls.test."]);
    // A provider that never asked the zone's name (a destroy's): the id
    // holds the record's full name.
    let fresh = moto.provider().await;
    fresh
        .delete(delete_req("dns_record", &www.id, props(&["10.0.0.1"])))
        .await
        .unwrap();
    assert!(names().await.is_empty());

    // Changed behind cairn's back: the recorded values no longer match.
    let www = p
        .create(first("dns_record", "www", "w2", props(&["10.0.0.1"])))
        .await
        .unwrap();
    p.update(UpdateRequest {
        deployment: "d".into(),
        address: "www".into(),
        kind: Kind::DnsRecord,
        id: www.id.clone(),
        prior: props(&["10.0.0.1"]),
        properties: props(&["10.0.0.9", "10.0.0.8"]),
        tags: BTreeMap::new(),
        changed: vec!["values".into()],
        token: "u".into(),
        sensitive: Vec::new(),
    })
    .await
    .unwrap();
    p.delete(delete_req("dns_record", &www.id, props(&["10.0.0.1"])))
        .await
        .unwrap();
    assert!(names().await.is_empty());
    // Gone already: done.
    p.delete(delete_req("dns_record", &www.id, props(&["10.0.0.1"])))
        .await
        .unwrap();
    let r = p.read(read_req("dns_record", &www.id)).await.unwrap();
    assert!(r.is_none());
    p.delete(delete_req("dns_zone", &zone.id, Json::Null))
        .await
        .unwrap();
}

async fn delete_all(p: &Arc<AwsProvider>, deletes: Vec<DeleteRequest>) -> Vec<ProviderResult<()>> {
    at_once(deletes.into_iter().map(|d| {
        let p = p.clone();
        async move { p.delete(d).await }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn deletes_made_at_once_share_calls_and_one_that_does_not_fit_fails_only_itself() {
    let moto = Moto::start();
    let p = Arc::new(moto.provider().await);

    // Servers: three real ones and an id that never was (gone is done),
    // terminated together.
    let (_, sub) = crate::provider::network(&p).await;
    let props = json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []});
    let mut ids = Vec::new();
    for i in 0..3 {
        let made = p
            .create(first(
                "server",
                &format!("web[{i}]"),
                &format!("t-web{i}"),
                props.clone(),
            ))
            .await
            .unwrap();
        ids.push(made.id);
    }
    ids.push("i-0123456789abcdef0".into());
    let deletes = ids
        .iter()
        .map(|id| delete_req("server", id, Json::Null))
        .collect();
    let out = delete_all(&p, deletes).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let seen = read_all(&p, &ids[..3]).await;
    assert!(
        seen.iter().all(|o| matches!(o, Ok(None))),
        "terminated: {seen:?}"
    );

    // Records: two deleted as recorded, one changed behind cairn's back
    // (its recorded values no longer match: Route 53 refuses a batch
    // holding it), and one never made.
    let zone = p
        .create(first(
            "dns_zone",
            "zone",
            "tz",
            json!({"name": "batch.test"}),
        ))
        .await
        .unwrap();
    let record = |name: &str, value: &str| json!({"zone": zone.id, "name": name, "type": "A", "ttl": 60, "values": [value]});
    let mut made = Vec::new();
    for name in ["a", "b", "c"] {
        let r = p
            .create(first(
                "dns_record",
                name,
                &format!("t-{name}"),
                record(name, "10.0.0.1"),
            ))
            .await
            .unwrap();
        made.push(r.id);
    }
    p.update(UpdateRequest {
        deployment: "d".into(),
        address: "c".into(),
        kind: Kind::DnsRecord,
        id: made[2].clone(),
        prior: record("c", "10.0.0.1"),
        properties: record("c", "10.0.0.9"),
        tags: BTreeMap::new(),
        changed: vec!["values".into()],
        token: "tu".into(),
        sensitive: Vec::new(),
    })
    .await
    .unwrap();
    let never = made[0].replace("a.batch.test", "never.batch.test");
    let mut deletes: Vec<DeleteRequest> = ["a", "b", "c"]
        .iter()
        .zip(&made)
        .map(|(name, id)| delete_req("dns_record", id, record(name, "10.0.0.1")))
        .collect();
    deletes.push(delete_req(
        "dns_record",
        &never,
        record("never", "10.0.0.1"),
    ));
    let out = delete_all(&p, deletes).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let sets = p
        .clients()
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(&zone.id)
        .send()
        .await
        .unwrap();
    let left: Vec<&str> = sets
        .resource_record_sets()
        .iter()
        .filter(|s| s.r#type().as_str() == "A")
        .map(|s| s.name())
        .collect();
    assert!(left.is_empty(), "left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bucket_with_objects_is_emptied_then_deleted() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let bucket = p
        .create(first(
            "bucket",
            "box",
            "b",
            json!({"versioning": true, "public": false}),
        ))
        .await
        .unwrap();
    let s3 = &p.clients().s3;
    for body in ["one", "two"] {
        s3.put_object()
            .bucket(&bucket.id)
            .key("k")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                body.as_bytes().to_vec(),
            ))
            .send()
            .await
            .unwrap();
    }
    p.delete(delete_req("bucket", &bucket.id, Json::Null))
        .await
        .unwrap();
    assert!(s3.head_bucket().bucket(&bucket.id).send().await.is_err());
    p.delete(delete_req("bucket", &bucket.id, Json::Null))
        .await
        .unwrap();
}

/// A zone is deleted in one call when its records have gone before it, and
/// emptied first when one is left (made outside cairn).
#[tokio::test(flavor = "multi_thread")]
async fn a_zone_is_deleted_at_once_or_emptied_first() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let zones = || async {
        p.clients()
            .route53
            .list_hosted_zones()
            .send()
            .await
            .unwrap()
            .hosted_zones()
            .len()
    };
    let empty = p
        .create(first("dns_zone", "a", "za", json!({"name": "empty.test"})))
        .await
        .unwrap();
    let left = p
        .create(first("dns_zone", "b", "zb", json!({"name": "left.test"})))
        .await
        .unwrap();
    assert_eq!(zones().await, 2);
    let set = aws_sdk_route53::types::ResourceRecordSet::builder()
        .name("by-hand.left.test.")
        .r#type(aws_sdk_route53::types::RrType::Txt)
        .ttl(60)
        .resource_records(
            aws_sdk_route53::types::ResourceRecord::builder()
                .value("\"made outside cairn\"")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    p.clients()
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(&left.id)
        .change_batch(
            aws_sdk_route53::types::ChangeBatch::builder()
                .changes(
                    aws_sdk_route53::types::Change::builder()
                        .action(aws_sdk_route53::types::ChangeAction::Create)
                        .resource_record_set(set)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for zone in [&empty, &left] {
        p.delete(delete_req("dns_zone", &zone.id, Json::Null))
            .await
            .unwrap();
    }
    assert_eq!(zones().await, 0);
    // Gone already: done.
    p.delete(delete_req("dns_zone", &left.id, Json::Null))
        .await
        .unwrap();
}

/// The internet gateways and public route tables carrying this token.
async fn internet_parts(p: &AwsProvider, token: &str) -> (Vec<String>, Vec<String>) {
    let by_token = aws_sdk_ec2::types::Filter::builder()
        .name("tag:cairn:token")
        .values(token)
        .build();
    let igws = p
        .clients()
        .ec2
        .describe_internet_gateways()
        .filters(by_token.clone())
        .send()
        .await
        .unwrap();
    let tables = p
        .clients()
        .ec2
        .describe_route_tables()
        .filters(by_token)
        .send()
        .await
        .unwrap();
    (
        igws.internet_gateways()
            .iter()
            .filter_map(|g| g.internet_gateway_id().map(str::to_string))
            .collect(),
        tables
            .route_tables()
            .iter()
            .filter_map(|t| t.route_table_id().map(str::to_string))
            .collect(),
    )
}

/// A network with internet ends with its gateway attached and its own
/// table routing to it, and deleting it leaves neither; a VPC refused
/// leaves no gateway behind (a create that makes them in another order
/// must clean up).
#[tokio::test(flavor = "multi_thread")]
async fn a_network_with_internet_is_made_and_deleted_whole() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let net = p
        .create(first(
            "network",
            "net",
            "n-1",
            json!({"cidr": "10.50.0.0/16", "internet": true}),
        ))
        .await
        .unwrap();
    let (igws, tables) = internet_parts(&p, "n-1").await;
    assert_eq!((igws.len(), tables.len()), (1, 1));
    let igw = p
        .clients()
        .ec2
        .describe_internet_gateways()
        .internet_gateway_ids(&igws[0])
        .send()
        .await
        .unwrap();
    let attached: Vec<&str> = igw.internet_gateways()[0]
        .attachments()
        .iter()
        .filter_map(|a| a.vpc_id())
        .collect();
    assert_eq!(attached, [net.id.as_str()]);
    let table = p
        .clients()
        .ec2
        .describe_route_tables()
        .route_table_ids(&tables[0])
        .send()
        .await
        .unwrap();
    let table = &table.route_tables()[0];
    assert_eq!(table.vpc_id(), Some(net.id.as_str()));
    assert!(
        table
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id() == Some(igws[0].as_str())),
        "{:?}",
        table.routes()
    );
    let read = p.read(read_req("network", &net.id)).await.unwrap().unwrap();
    assert_eq!(read.properties["internet"], true);

    p.delete(delete_req("network", &net.id, Json::Null))
        .await
        .unwrap();
    assert_eq!(internet_parts(&p, "n-1").await, (vec![], vec![]));
    assert!(
        p.read(read_req("network", &net.id))
            .await
            .unwrap()
            .is_none()
    );

    // EC2 refuses a /8: no gateway is left of it.
    let refused = p
        .create(first(
            "network",
            "bad",
            "n-2",
            json!({"cidr": "10.0.0.0/8", "internet": true}),
        ))
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(internet_parts(&p, "n-2").await, (vec![], vec![]));
}

/// A target group by hand in the balancer's VPC, tagged for `address`.
async fn hand_made_group(p: &AwsProvider, name: &str, vpc: &str, address: &str) -> String {
    let tag = |k: &str, v: &str| {
        aws_sdk_elasticloadbalancingv2::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
    };
    p.clients()
        .elb
        .create_target_group()
        .name(name)
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc)
        .tags(tag("cairn:deployment", "d"))
        .tags(tag("cairn:resource", address))
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string()
}

async fn target_groups(p: &AwsProvider) -> Vec<String> {
    let mut arns: Vec<String> = p
        .clients()
        .elb
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_arn().map(str::to_string))
        .collect();
    arns.sort();
    arns
}

/// A balancer's delete lists the target groups once: it deletes the ones
/// the balancer uses and the unused ones made for the same resource (an
/// interrupted create's, or a retried delete's whose balancer went
/// first), and leaves another resource's.
#[tokio::test(flavor = "multi_thread")]
async fn a_balancer_goes_with_its_groups_and_what_an_earlier_attempt_left() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (vpc, sub) = crate::provider::network(&p).await;
    let props = json!({
        "listen": {"protocol": "http", "port": 80},
        "subnets": [sub],
        "backend_port": 8080,
        "health_check": {"path": "/", "interval": "5s"},
    });
    let lb = p
        .create(first(
            "load_balancer",
            "load_balancer",
            "l-1",
            props.clone(),
        ))
        .await
        .unwrap();
    let left = hand_made_group(&p, "left-by-a-create", &vpc, "load_balancer").await;
    let other = hand_made_group(&p, "another-resources", &vpc, "lb2").await;
    assert_eq!(target_groups(&p).await.len(), 3);
    p.delete(delete_req("load_balancer", &lb.id, props.clone()))
        .await
        .unwrap();
    assert_eq!(target_groups(&p).await, std::slice::from_ref(&other));
    assert!(!target_groups(&p).await.contains(&left));

    // The balancer deleted by an attempt that died before its group: the
    // retried delete finds the group by its tags.
    let lb = p
        .create(first(
            "load_balancer",
            "load_balancer",
            "l-2",
            props.clone(),
        ))
        .await
        .unwrap();
    p.clients()
        .elb
        .delete_load_balancer()
        .load_balancer_arn(&lb.id)
        .send()
        .await
        .unwrap();
    assert_eq!(target_groups(&p).await.len(), 2);
    p.delete(delete_req("load_balancer", &lb.id, props))
        .await
        .unwrap();
    assert_eq!(target_groups(&p).await, [other]);
}

fn balancer(address: &str, backends: &[&str]) -> CreateRequest {
    first(
        "load_balancer",
        address,
        &format!("r-{address}"),
        json!({
            "listen": {"protocol": "http", "port": 80},
            "backends": backends,
            "backend_port": 8080,
            "health_check": {"path": "/", "interval": "5s"},
        }),
    )
}

/// The describes that looked instances up by private address, as asked.
fn by_private_address(recorder: &Recorder) -> Vec<String> {
    recorder
        .asked()
        .iter()
        .flat_map(|c| c.split("Action=").map(str::to_string).collect::<Vec<_>>())
        .filter(|r| r.starts_with("DescribeInstances") && r.contains("private-ip-address"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_this_run_saw_running_are_not_described_again_nor_terminated_ones_at_all() {
    let moto = Moto::start();
    let recorder = Recorder::start(&moto.url);
    let p = moto.provider_via(&recorder.url).await;
    let (_, sub) = crate::provider::network(&p).await;
    let props = json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []});
    let (s0, s1) = tokio::join!(
        p.create(first("server", "web[0]", "v-web0", props.clone())),
        p.create(first("server", "web[1]", "v-web1", props.clone())),
    );
    let (s0, s1) = (s0.unwrap(), s1.unwrap());
    // Made by another run: this one never saw it.
    let other = moto
        .provider()
        .await
        .create(first("server", "web[2]", "v-web2", props))
        .await
        .unwrap();
    let address = |c: &Created| c.attributes["address"].as_str().unwrap().to_string();
    let (a0, a1, a2) = (address(&s0), address(&s1), address(&other));

    let lb = p.create(balancer("lb", &[&a0, &a1, &a2])).await.unwrap();
    // Only the server this run did not make was looked up by its address.
    let asked = by_private_address(&recorder);
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].contains(&a2), "{}", asked[0]);
    assert!(
        !asked[0].contains(&a0) && !asked[0].contains(&a1),
        "{}",
        asked[0]
    );
    // And each backend is its own instance.
    let mut want = vec![a0.clone(), a1.clone(), a2.clone()];
    want.sort();
    assert_eq!(backends_of(&p, &lb.id).await, want);

    // A server this run terminated is no longer taken for running.
    p.delete(delete_req("server", &s1.id, Json::Null))
        .await
        .unwrap();
    let refused = p.create(balancer("lb2", &[&a1])).await.unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("not the address of a running instance"),
        "{refused}"
    );
    // The wait for its termination asked EC2 for the live ones only: no
    // answer described a terminated instance.
    let asked = recorder.asked().concat();
    assert!(asked.contains("Action=TerminateInstances"));
    for answer in recorder.answered() {
        assert!(
            !answer.contains("<name>terminated</name>"),
            "an answer described a terminated instance"
        );
    }
}
