//! Writes the provider's concurrent calls share: instances to terminate
//! and a hosted zone's record changes, each batched across callers
//! ([`WriteBatcher`]). A destroy of thirty servers makes one
//! `TerminateInstances` call or two instead of thirty, a zone's fifteen
//! records one `ChangeResourceRecordSets`, and a region's request limits
//! count calls.

use aws_sdk_route53::types::{Change, ChangeBatch};
use cairn_engine::provider::ProviderResult;

use crate::batch::{WriteBatcher, all_or_each};
use crate::config::Clients;
use crate::error::classify;
use crate::model::permanent;

/// Items per call: EC2 and Route 53 take up to 1,000; a hundred keeps one
/// refused call's fallback short.
const MAX_ITEMS: usize = 100;

/// The place every termination queues at. The provider's clients are made
/// for one region, and `TerminateInstances` takes any of its instances in
/// one call, so all terminations share one queue; the name is never sent.
pub(crate) const REGION: &str = "";

pub(crate) struct SharedWrites {
    /// Instance ids to terminate, all at [`REGION`].
    pub(crate) terminations: WriteBatcher<String, ()>,
    /// Record set changes, by hosted zone id.
    pub(crate) record_changes: WriteBatcher<Change, ()>,
}

impl SharedWrites {
    pub(crate) fn new(c: &Clients) -> SharedWrites {
        let ec2 = c.ec2.clone();
        let terminations = WriteBatcher::new(MAX_ITEMS, move |_region, ids: Vec<String>| {
            let ec2 = ec2.clone();
            async move {
                // One unknown id fails the whole call: each alone then.
                all_or_each(&ids, |ids| {
                    let call = ec2
                        .terminate_instances()
                        .set_instance_ids(Some(ids.to_vec()));
                    async move {
                        call.send()
                            .await
                            .map_err(|e| classify("TerminateInstances", e))?;
                        Ok(())
                    }
                })
                .await
            }
        });
        let route53 = c.route53.clone();
        let record_changes =
            WriteBatcher::new(MAX_ITEMS, move |zone: String, changes: Vec<Change>| {
                let route53 = route53.clone();
                async move {
                    // A batch is applied whole or not at all: one change that
                    // does not fit (a record to delete not as recorded) fails
                    // it, and each alone then says which.
                    all_or_each(&changes, |changes| {
                        change_record_sets(&route53, &zone, changes.to_vec())
                    })
                    .await
                }
            });
        SharedWrites {
            terminations,
            record_changes,
        }
    }
}

/// One `ChangeResourceRecordSets` call with these changes.
pub(crate) async fn change_record_sets(
    route53: &aws_sdk_route53::Client,
    zone: &str,
    changes: Vec<Change>,
) -> ProviderResult<()> {
    route53
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(
            ChangeBatch::builder()
                .set_changes(Some(changes))
                .build()
                .map_err(|e| permanent(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| classify("ChangeResourceRecordSets", e))?;
    Ok(())
}
