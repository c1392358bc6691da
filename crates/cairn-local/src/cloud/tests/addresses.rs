//! Addresses and blocks: overlap checks, and reservations that keep
//! parallel creates apart.

use std::net::Ipv4Addr;
use std::time::Duration;

use cairn_engine::provider::*;
use ipnet::IpNet;
use serde_json::json;

use super::support::*;

#[tokio::test]
async fn address_blocks_are_checked_for_containment_and_overlap() {
    let (_f, cloud) = fixture("blocks");
    let (net, _) = network(&cloud).await;
    let outside = cloud
        .create(req(
            "subnet",
            "bad",
            json!({"network": net, "cidr": "10.99.0.0/24"}),
        ))
        .await
        .unwrap_err();
    assert!(
        outside.to_string().contains("not inside its network"),
        "{outside}"
    );
    let overlap = cloud
        .create(req(
            "subnet",
            "dup",
            json!({"network": net, "cidr": "10.20.1.128/25"}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(overlap, ProviderError::Conflict(_)), "{overlap}");
    let net2 = cloud
        .create(req("network", "net2", json!({"cidr": "10.20.128.0/17"})))
        .await
        .unwrap_err();
    assert!(matches!(net2, ProviderError::Conflict(_)));
}

#[tokio::test]
async fn a_block_being_made_is_claimed_until_recorded_or_failed() {
    let (_f, cloud) = fixture("claims");
    let (net, _) = network(&cloud).await;
    let block = |c: &str| c.parse::<IpNet>().unwrap();
    cloud
        .reserve_block("subnet-a", "subnet", &net, block("10.20.2.0/24"), "a")
        .unwrap();
    // Another create asking for an overlapping block meanwhile is refused,
    // one for a block elsewhere or in another network is not.
    let err = cloud
        .reserve_block("subnet-b", "subnet", &net, block("10.20.2.128/25"), "b")
        .unwrap_err();
    assert!(err.to_string().contains("being made right now"), "{err}");
    cloud
        .reserve_block("subnet-c", "subnet", &net, block("10.20.3.0/24"), "c")
        .unwrap();
    cloud
        .reserve_block(
            "subnet-d",
            "subnet",
            "network-other",
            block("10.20.2.0/24"),
            "d",
        )
        .unwrap();
    // The first create failed: its claim ends.
    cloud.lock().release("subnet-a");
    cloud
        .reserve_block("subnet-b", "subnet", &net, block("10.20.2.128/25"), "b")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_of_overlapping_subnets_make_one() {
    let (_f, cloud) = fixture("parallel-blocks");
    let cloud = std::sync::Arc::new(cloud);
    let (net, _) = network(&cloud).await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (cloud, net) = (cloud.clone(), net.clone());
            tokio::spawn(async move {
                let cidr = if i % 2 == 0 {
                    "10.20.4.0/24"
                } else {
                    "10.20.4.0/25"
                };
                cloud
                    .create(req(
                        "subnet",
                        &format!("s{i}"),
                        json!({"network": net, "cidr": cidr}),
                    ))
                    .await
            })
        })
        .collect();
    let mut made = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => made += 1,
            Err(e) => assert!(matches!(e, ProviderError::Conflict(_)), "{e}"),
        }
    }
    assert_eq!(made, 1);
}

/// Many servers made at once (as `up` does, 32 in parallel) never share an
/// address or a private address.
#[tokio::test]
async fn parallel_creates_get_distinct_addresses() {
    let (_f, mut cloud) = fixture("parallel");
    cloud.settle = Duration::from_millis(20);
    let cloud = std::sync::Arc::new(cloud);
    let (_, sub) = network(&cloud).await;
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..48 {
        let (cloud, sub) = (cloud.clone(), sub.clone());
        creates.spawn(async move {
            cloud
                .create(req(
                    "server",
                    &format!("web[{i}]"),
                    json!({"image": "debian-12", "subnet": sub, "user_data": "exec sleep 60"}),
                ))
                .await
                .unwrap()
        });
    }
    let mut addresses = std::collections::HashSet::new();
    let mut private = std::collections::HashSet::new();
    while let Some(made) = creates.join_next().await {
        let made = made.unwrap();
        assert!(
            addresses.insert(made.attributes["address"].to_string()),
            "{made:?}"
        );
        assert!(
            private.insert(made.attributes["private_ip"].to_string()),
            "{made:?}"
        );
    }
    assert_eq!(addresses.len(), 48);
    assert!(cloud.snapshot().reserved.is_empty() && cloud.snapshot().reserved_private.is_empty());
    cloud.shutdown().await;
}

#[test]
fn public_addresses_of_a_block_are_reserved_until_it_is_full() {
    let (_f, cloud) = fixture("public-block");
    let block: ipnet::Ipv4Net = "198.18.9.0/30".parse().unwrap();
    assert_eq!(
        cloud.reserve_public("a", block).unwrap(),
        Ipv4Addr::new(198, 18, 9, 1)
    );
    assert_eq!(
        cloud.reserve_public("b", block).unwrap(),
        Ipv4Addr::new(198, 18, 9, 2)
    );
    let err = cloud.reserve_public("c", block).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no public address left in this cloud's block 198.18.9.0/30 (2 addresses)"
    );
    // A create that fails gives its address back.
    cloud.lock().release("a");
    assert_eq!(
        cloud.reserve_public("c", block).unwrap(),
        Ipv4Addr::new(198, 18, 9, 1)
    );
}
