//! `cairn plan`, `up`, `destroy`, `apply FILE`, `rollback` and `drift`: the
//! engine's whole-command runs. Where they run is `target`, the saved plan
//! format is `saved_plan`, how they read is `view`.

mod saved_plan;
mod target;
mod view;

use std::io::{IsTerminal, Write};

use cairn_engine::plan::Plan;
use cairn_engine::run::{RunOptions, up as run_up};

use self::saved_plan::SavedPlan;
use self::target::run_options;
pub(crate) use self::target::{Target, context, now, owner, run_error, target};
use crate::cli::Format;
use crate::cli::{ApplyArgs, ChangeArgs, GlobalArgs, TemplateArgs};
use crate::output::{default_format, emit};
use crate::report::{CliError, Status};

pub fn plan(
    t: &TemplateArgs,
    change: &ChangeArgs,
    detailed: bool,
    out: Option<&std::path::Path>,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let load = super::template_options::load_options(t);
    let (plan, tg) = rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, None)?;
        let plan = cairn_engine::run::plan(&cx, &load, &run_options("plan", change, false, None))
            .await
            .map_err(run_error)?;
        Ok::<_, CliError>((plan, tg))
    })?;
    if let Some(out) = out {
        saved_plan::save(out, t, change, &tg, &plan)?;
    }
    let changes = plan.has_changes();
    // On a terminal (or with -o table) the plan reads like a diff; data
    // formats and --query get the plan itself.
    if global.query.is_none() && default_format(global.output) == Format::Table {
        print!("{}", view::describe(&plan));
    } else {
        emit(
            serde_json::to_value(&plan).map_err(CliError::failure)?,
            global,
        )?;
    }
    Ok(if detailed && changes {
        Status::Changes
    } else {
        Status::Success
    })
}

pub fn up(
    t: &TemplateArgs,
    change: &ChangeArgs,
    apply: &ApplyArgs,
    destroy: bool,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let command = if destroy { "destroy" } else { "up" };
    let opts = run_options(command, change, destroy, Some(apply));
    execute(
        t,
        global,
        super::template_options::load_options(t),
        opts,
        apply,
    )
}

/// `cairn apply FILE`.
pub fn apply_saved(
    file: &std::path::Path,
    params: &[String],
    apply: &ApplyArgs,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let saved = SavedPlan::read(file)?;
    let t = TemplateArgs {
        dir: saved.dir.clone(),
        env: saved.env.clone(),
        params: saved.params.iter().chain(params).cloned().collect(),
        param_files: saved.param_files.clone(),
    };
    let mut global_for_plan = global.clone();
    if global_for_plan.state.is_none() {
        global_for_plan.state = Some(saved.state.display().to_string());
    }
    let change = ChangeArgs {
        targets: saved.targets.clone(),
        excludes: saved.excludes.clone(),
        replace: saved.replace.clone(),
        no_refresh: !saved.refresh,
        prune: saved.prune,
    };
    let mut opts = run_options("apply", &change, false, Some(apply));
    opts.expect_serial = Some(saved.plan.state_serial);
    opts.expect_changes = Some(saved.plan.changes.clone());
    // The plan was reviewed when it was made: applying it is the confirmation.
    let apply = ApplyArgs {
        yes: true,
        ..apply.clone()
    };
    execute(
        &t,
        &global_for_plan,
        super::template_options::load_options(&t),
        opts,
        &apply,
    )
}

/// `cairn rollback --to N`: the template document and parameter values run
/// N used, planned and applied like `up`.
pub fn rollback(
    t: &TemplateArgs,
    to: i64,
    apply: &ApplyArgs,
    global: &GlobalArgs,
) -> Result<Status, CliError> {
    let o = super::state::open(t, global)?;
    let run = o
        .store
        .run(&o.deployment, to)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    if run.outcome != "succeeded" || run.command == "destroy" || run.command == "import" {
        return Err(CliError::Usage(format!(
            "run {to} of {} was a `{}` that {}; roll back to a successful up, apply or rollback (see `cairn history`)",
            o.deployment, run.command, run.outcome
        )));
    }
    let Some(text) = run.template_files.values().next().cloned() else {
        return Err(CliError::Usage(format!(
            "run {to} recorded no template to return to"
        )));
    };
    // Run N's parameter values rank above the environment file's (which may
    // have changed since); secret ones were never recorded and come as they
    // do for `up` (generated ones from the state, others from -p or CAIRN_PARAM_*).
    let mut values = serde_json::Map::new();
    if let serde_json::Value::Object(m) = &run.parameters {
        for (k, v) in m {
            if v.as_str() != Some(cairn_template::value::SECRET_TEXT) {
                values.insert(k.clone(), serde_json::json!({ "value": v }));
            }
        }
    }
    let (dir, _) = cairn_template::loader::locate_deployment(&t.dir, t.env.as_deref())?;
    let params_file = dir
        .join(".cairn")
        .join(format!("rollback-{}-{to}.params.json", std::process::id()));
    if let Some(parent) = params_file.parent() {
        std::fs::create_dir_all(parent).map_err(CliError::failure)?;
    }
    std::fs::write(
        &params_file,
        serde_json::to_string_pretty(&serde_json::json!({ "parameters": values }))
            .map_err(CliError::failure)?,
    )
    .map_err(|e| CliError::failure(format!("writing {}: {e}", params_file.display())))?;
    let mut load = super::template_options::load_options(t);
    load.template_text = Some(text);
    load.param_files.insert(0, params_file.clone());
    let change = ChangeArgs {
        targets: vec![],
        excludes: vec![],
        replace: vec![],
        no_refresh: false,
        prune: false,
    };
    let opts = run_options("rollback", &change, false, Some(apply));
    let result = execute(t, global, load, opts, apply);
    let _ = std::fs::remove_file(&params_file);
    result
}

/// `cairn drift`.
pub fn drift(t: &TemplateArgs, detailed: bool, global: &GlobalArgs) -> Result<Status, CliError> {
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    let found = rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, None)?;
        cairn_engine::run::drift(&cx).await.map_err(run_error)
    })?;
    view::drift(&found);
    let drifted = !found.is_empty();
    emit(
        serde_json::to_value(&found).map_err(CliError::failure)?,
        global,
    )?;
    Ok(if detailed && drifted {
        Status::Changes
    } else {
        Status::Success
    })
}

/// Runs a deployment command through the engine and reports it.
fn execute(
    t: &TemplateArgs,
    global: &GlobalArgs,
    load: cairn_template::LoadOptions,
    opts: RunOptions,
    apply: &ApplyArgs,
) -> Result<Status, CliError> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !apply.yes && !interactive {
        return Err(CliError::Usage(format!(
            "`{}` changes infrastructure and there is no terminal to confirm on; pass --yes",
            opts.command
        )));
    }
    let rt = tokio::runtime::Runtime::new().map_err(CliError::failure)?;
    rt.block_on(async {
        let tg = target(t, global).await?;
        let cx = context(&tg, Some(apply))?;
        let yes = apply.yes;
        let local = tg.target == "local";
        let mut confirm = move |plan: &Plan| {
            eprint!("{}", view::describe(plan));
            let go = yes || {
                eprint!("Apply these changes? Only `yes` goes on: ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
            };
            if go && local {
                let handle = tokio::runtime::Handle::current();
                tokio::task::block_in_place(|| handle.block_on(super::local::prepare_images(plan)));
            }
            go
        };
        let (outcome, reconciled) = run_up(&cx, &load, &opts, &mut confirm)
            .await
            .map_err(run_error)?;
        view::reconciled(&reconciled);
        let (status, value) = view::outcome(&outcome);
        emit(value, global)?;
        Ok(status)
    })
}
