//! Modules by name, Ansible's (`file`, `pkg`) and Salt's (`file.managed`),
//! their arguments checked before any host is touched.

use serde_json::Value as J;

use super::args::{self, Args};
use super::contract::Module;
use super::error::ModuleError;
use super::{archive, cmd, facts, file, git, group, http, pkg, service, user};

/// The modules there are.
pub const MODULES: &[&str] = &[
    "archive", "cmd", "facts", "file", "git", "group", "http", "pkg", "service", "user",
];

/// Salt's `module.function` names: which module, and the arguments the
/// function stands for (Salt's `file.managed` is `file` with
/// `state=managed`).
/// (Salt's name, module, arguments it implies).
type SaltName = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const SALT: &[SaltName] = &[
    ("file.managed", "file", &[("state", "managed")]),
    ("file.absent", "file", &[("state", "absent")]),
    ("file.directory", "file", &[("state", "directory")]),
    ("file.symlink", "file", &[("state", "symlink")]),
    ("file.touch", "file", &[("state", "touch")]),
    ("file.exists", "file", &[("state", "file")]),
    ("pkg.installed", "pkg", &[("state", "installed")]),
    ("pkg.latest", "pkg", &[("state", "latest")]),
    ("pkg.removed", "pkg", &[("state", "removed")]),
    ("pkg.purged", "pkg", &[("state", "removed")]),
    ("service.running", "service", &[("state", "running")]),
    ("service.dead", "service", &[("state", "stopped")]),
    ("service.enabled", "service", &[("enabled", "true")]),
    ("service.disabled", "service", &[("enabled", "false")]),
    ("cmd.run", "cmd", &[]),
    ("user.present", "user", &[("state", "present")]),
    ("user.absent", "user", &[("state", "absent")]),
    ("group.present", "group", &[("state", "present")]),
    ("group.absent", "group", &[("state", "absent")]),
    ("git.latest", "git", &[]),
    ("archive.extracted", "archive", &[]),
    ("http.query", "http", &[]),
    (
        "http.wait_for_successful_query",
        "http",
        &[("wait", "true")],
    ),
];

/// Checks `args` for the module `name` (`file`, or Salt's `file.managed`)
/// and returns it ready to run; nothing touches a host.
pub fn load(name: &str, args: &Args) -> Result<Box<dyn Module>, ModuleError> {
    let (module, args) = match SALT.iter().find(|(salt, _, _)| *salt == name) {
        Some((_, module, implied)) => {
            let mut args = args.clone();
            for (k, v) in *implied {
                match args.get(*k) {
                    Some(J::String(given)) if given != v => {
                        return Err(ModuleError::BadArgs {
                            module: name.to_string(),
                            message: format!("`{k}={given}` contradicts {name} (which is {k}={v})"),
                        });
                    }
                    _ => {
                        args.insert(k.to_string(), J::String(v.to_string()));
                    }
                }
            }
            (*module, args)
        }
        None => (name, args.clone()),
    };
    let args = &args;
    Ok(match module {
        "archive" => Box::new(archive::Archive::new(args)?),
        "cmd" | "shell" => Box::new(cmd::Cmd::new(args)?),
        "facts" | "setup" | "grains.items" => Box::new(facts::Facts::new(args)?),
        "file" => Box::new(file::File::new(args)?),
        "http" => Box::new(http::Http::new(args)?),
        "git" => Box::new(git::Git::new(args)?),
        "group" => Box::new(group::Group::new(args)?),
        "user" => Box::new(user::User::new(args)?),
        "pkg" | "apt" => Box::new(pkg::Pkg::new(args)?),
        "service" => Box::new(service::Service::new(args)?),
        _ => {
            let candidates = MODULES
                .iter()
                .chain(SALT.iter().map(|(s, _, _)| s))
                .copied();
            return Err(ModuleError::Unknown {
                name: name.to_string(),
                suggestion: args::nearest(name, candidates),
            });
        }
    })
}

/// A raw command (`cairn run T -- CMD...`): `cmd` with the words joined by
/// spaces, as ssh joins its command words, so `-- 'ls | wc -l'` keeps its
/// pipe. Always changed, as Ansible's `shell` is.
pub fn raw(words: &[String]) -> Result<Box<dyn Module>, ModuleError> {
    let mut args = Args::new();
    args.insert("cmd".into(), J::String(words.join(" ")));
    Ok(Box::new(cmd::Cmd::new(&args)?))
}
