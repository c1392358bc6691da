//! How every command that reads a template loads it: the options from its
//! arguments, the `CAIRN_PARAM_*` variables, `CAIRN_DEPLOYMENT` and the clock.

use cairn_template::LoadOptions;

use crate::cli::{ENV_PARAM_PREFIX, TemplateArgs};

/// Load options from the arguments, the `CAIRN_PARAM_*` variables and the clock.
pub fn load_options(t: &TemplateArgs) -> LoadOptions {
    let mut opts = LoadOptions::new(&t.dir);
    opts.env = t.env.clone();
    opts.params = t.params.clone();
    opts.param_files = t.param_files.clone();
    let mut env_params: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PARAM_PREFIX) && k.len() > ENV_PARAM_PREFIX.len())
        .collect();
    env_params.sort();
    opts.env_params = env_params;
    opts.now = time::OffsetDateTime::now_utc();
    opts.deployment = deployment_override();
    opts
}

/// `CAIRN_DEPLOYMENT`, when set: the deployment's name instead of the
/// environment's.
pub fn deployment_override() -> Option<String> {
    std::env::var(crate::cli::ENV_DEPLOYMENT)
        .ok()
        .filter(|n| !n.is_empty())
}
