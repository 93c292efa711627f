//! The `zhiban-server` command line: `serve` (the default) and the `admin` commands a
//! newcomer needs to set up units and people.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::access::Role;
use crate::accounts::{self, Actor, OsUser};
use crate::audit;
use crate::clock::system_ms;
use crate::db;
use crate::units::{self, NewUser};
use crate::{Settings, launch};

#[derive(Parser)]
#[command(
    name = "zhiban-server",
    version,
    about = "Zhiban duty-office relay server"
)]
struct Cli {
    /// TOML settings file; `ZHIBAN_*` environment variables override it.
    #[arg(long, env = "ZHIBAN_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Set up units and users.
    #[command(subcommand)]
    Admin(Admin),
}

#[derive(Subcommand)]
enum Admin {
    /// Create a unit; prints its id.
    CreateUnit {
        #[arg(long)]
        name: String,
        /// The superior unit's id.
        #[arg(long)]
        parent: Option<String>,
    },
    /// Create a user in a unit; prints the user's id.
    CreateUser {
        /// The password is never an argument (it would show in `ps` and shell history):
        /// ZHIBAN_NEW_PASSWORD, else asked for on the terminal, else one line of stdin.
        #[arg(long)]
        username: String,
        #[arg(long)]
        unit: String,
        #[arg(long)]
        role: Role,
        /// Cleared for classified items (D18).
        #[arg(long)]
        cleared: bool,
        #[arg(long)]
        display_name: Option<String>,
        /// The password is one the operator chose: the user must change it at first login.
        #[arg(long)]
        temporary: bool,
    },
    /// List units as JSON lines.
    ListUnits,
    /// List users as JSON lines.
    ListUsers,
    /// Disable a user: no login, no token, no socket, no push until enabled again.
    DisableUser {
        #[arg(long)]
        username: String,
    },
    /// Enable a disabled user.
    EnableUser {
        #[arg(long)]
        username: String,
    },
    /// Set a temporary password (ZHIBAN_NEW_PASSWORD, the terminal or stdin; an empty one
    /// makes one up and prints it); the user's sessions end and their next login sets their own.
    ResetPassword {
        #[arg(long)]
        username: String,
    },
    /// Change a user's display name, role, unit or clearance; prints the user as JSON.
    SetUser {
        #[arg(long)]
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        role: Option<Role>,
        #[arg(long)]
        unit: Option<String>,
        #[arg(long)]
        cleared: Option<bool>,
    },
    /// Move a unit below another one (and rename it with --name).
    MoveUnit {
        #[arg(long)]
        unit: String,
        #[arg(long)]
        parent: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// Check the audit trail's hash chain (D19); exits 1 at the first broken row.
    VerifyAudit,
    /// Rebuild the queryable rows (incidents, search) from the stored documents.
    Reproject,
}

/// Entry point of the `zhiban-server` binary.
pub fn main() {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("zhiban-server: invalid settings: {error}");
            std::process::exit(2);
        }
    };
    init_tracing(&settings.log);
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    let outcome = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Admin(admin) => run_admin(settings, admin).await,
        }
    });
    if let Err(error) = outcome {
        eprintln!("zhiban-server: {error:#}");
        std::process::exit(1);
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen).await?;
    // Scripts and tests that start us on port 0 read the real address from this line.
    let scheme = match settings.tls_files() {
        Ok(Some(_)) => "https",
        _ => "http",
    };
    println!(
        "zhiban-server listening on {scheme}://{}",
        listener.local_addr()?
    );
    launch(settings, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested");
}

/// Runs an admin command; what it changes commits with its audit row.
/// A password from the environment variable `variable`, else asked for on the terminal
/// without echo, else the first line of stdin (a script piping it in).
fn read_password(variable: &str, prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if let Ok(password) = std::env::var(variable) {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(prompt)?);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn user_id_of(pool: &db::Pool, username: &str) -> anyhow::Result<String> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    id.ok_or_else(|| anyhow::anyhow!("no user `{username}`"))
}

async fn switch(
    pool: &db::Pool,
    keys: &crate::keys::Keys,
    actor: &Actor,
    username: &str,
    disabled: bool,
    now: i64,
) -> anyhow::Result<()> {
    let user_id = user_id_of(pool, username).await?;
    let (user, _) =
        accounts::set_disabled(pool, &keys.audit, actor, &user_id, disabled, now).await?;
    println!("{}", serde_json::to_string(&user)?);
    Ok(())
}

async fn run_admin(settings: Settings, admin: Admin) -> anyhow::Result<()> {
    let pool = db::connect(&settings.database_url()).await?;
    let keys = crate::keys::Keys::load(&settings, &pool).await?;
    let now = system_ms();
    // Changes take effect on the next request and, for open sockets, at their next check
    // (sync::serve_peer): this process cannot reach a running server's sockets.
    let actor = Actor::Operator(OsUser::current());
    let outcome = match admin {
        Admin::CreateUnit { name, parent } => {
            let id = accounts::create_unit_as(
                &pool,
                (&keys.catalog, &keys.audit),
                &actor,
                &name,
                parent.as_deref(),
                now,
            )
            .await?;
            println!("{id}");
            Ok(())
        }
        Admin::CreateUser {
            username,
            unit,
            role,
            cleared,
            display_name,
            temporary,
        } => {
            let password = read_password("ZHIBAN_NEW_PASSWORD", "the new user's password: ")?;
            let user = NewUser {
                username: &username,
                display_name: display_name.as_deref(),
                password: &password,
                unit_id: &unit,
                role,
                cleared,
            };
            let user =
                accounts::create_user_as(&pool, &keys.audit, &actor, user, temporary, now).await?;
            println!("{}", user.id);
            Ok(())
        }
        Admin::ListUnits => {
            for unit in units::list_units(&pool).await? {
                println!("{}", serde_json::to_string(&unit)?);
            }
            Ok(())
        }
        Admin::ListUsers => {
            for user in accounts::list_users(&pool, &actor).await? {
                println!("{}", serde_json::to_string(&user)?);
            }
            Ok(())
        }
        Admin::DisableUser { username } => switch(&pool, &keys, &actor, &username, true, now).await,
        Admin::EnableUser { username } => switch(&pool, &keys, &actor, &username, false, now).await,
        Admin::ResetPassword { username } => {
            let user_id = user_id_of(&pool, &username).await?;
            let given = read_password(
                "ZHIBAN_NEW_PASSWORD",
                "temporary password (empty: make one up): ",
            )?;
            let (password, _) = accounts::reset_password(
                &pool,
                &keys.audit,
                &actor,
                &user_id,
                Some(given).filter(|given| !given.is_empty()),
                now,
            )
            .await?;
            println!("{password}");
            Ok(())
        }
        Admin::SetUser {
            username,
            display_name,
            role,
            unit,
            cleared,
        } => {
            let user_id = user_id_of(&pool, &username).await?;
            let patch = zhiban_api::UserPatch {
                display_name,
                role,
                unit_id: unit.map(Into::into),
                cleared,
            };
            let (user, _) =
                accounts::update_user(&pool, &keys.audit, &actor, &user_id, &patch, now).await?;
            println!("{}", serde_json::to_string(&user)?);
            Ok(())
        }
        Admin::MoveUnit { unit, parent, name } => {
            let request = zhiban_api::UnitRequest {
                id: Some(unit.into()),
                name,
                parent_id: parent.into(),
            };
            let (id, _) =
                accounts::save_unit(&pool, (&keys.catalog, &keys.audit), &actor, &request, now)
                    .await?;
            println!("{id}");
            Ok(())
        }
        Admin::Reproject => {
            let entry = actor.entry("admin.reproject", serde_json::json!({}));
            audit::record(&pool, &keys.audit, &[entry], now).await?;
            let documents =
                crate::commit::reproject(&pool, now, (settings.intervals(), &keys.audit)).await?;
            println!("reprojected {documents} documents");
            Ok(())
        }
        Admin::VerifyAudit => {
            match audit::verify(&pool, &keys.audit, Some(&settings.audit_checkpoint_file())).await?
            {
                audit::Verdict::Intact { rows } => {
                    println!("audit trail intact: {rows} rows");
                    Ok(())
                }
                audit::Verdict::Broken { seq, reason } => {
                    Err(anyhow::anyhow!("audit trail broken at row {seq}: {reason}"))
                }
            }
        }
    };
    pool.close().await;
    outcome
}
