//! `migval demo`: the seed-000 story (rename `client_products.fixed_cost` to
//! `fixed_fee_facilitated`, three dependent views) on a throwaway PostgreSQL, end to end:
//! baseline, the good migration (PASS), its rollback (exact equality), the broken migration
//! (FAIL, naming the view check). The fixture is embedded, so the binary needs nothing else.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::{ColorChoice, OutputArgs};
use crate::cluster::{Cluster, ClusterOptions};
use crate::db::{self, conninfo::ConnInfo};
use crate::engine::{self, Limits};
use crate::model::{Report, Status};
use crate::report::{self, Format};
use crate::spec::Spec;
use crate::sql::ident;
use crate::store;

pub const SCHEMA: &str = include_str!("../../fixtures/fee_rename/schema.sql");
pub const MIGRATION: &str = include_str!("../../fixtures/fee_rename/migration.sql");
pub const ROLLBACK: &str = include_str!("../../fixtures/fee_rename/rollback.sql");
pub const BROKEN: &str = include_str!("../../fixtures/fee_rename/migration_broken.sql");
pub const CHECKS: &str = include_str!("../../fixtures/fee_rename/checks.toml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Products to generate (companies and clients scale with it).
    #[arg(long, default_value_t = 100_000)]
    pub rows: i64,
    /// Use this server instead of a throwaway one: a scratch database `migval_demo_<pid>` is
    /// created on it and dropped at the end.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Colour in the reports.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Where to write the HTML report of the broken migration (the page for a change board);
    /// default: migval-demo-report.html in the system's temporary directory.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

struct Step {
    n: usize,
    total: usize,
}

impl Step {
    fn say(&mut self, what: &str) {
        self.n += 1;
        println!("\n[{}/{}] {what}", self.n, self.total);
    }
}

pub async fn run(a: DemoArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(a.rows >= 100, "--rows must be at least 100");
    let mut step = Step { n: 0, total: 7 };
    println!(
        "migval demo: runbook 000, rename client_products.fixed_cost -> fixed_fee_facilitated"
    );
    println!(
        "(three views depend on the column; the broken migration recreates one of them wrongly)"
    );

    step.say("starting a throwaway PostgreSQL from the local server binaries");
    let t = Instant::now();
    let (cluster, admin) = match &a.db {
        Some(url) => (
            None,
            ConnInfo::resolve(Some(url), &|k| std::env::var(k).ok())?,
        ),
        None => {
            let c = tokio::task::spawn_blocking(|| Cluster::start(&ClusterOptions::default()))
                .await
                .context("starting the throwaway cluster")??;
            let info = ConnInfo::resolve(Some(&c.url("postgres")), &|_| None)?;
            println!(
                "      listening on 127.0.0.1:{} ({:.1} s)",
                c.port(),
                t.elapsed().as_secs_f64()
            );
            (Some(c), info)
        }
    };
    let dbname = format!("migval_demo_{}", std::process::id());
    let result = story(&a, &mut step, &admin, &dbname).await;

    step.say("cleaning up");
    if let Ok(client) = db::connect(&admin).await {
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident::quote(&dbname)
            ))
            .await;
    }
    drop(cluster);
    println!(
        "      scratch database dropped{}",
        if a.db.is_none() {
            ", cluster stopped and removed"
        } else {
            ""
        }
    );
    result
}

async fn story(
    a: &DemoArgs,
    step: &mut Step,
    admin: &ConnInfo,
    dbname: &str,
) -> anyhow::Result<u8> {
    let client = db::connect(admin).await?;
    client
        .batch_execute(&format!("CREATE DATABASE {}", ident::quote(dbname)))
        .await
        .map_err(|e| anyhow::anyhow!("{}", db::failure(&e, None)))
        .context("creating the scratch database")?;
    let info = admin.with_dbname(dbname);
    let work = db::connect(&info).await?;

    step.say(&format!(
        "loading the fee_rename world: {} products",
        a.rows
    ));
    let t = Instant::now();
    exec(&work, SCHEMA, "fixtures/fee_rename/schema.sql").await?;
    work.execute("SELECT fee_rename_generate($1)", &[&a.rows])
        .await
        .map_err(|e| anyhow::anyhow!("{}", db::failure(&e, None)))
        .context("generating the data")?;
    println!("      loaded in {:.1} s", t.elapsed().as_secs_f64());

    let spec = Spec::parse("fixtures/fee_rename/checks.toml", CHECKS)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let limits = Limits::from_spec(&spec);
    let dir = std::env::temp_dir().join(format!("migval-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let baseline_path: PathBuf = dir.join("baseline.json");

    step.say("migval snapshot: baseline of every check, one consistent read-only snapshot");
    let t = Instant::now();
    let baseline = engine::snapshot(&info, &spec, limits).await?;
    store::write(&baseline_path, &baseline)?;
    println!(
        "      {} checks, snapshot {} on {} connections, {:.2} s -> {}",
        baseline.checks.len(),
        baseline.origin.snapshot_id,
        baseline.origin.connections,
        t.elapsed().as_secs_f64(),
        baseline_path.display()
    );

    let out = OutputArgs {
        format: Format::Text,
        output: None,
        color: a.color,
        changes_out: None,
        width: None,
    };
    let baseline = store::read(&baseline_path)?;

    step.say("the good migration (migration.sql: drop views, RENAME COLUMN, recreate views), then migval verify");
    exec_tx(&work, MIGRATION, "migration.sql").await?;
    let (good, _) = engine::verify(&info, &spec, &baseline, limits).await?;
    show(&out, &good)?;

    step.say("the rollback (rollback.sql), then migval verify: the state must equal the baseline exactly");
    exec_tx(&work, ROLLBACK, "rollback.sql").await?;
    let no_renames = engine::migrate::exact_spec(&spec);
    let (restored, _) = engine::verify(&info, &no_renames, &baseline, limits).await?;
    println!("      {}", report::verdict_line(&restored));

    step.say("the broken migration (migration_broken.sql: a recreated view double-counts), then migval verify");
    exec_tx(&work, BROKEN, "migration_broken.sql").await?;
    let (broken, _) = engine::verify(&info, &spec, &baseline, limits).await?;
    show(&out, &broken)?;
    let html = a
        .html
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("migval-demo-report.html"));
    std::fs::write(&html, report::render(&broken, Format::Html, false))
        .with_context(|| format!("writing {}", html.display()))?;

    let failing: Vec<&str> = broken
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.as_str())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    println!("\nsummary:");
    println!("  good migration:    {}", report::verdict_line(&good));
    println!("  rollback:          {}", report::verdict_line(&restored));
    println!("  broken migration:  {}", report::verdict_line(&broken));
    for f in &failing {
        println!("                     caught by `{f}`");
    }
    println!("  HTML report of the broken migration: {}", html.display());
    if good.verdict.passed() && restored.verdict.passed() && !broken.verdict.passed() {
        println!("\nThat is the go / no-go a DBA gets from `migval snapshot` + `migval verify`.");
        Ok(0)
    } else {
        bail!("the demo did not behave as designed (see the reports above)")
    }
}

fn show(out: &OutputArgs, r: &Report) -> anyhow::Result<()> {
    out.emit(r).map(|_| ())
}

async fn exec(client: &tokio_postgres::Client, sql: &str, what: &str) -> anyhow::Result<()> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| anyhow::anyhow!("{}", db::failure(&e, None)))
        .with_context(|| format!("running {what}"))
}

async fn exec_tx(client: &tokio_postgres::Client, sql: &str, what: &str) -> anyhow::Result<()> {
    client
        .batch_execute("BEGIN")
        .await
        .map_err(|e| anyhow::anyhow!("{}", db::failure(&e, None)))?;
    if let Err(e) = exec(client, sql, what).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e);
    }
    exec(client, "COMMIT", what).await
}
