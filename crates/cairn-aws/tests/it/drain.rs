//! Drain and restore of a balancer's backend on moto. Moto deregisters at
//! once (it has no deregistration delay: a target goes straight from
//! `healthy` to `unused`, never `draining`), registers straight to
//! `healthy` (no `initial`, no health checks), and matches targets by id
//! alone (a registered instance is `healthy` at any port asked). So this
//! tests the calls, the bookkeeping and the errors; the wait on `draining`
//! and the timeout are ELB's behaviour, not moto's.

use cairn_engine::backend::{BackendRef, BackendState};
use cairn_engine::provider::*;
use serde_json::json;

use crate::moto::Moto;
use crate::provider::{backends_of, network, req};

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_is_deregistered_and_registered_again_without_drift() {
    let moto = Moto::start();
    let p = moto.provider().await;
    let (_, sub) = network(&p).await;
    let server = json!({"image": "ami-1e749f67", "size": "small", "subnet": sub, "firewalls": []});
    let (mut ids, mut ips) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let s = p
            .create(req(
                "server",
                &format!("web[{i}]"),
                &format!("t-web{i}"),
                server.clone(),
            ))
            .await
            .unwrap();
        ids.push(s.id);
        ips.push(s.attributes["private_ip"].as_str().unwrap().to_string());
    }
    let lb = p
        .create(req(
            "load_balancer",
            "lb",
            "t-lb",
            json!({
                "listen": {"protocol": "http", "port": 80},
                "backends": ips,
                "backend_port": 8080,
                "health_check": {"path": "/", "interval": "5s"},
                "drain_timeout": "30s",
            }),
        ))
        .await
        .unwrap();
    let control = p.backend_control().expect("the aws target drains");
    let a = BackendRef::new(ips[0].clone(), 8080);
    let b = BackendRef::new(ips[1].clone(), 8080);
    assert_eq!(
        control.backend_state(&lb.id, &a).await.unwrap(),
        BackendState::Healthy
    );

    let elb = &p.clients().elb;
    let group = elb
        .describe_target_groups()
        .load_balancer_arn(&lb.id)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    let registered = || async {
        let mut ids: Vec<String> = p
            .target_health(&group)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        ids.sort();
        ids
    };
    let drained_tags = || async {
        elb.describe_tags()
            .resource_arns(&group)
            .send()
            .await
            .unwrap()
            .tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| t.key())
            .filter(|k| k.starts_with("cairn:drained:"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };

    let report = control
        .drain(&lb.id, &a, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert!(!report.timed_out, "{report:?}");
    // Seven ELB and EC2 calls on moto, the last look at its health included.
    eprintln!("drain on moto, nothing draining: {:?}", report.waited);
    assert_eq!(
        (report.in_flight_at_start, report.in_flight_left),
        (None, Some(0)),
        "ELB does not count requests per target"
    );
    assert_eq!(registered().await, vec![ids[1].clone()]);
    assert_eq!(
        drained_tags().await,
        vec![format!("cairn:drained:{}:8080", ids[0])]
    );
    assert_eq!(
        control.backend_state(&lb.id, &a).await.unwrap(),
        BackendState::Drained
    );
    assert_eq!(
        control.backend_state(&lb.id, &b).await.unwrap(),
        BackendState::Healthy
    );
    // By instance id too; and draining again is no error.
    let by_id = a.clone().with_server(ids[0].clone());
    assert_eq!(
        control.backend_state(&lb.id, &by_id).await.unwrap(),
        BackendState::Drained
    );
    control
        .drain(&lb.id, &by_id, std::time::Duration::from_secs(10))
        .await
        .unwrap();

    // The resource did not change: read still lists both backends.
    let mut want = ips.clone();
    want.sort();
    assert_eq!(backends_of(&p, &lb.id).await, want);

    // Errors: an unknown balancer, an address no instance has, an
    // instance that is not a backend.
    let nope = lb
        .id
        .replace(lb.id.rsplit('/').next().unwrap(), "0123456789abcdef");
    let e = control.backend_state(&nope, &a).await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)), "{e:?}");
    let e = control
        .drain(
            &lb.id,
            &BackendRef::new("10.30.1.250", 8080),
            std::time::Duration::from_secs(1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Permanent(m) if m.contains("not the address of a running instance")),
        "{e:?}"
    );
    let stranger = BackendRef::new("10.30.1.251", 8080).with_server("i-0123456789abcdef0");
    for e in [
        control.restore(&lb.id, &stranger).await.unwrap_err(),
        control.backend_state(&lb.id, &stranger).await.unwrap_err(),
        control
            .drain(&lb.id, &stranger, std::time::Duration::from_secs(1))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(
            e,
            ProviderError::Permanent(format!(
                "10.30.1.251:8080 (i-0123456789abcdef0) is not a backend of load balancer {}",
                lb.id
            ))
        );
    }

    // Restored (twice): registered again, the mark gone.
    control.restore(&lb.id, &a).await.unwrap();
    control.restore(&lb.id, &a).await.unwrap();
    let mut both = ids.clone();
    both.sort();
    assert_eq!(registered().await, both);
    assert!(drained_tags().await.is_empty());
    assert_eq!(
        control.backend_state(&lb.id, &a).await.unwrap(),
        BackendState::Healthy
    );
}
