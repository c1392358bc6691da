//! `user`: a local account present with the given attributes, or absent
//! (Ansible's `user`, Salt's `user.present`/`user.absent`). Read with
//! `getent`, so accounts from LDAP/NSS are seen too; changed with shadow's
//! `useradd`/`usermod`/`userdel`.

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::{Diff, Outcome};
use crate::remote::{Remote, quote};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub present: bool,
    pub uid: Option<u64>,
    /// The primary group.
    pub group: Option<String>,
    /// Supplementary groups; `None`: left as they are.
    pub groups: Option<Vec<String>>,
    /// Add `groups` to the user's others instead of making them the list.
    pub append: bool,
    pub shell: Option<String>,
    pub home: Option<String>,
    pub comment: Option<String>,
    /// A system account (at creation only).
    pub system: bool,
    /// With absent: remove the home directory too.
    pub remove_home: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub exists: bool,
    pub uid: Option<u64>,
    pub group: Option<String>,
    pub groups: Vec<String>,
    pub comment: String,
    pub home: String,
    pub shell: String,
}

/// The one command to run (`useradd ...`), with what it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub argv: Vec<String>,
    pub diff: Vec<Diff>,
}

pub(crate) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-$".contains(&b))
}

impl User {
    pub fn new(args: &Args) -> Result<User, ModuleError> {
        let mut r = ArgReader::new("user", args);
        let name = r.required(&["name", "user"])?;
        let present = r.choice(&["state"], &[&["present"], &["absent"]])? != Some("absent");
        let u = User {
            name,
            present,
            uid: r.u64(&["uid"])?,
            group: r.str(&["group", "gid"])?,
            groups: r.list(&["groups"])?,
            append: r.bool(&["append"])?.unwrap_or(false),
            shell: r.str(&["shell"])?,
            home: r.str(&["home"])?,
            comment: r.str(&["comment", "fullname"])?,
            system: r.bool(&["system"])?.unwrap_or(false),
            remove_home: r.bool(&["remove", "purge"])?.unwrap_or(false),
        };
        r.finish()?;
        let names = std::iter::once(&u.name)
            .chain(u.group.iter())
            .chain(u.groups.iter().flatten());
        for n in names {
            if !valid_name(n) {
                return Err(r.bad(format!("`{n}` is not a user or group name")));
            }
        }
        if u.comment
            .as_deref()
            .is_some_and(|c| c.contains([':', '\n']))
        {
            return Err(r.bad("`comment` cannot hold `:` or a newline (passwd's separators)"));
        }
        Ok(u)
    }

    pub fn probe_script(&self) -> String {
        format!(
            r#"n={}
if e=$(getent passwd "$n"); then
  echo "passwd=$e"
  echo "group=$(getent group "$(echo "$e" | cut -d: -f4)" | cut -d: -f1)"
  echo "groups=$(id -Gn "$n")"
fi
"#,
            quote(&self.name)
        )
    }

    pub fn parse(stdout: &str) -> Reading {
        let m = kv(stdout);
        let Some(line) = m.get("passwd") else {
            return Reading::default();
        };
        let f: Vec<&str> = line.split(':').collect();
        let field = |i: usize| f.get(i).copied().unwrap_or("").to_string();
        let group = m.get("group").cloned().filter(|g| !g.is_empty());
        Reading {
            exists: true,
            uid: field(2).parse().ok(),
            groups: m
                .get("groups")
                .map(|g| {
                    g.split_whitespace()
                        .filter(|x| Some(*x) != group.as_deref())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            group,
            comment: field(4),
            home: field(5),
            shell: field(6),
        }
    }

    pub fn plan(&self, now: &Reading) -> Plan {
        let mut p = Plan::default();
        let who = |what: &str| format!("user:{}{what}", self.name);
        if !self.present {
            if now.exists {
                p.argv.push("userdel".into());
                if self.remove_home {
                    p.argv.push("-r".into());
                }
                p.argv.push(self.name.clone());
                p.diff.push(Diff {
                    what: who(""),
                    before: Some("present".into()),
                    after: None,
                });
            }
            return p;
        }
        let mut flags: Vec<String> = Vec::new();
        let mut set = |flag: &str,
                       want: &Option<String>,
                       have: Option<String>,
                       what: &str,
                       diff: &mut Vec<Diff>| {
            if let Some(w) = want
                && Some(w) != have.as_ref()
            {
                flags.push(flag.into());
                flags.push(w.clone());
                diff.push(Diff {
                    what: who(what),
                    before: have.filter(|_| now.exists),
                    after: Some(w.clone()),
                });
            }
        };
        set(
            "-u",
            &self.uid.map(|u| u.to_string()),
            now.uid.map(|u| u.to_string()),
            ":uid",
            &mut p.diff,
        );
        set("-g", &self.group, now.group.clone(), ":group", &mut p.diff);
        set(
            "-s",
            &self.shell,
            Some(now.shell.clone()),
            ":shell",
            &mut p.diff,
        );
        set(
            "-d",
            &self.home,
            Some(now.home.clone()),
            ":home",
            &mut p.diff,
        );
        set(
            "-c",
            &self.comment,
            Some(now.comment.clone()),
            ":comment",
            &mut p.diff,
        );
        if let Some(want) = &self.groups {
            let have: BTreeSet<&str> = now.groups.iter().map(String::as_str).collect();
            let wanted: BTreeSet<&str> = want.iter().map(String::as_str).collect();
            let missing: Vec<&str> = wanted.difference(&have).copied().collect();
            let new_list: Option<Vec<&str>> = if self.append {
                (!missing.is_empty()).then_some(missing)
            } else {
                (wanted != have).then(|| wanted.iter().copied().collect())
            };
            if let Some(list) = new_list {
                if self.append && now.exists {
                    flags.push("-a".into());
                }
                flags.push("-G".into());
                flags.push(list.join(","));
                let after: BTreeSet<&str> = if self.append {
                    have.union(&wanted).copied().collect()
                } else {
                    wanted
                };
                p.diff.push(Diff {
                    what: who(":groups"),
                    before: now.exists.then(|| now.groups.join(",")),
                    after: Some(after.into_iter().collect::<Vec<_>>().join(",")),
                });
            }
        }
        if !now.exists {
            p.argv.push("useradd".into());
            // A home like Ansible's create_home; a system account gets none.
            p.argv.push(if self.system { "-r" } else { "-m" }.into());
            p.argv.extend(flags);
            p.argv.push(self.name.clone());
            p.diff.insert(
                0,
                Diff {
                    what: who(""),
                    before: None,
                    after: Some("present".into()),
                },
            );
        } else if !flags.is_empty() {
            p.argv.push("usermod".into());
            p.argv.extend(flags);
            p.argv.push(self.name.clone());
        }
        p
    }
}

pub(crate) fn command_line(argv: &[String]) -> String {
    let words: Vec<String> = argv.iter().map(|w| quote(w)).collect();
    format!("set -e\n{}\n", words.join(" "))
}

#[async_trait]
impl Module for User {
    fn name(&self) -> &str {
        "user"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let out = host::must(
            "user",
            "reading the account",
            host,
            ctx,
            self.probe_script(),
            None,
        )
        .await?;
        let plan = self.plan(&User::parse(&out.stdout_str()));
        run_plan("user", &self.name, plan, host, ctx).await
    }
}

/// Shared by `user` and `group`: one command, or nothing.
pub(crate) async fn run_plan(
    module: &str,
    name: &str,
    plan: Plan,
    host: &dyn Remote,
    ctx: &RunContext,
) -> Result<Outcome, ModuleError> {
    let Some(verb) = plan.argv.first().cloned() else {
        return Ok(Outcome {
            summary: format!("{name} as wanted"),
            ..Outcome::default()
        });
    };
    let summary = if ctx.check {
        format!("would run {verb} for {name}")
    } else {
        host::must(module, &verb, host, ctx, command_line(&plan.argv), None).await?;
        format!("ran {verb} for {name}")
    };
    Ok(Outcome {
        changed: true,
        summary,
        diff: plan.diff,
        ..Outcome::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{Fake, args, assert_sh, check};

    fn user(pairs: &[(&str, &str)]) -> User {
        User::new(&args(pairs)).unwrap()
    }

    const DEPLOY: &str =
        "passwd=deploy:x:1001:1001:Deploy:/home/deploy:/bin/sh\ngroup=deploy\ngroups=deploy adm\n";

    #[test]
    fn reads_getent() {
        let r = User::parse(DEPLOY);
        assert!(r.exists);
        assert_eq!(r.uid, Some(1001));
        assert_eq!(r.group.as_deref(), Some("deploy"));
        assert_eq!(r.groups, vec!["adm"]);
        assert_eq!(r.shell, "/bin/sh");
        assert!(!User::parse("").exists);
    }

    #[test]
    fn plans_create_modify_delete() {
        let u = user(&[
            ("name", "deploy"),
            ("shell", "/bin/bash"),
            ("groups", "adm,sudo"),
            ("uid", "1001"),
        ]);
        let p = u.plan(&Reading::default());
        assert_eq!(
            p.argv,
            [
                "useradd",
                "-m",
                "-u",
                "1001",
                "-s",
                "/bin/bash",
                "-G",
                "adm,sudo",
                "deploy"
            ]
        );
        let p = u.plan(&User::parse(DEPLOY));
        assert_eq!(
            p.argv,
            ["usermod", "-s", "/bin/bash", "-G", "adm,sudo", "deploy"]
        );
        assert_eq!(
            p.diff[0].render(),
            "user:deploy:shell: /bin/sh -> /bin/bash"
        );
        assert_eq!(p.diff[1].render(), "user:deploy:groups: adm -> adm,sudo");
        let same = user(&[("name", "deploy"), ("shell", "/bin/sh"), ("groups", "adm")]);
        assert!(same.plan(&User::parse(DEPLOY)).argv.is_empty());
        let app = user(&[("name", "deploy"), ("groups", "sudo"), ("append", "yes")]);
        assert_eq!(
            app.plan(&User::parse(DEPLOY)).argv,
            ["usermod", "-a", "-G", "sudo", "deploy"]
        );
        let sys = user(&[("name", "svc"), ("system", "true")]);
        assert_eq!(sys.plan(&Reading::default()).argv, ["useradd", "-r", "svc"]);
        let gone = user(&[("name", "deploy"), ("state", "absent"), ("remove", "yes")]);
        assert_eq!(
            gone.plan(&User::parse(DEPLOY)).argv,
            ["userdel", "-r", "deploy"]
        );
        assert!(gone.plan(&Reading::default()).argv.is_empty());
        assert!(User::new(&args(&[("name", "-o")])).is_err());
        assert!(User::new(&args(&[("name", "a"), ("uid", "x")])).is_err());
    }

    #[tokio::test]
    async fn creates_once_then_nothing() {
        let u = crate::module::load(
            "user.present",
            &args(&[
                ("name", "deploy"),
                ("shell", "/bin/sh"),
                ("comment", "Deploy it's"),
            ]),
        )
        .unwrap();
        let host = Fake::new(&[(0, ""), (0, "")]);
        let o = u.run(&host, &RunContext::default()).await.unwrap();
        assert!(o.changed);
        let s = host.scripts();
        assert!(s[0].contains("getent passwd"));
        assert_eq!(
            s[1],
            "set -e\nuseradd -m -s /bin/sh -c 'Deploy it'\\''s' deploy\n"
        );
        assert_sh(&s[0]);
        assert_sh(&s[1]);
        let host = Fake::new(&[(
            0,
            "passwd=deploy:x:1001:1001:Deploy it's:/home/deploy:/bin/sh\ngroup=deploy\ngroups=deploy\n",
        )]);
        assert!(!u.run(&host, &RunContext::default()).await.unwrap().changed);
        assert_eq!(host.scripts().len(), 1);
        let host = Fake::new(&[(0, "")]);
        assert!(u.run(&host, &check()).await.unwrap().changed);
        assert_eq!(host.scripts().len(), 1);
    }
}
