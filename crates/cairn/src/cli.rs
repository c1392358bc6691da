//! Command-line arguments. Environment variable names are declared here once.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const ENV_PARAM_PREFIX: &str = "CAIRN_PARAM_";
pub const ENV_NO_COLOR: &str = "NO_COLOR";
pub const ENV_STATE: &str = "CAIRN_STATE";
pub const ENV_KEY_FILE: &str = "CAIRN_KEY_FILE";
pub const ENV_LEASE_TTL: &str = "CAIRN_LEASE_TTL";
/// The deployment's name instead of the environment's: how a deployment
/// kept by `cairn test --keep-on-failure` is destroyed.
pub const ENV_DEPLOYMENT: &str = "CAIRN_DEPLOYMENT";
/// The cairn init's control socket (`cairn service`); its place inside a
/// server unless a test says otherwise.
pub const ENV_INIT_SOCKET: &str = "CAIRN_INIT_SOCKET";

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Build infrastructure from a template and operate it, in one binary",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Output format (default: table on a terminal, json otherwise)
    #[arg(short = 'o', long = "output", global = true, value_enum)]
    pub output: Option<Format>,
    /// JMESPath query applied to the result before it is printed
    #[arg(long, global = true, value_name = "JMESPATH")]
    pub query: Option<String>,
    /// Never use colour (also: NO_COLOR)
    #[arg(long, global = true)]
    pub no_color: bool,
    /// State store: a path, `sqlite:PATH`, or `postgres://USER@HOST:PORT/DB?sslmode=disable`
    /// (password from PGPASSWORD or ~/.pgpass) (default: .cairn/state.db beside the template)
    #[arg(long, global = true, env = ENV_STATE, value_name = "URL")]
    pub state: Option<String>,
    /// More logging on stderr (-v, -vv, -vvv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Tsv,
    None,
}

/// Which template, environment and parameter values a command works on.
#[derive(Debug, Args, Clone)]
pub struct TemplateArgs {
    /// Directory holding cairn.yaml (or cairn.json)
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Environment: reads env/<ENV>.yaml (default: dev, on the local target)
    #[arg(short = 'e', long = "env")]
    pub env: Option<String>,
    /// Set a parameter (repeatable); CAIRN_PARAM_<NAME> overrides it
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Read parameter values from a YAML or JSON file (repeatable)
    #[arg(long = "param-file", value_name = "FILE")]
    pub param_files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a template, type-check parameters and properties, resolve the graph
    Validate(TemplateArgs),
    /// Evaluate one expression in a template's context (like `terraform console`)
    Eval {
        /// The expression, e.g. "unique_string('aaa')" or "cidr_subnet(net.cidr, 8, 1)"
        expr: String,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Print the dependency graph of a template's resources
    Graph {
        #[command(flatten)]
        template: TemplateArgs,
        /// Graph language (used unless -o asks for data)
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Show what `up` would change
    Plan {
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        change: ChangeArgs,
        /// Exit 3 when there are changes, 0 when none
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan for `cairn apply FILE` (secret `-p` values are not written)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Apply a plan saved by `plan --out`, refusing if the state or the plan moved
    Apply {
        /// The saved plan
        file: PathBuf,
        /// Secret parameters the plan file does not hold (repeatable)
        #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Return the deployment to what an earlier successful run made
    Rollback {
        #[command(flatten)]
        template: TemplateArgs,
        /// The run to return to (see `cairn history`)
        #[arg(long, value_name = "N")]
        to: i64,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Compare every resource with what the target has now, property by property
    Drift {
        #[command(flatten)]
        template: TemplateArgs,
        /// Exit 3 when something drifted, 0 when nothing did
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Adopt an existing resource into the state (and the template, with --write)
    Import {
        /// Its type (`bucket`, `server`, ...)
        #[arg(value_name = "TYPE")]
        kind: String,
        /// Its id on the target
        id: String,
        /// The name it gets in the template
        #[arg(long = "as", value_name = "NAME")]
        name: String,
        /// Add the resource to the template file as well as printing it
        #[arg(long)]
        write: bool,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Plan, confirm, apply: make the deployment match the template
    Up {
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        change: ChangeArgs,
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Delete every resource of the deployment
    Destroy {
        #[command(flatten)]
        template: TemplateArgs,
        #[command(flatten)]
        apply: ApplyArgs,
        /// Also delete live resources tagged for this deployment that the state does not know
        #[arg(long)]
        prune: bool,
        /// Read every live resource before planning the deletes (by
        /// default a destroy reads nothing first: deleting what is already
        /// gone counts as done)
        #[arg(long)]
        refresh: bool,
    },
    /// Deploy the template to a fresh local deployment, run its `tests:`,
    /// report, and destroy everything (also on failure or Ctrl-C)
    Test(TestArgs),
    /// The embedded local cloud
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
    /// The deployment's resources, one line each
    List {
        #[command(flatten)]
        template: TemplateArgs,
        /// Instead: every deployment the state holds, with its last run
        #[arg(long)]
        all_deployments: bool,
    },
    /// The deployment's resources in full (secrets shown as `(secret)`)
    Show {
        #[command(flatten)]
        template: TemplateArgs,
        /// Only this resource (`web[0]`, `lb`)
        #[arg(long)]
        address: Option<String>,
        /// Reveal secret values (they are printed in clear)
        #[arg(long)]
        secret: bool,
    },
    /// The deployment's outputs, or one of them
    Output {
        /// The output's name (all outputs when omitted)
        #[arg(long)]
        name: Option<String>,
        /// Reveal secret outputs (they are printed in clear)
        #[arg(long)]
        secret: bool,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Every run of the deployment: who, when, what, outcome
    History(TemplateArgs),
    /// Show or break the deployment's lease
    Lock {
        #[command(subcommand)]
        action: LockAction,
    },
    /// The hosts to operate (a deployment's servers and Ansible inventories),
    /// printed as Ansible's dynamic-inventory JSON
    Inventory(InventoryArgs),
    /// Run a shell command (`-- COMMAND`) or a module (`MODULE key=value...`)
    /// on the hosts a target selects, as one job
    Run(RunArgs),
    /// Apply a state file (Salt SLS style) to the hosts a target selects
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// The jobs `run` and `state apply` recorded, and each host's result
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
    },
    /// The SSH connections kept between runs (`run --keep-connections`):
    /// list them, or stop the keeper (closing them all)
    Connections {
        #[command(subcommand)]
        action: Option<ConnectionsAction>,
    },
    /// Build an app into a signed artifact, and list, show or verify them
    Artifact {
        #[command(subcommand)]
        action: ArtifactAction,
    },
    /// Roll a built version of an app out onto its servers, batch by batch,
    /// behind its load balancer (or `rollback` to an earlier one)
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Release {
        #[command(subcommand)]
        action: Option<ReleaseAction>,
        #[command(flatten)]
        args: ReleaseArgs,
    },
    /// The releases of an app in every environment: versions, digests, who
    /// and when
    Releases {
        /// Only this app
        app: Option<String>,
        /// The deployment's directory
        #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Watch an app's servers: one failing its health check past the app's
    /// `heal.grace` is restarted, then replaced by the engine if that does
    /// not help (foreground until SIGTERM or Ctrl-C; `--once` for cron)
    Heal(HealArgs),
    /// The master agents connect to over mutual TLS (foreground; SIGTERM
    /// stops it)
    Master(MasterArgs),
    /// The agent: connects out to the master and runs the jobs it sends on
    /// this host (foreground; SIGTERM stops it)
    Agent(AgentArgs),
    /// Agents' keys, as salt-key: list, accept, reject, revoke, delete
    Keys {
        #[command(subcommand)]
        action: Option<KeysAction>,
        #[command(flatten)]
        master: MasterDirArg,
    },
    /// A local server's PID 1: runs user_data, sshd and services (runc
    /// starts it; see `cairn service`)
    #[command(hide = true)]
    Init,
    /// The services of the local server this runs in, through its cairn
    /// init: `cairn service NAME start|stop|restart|reload|status|enable|disable`
    /// or `cairn service list`. `status` exits 0 when active, 3 when not,
    /// 4 when there is no such service; `is-enabled` 0 or 1
    Service(ServiceArgs),
    /// The master's events (agents, jobs, managed files, services): the
    /// recent ones, or with --follow each new one as a JSON line
    Events(EventsArgs),
    /// Small tools for servers and tests
    Util {
        #[command(subcommand)]
        tool: UtilTool,
    },
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `cairn service`.
#[derive(Debug, Args, Clone)]
pub struct ServiceArgs {
    /// The service (`NAME` or `NAME.service`), or `list`
    #[arg(value_name = "NAME")]
    pub name: String,
    #[arg(value_enum)]
    pub action: Option<ServiceAction>,
    #[arg(long, env = ENV_INIT_SOCKET, default_value = "/run/cairn/init.sock", hide = true)]
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
    Reload,
    Status,
    Enable,
    Disable,
    IsEnabled,
}

/// `cairn test`.
#[derive(Debug, Args, Clone)]
pub struct TestArgs {
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Also write the results as JUnit XML (for CI)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// When a test fails (or `up` does), leave the deployment up to look
    /// at, and say how to destroy it
    #[arg(long)]
    pub keep_on_failure: bool,
    /// How many resources change at once
    #[arg(long, default_value_t = 32)]
    pub parallelism: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// `cairn inventory`: what Ansible's inventory scripts take (`--list`,
/// `--host H`), with Ansible's `-i`.
#[derive(Debug, Args, Clone)]
pub struct InventoryArgs {
    /// Print every host and group with their variables (the default)
    #[arg(long, conflicts_with = "host")]
    pub list: bool,
    /// Print one host's variables, its groups' included
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// An Ansible inventory: a YAML or INI file, a directory, an executable
    /// inventory script, or a list `web-1,web-2,` (repeatable). With -i the
    /// deployment's servers are included only when DIR holds a template.
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Vec<PathBuf>,
    #[command(flatten)]
    pub template: TemplateArgs,
}

/// Which hosts a job runs on and how cairn reaches them: what Ansible's
/// `ansible` and Salt's `salt` take.
#[derive(Debug, Args, Clone)]
pub struct HostArgs {
    /// Which hosts: a Salt compound expression (`G@role:web and not E@.*-3`)
    /// or Ansible patterns (`web:&prod:!web-3`, `web[0:2]`)
    pub target: String,
    /// An Ansible inventory: a YAML or INI file, a directory, an executable
    /// inventory script, or a list `web-1,web-2,` (repeatable)
    #[arg(short = 'i', long = "inventory", value_name = "PATH")]
    pub inventory: Vec<PathBuf>,
    /// The deployment's directory: its servers are hosts (default: the
    /// current directory, when it holds a template)
    #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The deployment's environment
    #[arg(short = 'e', long = "env")]
    pub env: Option<String>,
    /// A known_hosts file to check host keys against, instead of
    /// ~/.ssh/known_hosts (servers cairn made are checked against the key
    /// it recorded)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Connect as this user (default: the inventory's, else root)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// A private key file to authenticate with (besides the deployment's
    /// key pairs and ssh-agent)
    #[arg(long = "private-key", value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Run as root through sudo (Ansible's become)
    #[arg(short = 'b', long = "become")]
    pub r#become: bool,
    /// Run as this user through sudo (implies --become)
    #[arg(long, value_name = "USER")]
    pub become_user: Option<String>,
    /// How many hosts at once
    #[arg(short = 'f', long = "forks", default_value_t = 256)]
    pub forks: usize,
    /// Stop starting hosts once more than N (or P%) have failed
    #[arg(long, value_name = "N|P%")]
    pub max_fail: Option<cairn_orch::job::MaxFail>,
    /// Seconds a host may take to answer a connection
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds one command may run before it is abandoned
    #[arg(short = 'T', long, default_value_t = 300)]
    pub timeout: u64,
    /// Dry run: say what would change, change nothing
    #[arg(long)]
    pub check: bool,
    /// Keep each host's SSH connection open this long once idle (`60s`,
    /// `5m`; `0`: not kept), held by a keeper process of this user's, so
    /// that the next run within that time starts without connecting (as
    /// OpenSSH's ControlPersist keeps them for Ansible). See `cairn
    /// connections`
    #[arg(long, value_name = "DURATION", env = "CAIRN_KEEP_CONNECTIONS", value_parser = parse_keep)]
    pub keep_connections: Option<std::time::Duration>,
    /// How hosts are reached: over SSH, through their agents (the host name
    /// is the agent id), or auto (the agent when it is connected, else SSH).
    /// Default: auto on a deployment of the local target (its servers run
    /// agents), else ssh
    #[arg(long, value_enum)]
    pub via: Option<Via>,
    #[command(flatten)]
    pub master: MasterDirArg,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsAction {
    /// Every kept connection: host, whether open, requests served, idle
    List,
    /// Close every kept connection and end the keeper
    Stop,
    /// The keeper itself (started by `run --keep-connections`)
    #[command(hide = true)]
    Serve,
}

/// `60s`, `5m`, `1h`, `250ms`, or bare seconds; `0` for not at all.
fn parse_keep(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (say 60s, 5m or 1h)"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (ms, s, m or h)")),
    };
    Ok(std::time::Duration::from_millis(n.saturating_mul(ms)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    Ssh,
    Agent,
    Auto,
}

/// `cairn artifact ...`.
#[derive(Debug, Subcommand)]
pub enum ArtifactAction {
    /// Run the app's build once in a clean copy of its sources, pack the
    /// result (tar.zst), sign its manifest and store it
    #[command(disable_version_flag = true)]
    Build {
        /// The app (from the template's `apps:`)
        app: String,
        /// The version (default: the sources' git commit, else a timestamp)
        #[arg(long = "version", id = "artifact_version", value_name = "VERSION")]
        version: Option<String>,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// The stored versions of one app or of every app
    List {
        app: Option<String>,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// One version's manifest: files, sizes, sha256 sums, who built it
    Show {
        app: String,
        #[arg(id = "artifact_version", value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        template: TemplateArgs,
    },
    /// Check one stored version: its signature, its archive, every file
    Verify {
        app: String,
        #[arg(id = "artifact_version", value_name = "VERSION")]
        version: String,
        #[command(flatten)]
        template: TemplateArgs,
    },
}

/// `cairn release rollback ...`.
#[derive(Debug, Subcommand)]
pub enum ReleaseAction {
    /// Put the app's servers back on an earlier version they still have
    Rollback {
        app: String,
        /// The version (default: the one before the current release)
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        #[command(flatten)]
        args: ReleaseOptions,
    },
}

/// `cairn release APP VERSION`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The app (from the template's `apps:`)
    #[arg(required = true)]
    pub app: Option<String>,
    /// A version `cairn artifact build` stored
    #[arg(required = true, id = "release_version", value_name = "VERSION")]
    pub version: Option<String>,
    #[command(flatten)]
    pub options: ReleaseOptions,
}

/// How a release (or a rollback) goes and reaches its hosts.
#[derive(Debug, Args, Clone)]
pub struct ReleaseOptions {
    /// Hosts per batch: a number (1) or a share of them (25%)
    #[arg(long, default_value = "25%")]
    pub batch: String,
    /// Failed hosts tolerated; one more stops the rollout and puts every
    /// switched host back
    #[arg(long, default_value_t = 0)]
    pub max_fail: usize,
    /// Seconds to wait for a drained backend's requests in flight
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    #[command(flatten)]
    pub servers: AppServers,
    /// Keep each host's SSH connection open this long once idle (`60s`,
    /// `5m`; `0`: not kept), as `cairn run --keep-connections` does: the
    /// next release, rollback or run within that time starts without
    /// connecting. See `cairn connections`
    #[arg(long, value_name = "DURATION", env = "CAIRN_KEEP_CONNECTIONS", value_parser = parse_keep)]
    pub keep_connections: Option<std::time::Duration>,
}

/// An app's deployment and how cairn reaches its servers: what `release`,
/// `release rollback` and `heal` share.
#[derive(Debug, Args, Clone)]
pub struct AppServers {
    /// The deployment's directory
    #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The deployment's environment
    #[arg(short = 'e', long = "env")]
    pub env: Option<String>,
    /// Set a parameter (repeatable)
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// A known_hosts file (servers cairn made are checked against the key
    /// it recorded)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Connect as this user (default: the inventory's, else root)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// A private key file to authenticate with
    #[arg(long = "private-key", value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Seconds a host may take to answer a connection
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// Seconds one step on a host may run
    #[arg(short = 'T', long, default_value_t = 300)]
    pub timeout: u64,
}

/// `cairn heal APP`.
#[derive(Debug, Args, Clone)]
pub struct HealArgs {
    /// The app (from the template's `apps:`; its `heal:` says how)
    pub app: String,
    /// One pass, then exit (for cron); exits 1 while a server is given up on
    #[arg(long)]
    pub once: bool,
    /// Instead: the app's heal incidents in this environment, newest first
    #[arg(long, conflicts_with = "once")]
    pub history: bool,
    #[command(flatten)]
    pub servers: AppServers,
    /// Seconds to wait for a drained backend's requests in flight
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
}

/// Which master the CLI talks to (through its admin socket).
#[derive(Debug, Args, Clone)]
pub struct MasterDirArg {
    /// The master's directory (its keys and admin socket; default:
    /// ~/.local/share/cairn/master)
    #[arg(
        long = "master-dir",
        env = "CAIRN_MASTER_DIR",
        value_name = "DIR",
        global = true
    )]
    pub master_dir: Option<PathBuf>,
    /// The local cloud's master (its daemon serves it; CAIRN_LOCAL_DIR
    /// says which cloud), instead of --master-dir. `run` and `state apply`
    /// on a deployment of the local target use it without this
    #[arg(long = "local", global = true)]
    pub local: bool,
}

/// `cairn master`.
#[derive(Debug, Args, Clone)]
pub struct MasterArgs {
    /// Address agents connect to
    #[arg(long, default_value = "127.0.0.1:4506")]
    pub listen: String,
    /// Serve agents through a NATS server instead of listening
    /// (nats://HOST:PORT): several masters sharing one --dir serve one fleet
    #[arg(long, value_name = "URL", conflicts_with = "listen")]
    pub bus: Option<String>,
    /// This master's name among the fleet's on the bus (default: the
    /// hostname); its admin socket is DIR/masters/NAME/admin.sock
    #[arg(long, requires = "bus")]
    pub name: Option<String>,
    /// Its state: key pair, agents' keys, admin socket (default:
    /// ~/.local/share/cairn/master)
    #[arg(long, env = "CAIRN_MASTER_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A file holding a pre-shared enrolment token: agents showing it are
    /// accepted without `cairn keys accept`
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds an agent may stay silent before it is dropped
    #[arg(long, default_value_t = 30)]
    pub silence: u64,
    /// A reactors file: event tag globs mapped to commands, modules or
    /// state files to run (checked at start)
    #[arg(long, value_name = "FILE")]
    pub reactors: Option<PathBuf>,
    /// Events one agent may send a second (after a burst of five times as
    /// many); past that they are dropped
    #[arg(long, default_value_t = 20)]
    pub event_rate: u32,
}

/// `cairn events`.
#[derive(Debug, Args, Clone)]
pub struct EventsArgs {
    /// After the recent events, print each new one as a JSON line until
    /// interrupted
    #[arg(short, long)]
    pub follow: bool,
    /// Only events whose tag matches this glob (`*` within a segment, `**`
    /// across segments: `cairn/job/**`, `cairn/service/*/nginx/*`)
    #[arg(long, value_name = "GLOB")]
    pub tag: Option<String>,
    #[command(flatten)]
    pub master: MasterDirArg,
}

/// `cairn agent`.
#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// The master's HOST:PORT
    #[arg(long, required_unless_present = "bus", conflicts_with = "bus")]
    pub master: Option<String>,
    /// Meet the masters on a NATS server instead (nats://HOST:PORT); needs
    /// --master-fingerprint
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// Benchmarks and tests: run N agents in this process, ids ID-0001 to
    /// ID-N, each with its own key in DIR/ID-0001...
    #[arg(long, value_name = "N")]
    pub bench: Option<u32>,
    /// This agent's id (the host's inventory name; default: the hostname)
    #[arg(long)]
    pub id: Option<String>,
    /// Its state: key pair, pinned master key (default:
    /// ~/.local/share/cairn/agent)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The master's key fingerprint (its DIR/master.fingerprint); without
    /// it the first key seen is trusted and pinned
    #[arg(long, value_name = "SHA256HEX")]
    pub master_fingerprint: Option<String>,
    /// A file holding the master's enrolment token
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds between heartbeats
    #[arg(long, default_value_t = 5)]
    pub heartbeat: u64,
    /// The local init's service event file, tailed when it exists
    #[arg(long, value_name = "FILE", default_value = "/run/cairn/events.jsonl")]
    pub service_events: PathBuf,
    /// Milliseconds a watched directory must be quiet before its managed
    /// files are compared
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub debounce_ms: u64,
}

impl AgentArgs {
    /// These arguments as a command line again: `cairn agent` hands them
    /// (and `verbose` as `-v`s) to the `cairn-agent` binary.
    pub fn to_args(&self, verbose: u8) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = Vec::new();
        let mut opt = |name: &str, value: std::ffi::OsString| {
            a.push(name.into());
            a.push(value);
        };
        if let Some(m) = &self.master {
            opt("--master", m.into());
        }
        if let Some(b) = &self.bus {
            opt("--bus", b.into());
        }
        if let Some(n) = self.bench {
            opt("--bench", n.to_string().into());
        }
        if let Some(id) = &self.id {
            opt("--id", id.into());
        }
        if let Some(d) = &self.dir {
            opt("--dir", d.into());
        }
        if let Some(f) = &self.master_fingerprint {
            opt("--master-fingerprint", f.into());
        }
        if let Some(t) = &self.token_file {
            opt("--token-file", t.into());
        }
        opt("--heartbeat", self.heartbeat.to_string().into());
        opt("--service-events", self.service_events.clone().into());
        opt("--debounce-ms", self.debounce_ms.to_string().into());
        if verbose > 0 {
            a.push(format!("-{}", "v".repeat(usize::from(verbose.min(3)))).into());
        }
        a
    }
}

/// `cairn-agent`: the agent alone, as a small binary of its own (`cairn
/// agent` runs it when it lies beside `cairn`), with the arguments of
/// `cairn agent`.
#[derive(Debug, Parser)]
#[command(
    name = "cairn-agent",
    version,
    about = "cairn's agent: connects out to a cairn master (or a NATS bus) and runs the jobs it is sent on this host"
)]
pub struct AgentCli {
    /// More logging on stderr (-v, -vv, -vvv; or CAIRN_LOG)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Every key with its status (the default)
    List,
    /// Accept a pending (or rejected) agent: it is served from its next
    /// connection
    Accept { id: String },
    /// Reject a pending agent
    Reject { id: String },
    /// Revoke an accepted agent: its connection is closed at once
    Revoke { id: String },
    /// Forget an agent's key (a rebuilt agent then enrols again)
    Delete { id: String },
}

/// `cairn run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub hosts: HostArgs,
    /// A module (`file`, `pkg`, `service`, `cmd`, ... or Salt's
    /// `file.managed`), then its arguments as key=value
    #[arg(value_name = "MODULE")]
    pub module: Option<String>,
    #[arg(value_name = "KEY=VALUE")]
    pub args: Vec<String>,
    /// The shell command, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum StateAction {
    /// Apply a state file to the hosts a target selects
    Apply {
        #[command(flatten)]
        hosts: HostArgs,
        /// The state file (YAML with Jinja, Salt SLS style)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// A variable the state file sees as vars.NAME (repeatable)
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
    },
    /// Copy deployments' whole state (resources, history, journal, outputs,
    /// secrets) from one state store to another, SQLite or PostgreSQL, and
    /// check the copy
    Migrate {
        /// The state to copy from: a path, sqlite:PATH or postgres://USER@HOST:PORT/DB
        #[arg(long, value_name = "URL")]
        from: String,
        /// The state to copy to (created, or its schema migrated, on first use)
        #[arg(long, value_name = "URL")]
        to: String,
        /// The deployment to copy
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        deployment: Option<String>,
        /// Copy every deployment the source holds
        #[arg(long)]
        all: bool,
        /// Replace a deployment the target already holds
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// The most recent jobs (the default)
    List {
        /// How many
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The directory whose state holds the jobs
        #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// One job with every host's result
    Show {
        id: String,
        #[arg(short = 'C', long = "dir", value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockAction {
    /// Who holds the lease, since when, until when
    Show(TemplateArgs),
    /// Remove the lease (when its holder is known to be dead)
    Break(TemplateArgs),
}

#[derive(Debug, Subcommand)]
pub enum UtilTool {
    /// A tiny HTTP server answering every request with TEXT
    HttpEcho {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "hello")]
        text: String,
        /// Address to listen on (default: $CAIRN_ADDRESS, else 127.0.0.1)
        #[arg(long, env = "CAIRN_ADDRESS", default_value = "127.0.0.1")]
        address: std::net::IpAddr,
    },
}

#[derive(Debug, Args, Clone)]
pub struct ChangeArgs {
    /// Only this resource and what it needs (repeatable)
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// Not this resource, nor what depends on it (repeatable)
    #[arg(long = "exclude", value_name = "NAME")]
    pub excludes: Vec<String>,
    /// Replace this resource instance (`web[1]`) even though nothing about
    /// it changed: a server broken beyond repair (repeatable)
    #[arg(long = "replace", value_name = "ADDRESS")]
    pub replace: Vec<String>,
    /// Do not read the live resources before planning
    #[arg(long)]
    pub no_refresh: bool,
    /// Also delete live resources tagged for this deployment that the state does not know
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ApplyArgs {
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How many resources change at once
    #[arg(long, default_value_t = 32)]
    pub parallelism: usize,
    /// What to do when a change fails
    #[arg(long, value_enum, default_value = "rollback")]
    pub on_failure: OnFailureArg,
    /// Allow deleting resources that hold data (databases, volumes, buckets, secrets)
    #[arg(long)]
    pub allow_data_loss: bool,
    /// Seconds a run's lease lasts without a heartbeat (a killed run blocks others this long)
    #[arg(long, env = ENV_LEASE_TTL, default_value_t = 30, hide = true)]
    pub lease_ttl: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnFailureArg {
    Rollback,
    Keep,
}

#[derive(Debug, Subcommand)]
pub enum LocalAction {
    /// Start the local cloud in the background (if it is not running)
    Start {
        /// Where DNS is served
        #[arg(long, env = "CAIRN_LOCAL_DNS", default_value = "127.0.0.1:8053")]
        dns: std::net::SocketAddr,
        /// A new cloud's addresses come from 127.POOL.0.0/16 (default 42);
        /// one cloud per pool on a machine
        #[arg(long, env = "CAIRN_LOCAL_POOL")]
        pool: Option<u8>,
        /// How a new cloud runs its servers: `process` (default) or `runc`
        /// (each server a small host: own root, hostname, processes and
        /// network; needs root, runc and nft); a cloud keeps what it was
        /// made with
        #[arg(long, env = "CAIRN_LOCAL_ISOLATION")]
        isolation: Option<cairn_local::cloud::Isolation>,
    },
    /// Stop the local cloud (its resources come back at the next start)
    Stop,
    /// Servers, load balancers, zones and databases, with their health
    Status,
    /// A server's console log
    Logs {
        /// The server's id or its address in a deployment (`web[0]`)
        server: String,
    },
    /// Run a command inside a server (`runc` isolation), with its output
    /// and exit code: `cairn local exec 'web[0]' -- hostname`
    Exec {
        /// The server's id or its address in a deployment (`web[0]`)
        server: String,
        /// The command and its arguments
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Build a server image once (or find it in the cache), with its
    /// progress on stderr: `cairn local image debian-12`
    Image {
        /// `debian-12`, or `host` (the machine's own root)
        name: String,
    },
    /// Run the local cloud in the foreground (what `start` runs)
    #[command(hide = true)]
    Daemon {
        #[arg(long, default_value = "127.0.0.1:8053")]
        dns: std::net::SocketAddr,
        /// A new cloud's addresses come from 127.POOL.0.0/16
        #[arg(long, env = "CAIRN_LOCAL_POOL", default_value_t = 42)]
        pool: u8,
        /// How a new cloud runs its servers (`process` or `runc`)
        #[arg(long, env = "CAIRN_LOCAL_ISOLATION")]
        isolation: Option<cairn_local::cloud::Isolation>,
    },
}
