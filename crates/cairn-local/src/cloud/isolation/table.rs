//! The cloud namespace's firewall table (`rules` computes it from the
//! record), replaced after every change that affects it, and the way out
//! to the internet (slirp4netns) that its rules guard.

use std::path::PathBuf;

use cairn_engine::provider::{ProviderError, ProviderResult};

use super::hosts::Hosts;
use super::rules::ruleset;
use crate::cloud::model::{CloudState, LocalResource};
use crate::cloud::props::permanent;
use crate::host::firewall::{self as nft, Ruleset};
use crate::host::nat::{self, Nat};

impl Hosts {
    /// Replaces the cloud namespace's firewall table with the rules of
    /// `state` (taken while holding the firewall lock, by `snapshot`).
    pub async fn apply_firewall(
        &self,
        snapshot: impl FnOnce() -> CloudState,
    ) -> ProviderResult<()> {
        use std::sync::atomic::Ordering::SeqCst;
        // Every change a caller made is recorded before it asks.
        let ticket = self.firewall_asked.fetch_add(1, SeqCst) + 1;
        let mut way_out = self.firewall.lock().await;
        if self.firewall_done.load(SeqCst) >= ticket {
            return Ok(());
        }
        let Some(cloud) = self.net_if_up().await else {
            return Ok(());
        };
        // Read before the snapshot: every ticket up to here is in it.
        let covers = self.firewall_asked.load(SeqCst);
        let mut state = snapshot();
        for (id, r) in self.staged_databases.lock().expect("staged lock").iter() {
            state
                .resources
                .entry(id.clone())
                .or_insert_with(|| r.clone());
        }
        let link = self.link.lock().expect("link lock").clone();
        let mut rules = ruleset(&state, &link);
        let apply = |rules: Ruleset| {
            let netns = cloud.netns.clone();
            async move {
                nft::apply(&netns, &rules).await.map_err(|e| {
                    ProviderError::Transient(format!("the cloud's firewall rules: {e}"))
                })
            }
        };
        if rules.internet.is_empty() {
            // The way out goes before the rules that guard it.
            if let Some(nat) = way_out.take() {
                nat.stop().await;
            }
            apply(rules).await?;
            self.firewall_done.store(covers, SeqCst);
            return Ok(());
        }
        // The rules first: the tap's default route must find only the
        // networks with `internet: true` allowed out.
        rules.way_out = Some(nat::DEVICE.to_string());
        apply(rules).await?;
        self.firewall_done.store(covers, SeqCst);
        if way_out.is_none() {
            let started = Nat::start(&PathBuf::from("/run/netns").join(&cloud.netns))
                .await
                .map_err(|e| permanent(format!("the way to the internet: {e}")))?;
            tracing::info!(pid = ?started.pid(), "slirp4netns started for networks with internet");
            *way_out = Some(started);
        }
        Ok(())
    }

    /// Puts a database being made into every firewall snapshot until it
    /// is deleted (see [`Hosts::stop_serving_database`]).
    pub fn stage_database(&self, record: LocalResource) {
        self.staged_databases
            .lock()
            .expect("staged lock")
            .insert(record.id.clone(), record);
    }

    /// Stops the way out, if it runs.
    pub(super) async fn close_way_out(&self) {
        if let Some(nat) = self.firewall.lock().await.take() {
            nat.stop().await;
        }
    }
}
