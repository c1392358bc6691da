//! `group`: a local group present (with a gid) or absent (Ansible's
//! `group`, Salt's `group.present`/`group.absent`).

use async_trait::async_trait;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::{Diff, Outcome};
use super::user::{Plan, run_plan, valid_name};
use crate::remote::{Remote, quote};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub present: bool,
    pub gid: Option<u64>,
    /// A system group (at creation only).
    pub system: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub exists: bool,
    pub gid: Option<u64>,
    pub members: Vec<String>,
}

impl Group {
    pub fn new(args: &Args) -> Result<Group, ModuleError> {
        let mut r = ArgReader::new("group", args);
        let g = Group {
            name: r.required(&["name", "group"])?,
            present: r.choice(&["state"], &[&["present"], &["absent"]])? != Some("absent"),
            gid: r.u64(&["gid"])?,
            system: r.bool(&["system"])?.unwrap_or(false),
        };
        r.finish()?;
        if !valid_name(&g.name) {
            return Err(r.bad(format!("`{}` is not a group name", g.name)));
        }
        Ok(g)
    }

    pub fn probe_script(&self) -> String {
        format!(
            "if e=$(getent group {}); then echo \"group=$e\"; fi\n",
            quote(&self.name)
        )
    }

    pub fn parse(stdout: &str) -> Reading {
        let m = kv(stdout);
        let Some(line) = m.get("group") else {
            return Reading::default();
        };
        let f: Vec<&str> = line.split(':').collect();
        Reading {
            exists: true,
            gid: f.get(2).and_then(|g| g.parse().ok()),
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    pub fn plan(&self, now: &Reading) -> Plan {
        let mut p = Plan::default();
        let what = format!("group:{}", self.name);
        let gid = self.gid.map(|g| g.to_string());
        match (self.present, now.exists) {
            (false, true) => {
                p.argv = vec!["groupdel".into(), self.name.clone()];
                p.diff.push(Diff {
                    what,
                    before: Some("present".into()),
                    after: None,
                });
            }
            (true, false) => {
                p.argv.push("groupadd".into());
                if self.system {
                    p.argv.push("-r".into());
                }
                if let Some(g) = &gid {
                    p.argv.extend(["-g".into(), g.clone()]);
                }
                p.argv.push(self.name.clone());
                p.diff.push(Diff {
                    what,
                    before: None,
                    after: Some("present".into()),
                });
            }
            (true, true) if self.gid.is_some() && self.gid != now.gid => {
                let g = gid.unwrap_or_default();
                p.argv = vec!["groupmod".into(), "-g".into(), g.clone(), self.name.clone()];
                p.diff.push(Diff {
                    what: format!("{what}:gid"),
                    before: now.gid.map(|g| g.to_string()),
                    after: Some(g),
                });
            }
            _ => {}
        }
        p
    }
}

#[async_trait]
impl Module for Group {
    fn name(&self) -> &str {
        "group"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let out = host::must(
            "group",
            "reading the group",
            host,
            ctx,
            self.probe_script(),
            None,
        )
        .await?;
        let plan = self.plan(&Group::parse(&out.stdout_str()));
        run_plan("group", &self.name, plan, host, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{Fake, args, assert_sh};

    fn group(pairs: &[(&str, &str)]) -> Group {
        Group::new(&args(pairs)).unwrap()
    }

    #[test]
    fn plans_from_made_up_readings() {
        let seen = Group::parse("group=web:x:1500:alice,bob\n");
        assert_eq!(seen.gid, Some(1500));
        assert_eq!(seen.members, vec!["alice", "bob"]);
        let g = group(&[("name", "web"), ("gid", "1600"), ("system", "yes")]);
        assert_eq!(
            g.plan(&Reading::default()).argv,
            ["groupadd", "-r", "-g", "1600", "web"]
        );
        assert_eq!(g.plan(&seen).argv, ["groupmod", "-g", "1600", "web"]);
        assert!(group(&[("name", "web")]).plan(&seen).argv.is_empty());
        assert_eq!(
            group(&[("name", "web"), ("state", "absent")])
                .plan(&seen)
                .argv,
            ["groupdel", "web"]
        );
        assert!(
            group(&[("name", "web"), ("state", "absent")])
                .plan(&Reading::default())
                .argv
                .is_empty()
        );
        assert!(
            Group::new(&args(&[("name", "web"), ("gdi", "1")]))
                .unwrap_err()
                .to_string()
                .contains("did you mean `gid`")
        );
    }

    #[tokio::test]
    async fn creates_once_then_nothing() {
        let g = crate::module::load("group.present", &args(&[("name", "web"), ("gid", "1500")]))
            .unwrap();
        let host = Fake::new(&[(0, ""), (0, "")]);
        let o = g.run(&host, &RunContext::default()).await.unwrap();
        assert!(o.changed);
        let s = host.scripts();
        assert_eq!(s[1], "set -e\ngroupadd -g 1500 web\n");
        assert_sh(&s[0]);
        assert_sh(&s[1]);
        let host = Fake::new(&[(0, "group=web:x:1500:\n")]);
        assert!(!g.run(&host, &RunContext::default()).await.unwrap().changed);
        assert_eq!(host.scripts().len(), 1);
        let host = Fake::new(&[(0, ""), (9, "")]);
        assert!(matches!(
            g.run(&host, &RunContext::default()).await,
            Err(ModuleError::Failed { rc: Some(9), .. })
        ));
    }
}
