//! `cairn eval EXPR [DIR]`: one expression in a template's context, like
//! `terraform console`. Without a template it still has every function.

use std::path::Path;
use std::sync::Arc;

use cairn_engine::validate::validate;
use cairn_template::expr::{Evaluator, NameLookup, Scope, StaticNames};
use cairn_template::functions::FunctionContext;
use cairn_template::loader::template_path;
use cairn_template::node::{Node, NodeKind, Style};
use cairn_template::{Diagnostics, Sources, Span};

use crate::cli::{GlobalArgs, TemplateArgs};
use crate::output::emit;
use crate::report::{CliError, Status};

pub fn run(expr: &str, t: &TemplateArgs, global: &GlobalArgs) -> Result<Status, CliError> {
    let has_template = template_path(&t.dir).is_ok();
    let (mut sources, names, functions): (Sources, Arc<dyn NameLookup>, FunctionContext) =
        if has_template {
            let loaded = cairn_template::load(&super::template_options::load_options(t))?;
            let (_, desired) = validate(&loaded).map_err(|diagnostics| CliError::Template {
                sources: loaded.sources.clone(),
                diagnostics,
            })?;
            (loaded.sources, desired.scope, loaded.functions)
        } else {
            let ctx = FunctionContext {
                base_dir: t.dir.clone(),
                now: time::OffsetDateTime::now_utc(),
                allow_utc_now: false,
            };
            (Sources::default(), Arc::new(StaticNames::default()), ctx)
        };
    let file = sources.add("<expression>", Path::new("<expression>"), expr);
    let node = Node {
        kind: NodeKind::Str(format!("{{{{ {expr} }}}}"), Style::Plain),
        span: Span::new(file, 0, expr.len()),
    };
    let ev = Evaluator::new(&functions);
    let result = {
        let mut session = ev.session(&sources);
        let scope = Scope::value(names, None, None);
        session.eval(&node, &scope)
    };
    let value = result.map_err(|d| CliError::Template {
        sources: sources.clone(),
        diagnostics: Diagnostics::from(d),
    })?;
    emit(value.to_json_redacted(), global)?;
    Ok(Status::Success)
}
