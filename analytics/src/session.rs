//! [`SqlSession`]: read-only SQL over one audit log, with a memory limit and a timeout per query.
//!
//! Read-only by construction: statements are planned with DDL, DML (which includes `COPY`) and
//! session statements (`SET`, transactions) refused; URL tables (`SELECT * FROM 'file.parquet'`)
//! are off, so only the catalog's tables can be read. What the catalog registers comes from the
//! audit log's own directory.

use std::{
    future::Future as _,
    path::Path,
    pin::Pin,
    sync::{Arc, atomic::AtomicU64},
    task::{Context, Poll},
    time::Duration,
};

use datafusion::{
    arrow::{array::RecordBatch, datatypes::SchemaRef},
    common::{ParamValues, ScalarValue, SchemaError},
    datasource::MemTable,
    error::DataFusionError,
    execution::{
        SendableRecordBatchStream,
        runtime_env::{RuntimeEnv, RuntimeEnvBuilder},
    },
    physical_plan::EmptyRecordBatchStream,
    prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext},
};
use futures::{Stream, StreamExt as _};
use tokio::time::{Instant, Sleep};

use crate::{AnalyticsError, catalog, functions, union_aggregate};

/// The largest result of a CTE computed once for its statement (see
/// `SqlSession::materialize_ctes`); past it the statement runs as written.
pub const MATERIALIZE_LIMIT_BYTES: usize = 64 << 20;

/// Numbers the temporary tables of materialized CTEs, so concurrent queries never share one.
static TEMPORARIES: AtomicU64 = AtomicU64::new(0);

/// Limits every query of a session runs under.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    /// Memory the query's operators may hold (sorts, joins, aggregates); past it they spill to a
    /// temporary directory or fail with an error naming the limit.
    pub memory_bytes: usize,
    /// Wall-clock limit from planning to the last row.
    pub timeout: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            timeout: Duration::from_secs(300),
        }
    }
}

/// A query's whole result.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// SQL over the audit log at one directory. Cloning is cheap and shares the catalog and the
/// memory pool: the servers give each request a clone, so the memory limit bounds every query
/// they run together.
#[derive(Clone)]
pub struct SqlSession {
    ctx: SessionContext,
    limits: QueryLimits,
}

impl SqlSession {
    /// Opens the audit log at `data` (the directory `sandwatch run --data` writes).
    pub async fn open(data: &Path, limits: QueryLimits) -> Result<Self, AnalyticsError> {
        if !data.is_dir() {
            return Err(AnalyticsError::NoAuditLog(data.to_owned()));
        }
        let runtime: Arc<RuntimeEnv> = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()
            .map_err(|e| AnalyticsError::Catalog(format!("runtime: {e}")))?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )
            // Row groups are still pruned by their statistics (a narrow `time` range) and by the
            // sink's bloom filters (one `sandbox_id`), whatever this says. Filters evaluated
            // inside the Parquet decoder (pushdown) cost the investigations whose filter keeps
            // most rows more than they save the selective ones once those have skipped whole
            // row groups: on 50 M events, top destinations 551 → 355 ms without, one sandbox's
            // process tree 111 → 124 ms (docs/bench/sql-2026-12-05.md).
            .set_bool("datafusion.execution.parquet.pushdown_filters", false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        ctx.add_optimizer_rule(Arc::new(union_aggregate::AggregateUnionByLiteral));
        functions::register(&ctx);
        catalog::register_audit_log(&ctx, data).await?;
        Ok(Self { ctx, limits })
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// The DataFusion context (for the Flight SQL server's catalog calls).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    fn read_only() -> SQLOptions {
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
    }

    /// Plans `sql` (read-only), binding `$name` parameters as text.
    pub async fn plan(
        &self,
        sql: &str,
        params: &[(String, String)],
    ) -> Result<DataFrame, AnalyticsError> {
        self.plan_with(sql, text_params(params)).await
    }

    /// Plans `sql` (read-only), binding typed values to its `$1` or `$name` placeholders. A
    /// common table expression the statement reads more than once is computed once first (see
    /// [`Self::materialize_ctes`]).
    pub async fn plan_with(
        &self,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<DataFrame, AnalyticsError> {
        let (rewritten, temporaries) = self.materialize_ctes(sql, values.as_ref()).await?;
        let planned = self
            .plan_text(rewritten.as_deref().unwrap_or(sql), values)
            .await;
        // The plan holds the temporary tables it reads; the catalog need not.
        for name in temporaries {
            let _ = self.ctx.deregister_table(name.as_str());
        }
        planned
    }

    /// DataFusion 55 plans a CTE anew at each place the statement names it, and at each step of
    /// a recursion that names it: the saved `process-tree` scanned `process_events` 15 times
    /// for a 13-deep tree. Here a CTE the statement names more than once, which names no other
    /// CTE of its `WITH`, is run first and its rows put in a temporary table that the
    /// statement reads instead; a result larger than [`MATERIALIZE_LIMIT_BYTES`] is left to
    /// the plan as written. Returns the rewritten statement (None: as written) and the
    /// temporary tables to drop once it is planned.
    async fn materialize_ctes(
        &self,
        sql: &str,
        values: Option<&ParamValues>,
    ) -> Result<(Option<String>, Vec<String>), AnalyticsError> {
        use datafusion::sql::sqlparser::{
            ast::{ObjectName, Statement, VisitMut as _, visit_relations},
            dialect::GenericDialect,
            parser::Parser,
        };
        // Anything unusual is planned as written, and DataFusion says what is wrong with it.
        let Ok(mut statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
            return Ok((None, Vec::new()));
        };
        let [Statement::Query(query)] = statements.as_mut_slice() else {
            return Ok((None, Vec::new()));
        };
        let Some(with) = &query.with else {
            return Ok((None, Vec::new()));
        };
        let cte_names: Vec<String> = with
            .cte_tables
            .iter()
            .map(|c| c.alias.name.value.to_lowercase())
            .collect();
        let names_cte = |rel: &ObjectName, name: &str| names_relation(rel, name);
        let mut chosen = Vec::new();
        for cte in &with.cte_tables {
            let name = cte.alias.name.value.to_lowercase();
            let mut uses = 0;
            let _ = visit_relations(&*query, |rel| {
                uses += usize::from(names_cte(rel, &name));
                std::ops::ControlFlow::<()>::Continue(())
            });
            let mut names_another = false;
            let _ = visit_relations(&cte.query, |rel| {
                names_another |= cte_names.iter().any(|n| names_cte(rel, n));
                std::ops::ControlFlow::<()>::Continue(())
            });
            if uses >= 2 && !names_another && cte.alias.columns.is_empty() {
                chosen.push((name, cte.query.to_string()));
            }
        }
        if chosen.is_empty() {
            return Ok((None, Vec::new()));
        }
        let mut temporaries = Vec::new();
        for (name, cte_sql) in chosen {
            let df = self.plan_text(&cte_sql, values.cloned()).await?;
            let mut stream = df.execute_stream().await.map_err(|e| self.explain(e))?;
            let schema = stream.schema();
            let (mut batches, mut bytes) = (Vec::new(), 0);
            while let Some(b) = stream.next().await {
                let b = b.map_err(|e| self.explain(e))?;
                bytes += b.get_array_memory_size();
                if bytes > MATERIALIZE_LIMIT_BYTES {
                    break;
                }
                batches.push(b);
            }
            if bytes > MATERIALIZE_LIMIT_BYTES {
                continue;
            }
            let table = MemTable::try_new(schema, vec![batches])
                .map_err(|e| AnalyticsError::Query(e.to_string()))?;
            let temporary = format!(
                "{TEMPORARY_PREFIX}{}_{name}",
                TEMPORARIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            self.ctx
                .register_table(temporary.as_str(), Arc::new(table))
                .map_err(|e| AnalyticsError::Query(e.to_string()))?;
            if let Some(with) = &mut query.with {
                with.cte_tables
                    .retain(|c| c.alias.name.value.to_lowercase() != name);
            }
            // `FROM procs` becomes `FROM __cte_N_procs AS procs`: `procs.pid` still resolves.
            let _ = query.visit(&mut RenameRelation {
                from: &name,
                to: &temporary,
            });
            temporaries.push(temporary);
        }
        if query.with.as_ref().is_some_and(|w| w.cte_tables.is_empty()) {
            query.with = None;
        }
        Ok((Some(statements[0].to_string()), temporaries))
    }

    /// Plans `sql` as written, without computing any CTE first: for its schema and
    /// placeholders (Flight SQL's `GetFlightInfo` and prepared statements), when nothing is run.
    pub async fn describe(
        &self,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<DataFrame, AnalyticsError> {
        self.plan_text(sql, values).await
    }

    async fn plan_text(
        &self,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<DataFrame, AnalyticsError> {
        let df = self
            .ctx
            .sql_with_options(sql, Self::read_only())
            .await
            .map_err(|e| self.explain(e))?;
        match values {
            None => Ok(df),
            Some(values) => df.with_param_values(values).map_err(|e| self.explain(e)),
        }
    }

    /// Runs `sql` to the end under the session's limits.
    pub async fn query(
        &self,
        sql: &str,
        params: &[(String, String)],
    ) -> Result<QueryResult, AnalyticsError> {
        let mut stream = self.run(sql, text_params(params)).await?;
        let schema = stream.schema();
        let mut batches = Vec::new();
        while let Some(b) = stream.next().await {
            batches.push(b?);
        }
        Ok(QueryResult { schema, batches })
    }

    /// Plans and starts `sql` under the session's limits: the stream ends with
    /// [`AnalyticsError::Timeout`] once the time limit (counted from planning) has passed, and
    /// execution errors come out explained. The servers stream results through it.
    pub async fn run(
        &self,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<QueryStream, AnalyticsError> {
        let limit = self.limits.timeout;
        let deadline = Instant::now() + limit;
        let start = async {
            let df = self.plan_with(sql, values).await?;
            df.execute_stream().await.map_err(|e| self.explain(e))
        };
        let inner = tokio::time::timeout_at(deadline, start)
            .await
            .map_err(|_| AnalyticsError::Timeout(limit))??;
        Ok(QueryStream {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            session: self.clone(),
            finished: false,
        })
    }

    /// Plans `sql` and starts it; the caller reads the batches (and enforces the timeout with
    /// [`Self::limits`], as the Flight SQL server does per stream).
    pub async fn stream(
        &self,
        sql: &str,
        params: &[(String, String)],
    ) -> Result<SendableRecordBatchStream, AnalyticsError> {
        let df = self.plan(sql, params).await?;
        df.execute_stream().await.map_err(|e| self.explain(e))
    }

    /// A DataFusion error as a user reads it: an unknown column or table with the closest name.
    pub fn explain(&self, e: DataFusionError) -> AnalyticsError {
        if let Some(err) = unknown_column(&e) {
            return err;
        }
        let text = e.strip_backtrace();
        if let Some(name) = text
            .split("table '")
            .nth(1)
            .and_then(|rest| rest.split_once("' not found"))
            .map(|(name, _)| name.rsplit('.').next().unwrap_or(name).to_owned())
        {
            let tables = self.table_names();
            let suggestion = closest(&name, tables.iter().map(String::as_str)).map(str::to_owned);
            return AnalyticsError::UnknownTable {
                name,
                suggestion,
                tables,
            };
        }
        match e.find_root() {
            DataFusionError::ResourcesExhausted(msg) => {
                return AnalyticsError::MemoryLimit {
                    limit: self.limits.memory_bytes,
                    detail: msg.clone(),
                };
            }
            DataFusionError::Plan(msg) => {
                // What the read-only `SQLOptions` refuse (see `context::verify_plan`).
                for kind in ["DDL", "DML", "Statement"] {
                    if let Some(what) = msg.strip_prefix(&format!("{kind} not supported: ")) {
                        return AnalyticsError::ReadOnly {
                            what: format!("{kind} ({what})"),
                        };
                    }
                }
            }
            // A file of the log that cannot be read is the server's problem, not the query's.
            DataFusionError::ParquetError(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ObjectStore(_) => return AnalyticsError::Catalog(text),
            _ => {}
        }
        AnalyticsError::Query(text)
    }

    /// The audit log's tables and views, sorted.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ctx
            .catalog("datafusion")
            .and_then(|c| c.schema("public"))
            .map(|s| s.table_names())
            .unwrap_or_default();
        names.retain(|n| !is_temporary(n));
        names.sort();
        names
    }
}

/// `--param KEY=VALUE` pairs as values of `$KEY` placeholders, all text.
pub fn text_params(params: &[(String, String)]) -> Option<ParamValues> {
    if params.is_empty() {
        return None;
    }
    Some(ParamValues::Map(
        params
            .iter()
            .map(|(k, v)| (k.clone(), ScalarValue::Utf8(Some(v.clone())).into()))
            .collect(),
    ))
}

/// A running query's batches under its session's time limit (see [`SqlSession::run`]).
pub struct QueryStream {
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<Sleep>>,
    session: SqlSession,
    finished: bool,
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    /// Ends the query at once: its operators and the memory they hold are released now, not
    /// when the reader lets go of the stream.
    fn finish(&mut self) {
        self.finished = true;
        self.inner = Box::pin(EmptyRecordBatchStream::new(self.inner.schema()));
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, AnalyticsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        // The deadline first: a query whose batches are always ready must still stop.
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.finish();
            return Poll::Ready(Some(Err(AnalyticsError::Timeout(
                this.session.limits.timeout,
            ))));
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(batch))) => Poll::Ready(Some(Ok(batch))),
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(this.session.explain(e))))
            }
            Poll::Ready(None) => {
                this.finished = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Whether `name` is a materialized CTE's table, which lives while its statement is planned and
/// is no table of the audit log.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TEMPORARY_PREFIX)
}

const TEMPORARY_PREFIX: &str = "__cte_";

/// Whether `rel` is the bare name `name` (lower case; unquoted names are case-insensitive).
fn names_relation(rel: &datafusion::sql::sqlparser::ast::ObjectName, name: &str) -> bool {
    matches!(rel.0.as_slice(), [part] if part.as_ident().is_some_and(|i| i.value.to_lowercase() == name))
}

/// Points every `FROM <from>` at the table `to`, keeping `<from>` as its alias.
struct RenameRelation<'a> {
    from: &'a str,
    to: &'a str,
}

impl datafusion::sql::sqlparser::ast::VisitorMut for RenameRelation<'_> {
    type Break = ();

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> std::ops::ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{Ident, ObjectName, TableAlias, TableFactor};
        if let TableFactor::Table { name, alias, .. } = factor
            && names_relation(name, self.from)
        {
            let original = name.0[0]
                .as_ident()
                .cloned()
                .unwrap_or_else(|| Ident::new(self.from));
            alias.get_or_insert(TableAlias {
                explicit: true,
                name: original,
                columns: Vec::new(),
                at: None,
            });
            *name = ObjectName::from(vec![Ident::new(self.to)]);
        }
        std::ops::ControlFlow::Continue(())
    }
}

fn unknown_column(e: &DataFusionError) -> Option<AnalyticsError> {
    let e = e.find_root();
    let DataFusionError::SchemaError(err, _) = e else {
        return None;
    };
    let SchemaError::FieldNotFound {
        field,
        valid_fields,
    } = err.as_ref()
    else {
        return None;
    };
    let names: Vec<String> = valid_fields.iter().map(|c| c.name.clone()).collect();
    let suggestion = closest(&field.name, names.iter().map(String::as_str)).map(|s| {
        // Qualify the suggestion the way the query qualified the column.
        match valid_fields.iter().find(|c| c.name == s) {
            Some(c) if field.relation.is_some() => c.flat_name(),
            _ => s.to_owned(),
        }
    });
    Some(AnalyticsError::UnknownColumn {
        column: field.flat_name(),
        suggestion,
    })
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(lower.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn close_names() {
        let names = ["pid", "ppid", "sandbox_id", "daddr", "dport"];
        assert_eq!(closest("pidd", names.into_iter()), Some("pid"));
        assert_eq!(closest("sandbox", names.into_iter()), Some("sandbox_id"));
        assert_eq!(closest("dst_port", names.into_iter()), None);
        assert_eq!(closest("DADDR", names.into_iter()), Some("daddr"));
    }
}
