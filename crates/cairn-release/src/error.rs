//! The crate's errors: one enum for everything a caller may report, with the
//! verification failures in their own enum so that a caller can tell "this
//! artifact is not what was signed" from an I/O or store failure.

use std::path::PathBuf;

pub type Result<T, E = ReleaseError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReleaseError {
    #[error(
        "invalid {what} `{name}`: use letters, digits, `.`, `_`, `-`, `+` (not first), at most 128"
    )]
    #[diagnostic(code(cairn::release::bad_name))]
    BadName { what: &'static str, name: String },

    #[error("{path}: {source}")]
    #[diagnostic(code(cairn::release::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot pack {path}: {reason}")]
    #[diagnostic(code(cairn::release::pack))]
    Pack { path: PathBuf, reason: String },

    #[error("invalid manifest: {0}")]
    #[diagnostic(code(cairn::release::manifest))]
    Manifest(String),

    #[error("invalid key: {0}")]
    #[diagnostic(code(cairn::release::key))]
    Key(String),

    #[error("cannot run the build of {app} (`sh -c` in {dir}): {source}")]
    #[diagnostic(code(cairn::release::build_spawn))]
    BuildSpawn {
        app: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the build of {app} {version} failed ({status}); its last lines of output:\n{}",
        last_lines.join("\n")
    )]
    #[diagnostic(code(cairn::release::build_failed))]
    BuildFailed {
        app: String,
        version: String,
        /// `exit code N` or `killed by signal N`.
        status: String,
        exit_code: Option<i32>,
        last_lines: Vec<String>,
    },

    #[error("the build output `{output}` of {app} is not a directory inside the build directory")]
    #[diagnostic(code(cairn::release::build_output))]
    BuildOutput { app: String, output: String },

    #[error(
        "{app} {version} is already in the artifact store with other content \
         (manifest sha256 {existing_digest}, this one {new_digest}); versions are \
         immutable: build under a new version"
    )]
    #[diagnostic(code(cairn::release::version_exists))]
    VersionExists {
        app: String,
        version: String,
        existing_digest: String,
        new_digest: String,
    },

    #[error("{app} {version} is not in the artifact store {store}")]
    #[diagnostic(code(cairn::release::not_found))]
    NotFound {
        app: String,
        version: String,
        store: String,
    },

    #[error("artifact store `{url}`: {reason}")]
    #[diagnostic(code(cairn::release::store_url))]
    StoreUrl { url: String, reason: String },

    #[error("artifact store {store}: {reason}")]
    #[diagnostic(code(cairn::release::store))]
    Store { store: String, reason: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Verify(#[from] VerifyError),
}

/// An artifact that is not what its signed manifest says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, miette::Diagnostic)]
pub enum VerifyError {
    #[error("the manifest's signature does not verify with the public key {public_key}")]
    #[diagnostic(code(cairn::release::bad_signature))]
    BadSignature { public_key: String },

    #[error("the archive is {found} bytes, the manifest says {expected}")]
    #[diagnostic(code(cairn::release::archive_size))]
    ArchiveSize { expected: u64, found: u64 },

    #[error("the archive's sha256 is {found}, the manifest says {expected}")]
    #[diagnostic(code(cairn::release::archive_digest))]
    ArchiveDigest { expected: String, found: String },

    #[error("file {path}: sha256 {found}, the manifest says {expected}")]
    #[diagnostic(code(cairn::release::file_digest))]
    FileDigest {
        path: String,
        expected: String,
        found: String,
    },

    #[error("file {path}: {found} bytes, the manifest says {expected}")]
    #[diagnostic(code(cairn::release::file_size))]
    FileSize {
        path: String,
        expected: u64,
        found: u64,
    },

    #[error("file {path} is in the manifest but not in the archive")]
    #[diagnostic(code(cairn::release::file_missing))]
    FileMissing { path: String },

    #[error("{path} is in the archive but not in the manifest")]
    #[diagnostic(code(cairn::release::file_unexpected))]
    FileUnexpected { path: String },

    #[error("{path}: the manifest says a {expected}, the archive has a {found}")]
    #[diagnostic(code(cairn::release::file_kind))]
    FileKind {
        path: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("symlink {path} points to `{found}`, the manifest says `{expected}`")]
    #[diagnostic(code(cairn::release::link_target))]
    LinkTarget {
        path: String,
        expected: String,
        found: String,
    },

    #[error("the manifest is for {found}, expected {expected}")]
    #[diagnostic(code(cairn::release::wrong_artifact))]
    WrongArtifact { expected: String, found: String },
}

impl ReleaseError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReleaseError {
        let path = path.into();
        move |source| ReleaseError::Io { path, source }
    }
}
