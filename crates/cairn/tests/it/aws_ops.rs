//! The aws target after the first `up`, through the real binary against a
//! real moto server: drift and its repair, import, 20% of the calls
//! faulted, and `cairn up` killed with SIGKILL. What exists is read from
//! moto directly with the SDK, never through cairn.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value as J;

use crate::Lcg;
use crate::aws::Moto;
use crate::fault_proxy::FaultProxy;

const WEBAPP: &str = "../../examples/webapp";

fn json(out: &crate::Output) -> J {
    assert_eq!(out.code, 0, "{}", out.snapshot());
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// Everything moto holds that is not one of its own defaults, by cairn type,
/// in the ids cairn records. Load balancers' target groups are counted apart
/// (cairn records one id for the pair).
async fn inventory(moto: &Moto) -> BTreeMap<&'static str, BTreeSet<String>> {
    let c = moto.clients().await;
    let mut out: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut put = |kind: &'static str, id: &str| {
        out.entry(kind).or_default().insert(id.to_string());
    };
    for r in c
        .ec2
        .describe_instances()
        .send()
        .await
        .unwrap()
        .reservations()
    {
        for i in r.instances() {
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string());
            if !matches!(state.as_deref(), Some("terminated" | "shutting-down")) {
                put("server", i.instance_id().unwrap());
            }
        }
    }
    for v in c.ec2.describe_vpcs().send().await.unwrap().vpcs() {
        if v.is_default() != Some(true) {
            put("network", v.vpc_id().unwrap());
        }
    }
    for s in c.ec2.describe_subnets().send().await.unwrap().subnets() {
        if s.default_for_az() != Some(true) {
            put("subnet", s.subnet_id().unwrap());
        }
    }
    for g in c
        .ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()
    {
        if g.group_name() != Some("default") {
            put("firewall", g.group_id().unwrap());
        }
    }
    for k in c.ec2.describe_key_pairs().send().await.unwrap().key_pairs() {
        put("key_pair", k.key_name().unwrap());
    }
    for a in c.ec2.describe_addresses().send().await.unwrap().addresses() {
        put("ip_address", a.allocation_id().unwrap());
    }
    for lb in c
        .elb
        .describe_load_balancers()
        .send()
        .await
        .unwrap()
        .load_balancers()
    {
        put("load_balancer", lb.load_balancer_arn().unwrap());
    }
    for tg in c
        .elb
        .describe_target_groups()
        .send()
        .await
        .unwrap()
        .target_groups()
    {
        put("target_group", tg.target_group_arn().unwrap());
    }
    for z in c
        .route53
        .list_hosted_zones()
        .send()
        .await
        .unwrap()
        .hosted_zones()
    {
        let zone = z.id().trim_start_matches("/hostedzone/").to_string();
        put("dns_zone", &zone);
        let sets = c
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(&zone)
            .send()
            .await
            .unwrap();
        for r in sets.resource_record_sets() {
            let kind = r.r#type().as_str();
            if kind != "SOA" && kind != "NS" {
                put("dns_record", &format!("{zone}/{}/{kind}", r.name()));
            }
        }
    }
    for d in c
        .rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
    {
        if d.db_instance_status() != Some("deleting") {
            put("database", d.db_instance_identifier().unwrap());
        }
    }
    for b in c.s3.list_buckets().send().await.unwrap().buckets() {
        put("bucket", b.name().unwrap());
    }
    for s in c.secrets.list_secrets().send().await.unwrap().secret_list() {
        if s.deleted_date().is_none() {
            put("secret", s.arn().unwrap());
        }
    }
    out
}

/// What cairn's state says exists, in the same shape.
fn recorded(moto: &Moto, endpoint: &str, extra: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let mut args = vec!["list", WEBAPP, "-e", "aws", "-o", "json"];
    args.extend(extra);
    let list = json(&moto.run_via(endpoint, &args));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in list.as_array().unwrap() {
        out.entry(r["type"].as_str().unwrap().to_string())
            .or_default()
            .insert(r["id"].as_str().unwrap().to_string());
    }
    out
}

/// Moto holds exactly what the state records: no orphan, no duplicate,
/// nothing missing; one target group per load balancer.
async fn assert_converged(moto: &Moto, label: &str) {
    let mut live = inventory(moto).await;
    let groups = live.remove("target_group").unwrap_or_default();
    let state = recorded(moto, &moto.url, &[]);
    let live: BTreeMap<String, BTreeSet<String>> =
        live.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(live, state, "{label}: moto's inventory against the state");
    let lbs = state.get("load_balancer").map_or(0, BTreeSet::len);
    assert_eq!(groups.len(), lbs, "{label}: target groups {groups:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_on_aws_shows_a_rule_added_behind_cairns_back_and_up_removes_it() {
    let moto = Moto::start("drift");
    json(&moto.run(&["up", WEBAPP, "-e", "aws", "--yes", "-o", "json"]));
    let clean = moto.run(&[
        "drift",
        WEBAPP,
        "-e",
        "aws",
        "--detailed-exitcode",
        "-o",
        "json",
    ]);
    assert_eq!(clean.code, 0, "{}", clean.snapshot());

    let fw = json(&moto.run(&[
        "show",
        WEBAPP,
        "-e",
        "aws",
        "--address",
        "web_fw",
        "-o",
        "json",
    ]));
    let sg = fw["id"].as_str().unwrap().to_string();
    let c = moto.clients().await;
    c.ec2
        .authorize_security_group_ingress()
        .group_id(&sg)
        .ip_protocol("tcp")
        .from_port(5432)
        .to_port(5432)
        .cidr_ip("10.0.0.0/8")
        .send()
        .await
        .unwrap();

    let drift = moto.run(&[
        "drift",
        WEBAPP,
        "-e",
        "aws",
        "--detailed-exitcode",
        "-o",
        "json",
    ]);
    assert_eq!(drift.code, 3, "{}", drift.snapshot());
    let report: J = serde_json::from_str(&drift.stdout).unwrap();
    let moved = report.as_array().unwrap();
    assert_eq!(moved.len(), 1, "{report}");
    assert_eq!(moved[0]["address"], "web_fw");
    assert_eq!(moved[0]["properties"][0]["path"], "ingress");
    assert!(
        moved[0]["properties"][0]["actual"]
            .to_string()
            .contains("5432"),
        "{report}"
    );

    let up = json(&moto.run(&["up", WEBAPP, "-e", "aws", "--yes", "-o", "json"]));
    assert_eq!(up["counts"]["updated"], 1, "{up}");
    let groups = c
        .ec2
        .describe_security_groups()
        .group_ids(&sg)
        .send()
        .await
        .unwrap();
    let ports: Vec<Option<i32>> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .map(|p| p.from_port())
        .collect();
    assert!(!ports.contains(&Some(5432)), "{ports:?}");
    let after = moto.run(&["drift", WEBAPP, "-e", "aws", "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "{}", after.snapshot());

    // --prune finds nothing of a clean deployment: its balancer's target
    // group is in use, not an orphan.
    let clean = moto.run(&[
        "plan",
        WEBAPP,
        "-e",
        "aws",
        "--prune",
        "--detailed-exitcode",
        "-o",
        "json",
    ]);
    assert_eq!(clean.code, 0, "{}", clean.snapshot());
    // A target group left by a balancer's create interrupted before the
    // balancer was made: tagged for the deployment, used by nothing.
    let vpc = json(&moto.run(&[
        "show",
        WEBAPP,
        "-e",
        "aws",
        "--address",
        "net",
        "-o",
        "json",
    ]));
    let orphan = c
        .elb
        .create_target_group()
        .name("webapp-aws-lb-orphan")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(vpc["id"].as_str().unwrap())
        .tags(
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key("cairn:deployment")
                .value("webapp-aws")
                .build(),
        )
        .tags(
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key("cairn:resource")
                .value("lb")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let orphan = orphan.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    let pruned = json(&moto.run(&["up", WEBAPP, "-e", "aws", "--yes", "--prune", "-o", "json"]));
    assert_eq!(pruned["counts"]["deleted"], 1, "{pruned}");
    assert_eq!(
        pruned["resources"][0]["address"],
        format!("orphan:load_balancer:{orphan}"),
        "{pruned}"
    );
    let groups = c.elb.describe_target_groups().send().await.unwrap();
    let left: Vec<&str> = groups
        .target_groups()
        .iter()
        .filter_map(|t| t.target_group_arn())
        .collect();
    // The webapp's two balancers (lb, app_lb) keep their own groups.
    assert_eq!(left.len(), 2, "the balancers' own groups stay: {left:?}");
    assert!(!left.contains(&orphan.as_str()), "{left:?}");
    json(&moto.run(&[
        "destroy",
        WEBAPP,
        "-e",
        "aws",
        "--yes",
        "--allow-data-loss",
        "-o",
        "json",
    ]));
}

/// Takes a server and the secret away behind cairn's back; returns how
/// many resources the state records.
async fn remove_two_behind_cairns_back(moto: &Moto) -> usize {
    let id = |address: &str| {
        let shown = json(&moto.run(&[
            "show",
            WEBAPP,
            "-e",
            "aws",
            "--address",
            address,
            "-o",
            "json",
        ]));
        shown["id"].as_str().unwrap().to_string()
    };
    let (server, secret) = (id("web[0]"), id("session_key"));
    let c = moto.clients().await;
    c.ec2
        .terminate_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();
    c.secrets
        .delete_secret()
        .secret_id(&secret)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    recorded(moto, &moto.url, &[])
        .values()
        .map(BTreeSet::len)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_reads_nothing_first_and_what_went_behind_its_back_counts_as_deleted() {
    let moto = Moto::start("destroy-refresh");
    let destroy = |extra: &[&str]| {
        let mut args = vec![
            "destroy",
            WEBAPP,
            "-e",
            "aws",
            "--yes",
            "--allow-data-loss",
            "-o",
            "json",
        ];
        args.extend(extra);
        json(&moto.run(&args))
    };

    // By default the deletes find out: all the state's resources are
    // deleted, the two already gone among them (not found = done).
    json(&moto.run(&["up", WEBAPP, "-e", "aws", "--yes", "-o", "json"]));
    let recorded_before = remove_two_behind_cairns_back(&moto).await;
    let gone = destroy(&[]);
    assert_eq!(gone["counts"]["deleted"], recorded_before, "{gone}");
    let left = inventory(&moto).await;
    assert!(
        left.values().all(BTreeSet::is_empty),
        "left behind: {left:?}"
    );

    // `--refresh` reads first: the two leave the state before the plan.
    json(&moto.run(&["up", WEBAPP, "-e", "aws", "--yes", "-o", "json"]));
    let recorded_before = remove_two_behind_cairns_back(&moto).await;
    let refreshed = destroy(&["--refresh"]);
    assert_eq!(
        refreshed["counts"]["deleted"],
        recorded_before - 2,
        "{refreshed}"
    );
    let left = inventory(&moto).await;
    assert!(
        left.values().all(BTreeSet::is_empty),
        "left behind: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn import_on_aws_adopts_an_instance_and_a_bucket_and_writes_their_yaml() {
    let moto = Moto::start("import");
    // A template of its own, with the webapp's aws environment.
    let dir = moto.root.join("adopt");
    std::fs::create_dir_all(dir.join("env")).unwrap();
    std::fs::write(dir.join("env/aws.yaml"), "target: aws\nregion: us-east-1\n").unwrap();
    std::fs::write(
        dir.join("cairn.yaml"),
        "cairn: 1\nresources:\n  net:\n    type: network\n    properties: {cidr: 10.40.0.0/16}\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    json(&moto.run(&["up", d, "-e", "aws", "--yes", "-o", "json"]));

    let c = moto.clients().await;
    let ami = c
        .ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .unwrap()
        .images()[0]
        .image_id()
        .unwrap()
        .to_string();
    let made = c
        .ec2
        .run_instances()
        .image_id(&ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap();
    let instance = made.instances()[0].instance_id().unwrap().to_string();
    c.s3.create_bucket()
        .bucket("made-by-hand")
        .send()
        .await
        .unwrap();

    let server = json(&moto.run(&[
        "import", "server", &instance, "--as", "legacy", "--write", d, "-e", "aws", "-o", "json",
    ]));
    assert_eq!(server["id"], instance.as_str());
    let bucket = json(&moto.run(&[
        "import",
        "bucket",
        "made-by-hand",
        "--as",
        "files",
        "--write",
        d,
        "-e",
        "aws",
        "-o",
        "json",
    ]));
    assert_eq!(bucket["id"], "made-by-hand");
    let text = std::fs::read_to_string(dir.join("cairn.yaml")).unwrap();
    assert!(text.contains("  legacy:\n    type: server\n"), "{text}");
    assert!(text.contains(&format!("image: {ami}")), "{text}");
    assert!(text.contains("  files:\n    type: bucket\n"), "{text}");
    let valid = moto.run(&["validate", d, "-e", "aws"]);
    assert_eq!(valid.code, 0, "{}", valid.snapshot());

    // Adopted, not remade: the plan neither creates nor replaces them.
    let plan = json(&moto.run(&["plan", d, "-e", "aws", "-o", "json"]));
    for ch in plan["changes"].as_array().unwrap() {
        assert!(
            ch["action"] == "no_op" || ch["action"] == "update",
            "{}: {ch}",
            ch["address"]
        );
    }
    json(&moto.run(&["up", d, "-e", "aws", "--yes", "-o", "json"]));
    let again = moto.run(&["plan", d, "-e", "aws", "--detailed-exitcode", "-o", "json"]);
    assert_eq!(again.code, 0, "{}", again.snapshot());
    let instances = c
        .ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = instances.reservations()[0].instances()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert_eq!(
        tags.get("cairn:resource").map(String::as_str),
        Some("legacy"),
        "{tags:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_fifth_of_the_calls_faulted_up_and_destroy_still_end_right() {
    let moto = Moto::start("faults");
    let upstream: std::net::SocketAddr = moto.url.trim_start_matches("http://").parse().unwrap();
    // FAULT_SEED repeats (or varies) the draw.
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00fa_0175);
    let proxy = FaultProxy::start(upstream, 200, seed);
    let via = format!("http://{}", proxy.addr);

    let up = moto.run_via(&via, &["up", WEBAPP, "-e", "aws", "--yes", "-o", "json"]);
    eprintln!("up through the fault proxy: {}", proxy.counts.summary());
    let v = json(&up);
    assert_eq!(v["result"], "applied", "{v}");
    assert_eq!(v["counts"]["created"], 15, "{v}");
    assert!(up.stderr.is_empty() || !up.stderr.contains("panicked"));
    assert_converged(&moto, "after up").await;
    let faulted_up = proxy
        .counts
        .faulted
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(faulted_up > 0, "{}", proxy.counts.summary());

    let plan = moto.run_via(
        &via,
        &[
            "plan",
            WEBAPP,
            "-e",
            "aws",
            "--detailed-exitcode",
            "-o",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.snapshot());

    let destroy = moto.run_via(
        &via,
        &[
            "destroy",
            WEBAPP,
            "-e",
            "aws",
            "--yes",
            "--allow-data-loss",
            "-o",
            "json",
        ],
    );
    eprintln!(
        "up, plan and destroy through the fault proxy: {}",
        proxy.counts.summary()
    );
    json(&destroy);
    let left = inventory(&moto).await;
    assert!(
        left.values().all(BTreeSet::is_empty),
        "left behind: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cairn_up_on_aws_killed_at_random_moments_leaves_no_orphan_or_duplicate() {
    const KILLS: usize = 20;
    const MAX_TRIALS: usize = 60;
    let moto = Moto::start("kill9");
    let vars = moto.vars(&moto.url);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let t = Instant::now();
    json(&moto.run(&["up", WEBAPP, "-e", "aws", "--yes", "-o", "json"]));
    let mut window = (t.elapsed().as_millis() as u64).clamp(200, 10_000);
    let mut rng = Lcg(0x00aa_5eed + std::process::id() as u64);
    let (mut kills, mut trials, mut holding_lease) = (0, 0, 0);
    while kills < KILLS && trials < MAX_TRIALS {
        trials += 1;
        let count = format!("web_count={}", 1 + rng.below(4));
        let args = [
            "up", WEBAPP, "-e", "aws", "-p", &count, "--yes", "-o", "json",
        ];
        let child = crate::command(&args, &vars)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(window)));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let mut child = child;
        let status = child.wait().unwrap();
        if status.code().is_none() {
            kills += 1;
            window = window * 21 / 20;
            if json(&moto.run(&["lock", "break", WEBAPP, "-e", "aws", "-o", "json"]))["broken"]
                == true
            {
                holding_lease += 1;
            }
        } else {
            window = (window * 4 / 5).max(50);
        }
        let rerun = moto.run(&[
            "up", WEBAPP, "-e", "aws", "-p", &count, "--yes", "-o", "json",
        ]);
        assert_eq!(rerun.code, 0, "trial {trials}: {}", rerun.snapshot());
        assert_converged(&moto, &format!("trial {trials}")).await;
    }
    eprintln!("{kills} of {trials} runs killed before their end; {holding_lease} held the lease");
    assert_eq!(
        kills, KILLS,
        "only {kills} kills landed mid-run in {trials} trials"
    );
    assert!(
        holding_lease >= KILLS / 2,
        "{holding_lease} kills hit a run at work"
    );
    json(&moto.run(&[
        "destroy",
        WEBAPP,
        "-e",
        "aws",
        "--yes",
        "--allow-data-loss",
        "-o",
        "json",
    ]));
    let left = inventory(&moto).await;
    assert!(
        left.values().all(BTreeSet::is_empty),
        "left behind: {left:?}"
    );
}

/// Credentials come the standard way (here a shared credentials file and
/// `AWS_PROFILE`, with no key in the environment) and are never printed,
/// logged at any verbosity or written into the state.
#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_a_shared_profile_are_used_and_never_printed_or_stored() {
    const KEY_ID: &str = "AKIACAIRNPROFILE7Q3Z";
    const SECRET: &str = "cairnProfileSecret/7f3a9c1e5b2d4f6a8c0e2b4d6f8a0c2e";
    let moto = Moto::start("profile");
    let dir = moto.root.join("profiled");
    std::fs::create_dir_all(dir.join("env")).unwrap();
    std::fs::write(dir.join("env/aws.yaml"), "target: aws\nregion: us-east-1\n").unwrap();
    std::fs::write(
        dir.join("cairn.yaml"),
        "cairn: 1\nresources:\n  net:\n    type: network\n    properties: {cidr: 10.41.0.0/16}\n  assets:\n    type: bucket\n",
    )
    .unwrap();
    let credentials = moto.root.join("credentials");
    std::fs::write(
        &credentials,
        format!("[cairn-test]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    let mut vars: Vec<(&str, String)> = moto
        .vars(&moto.url)
        .into_iter()
        .filter(|(k, _)| {
            !k.starts_with("AWS_SHARED") && !k.contains("_KEY") && *k != "AWS_SESSION_TOKEN"
        })
        .collect();
    vars.push(("AWS_PROFILE", "cairn-test".into()));
    vars.push((
        "AWS_SHARED_CREDENTIALS_FILE",
        credentials.to_str().unwrap().into(),
    ));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = crate::command(args, &vars)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let mut said = String::new();
    for args in [
        &["up", d, "-e", "aws", "--yes", "-vvv"][..],
        &["plan", d, "-e", "aws", "-vvv"],
        &["drift", d, "-e", "aws", "-vvv"],
        &[
            "show",
            d,
            "-e",
            "aws",
            "--address",
            "assets",
            "--secret",
            "-vvv",
        ],
        &["history", d, "-e", "aws", "-vvv"],
        &[
            "destroy",
            d,
            "-e",
            "aws",
            "--yes",
            "--allow-data-loss",
            "-vvv",
        ],
    ] {
        said.push_str(&run(args));
    }
    assert!(said.contains("DEBUG"), "-vvv logs nothing: {said}");
    assert!(!said.contains(SECRET), "the secret key was printed");
    let state = moto.root.join("state.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", state.display()));
        if let Ok(bytes) = std::fs::read(&file) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET),
                "{} holds the secret key",
                file.display()
            );
            assert!(
                !text.contains(KEY_ID),
                "{} holds the key id",
                file.display()
            );
        }
    }
    assert!(state.exists(), "the runs used this test's state");
}
