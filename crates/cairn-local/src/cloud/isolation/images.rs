//! Images captured from `runc` servers (`image` resources), and what a
//! server's root is made of.

use std::path::PathBuf;

use cairn_engine::provider::{Json, ProviderResult};

use super::hosts::{Hosts, host_err};
use crate::cloud::model::LocalResource;
use crate::cloud::props::{permanent, prop_str};
use crate::host::HostError;
use crate::host::command::Cmd;

/// What a server's root is made of.
pub(super) struct ImageRoot {
    pub(super) image: PathBuf,
    pub(super) seed: Option<PathBuf>,
}

/// Paths in a captured layer that belong to the server it came from.
const CAPTURE_LEAVES_OUT: &[&str] = &[
    "etc/ssh/ssh_host_*",
    "root/.ssh/authorized_keys",
    "var/lib/cairn/user_data.done",
    "var/log/cairn-user-data.log",
    // Its agent's key: a server started from the image gets its own.
    "var/lib/cairn/agent/agent.key",
];

/// A captured image's record (`image.json` beside its `layer`): the
/// image below it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Captured {
    base: String,
}

impl Captured {
    const FILE: &'static str = "image.json";

    fn read(dir: &std::path::Path) -> Result<Captured, String> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no such image in this cloud (an `image` resource captured from a server)"
                    .to_string()
            }
            _ => format!("reading {}: {e}", path.display()),
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn write(&self, dir: &std::path::Path) -> Result<(), HostError> {
        let path = dir.join(Self::FILE);
        let text = serde_json::to_vec_pretty(self).expect("serializable");
        std::fs::write(&path, text)
            .map_err(|e| HostError::io(format!("write {}", path.display()), e))
    }
}

impl Hosts {
    /// What a server's root is made of: its image below, and for an image
    /// captured from a server (`image-...`) that image's base below and
    /// the captured layer to start its own layer from.
    pub(super) async fn image_root(&self, p: &Json) -> ProviderResult<ImageRoot> {
        let name = prop_str(p, "image").unwrap_or(crate::host::image::HOST);
        let (base, seed) = if name.starts_with("image-") {
            let dir = self.dirs.of("image", name);
            let captured =
                Captured::read(&dir).map_err(|e| permanent(format!("image {name}: {e}")))?;
            (captured.base, Some(dir.join("layer")))
        } else {
            (name.to_string(), None)
        };
        let mut progress = |line: &str| tracing::info!("image {base}: {line}");
        let image = self
            .images
            .resolve(&base, &mut progress)
            .await
            .map(|i| i.root)
            .map_err(|e| permanent(e.to_string()))?;
        Ok(ImageRoot { image, seed })
    }

    /// Captures server `server`'s own layer as image `id` (AWS's
    /// CreateImage without the reboot): a copy of its upper directory
    /// (`cp -a`, so overlay whiteouts and their xattrs come along; a server
    /// made from an image started from a copy of that image's layer, so
    /// its layer holds both), with what belongs to that one server left
    /// out: its host keys, root's authorized keys, and the marks that
    /// `user_data` ran, so a server made from the image gets its own and
    /// runs its own `user_data`. An image stands alone, as an AMI: nothing
    /// of it is shared with the server or image it came from. Nothing
    /// stays behind when it fails.
    pub async fn capture_image(&self, id: &str, server: &LocalResource) -> ProviderResult<()> {
        let source = self.dirs.of("server", &server.id).join("layer/upper");
        if !source.is_dir() {
            return Err(permanent(format!(
                "image {id}: server {} has no layer to capture",
                server.id
            )));
        }
        let from = prop_str(&server.properties, "image").unwrap_or(crate::host::image::HOST);
        let base = if from.starts_with("image-") {
            Captured::read(&self.dirs.of("image", from))
                .map_err(|e| permanent(format!("image {id}: its server's image {from}: {e}")))?
                .base
        } else {
            from.to_string()
        };
        let dir = self.dirs.of("image", id);
        let layer = dir.join("layer");
        let made = async {
            std::fs::create_dir_all(&dir)
                .map_err(|e| HostError::io(format!("create {}", dir.display()), e))?;
            Cmd::new("cp")
                .args(["-a", "--"])
                .arg(&source)
                .arg(&layer)
                .run()
                .await?;
            for own in CAPTURE_LEAVES_OUT {
                let path = layer.join(own);
                let parent = path.parent().unwrap_or(&layer).to_path_buf();
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                // A trailing `*` matches by prefix in its directory.
                if let Some(prefix) = name.as_deref().and_then(|n| n.strip_suffix('*')) {
                    for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                        if e.file_name().to_string_lossy().starts_with(prefix) {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Captured { base }.write(&dir)
        }
        .await;
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(host_err(&format!("image {id}"), e));
        }
        Ok(())
    }
}
