use cairn_engine::validate::validate;

use crate::cli::{GlobalArgs, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

pub fn run(t: &TemplateArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let loaded = cairn_template::load(&super::template_options::load_options(t))?;
    let (summary, _) = validate(&loaded).map_err(|diagnostics| CliError::Template {
        sources: loaded.sources.clone(),
        diagnostics,
    })?;
    let value = serde_json::to_value(&summary).map_err(anyhow::Error::from)?;
    emit(value, global)?;
    Ok(Status::Success)
}
