//! The release trail and the artifact signing key, on both stores: a
//! record begun then finished in place, listed newest first per app; the
//! key's seed sealed (a database reader sees no secret) and the first key
//! kept when two builds race.

use cairn_release::record::{
    HostOutcome, HostRelease, ReleaseEvent, ReleaseKind, ReleaseOutcome, ReleaseRecord, StoredKey,
};

fn record(id: &str, app: &str, env: &str, started_at: i64) -> ReleaseRecord {
    ReleaseRecord {
        id: id.into(),
        app: app.into(),
        deployment: format!("shop-{env}"),
        environment: env.into(),
        kind: ReleaseKind::Release,
        version: "v1".into(),
        digest: "ab".repeat(32),
        author: "ci@runner".into(),
        started_at,
        finished_at: None,
        outcome: ReleaseOutcome::Running,
        batches: 0,
        max_fail: 0,
        hosts: Vec::new(),
        events: Vec::new(),
    }
}

crate::both_stores! {
    fn releases_are_kept_whole_and_listed_newest_first(scratch) {
        let store = scratch.open();
        let mut first = record("r1", "web", "test", 100);
        store.begin_release(&first).unwrap();
        store.begin_release(&record("r2", "web", "prod", 200)).unwrap();
        store.begin_release(&record("r3", "api", "prod", 300)).unwrap();
        first.outcome = ReleaseOutcome::RolledBack;
        first.finished_at = Some(150);
        first.hosts = vec![HostRelease {
            host: "web-0".into(),
            address: "10.0.0.4".into(),
            from_version: Some("v0".into()),
            outcome: HostOutcome::Failed,
            message: Some("health: /healthz answered 500".into()),
        }];
        first.events = vec![ReleaseEvent {
            at_ms: 100_500,
            host: Some("web-0".into()),
            step: "health".into(),
            ok: false,
            message: "answered 500".into(),
        }];
        store.finish_release(&first).unwrap();

        let web = store.releases(Some("web")).unwrap();
        assert_eq!(web.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r2", "r1"]);
        assert_eq!(web[1], first, "a record round-trips whole, finished in place");
        assert_eq!(store.releases(None).unwrap().len(), 3);
        assert!(store.releases(Some("nothing")).unwrap().is_empty());
    }

    fn the_first_signing_key_is_kept_and_its_seed_is_sealed(scratch) {
        let store = scratch.open();
        assert!(store.signing_key("artifacts").unwrap().is_none());
        let a = StoredKey { public: "aa".repeat(32), seed: [7; 32] };
        let b = StoredKey { public: "bb".repeat(32), seed: [9; 32] };
        assert_eq!(store.put_signing_key("artifacts", &a).unwrap(), a);
        // A second build racing the first gets the first key back.
        assert_eq!(store.put_signing_key("artifacts", &b).unwrap(), a);
        drop(store);
        assert_eq!(scratch.open().signing_key("artifacts").unwrap(), Some(a));
    }
}

fn incident(id: &str, app: &str, host: &str, since: i64) -> cairn_release::HealRecord {
    cairn_release::HealRecord {
        id: id.into(),
        app: app.into(),
        deployment: "shop-prod".into(),
        environment: "prod".into(),
        host: host.into(),
        resource: Some("web[0]".into()),
        server_id: Some("srv-1".into()),
        address: "10.0.0.4".into(),
        version: Some("v1".into()),
        failing_since_ms: since,
        reason: "the service exited".into(),
        outcome: cairn_release::HealOutcome::Failing,
        finished_at_ms: None,
        replaced_by: None,
        new_address: None,
        events: Vec::new(),
    }
}

crate::both_stores! {
    fn heal_incidents_are_kept_whole_and_the_open_ones_found(scratch) {
        use cairn_release::HealOutcome;
        let store = scratch.open();
        let mut first = incident("h1", "web", "web-0", 1_000);
        store.put_heal(&first).unwrap();
        store.put_heal(&incident("h2", "web", "web-1", 2_000)).unwrap();
        store.put_heal(&incident("h3", "api", "api-0", 3_000)).unwrap();
        let open = |app| {
            store.heals(Some(app), Some("shop-prod"), true).unwrap()
                .into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        assert_eq!(open("web"), ["h2", "h1"]);
        first.outcome = HealOutcome::Replaced;
        first.finished_at_ms = Some(9_000);
        first.replaced_by = Some("srv-9".into());
        first.events = vec![ReleaseEvent {
            at_ms: 8_000,
            host: Some("web-0".into()),
            step: "replaced".into(),
            ok: true,
            message: "web[0] is srv-9 now".into(),
        }];
        store.put_heal(&first).unwrap();
        assert_eq!(open("web"), ["h2"]);
        let all = store.heals(Some("web"), None, false).unwrap();
        assert_eq!(all[1], first, "an incident round-trips whole, updated in place");
        assert!(store.heals(Some("web"), Some("shop-test"), false).unwrap().is_empty());
        assert_eq!(store.heals(None, None, false).unwrap().len(), 3);
    }
}
