//! Images by name: the root filesystem below a server's own layer.
//!
//! `host` is the machine's own `/` (fast; tests and development). Every
//! other name is a recipe built once with `mmdebstrap` from the
//! distribution's packages into a cache directory keyed by the recipe's
//! arguments (`debian-12-<hash>`), so changing a recipe builds a new image
//! beside the old one. A build goes into a temporary directory renamed into
//! place at the end: a killed build leaves no half image, and a cache hit
//! is "the directory exists". Concurrent builds of one image serialise on a
//! lock file; the second finds the first one's result.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::error::HostError;

/// The name of the image that is the machine's own root.
pub const HOST: &str = "host";

/// The file written last into a built image's directory; its presence
/// means the build finished.
const MARKER: &str = "image.json";

/// How an image is built with mmdebstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    /// The image's name in templates (`image: debian-12`).
    pub name: &'static str,
    /// The distribution's suite.
    pub suite: &'static str,
    /// mmdebstrap's variant.
    pub variant: &'static str,
    /// Packages beyond the variant's.
    pub include: &'static [&'static str],
    /// Shell commands run on the finished tree (`$1` is its path).
    pub customize_hooks: &'static [&'static str],
}

/// Debian 12 with what a managed host needs: sshd, python3 (the full one:
/// python3-minimal has no `json`, which Ansible's modules import), iproute2,
/// curl, CA certificates, ps, and zstd and openssl for releases (the install
/// script unpacks tar.zst and checks ed25519 signatures with OpenSSL 3).
/// The hook deletes the host keys that openssh-server's postinst made
/// (every server would share them; each gets its own in its layer), the
/// build machine's hostname and machine-id.
pub const DEBIAN_12: Recipe = Recipe {
    name: "debian-12",
    suite: "bookworm",
    variant: "minbase",
    include: &[
        "openssh-server",
        "python3",
        "iproute2",
        "curl",
        "ca-certificates",
        "procps",
        "zstd",
        "openssl",
    ],
    customize_hooks: &[r#"rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/hostname "$1"/etc/machine-id"#],
};

/// Every image cairn can build.
pub const RECIPES: &[Recipe] = &[DEBIAN_12];

impl Recipe {
    /// mmdebstrap's arguments without the target directory.
    pub fn mmdebstrap_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--variant={}", self.variant),
            format!("--include={}", self.include.join(",")),
        ];
        args.extend(
            self.customize_hooks
                .iter()
                .map(|h| format!("--customize-hook={h}")),
        );
        args.push(self.suite.to_string());
        args
    }

    /// The cache directory's name: the image's name and a short hash of
    /// the build's inputs.
    pub fn key(&self) -> String {
        let digest = Sha256::digest(self.mmdebstrap_args().join("\n").as_bytes());
        format!("{}-{}", self.name, hex::encode(&digest[..6]))
    }
}

/// A resolved image: the directory that goes below a server's layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The name it was asked for by.
    pub name: String,
    /// Its root filesystem (an overlay's lower directory).
    pub root: PathBuf,
}

/// The names of every image, `host` first.
pub fn known_images() -> Vec<String> {
    std::iter::once(HOST)
        .chain(RECIPES.iter().map(|r| r.name))
        .map(String::from)
        .collect()
}

fn recipe(name: &str) -> Result<Option<&'static Recipe>, HostError> {
    if name == HOST {
        return Ok(None);
    }
    RECIPES
        .iter()
        .find(|r| r.name == name)
        .map(Some)
        .ok_or_else(|| HostError::UnknownImage {
            name: name.to_string(),
            known: known_images(),
        })
}

fn host_image() -> Image {
    Image {
        name: HOST.to_string(),
        root: PathBuf::from("/"),
    }
}

/// The per-machine cache of built images.
#[derive(Debug, Clone)]
pub struct ImageCache {
    root: PathBuf,
}

impl ImageCache {
    /// A cache in `root` (made on the first build).
    pub fn new(root: impl Into<PathBuf>) -> ImageCache {
        ImageCache { root: root.into() }
    }

    /// `$XDG_CACHE_HOME/cairn/images`, else `$HOME/.cache/cairn/images`.
    pub fn default_root() -> Option<PathBuf> {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(cache.join("cairn").join("images"))
    }

    /// Where a recipe's image lives once built.
    pub fn dir(&self, recipe: &Recipe) -> PathBuf {
        self.root.join(recipe.key())
    }

    /// The image if it needs no build (`host`, or already in the cache);
    /// `None` if it must be built; an error for an unknown name.
    pub fn lookup(&self, name: &str) -> Result<Option<Image>, HostError> {
        let Some(recipe) = recipe(name)? else {
            return Ok(Some(host_image()));
        };
        let dir = self.dir(recipe);
        Ok(dir.join(MARKER).is_file().then(|| Image {
            name: name.to_string(),
            root: dir.join("rootfs"),
        }))
    }

    /// The image, built first if the cache does not have it; each line the
    /// builder prints goes to `progress`.
    pub async fn resolve(
        &self,
        name: &str,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Image, HostError> {
        let Some(recipe) = recipe(name)? else {
            return Ok(host_image());
        };
        if let Some(image) = self.lookup(name)? {
            return Ok(image);
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| HostError::io(format!("create {}", self.root.display()), e))?;
        // One build at a time per image; the lock goes with the process.
        let lock_path = self.root.join(format!("{}.lock", recipe.key()));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| HostError::io(format!("open {}", lock_path.display()), e))?;
        if lock.try_lock().is_err() {
            progress(&format!("waiting for another build of {name} to finish"));
            let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
                .await
                .map_err(|e| HostError::io("wait for the image lock", std::io::Error::other(e)))?
                .map_err(|e| HostError::io(format!("lock {}", lock_path.display()), e))?;
            return self.build_locked(recipe, lock, progress).await;
        }
        self.build_locked(recipe, lock, progress).await
    }

    async fn build_locked(
        &self,
        recipe: &Recipe,
        _lock: File,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Image, HostError> {
        // The build we waited for may have made it.
        if let Some(image) = self.lookup(recipe.name)? {
            return Ok(image);
        }
        let key = recipe.key();
        self.remove_stale_builds(&key)?;
        let tmp = self.root.join(format!(".{key}.tmp-{}", std::process::id()));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| HostError::io(format!("create {}", tmp.display()), e))?;
        let started = Instant::now();
        let args = recipe.mmdebstrap_args();
        progress(&format!(
            "building image {} with mmdebstrap (once; cached in {})",
            recipe.name,
            self.dir(recipe).display()
        ));
        run_with_progress(&args, &tmp.join("rootfs"), progress).await?;
        let seconds = started.elapsed().as_secs_f64();
        let marker = serde_json::json!({
            "name": recipe.name,
            "mmdebstrap": args,
            "build_seconds": (seconds * 10.0).round() / 10.0,
        });
        std::fs::write(tmp.join(MARKER), format!("{marker:#}\n"))
            .map_err(|e| HostError::io(format!("write {}", tmp.join(MARKER).display()), e))?;
        let dir = self.dir(recipe);
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            // Someone else's build won (a lock that did not hold, e.g. on
            // a network file system): theirs is as good as ours.
            if dir.join(MARKER).is_file() {
                remove_tree(&tmp)?;
            } else {
                return Err(HostError::io(
                    format!("rename {} to {}", tmp.display(), dir.display()),
                    e,
                ));
            }
        }
        progress(&format!("image {} built in {seconds:.1} s", recipe.name));
        self.lookup(recipe.name)?.ok_or_else(|| {
            HostError::io(
                format!("find {}", dir.display()),
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// Removes what killed builds of `key` left (callers hold its lock, so
    /// no build of it is running).
    fn remove_stale_builds(&self, key: &str) -> Result<(), HostError> {
        let prefix = format!(".{key}.tmp-");
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| HostError::io(format!("list {}", self.root.display()), e))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                remove_tree(&entry.path())?;
            }
        }
        Ok(())
    }
}

/// Removes a directory tree, unless something is still mounted inside it
/// (a killed mmdebstrap can leave /proc or /dev mounted in its chroot, and
/// removing through those would delete the machine's files).
fn remove_tree(path: &Path) -> Result<(), HostError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| HostError::io("read /proc/self/mounts", e))?;
    let inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| Path::new(m).starts_with(path))
        .collect();
    if !inside.is_empty() {
        return Err(HostError::io(
            format!(
                "remove the unfinished image build {} (still mounted inside it: {}; unmount them first)",
                path.display(),
                inside.join(", ")
            ),
            std::io::ErrorKind::ResourceBusy.into(),
        ));
    }
    std::fs::remove_dir_all(path)
        .map_err(|e| HostError::io(format!("remove {}", path.display()), e))
}

/// Runs mmdebstrap into `target`, each output line to `progress`; on
/// failure the error carries its last lines.
async fn run_with_progress(
    args: &[String],
    target: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), HostError> {
    let line = format!("mmdebstrap {} {}", args.join(" "), target.display());
    let mut child = Command::new("mmdebstrap")
        .args(args)
        .arg(target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HostError::Spawn {
            command: line.clone(),
            source,
        })?;
    let mut out = child.stdout.take().map(|s| BufReader::new(s).lines());
    let mut err = child.stderr.take().map(|s| BufReader::new(s).lines());
    let mut tail: Vec<String> = Vec::new();
    loop {
        let next = tokio::select! {
            l = async { out.as_mut().unwrap().next_line().await }, if out.is_some() => (l, true),
            l = async { err.as_mut().unwrap().next_line().await }, if err.is_some() => (l, false),
            else => break,
        };
        match next {
            (Ok(Some(l)), _) => {
                progress(&l);
                tail.push(l);
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            (_, true) => out = None,
            (_, false) => err = None,
        }
    }
    let status = child.wait().await.map_err(|source| HostError::Spawn {
        command: line.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(HostError::Command {
            command: line,
            status: status.to_string(),
            stderr: tail.join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cairn-images-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn host_is_the_machines_root() {
        let cache = ImageCache::new("/nonexistent");
        let image = cache.lookup("host").unwrap().unwrap();
        assert_eq!(image.root, PathBuf::from("/"));
    }

    #[test]
    fn an_unknown_image_lists_the_known_ones() {
        let err = ImageCache::new("/nonexistent")
            .lookup("debian-13")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown image `debian-13`: the known images are host, debian-12"
        );
    }

    #[test]
    fn debian_12_is_built_with_the_prototypes_arguments() {
        assert_eq!(
            DEBIAN_12.mmdebstrap_args(),
            [
                "--variant=minbase",
                "--include=openssh-server,python3,iproute2,curl,ca-certificates,procps,zstd,openssl",
                r#"--customize-hook=rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/hostname "$1"/etc/machine-id"#,
                "bookworm",
            ]
        );
        let key = DEBIAN_12.key();
        assert!(
            key.starts_with("debian-12-") && key.len() == "debian-12-".len() + 12,
            "{key}"
        );
    }

    #[tokio::test]
    async fn a_built_image_is_a_cache_hit_and_an_unfinished_one_is_not() {
        let root = temp_cache("hit");
        let cache = ImageCache::new(&root);
        assert_eq!(cache.lookup("debian-12").unwrap(), None);
        // A killed build: its temporary directory exists, the image does not.
        let dir = cache.dir(&DEBIAN_12);
        std::fs::create_dir_all(
            root.join(format!(".{}.tmp-1", DEBIAN_12.key()))
                .join("rootfs"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        assert_eq!(
            cache.lookup("debian-12").unwrap(),
            None,
            "no marker: not built"
        );
        std::fs::write(dir.join(MARKER), "{}").unwrap();
        let mut lines = Vec::new();
        let image = cache
            .resolve("debian-12", &mut |l: &str| lines.push(l.to_string()))
            .await
            .unwrap();
        assert_eq!(image.root, dir.join("rootfs"));
        assert!(lines.is_empty(), "a cache hit builds nothing: {lines:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// Builds debian-12 for real (a minute or more, downloads from the
    /// distribution's mirror): only with CAIRN_TEST_BUILD_IMAGES=1.
    #[tokio::test]
    async fn debian_12_builds_from_a_cold_cache() {
        if std::env::var_os("CAIRN_TEST_BUILD_IMAGES").is_none_or(|v| v != "1") {
            eprintln!("skipped: set CAIRN_TEST_BUILD_IMAGES=1 to build debian-12 with mmdebstrap");
            return;
        }
        let root = temp_cache("build");
        let cache = ImageCache::new(&root);
        // A killed build's leftovers are cleared, not used.
        let stale = root.join(format!(".{}.tmp-1", DEBIAN_12.key()));
        std::fs::create_dir_all(stale.join("rootfs/etc")).unwrap();
        let mut lines = 0usize;
        let t = Instant::now();
        let image = cache
            .resolve("debian-12", &mut |l: &str| {
                lines += 1;
                eprintln!("build: {l}");
            })
            .await
            .unwrap();
        eprintln!("debian-12 cold build: {:.1} s", t.elapsed().as_secs_f64());
        assert!(lines > 0);
        assert!(!stale.exists());
        assert!(image.root.join("usr/sbin/sshd").is_file());
        assert!(image.root.join("usr/lib/python3.11/json").is_dir());
        let keys: Vec<_> = std::fs::read_dir(image.root.join("etc/ssh"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("ssh_host_"))
            .collect();
        assert!(keys.is_empty(), "the image carries no host keys");
        let mut rebuilt = 0usize;
        let again = cache
            .resolve("debian-12", &mut |_: &str| rebuilt += 1)
            .await
            .unwrap();
        assert_eq!(again, image);
        assert_eq!(rebuilt, 0, "the second resolve is a cache hit");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
