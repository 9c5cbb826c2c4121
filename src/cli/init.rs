//! `migval init`: write a commented spec for the tables a migration touches, from the catalog
//! and the migration scripts. Read-only; prints the TOML (or writes `--out`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::ConnArgs;
use crate::engine::{self, ddl, init::InitInput, script};
use crate::sql::ident::{self, Name};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Tables (or views) to check, comma separated, schema-qualified or not:
    /// `--tables organizations,contacts,projects`.
    #[arg(long, value_name = "LIST")]
    pub tables: Option<String>,
    /// A migration script (repeatable, in order): the tables it touches are checked too, its
    /// renames become [rename], its ADD/DROP/CREATE INDEX [schema] expect lines, and the
    /// columns it adds get after-only checks.
    #[arg(long = "migration", value_name = "FILE")]
    pub migrations: Vec<PathBuf>,
    /// Schemas searched for unqualified names (default: the connection's search_path).
    #[arg(long, value_name = "LIST")]
    pub schemas: Option<String>,
    /// Write the spec to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn names(list: &str, what: &str) -> anyhow::Result<Vec<Name>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match ident::parse_name(s) {
            Ok(p) if p.len() <= 2 => Ok(Name::from_parts(&p)),
            _ => bail!("{what}: `{s}` is not a table name (write table or schema.table)"),
        })
        .collect()
}

pub async fn run(a: InitArgs) -> anyhow::Result<u8> {
    let tables = match &a.tables {
        Some(t) => names(t, "--tables")?,
        None => Vec::new(),
    };
    if tables.is_empty() && a.migrations.is_empty() {
        bail!("say what to check: --tables a,b,c and/or --migration FILE");
    }
    let mut statements = Vec::new();
    for m in &a.migrations {
        let text = std::fs::read_to_string(m)
            .with_context(|| format!("reading the migration {}", m.display()))?;
        let split = script::split(&text).map_err(|e| anyhow::anyhow!("{}: {e}", m.display()))?;
        statements.extend(split);
    }
    let facts = ddl::read(&statements);
    let renames = script::inferred_renames(&statements);
    let info = a.conn.resolve()?;
    let client = crate::db::connect(&info).await?;
    // Read-only, whatever the role's defaults.
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .map_err(|e| anyhow::anyhow!("{}", crate::db::failure(&e, None)))?;
    let schemas = match &a.schemas {
        Some(s) => s
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
        None => {
            let row = client
                .query_one(crate::sql::SEARCH_PATH.sql, &[])
                .await
                .map_err(|e| anyhow::anyhow!("{}", crate::db::failure(&e, None)))?;
            row.try_get::<_, Vec<String>>("schemas")?
        }
    };
    let mut source = info.redacted();
    if !a.migrations.is_empty() {
        source.push_str(" and ");
        source.push_str(
            &a.migrations
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let input = InitInput {
        schemas,
        tables,
        facts,
        renames,
        source,
    };
    let text = engine::init::generate(&client, &input)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // What we write must load.
    if let Err(e) = crate::spec::Spec::parse("generated spec", &text) {
        bail!(
            "migval init generated a spec that does not validate (please report it):\n{e}\n{text}"
        );
    }
    match &a.out {
        Some(p) => {
            std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("spec written to {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(0)
}
