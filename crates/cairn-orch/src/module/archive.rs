//! `archive`: an archive extracted into a directory (Ansible's
//! `unarchive`, Salt's `archive.extracted`).
//!
//! Idempotence comes from a marker the extraction leaves in `dest`
//! (`.cairn-archive-<hash of the source's name>`) holding the source's
//! sha256 (a file on the host) or its URL (a download is not fetched again
//! just to compare), or from a `creates` path when given. A new archive at
//! the same path extracts again; so does a removed marker.

use async_trait::async_trait;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::{Diff, Outcome};
use crate::remote::{Remote, quote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TarGz,
    TarZst,
    TarXz,
    TarBz2,
    Tar,
    Zip,
}

impl Format {
    fn from_name(name: &str) -> Option<Format> {
        let n = name.to_ascii_lowercase();
        let n = n.split(['?', '#']).next().unwrap_or("");
        [
            (".tar.gz", Format::TarGz),
            (".tgz", Format::TarGz),
            (".tar.zst", Format::TarZst),
            (".tzst", Format::TarZst),
            (".tar.xz", Format::TarXz),
            (".txz", Format::TarXz),
            (".tar.bz2", Format::TarBz2),
            (".tbz2", Format::TarBz2),
            (".tar", Format::Tar),
            (".zip", Format::Zip),
        ]
        .into_iter()
        .find(|(ext, _)| n.ends_with(ext))
        .map(|(_, f)| f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub source: String,
    pub dest: String,
    pub format: Format,
    pub creates: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    pub creates_exists: bool,
    /// What the marker holds, if there is one.
    pub marker: Option<String>,
    /// The sha256 of a source on the host; `None` for a URL or a missing file.
    pub source_sha256: Option<String>,
}

impl Archive {
    pub fn new(args: &Args) -> Result<Archive, ModuleError> {
        let mut r = ArgReader::new("archive", args);
        let source = r.required(&["source", "src"])?;
        let dest = r.required(&["dest", "name"])?;
        let format = match r.choice(
            &["format", "archive_format"],
            &[
                &["tar.gz", "tgz", "gz"],
                &["tar.zst", "zst"],
                &["tar.xz", "xz"],
                &["tar.bz2", "bz2"],
                &["tar"],
                &["zip"],
            ],
        )? {
            Some(f) => Format::from_name(&format!(".{f}")),
            None => Format::from_name(&source),
        };
        let creates = r.str(&["creates", "if_missing"])?;
        r.finish()?;
        let format = format.ok_or_else(|| {
            r.bad(format!(
                "cannot tell the format of `{source}` from its name; give format=tar.gz|tar.zst|tar.xz|tar.bz2|tar|zip"
            ))
        })?;
        Ok(Archive {
            source,
            dest,
            format,
            creates,
        })
    }

    fn is_url(&self) -> bool {
        self.source.starts_with("http://") || self.source.starts_with("https://")
    }

    pub fn marker_path(&self) -> String {
        let h = hex::encode(&Sha256::digest(self.source.as_bytes())[..6]);
        format!("{}/.cairn-archive-{h}", self.dest.trim_end_matches('/'))
    }

    pub fn probe_script(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.creates {
            s.push_str(&format!(
                "if [ -e {} ]; then echo creates=1; fi\n",
                quote(c)
            ));
        }
        s.push_str(&format!(
            "m={}\nif [ -f \"$m\" ]; then echo \"marker=$(cat \"$m\")\"; fi\n",
            quote(&self.marker_path())
        ));
        if !self.is_url() {
            s.push_str(&format!(
                "if [ -f {src} ]; then echo \"sha256=$(sha256sum < {src} | cut -d' ' -f1)\"; fi\n",
                src = quote(&self.source)
            ));
        }
        s
    }

    pub fn parse(stdout: &str) -> Reading {
        let m = kv(stdout);
        Reading {
            creates_exists: m.contains_key("creates"),
            marker: m.get("marker").cloned(),
            source_sha256: m.get("sha256").cloned().filter(|s| !s.is_empty()),
        }
    }

    /// What the marker should hold once this source is extracted; an error
    /// when the source is a missing file on the host.
    pub fn stamp(&self, r: &Reading) -> Result<String, String> {
        if self.is_url() {
            Ok(self.source.clone())
        } else {
            r.source_sha256
                .clone()
                .ok_or_else(|| format!("no archive at {}", self.source))
        }
    }

    /// Whether to extract: `Ok(None)` when nothing is to be done.
    pub fn plan(&self, r: &Reading) -> Result<Option<String>, String> {
        if r.creates_exists {
            return Ok(None);
        }
        let stamp = self.stamp(r)?;
        Ok((r.marker.as_deref() != Some(stamp.as_str())).then_some(stamp))
    }

    pub fn apply_script(&self, stamp: &str) -> String {
        let mut s = format!(
            "set -e\nd={}\nmkdir -p \"$d\"\ntmp=$(mktemp -d)\ntrap 'rm -rf \"$tmp\"' EXIT\n",
            quote(&self.dest)
        );
        if self.is_url() {
            s.push_str(&format!(
                "a=\"$tmp/archive\"\nif command -v curl >/dev/null; then curl -fsSL -o \"$a\" {u}; else wget -q -O \"$a\" {u}; fi\n",
                u = quote(&self.source)
            ));
        } else {
            s.push_str(&format!("a={}\n", quote(&self.source)));
        }
        s.push_str(match self.format {
            Format::TarGz => "tar -xzf \"$a\" -C \"$d\"\n",
            Format::TarXz => "tar -xJf \"$a\" -C \"$d\"\n",
            Format::TarBz2 => "tar -xjf \"$a\" -C \"$d\"\n",
            Format::Tar => "tar -xf \"$a\" -C \"$d\"\n",
            // Through a file, not a pipe: sh has no pipefail, and a broken
            // archive must fail the step.
            Format::TarZst => "zstd -q -d -c \"$a\" > \"$tmp/archive.tar\"\ntar -xf \"$tmp/archive.tar\" -C \"$d\"\n",
            Format::Zip => "unzip -o -q \"$a\" -d \"$d\"\n",
        });
        s.push_str(&format!(
            "printf '%s\\n' {} > {}\n",
            quote(stamp),
            quote(&self.marker_path())
        ));
        s
    }
}

#[async_trait]
impl Module for Archive {
    fn name(&self) -> &str {
        "archive"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let out = host::must(
            "archive",
            "reading the destination",
            host,
            ctx,
            self.probe_script(),
            None,
        )
        .await?;
        let reading = Archive::parse(&out.stdout_str());
        let stamp = self
            .plan(&reading)
            .map_err(|message| ModuleError::refused("archive", message))?;
        let data = json!({ "source": self.source, "dest": self.dest });
        let Some(stamp) = stamp else {
            return Ok(Outcome {
                summary: format!("{} already extracted in {}", self.source, self.dest),
                data,
                ..Outcome::default()
            });
        };
        let summary = if ctx.check {
            format!("would extract {} into {}", self.source, self.dest)
        } else {
            host::must(
                "archive",
                &format!("extracting {}", self.source),
                host,
                ctx,
                self.apply_script(&stamp),
                None,
            )
            .await?;
            format!("extracted {} into {}", self.source, self.dest)
        };
        Ok(Outcome {
            changed: true,
            summary,
            diff: vec![Diff {
                what: self.dest.clone(),
                before: reading.marker.map(|m| format!("extracted ({m})")),
                after: Some(format!("extracted ({stamp})")),
            }],
            data,
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{Scratch, args, assert_sh, check, run, sh};

    fn archive(pairs: &[(&str, &str)]) -> Archive {
        Archive::new(&args(pairs)).unwrap()
    }

    #[test]
    fn plans_from_made_up_readings() {
        let a = archive(&[("source", "/srv/app.tar.gz"), ("dest", "/opt/app")]);
        assert_eq!(a.format, Format::TarGz);
        let fresh = Reading {
            source_sha256: Some("abc".into()),
            ..Reading::default()
        };
        assert_eq!(a.plan(&fresh).unwrap().as_deref(), Some("abc"));
        let done = Reading {
            marker: Some("abc".into()),
            ..fresh.clone()
        };
        assert_eq!(a.plan(&done).unwrap(), None);
        let newer = Reading {
            marker: Some("old".into()),
            ..fresh
        };
        assert!(a.plan(&newer).unwrap().is_some());
        assert!(
            a.plan(&Reading::default())
                .unwrap_err()
                .contains("no archive")
        );
        let c = archive(&[("source", "/x.zip"), ("name", "/d"), ("creates", "/d/bin")]);
        assert_eq!(
            c.plan(&Reading {
                creates_exists: true,
                ..Reading::default()
            })
            .unwrap(),
            None
        );
        let u = archive(&[
            ("source", "https://example.invalid/r.tar.zst?x=1"),
            ("dest", "/d"),
        ]);
        assert_eq!(u.format, Format::TarZst);
        assert_eq!(
            u.plan(&Reading::default()).unwrap().as_deref(),
            Some("https://example.invalid/r.tar.zst?x=1")
        );
        for m in [&a, &c, &u] {
            assert_sh(&m.probe_script());
            assert_sh(&m.apply_script("stamp"));
        }
        assert!(
            Archive::new(&args(&[("source", "/x.rar"), ("dest", "/d")]))
                .unwrap_err()
                .to_string()
                .contains("format")
        );
        assert_eq!(
            archive(&[("source", "/x.bin"), ("dest", "/d"), ("format", "zip")]).format,
            Format::Zip
        );
    }

    #[tokio::test]
    async fn extracts_real_archives_once() {
        let d = Scratch::new();
        sh(
            d.root(),
            "mkdir -p src/app && echo v1 > src/app/VERSION && tar -czf app.tar.gz -C src app && tar --zstd -cf app.tar.zst -C src app && (cd src && zip -qr ../app.zip app)",
        );
        for name in ["app.tar.gz", "app.tar.zst", "app.zip"] {
            let dest = d.s(&format!("out-{name}"));
            let a = [("source", &d.s(name)[..]), ("dest", dest.as_str())];
            let dry = run("archive", &a, &check()).await.unwrap();
            assert!(dry.changed);
            assert!(
                !d.path(&format!("out-{name}")).exists(),
                "check extracts nothing"
            );
            let o = run("archive.extracted", &a, &Default::default())
                .await
                .unwrap();
            assert!(o.changed, "{name}: {o:?}");
            assert_eq!(
                std::fs::read_to_string(d.path(&format!("out-{name}/app/VERSION"))).unwrap(),
                "v1\n"
            );
            let again = run("archive", &a, &Default::default()).await.unwrap();
            assert!(!again.changed, "{name}: {again:?}");
        }

        // A new archive at the same path extracts again.
        sh(
            d.root(),
            "echo v2 > src/app/VERSION && tar -czf app.tar.gz -C src app",
        );
        let dest = d.s("out-app.tar.gz");
        let a = [("source", &d.s("app.tar.gz")[..]), ("dest", dest.as_str())];
        assert!(
            run("archive", &a, &Default::default())
                .await
                .unwrap()
                .changed
        );
        assert_eq!(
            std::fs::read_to_string(d.path("out-app.tar.gz/app/VERSION")).unwrap(),
            "v2\n"
        );

        // creates: skipped while the path is there.
        let c = [
            ("source", &d.s("app.tar.gz")[..]),
            ("dest", &d.s("fresh")[..]),
            ("creates", &d.s("src/app")[..]),
        ];
        assert!(
            !run("archive", &c, &Default::default())
                .await
                .unwrap()
                .changed
        );
        assert!(!d.path("fresh").exists());

        let err = run(
            "archive",
            &[("source", &d.s("none.tar.gz")[..]), ("dest", &d.s("x")[..])],
            &Default::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("no archive"), "{err}");
        sh(d.root(), "echo garbage > bad.tar.gz");
        let err = run(
            "archive",
            &[("source", &d.s("bad.tar.gz")[..]), ("dest", &d.s("y")[..])],
            &Default::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ModuleError::Failed { .. }), "{err}");
    }
}
