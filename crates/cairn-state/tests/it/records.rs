//! Every record type survives a round trip through a file and a reopen.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_engine::store::{JournalEntry, JournalOp};
use serde_json::json;

use crate::{owner, resource, run};

crate::both_stores! {
    fn resources_round_trip_across_reopen(scratch) {
        let db = resource("db", "pw-1");
        let mut web = resource("web[0]", "pw-2");
        web.kind = "server".into();
        web.secrets.clear();
        web.properties = json!({"z": 1, "a": 2, "list": [3, {"k": null}]});
        web.attributes = json!(null);
        web.tags.clear();
        web.depends_on.clear();
        web.data_holding = false;
        web.prevent_destroy = false;
        web.create_before_destroy = true;
        {
            let store = scratch.open();
            store.put_resource("prod", &web).unwrap();
            store.put_resource("prod", &db).unwrap();
            assert_eq!(store.resources("prod").unwrap(), [db.clone(), web.clone()]);
        }
        let store = scratch.open();
        let back = store.resources("prod").unwrap();
        assert_eq!(back, [db, web]);
        // Key order inside JSON objects is kept as written.
        let keys: Vec<_> = back[1].properties.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a", "list"]);
    }

    fn serial_increments_on_every_put_and_delete_and_persists(scratch) {
        {
            let store = scratch.open();
            assert_eq!(store.serial("prod").unwrap(), 0);
            for (i, address) in ["a", "b", "a"].into_iter().enumerate() {
                store.put_resource("prod", &resource(address, "s")).unwrap();
                assert_eq!(store.serial("prod").unwrap(), i as i64 + 1);
            }
            store.delete_resource("prod", "a").unwrap();
            assert_eq!(store.serial("prod").unwrap(), 4);
            store.put_resource("staging", &resource("a", "s")).unwrap();
            assert_eq!(store.serial("staging").unwrap(), 1);
        }
        let store = scratch.open();
        assert_eq!(store.serial("prod").unwrap(), 4);
        store.delete_resource("prod", "b").unwrap();
        assert_eq!(store.serial("prod").unwrap(), 5);
        assert_eq!(
            store.serial("staging").unwrap(),
            1,
            "one deployment's serial moved another's"
        );
    }

    fn generated_secrets_and_outputs_round_trip_across_reopen(scratch) {
        let public = json!({"url": "https://web.example", "count": 3});
        let secrets = BTreeMap::from([
            ("admin_password".into(), json!("out-secret")),
            ("keys".into(), json!(["k1", "k2"])),
        ]);
        {
            let store = scratch.open();
            store
                .put_generated_secret("prod", "db_password", "gen-1")
                .unwrap();
            store
                .put_generated_secret("prod", "api_token", "gen-2")
                .unwrap();
            store.put_outputs("prod", &public, &secrets).unwrap();
        }
        let store = scratch.open();
        assert_eq!(
            store.generated_secrets("prod").unwrap(),
            BTreeMap::from([
                ("api_token".into(), "gen-2".into()),
                ("db_password".into(), "gen-1".into()),
            ])
        );
        assert_eq!(store.outputs("prod").unwrap(), (public, secrets));
        assert!(store.generated_secrets("staging").unwrap().is_empty());
        assert_eq!(
            store.outputs("staging").unwrap(),
            (json!(null), BTreeMap::new())
        );
    }

    fn deployments_are_those_with_resources_runs_or_outputs(scratch) {
        let store = scratch.open();
        assert!(store.deployments().unwrap().is_empty());

        store
            .put_resource("c-resources", &resource("a", "s"))
            .unwrap();
        store.begin_run(&run("a-runs", "up")).unwrap();
        store
            .put_outputs("b-outputs", &json!({"x": 1}), &BTreeMap::new())
            .unwrap();
        // None of these alone makes a deployment worth listing.
        store
            .acquire_lease(
                "d-lease",
                &owner("ann"),
                "r",
                "up",
                Duration::from_secs(60),
                0,
            )
            .unwrap();
        store
            .journal_intent(&JournalEntry {
                seq: 0,
                deployment: "e-journal".into(),
                run_id: "r".into(),
                address: "a".into(),
                kind: "server".into(),
                op: JournalOp::Create,
                token: "t".into(),
                id: None,
                started_at: 0,
                outcome: None,
            })
            .unwrap();
        store.put_generated_secret("f-generated", "p", "v").unwrap();
        // A deployment whose resources were all deleted holds nothing.
        store
            .put_resource("g-emptied", &resource("a", "s"))
            .unwrap();
        store.delete_resource("g-emptied", "a").unwrap();

        assert_eq!(
            store.deployments().unwrap(),
            ["a-runs", "b-outputs", "c-resources"]
        );
    }
}
