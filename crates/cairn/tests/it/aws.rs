//! `cairn up examples/webapp -e aws` against a real moto server, read back
//! through the SDK; a second `up` plans nothing; `destroy` leaves nothing.

use std::path::PathBuf;
use std::time::Instant;

use crate::{Output, cairn_env};

/// A moto server (cairn-test-support's) with this test's own state
/// directory, removed when dropped.
pub(crate) struct Moto {
    _server: cairn_test_support::moto::Moto,
    pub(crate) url: String,
    pub(crate) root: PathBuf,
}

impl Moto {
    pub(crate) fn start(name: &str) -> Moto {
        let server = cairn_test_support::moto::Moto::start();
        let root = std::env::temp_dir().join(format!("cairn-aws-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Moto {
            url: server.url.clone(),
            _server: server,
            root,
        }
    }

    /// The environment that points cairn at `endpoint` (moto, or a proxy
    /// in front of it) with this test's own state.
    pub(crate) fn vars(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        let path = |p: &str| self.root.join(p).to_str().unwrap().to_string();
        vec![
            ("CAIRN_KEY_FILE", path("key")),
            ("CAIRN_STATE", path("state.db")),
            ("AWS_ENDPOINT_URL", endpoint.to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
            // No shared profile of the developer's may leak in.
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.run_via(&self.url, args)
    }

    pub(crate) fn run_via(&self, endpoint: &str, args: &[&str]) -> Output {
        let vars = self.vars(endpoint);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cairn_env(args, &vars)
    }

    /// SDK clients straight to moto, not through cairn.
    pub(crate) async fn clients(&self) -> cairn_aws::Clients {
        cairn_aws::Clients::load(&cairn_aws::AwsSettings {
            region: Some("us-east-1".into()),
            profile: None,
            endpoint_url: Some(self.url.clone()),
            credentials: Some(aws_sdk_ec2::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            )),
        })
        .await
        .unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn ok(out: &Output) {
    assert_eq!(out.code, 0, "{}", out.snapshot());
}

const DEPLOYMENT: &str = "webapp-aws";

#[tokio::test(flavor = "multi_thread")]
async fn up_of_the_webapp_on_aws_builds_everything_and_destroy_removes_it() {
    let moto = Moto::start("webapp");
    let dir = "../../examples/webapp";
    let started = Instant::now();
    ok(&moto.run(&["up", dir, "-e", "aws", "--yes"]));
    eprintln!("up of the webapp on moto took {:?}", started.elapsed());

    // Read it back with the SDK, not through cairn.
    let clients = moto.clients().await;
    let ec2 = &clients.ec2;
    let by_deployment = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("tag:cairn:deployment")
            .values(DEPLOYMENT)
            .build()
    };
    let vpcs = ec2
        .describe_vpcs()
        .filters(by_deployment())
        .send()
        .await
        .unwrap();
    assert_eq!(vpcs.vpcs().len(), 1);
    assert_eq!(vpcs.vpcs()[0].cidr_block(), Some("10.20.0.0/16"));
    let vpc = vpcs.vpcs()[0].vpc_id().unwrap().to_string();
    let subnets = ec2
        .describe_subnets()
        .filters(by_deployment())
        .send()
        .await
        .unwrap();
    assert_eq!(subnets.subnets().len(), 1);
    assert_eq!(subnets.subnets()[0].cidr_block(), Some("10.20.1.0/24"));
    assert_eq!(subnets.subnets()[0].vpc_id(), Some(vpc.as_str()));

    let groups = ec2
        .describe_security_groups()
        .filters(by_deployment())
        .send()
        .await
        .unwrap();
    assert_eq!(groups.security_groups().len(), 2);
    let group_of = |address: &str| {
        groups
            .security_groups()
            .iter()
            .find(|g| {
                g.tags()
                    .iter()
                    .any(|t| t.key() == Some("cairn:resource") && t.value() == Some(address))
            })
            .unwrap_or_else(|| panic!("no security group for {address}"))
    };
    // (port, source) of every rule: a CIDR block or another group.
    let rules = |g: &aws_sdk_ec2::types::SecurityGroup| {
        let mut out: Vec<(i32, String)> = g
            .ip_permissions()
            .iter()
            .flat_map(|p| {
                let port = p.from_port().unwrap();
                p.ip_ranges()
                    .iter()
                    .map(move |r| (port, r.cidr_ip().unwrap().to_string()))
                    .chain(
                        p.user_id_group_pairs()
                            .iter()
                            .map(move |u| (port, u.group_id().unwrap().to_string())),
                    )
            })
            .collect();
        out.sort();
        out
    };
    let (lb_sg, sg) = (group_of("lb_fw"), group_of("web_fw"));
    assert_eq!(rules(lb_sg), [(80, "0.0.0.0/0".to_string())]);
    assert_eq!(
        rules(sg),
        [
            (22, "203.0.113.0/24".to_string()),
            (8080, lb_sg.group_id().unwrap().to_string()),
            (8081, lb_sg.group_id().unwrap().to_string())
        ]
    );

    let instances: Vec<_> = ec2
        .describe_instances()
        .filters(by_deployment())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .collect();
    assert_eq!(instances.len(), 2);
    let mut ids = Vec::new();
    let mut first = None;
    for i in &instances {
        assert_eq!(
            i.state().and_then(|s| s.name()),
            Some(&aws_sdk_ec2::types::InstanceStateName::Running)
        );
        assert_eq!(i.key_name().map(|k| k.ends_with("-deployer")), Some(true));
        assert_eq!(i.security_groups()[0].group_id(), sg.group_id());
        let tags: std::collections::BTreeMap<_, _> = i
            .tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect();
        assert_eq!(tags["role"], "web");
        assert_eq!(tags["team"], "web");
        assert!(tags["cairn:resource"].starts_with("web["));
        let ud = ec2
            .describe_instance_attribute()
            .instance_id(i.instance_id().unwrap())
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        let ud = ud.user_data().and_then(|v| v.value()).unwrap();
        let text = base64_decode::decode(ud);
        assert!(text.contains("http-echo --port 8080"), "{text}");
        if tags["cairn:resource"] == "web[0]" {
            first = i.instance_id().map(str::to_string);
        }
        ids.push(i.instance_id().unwrap().to_string());
    }

    // The network reaches the internet: a gateway and a default route.
    let igws = ec2
        .describe_internet_gateways()
        .filters(by_deployment())
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1);
    let igw = &igws.internet_gateways()[0];
    assert_eq!(igw.attachments()[0].vpc_id(), Some(vpc.as_str()));
    let igw_id = igw.internet_gateway_id().unwrap();
    let tables = ec2
        .describe_route_tables()
        .filters(by_deployment())
        .send()
        .await
        .unwrap();
    assert!(
        tables.route_tables().iter().any(|t| t
            .routes()
            .iter()
            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")
                && r.gateway_id() == Some(igw_id))),
        "no default route to the gateway: {tables:?}"
    );

    // The Elastic IP is associated with the first web server.
    let addresses = ec2
        .describe_addresses()
        .filters(by_deployment())
        .send()
        .await
        .unwrap();
    assert_eq!(addresses.addresses().len(), 1);
    assert_eq!(addresses.addresses()[0].instance_id(), first.as_deref());

    let elb = &clients.elb;
    let lbs = elb.describe_load_balancers().send().await.unwrap();
    // The web balancer and the app's (`app_lb`, port 8081).
    assert_eq!(lbs.load_balancers().len(), 2);
    let lb = lbs
        .load_balancers()
        .iter()
        .find(|l| !l.load_balancer_name().unwrap_or("").contains("app-lb"))
        .unwrap();
    assert_eq!(lb.security_groups(), [lb_sg.group_id().unwrap()]);
    assert_eq!(
        lb.r#type(),
        Some(&aws_sdk_elasticloadbalancingv2::types::LoadBalancerTypeEnum::Application)
    );
    let tgs = elb
        .describe_target_groups()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    let tg = &tgs.target_groups()[0];
    assert_eq!(tg.port(), Some(8080));
    // The template's 2 s is below ELB's 5 s minimum.
    assert_eq!(tg.health_check_interval_seconds(), Some(5));
    let health = elb
        .describe_target_health()
        .target_group_arn(tg.target_group_arn().unwrap())
        .send()
        .await
        .unwrap();
    let mut registered: Vec<String> = health
        .target_health_descriptions()
        .iter()
        .map(|d| {
            assert_eq!(
                d.target_health()
                    .and_then(|h| h.state())
                    .map(|s| s.as_str()),
                Some("healthy"),
                "moto reports registered running instances as healthy"
            );
            d.target().and_then(|t| t.id()).unwrap().to_string()
        })
        .collect();
    registered.sort();
    ids.sort();
    assert_eq!(registered, ids);
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listeners.listeners()[0].port(), Some(80));

    let r53 = &clients.route53;
    let zones = r53.list_hosted_zones().send().await.unwrap();
    let zone = zones
        .hosted_zones()
        .iter()
        .find(|z| z.name() == "example.test.")
        .expect("the zone");
    let sets = r53
        .list_resource_record_sets()
        .hosted_zone_id(zone.id())
        .send()
        .await
        .unwrap();
    let www = sets
        .resource_record_sets()
        .iter()
        .find(|s| s.name() == "www.example.test.")
        .expect("the www record");
    let alias = www.alias_target().expect("an alias to the load balancer");
    assert_eq!(
        alias.dns_name().trim_end_matches('.'),
        lb.dns_name().unwrap().trim_end_matches('.')
    );

    let rds = &clients.rds;
    let dbs = rds.describe_db_instances().send().await.unwrap();
    assert_eq!(dbs.db_instances().len(), 1);
    assert_eq!(
        dbs.db_instances()[0].db_instance_status(),
        Some("available")
    );
    assert_eq!(dbs.db_instances()[0].engine(), Some("postgres"));

    let outputs = moto.run(&["output", dir, "-e", "aws", "-o", "json"]);
    ok(&outputs);
    assert!(outputs.stdout.contains(":5432"), "{}", outputs.stdout);
    let outputs: serde_json::Value = serde_json::from_str(&outputs.stdout).unwrap();
    assert_eq!(
        outputs["admin_address"].as_str(),
        addresses.addresses()[0].public_ip()
    );

    // The bucket, and the secret holding the generated value.
    let assets = moto.run(&[
        "show",
        dir,
        "-e",
        "aws",
        "--address",
        "assets",
        "-o",
        "json",
    ]);
    ok(&assets);
    let assets: serde_json::Value = serde_json::from_str(&assets.stdout).unwrap();
    let bucket = assets["id"].as_str().unwrap();
    // (moto answers GetBucketVersioning with a root the SDK refuses, so
    // the bucket is checked by its tags.)
    let tagging = clients
        .s3
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    assert!(
        tagging
            .tag_set()
            .iter()
            .any(|t| t.key() == "cairn:deployment" && t.value() == DEPLOYMENT),
        "{tagging:?}"
    );
    let key = moto.run(&[
        "show",
        dir,
        "-e",
        "aws",
        "--address",
        "session_key",
        "--secret",
        "-o",
        "json",
    ]);
    ok(&key);
    let key: serde_json::Value = serde_json::from_str(&key.stdout).unwrap();
    let stored = clients
        .secrets
        .get_secret_value()
        .secret_id(key["id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let value = key["properties"]["value"].as_str().unwrap();
    assert_eq!(value.len(), 32, "the generated session secret");
    assert_eq!(stored.secret_string(), Some(value));

    // Nothing changed: a second up plans nothing.
    let again = moto.run(&["plan", dir, "-e", "aws", "--detailed-exitcode"]);
    assert_eq!(
        again.code,
        0,
        "a second plan finds changes: {}",
        again.snapshot()
    );
    ok(&moto.run(&["up", dir, "-e", "aws", "--yes"]));
    let instances_after: usize = ec2
        .describe_instances()
        .filters(by_deployment())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
    assert_eq!(instances_after, 2);

    ok(&moto.run(&["destroy", dir, "-e", "aws", "--yes", "--allow-data-loss"]));
    assert!(
        ec2.describe_vpcs()
            .filters(by_deployment())
            .send()
            .await
            .unwrap()
            .vpcs()
            .is_empty()
    );
    assert!(
        ec2.describe_subnets()
            .filters(by_deployment())
            .send()
            .await
            .unwrap()
            .subnets()
            .is_empty()
    );
    assert!(
        ec2.describe_security_groups()
            .filters(by_deployment())
            .send()
            .await
            .unwrap()
            .security_groups()
            .is_empty()
    );
    assert!(
        ec2.describe_key_pairs()
            .filters(by_deployment())
            .send()
            .await
            .unwrap()
            .key_pairs()
            .is_empty()
    );
    let live = ec2
        .describe_instances()
        .filters(by_deployment())
        .send()
        .await
        .unwrap()
        .reservations()
        .iter()
        .flat_map(|r| r.instances().to_vec())
        .filter(|i| {
            i.state().and_then(|s| s.name())
                != Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
        })
        .count();
    assert_eq!(live, 0);
    assert!(
        elb.describe_load_balancers()
            .send()
            .await
            .unwrap()
            .load_balancers()
            .is_empty()
    );
    assert!(
        elb.describe_target_groups()
            .send()
            .await
            .unwrap()
            .target_groups()
            .is_empty()
    );
    assert!(
        r53.list_hosted_zones()
            .send()
            .await
            .unwrap()
            .hosted_zones()
            .is_empty()
    );
    assert!(
        rds.describe_db_instances()
            .send()
            .await
            .unwrap()
            .db_instances()
            .is_empty()
    );
    for (what, gone) in [
        (
            "internet gateways",
            ec2.describe_internet_gateways()
                .filters(by_deployment())
                .send()
                .await
                .unwrap()
                .internet_gateways()
                .is_empty(),
        ),
        (
            "addresses",
            ec2.describe_addresses()
                .filters(by_deployment())
                .send()
                .await
                .unwrap()
                .addresses()
                .is_empty(),
        ),
        (
            "buckets",
            clients
                .s3
                .list_buckets()
                .send()
                .await
                .unwrap()
                .buckets()
                .is_empty(),
        ),
        (
            "secrets",
            clients
                .secrets
                .list_secrets()
                .send()
                .await
                .unwrap()
                .secret_list()
                .iter()
                .all(|s| s.deleted_date().is_some()),
        ),
    ] {
        assert!(gone, "{what} remain after destroy");
    }
}

/// Base64 without another dependency: user data is small.
mod base64_decode {
    pub fn decode(s: &str) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bits = 0u32;
        let mut n = 0;
        let mut out = Vec::new();
        for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
            let Some(v) = A.iter().position(|a| *a == c) else {
                continue;
            };
            bits = (bits << 6) | v as u32;
            n += 6;
            if n >= 8 {
                n -= 8;
                out.push((bits >> n) as u8);
                bits &= (1 << n) - 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
