//! [`FlightSqlServer`]: the audit log over Arrow Flight SQL, for ADBC, JDBC (DBeaver), pandas and
//! any other Flight SQL client.
//!
//! Owns the Flight SQL protocol side only: every query goes through one shared [`SqlSession`], so
//! it is read-only, bounded by the session's memory pool (all running queries together) and
//! stopped at the session's time limit, with the session's errors.
//!
//! - **Statements.** `GetFlightInfo(CommandStatementQuery)` plans the query (errors come back
//!   here, before any data moves) and answers its schema and one endpoint whose ticket carries the
//!   query text itself; `DoGet` plans it again and streams it. Tickets hold no server state: there
//!   is nothing to expire or leak when a client never fetches, a ticket outlives a restart, and
//!   planning twice costs milliseconds against reading Parquet. Anyone holding a ticket could
//!   have sent the query anyway: tickets need the token like every call.
//! - **Prepared statements** are kept here (query text, parameter names and types, bound values),
//!   because clients bind parameters in a separate `DoPut` and older ones ignore a new handle
//!   returned from it. At most [`PREPARED_MAX`], each dropped after [`PREPARED_IDLE`] unused.
//!   Parameters are DataFusion's placeholders: `$1`, `$2` bound from the columns of a one-row
//!   batch in order, or `$name` bound from the column of that name.
//! - **Catalog.** GetCatalogs, GetDbSchemas, GetTables (with the Arrow schema when asked),
//!   GetTableTypes and GetSqlInfo answer from the session's DataFusion catalog; the key calls
//!   answer no rows (the log has no keys); XDBC type info is not implemented.
//! - **Refused.** Updates, ingestion, Substrait plans and transactions: the log is read-only.
//! - **Access.** With an [`AccessToken`], every call needs it (`authorization: Bearer`, or Basic
//!   auth `sandwatch:<token>`, which `Handshake` trades for the bearer header).

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
    decode::FlightRecordBatchStream,
    encode::FlightDataEncoderBuilder,
    error::FlightError,
    flight_service_server::FlightServiceServer,
    sql::{
        ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
        ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
        ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
        ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest,
        ActionEndSavepointRequest, ActionEndTransactionRequest, CommandGetCatalogs,
        CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
        CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes,
        CommandGetTables, CommandGetXdbcTypeInfo, CommandPreparedStatementQuery,
        CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery,
        CommandStatementSubstraitPlan, CommandStatementUpdate, DoPutPreparedStatementResult,
        ProstMessageExt, SqlInfo, SqlSupportedTransaction, TicketStatementQuery,
        metadata::{SqlInfoData, SqlInfoDataBuilder},
        server::{FlightSqlService, PeekableFlightDataStream},
    },
};
use datafusion::{
    arrow::{
        array::RecordBatch,
        datatypes::{DataType, Field, Schema, SchemaRef},
        ipc::writer::IpcWriteOptions,
    },
    common::{ParamValues, ScalarValue},
    datasource::TableType,
};
use futures::{Stream, TryStreamExt as _};
use prost::Message as _;
use tokio::net::TcpListener;
use tonic::{
    Request, Response, Status, Streaming,
    metadata::MetadataValue,
    transport::{Server, server::TcpIncoming},
};

use crate::{AnalyticsError, ErrorClass, SqlSession, access::AccessToken};

/// Prepared statements kept at most; past it, the least recently used is dropped.
pub const PREPARED_MAX: usize = 1024;
/// A prepared statement unused for this long is dropped (clients that never close one).
pub const PREPARED_IDLE: Duration = Duration::from_secs(3600);

type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// The Flight SQL service over one audit log.
pub struct FlightSqlServer {
    session: SqlSession,
    token: Option<AccessToken>,
    prepared: Mutex<PreparedStatements>,
    sql_info: SqlInfoData,
}

impl FlightSqlServer {
    pub fn new(session: SqlSession, token: Option<AccessToken>) -> Result<Self, AnalyticsError> {
        let sql_info = sql_info().map_err(|e| AnalyticsError::Server {
            server: "Flight SQL",
            detail: format!("the server's SqlInfo: {e}"),
        })?;
        Ok(Self {
            session,
            token,
            prepared: Mutex::new(PreparedStatements::default()),
            sql_info,
        })
    }

    /// Serves on `listener` until `shutdown` completes, then lets running calls finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), AnalyticsError> {
        let token = self.token.clone();
        let service =
            FlightServiceServer::with_interceptor(self, move |req: Request<()>| match &token {
                None => Ok(req),
                Some(token) => {
                    let header = req
                        .metadata()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok());
                    token
                        .check(header)
                        .map(|()| req)
                        .map_err(|refused| Status::unauthenticated(refused.to_string()))
                }
            });
        Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
            .await
            .map_err(|e| AnalyticsError::Server {
                server: "Flight SQL",
                detail: e.to_string(),
            })
    }

    /// Plans `sql` with `values` under the time limit; the result's schema.
    async fn plan_schema(
        &self,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<SchemaRef, Status> {
        let limit = self.session.limits().timeout;
        let df = tokio::time::timeout(limit, self.session.describe(sql, values))
            .await
            .map_err(|_| status(&AnalyticsError::Timeout(limit)))?
            .map_err(|e| status(&e))?;
        Ok(df.schema().inner().clone())
    }

    /// Runs `sql` and streams its batches as Flight data; a failure after the first batch (the
    /// time limit, the memory limit) ends the stream with its status.
    async fn stream_query(
        &self,
        sql: &str,
        values: Option<ParamValues>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let stream = self.session.run(sql, values).await.map_err(|e| {
            tracing::debug!(error = %e, "Flight SQL query refused");
            status(&e)
        })?;
        let schema = stream.schema();
        let batches = stream.map_err(|e| {
            tracing::debug!(error = %e, "Flight SQL query stopped");
            FlightError::Tonic(Box::new(status(&e)))
        });
        let data = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(data)))
    }

    fn prepared(&self, handle: &[u8]) -> Result<PreparedStatement, Status> {
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(handle)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no prepared statement {} (closed, or unused for more than {})",
                    String::from_utf8_lossy(handle),
                    humantime::format_duration(PREPARED_IDLE)
                ))
            })
    }

    /// The tables of the catalog, with their types and schemas, for GetTables and GetTableTypes.
    async fn tables(&self) -> Result<Vec<CatalogTable>, Status> {
        let ctx = self.session.context();
        let mut out = Vec::new();
        for catalog_name in ctx.catalog_names() {
            let Some(catalog) = ctx.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let mut names = schema.table_names();
                names.retain(|n| !crate::session::is_temporary(n));
                names.sort();
                for table_name in names {
                    let Some(table) = schema
                        .table(&table_name)
                        .await
                        .map_err(|e| Status::internal(format!("table {table_name}: {e}")))?
                    else {
                        continue;
                    };
                    out.push(CatalogTable {
                        catalog: catalog_name.clone(),
                        schema: schema_name.clone(),
                        name: table_name,
                        table_type: table_type_name(table.table_type()),
                        arrow_schema: table.schema(),
                    });
                }
            }
        }
        Ok(out)
    }
}

struct CatalogTable {
    catalog: String,
    schema: String,
    name: String,
    table_type: &'static str,
    arrow_schema: SchemaRef,
}

fn table_type_name(t: TableType) -> &'static str {
    match t {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// The gRPC status of an error: the query author's errors are `invalid_argument`, with the
/// session's own text (the unknown column with its closest match).
fn status(e: &AnalyticsError) -> Status {
    let text = e.to_string();
    match e.class() {
        ErrorClass::Query => Status::invalid_argument(text),
        ErrorClass::TimeLimit => Status::deadline_exceeded(text),
        ErrorClass::MemoryLimit => Status::resource_exhausted(text),
        ErrorClass::Server => Status::internal(text),
    }
}

fn read_only(what: &str) -> Status {
    status(&AnalyticsError::ReadOnly { what: what.into() })
}

fn sql_info() -> Result<SqlInfoData, FlightError> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "sandwatch");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(
        SqlInfo::FlightSqlServerStatementTimeout,
        i32::try_from(PREPARED_IDLE.as_millis()).unwrap_or(i32::MAX),
    );
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.build()
}

/// A metadata command's FlightInfo: its schema, and one endpoint whose ticket is the command.
fn metadata_info(
    command: &impl ProstMessageExt,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// One batch as a Flight data stream.
fn batch_stream(batch: Result<RecordBatch, FlightError>) -> Response<FlightDataStream> {
    let data = FlightDataEncoderBuilder::new()
        .build(futures::stream::once(async { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(data))
}

fn ipc_schema(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?;
    Ok(bytes)
}

/// The schema of GetPrimaryKeys (FlightSql.proto), for its empty answer.
fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// The schema of GetExportedKeys, GetImportedKeys and GetCrossReference (FlightSql.proto).
fn foreign_keys_schema() -> Schema {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}

fn no_rows(schema: Schema) -> Response<FlightDataStream> {
    batch_stream(Ok(RecordBatch::new_empty(Arc::new(schema))))
}

/// A statement kept between CreatePreparedStatement and ClosePreparedStatement.
#[derive(Clone)]
struct PreparedStatement {
    sql: String,
    /// `$1`, `$2`... in order, or `$name`s sorted by name.
    placeholders: Vec<Placeholder>,
    values: Option<ParamValues>,
}

#[derive(Clone)]
struct Placeholder {
    /// As written, with its `$`.
    id: String,
    /// What DataFusion inferred from the query (`sandbox_id = $1`: text), if anything.
    data_type: Option<DataType>,
}

impl Placeholder {
    fn position(&self) -> Option<usize> {
        self.id.strip_prefix('$')?.parse().ok()
    }

    fn name(&self) -> &str {
        self.id.strip_prefix('$').unwrap_or(&self.id)
    }
}

#[derive(Default)]
struct PreparedStatements {
    by_handle: HashMap<Vec<u8>, (PreparedStatement, Instant)>,
}

impl PreparedStatements {
    fn insert(&mut self, statement: PreparedStatement) -> Vec<u8> {
        let now = Instant::now();
        self.by_handle
            .retain(|_, (_, used)| now.duration_since(*used) < PREPARED_IDLE);
        if self.by_handle.len() >= PREPARED_MAX
            && let Some(oldest) = self
                .by_handle
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(h, _)| h.clone())
        {
            self.by_handle.remove(&oldest);
        }
        // Random, so one client cannot guess (and close or rebind) another's statement.
        let handle = format!("ps-{:032x}", rand::random::<u128>()).into_bytes();
        self.by_handle.insert(handle.clone(), (statement, now));
        handle
    }

    fn get(&mut self, handle: &[u8]) -> Option<PreparedStatement> {
        let (statement, used) = self.by_handle.get_mut(handle)?;
        if used.elapsed() >= PREPARED_IDLE {
            self.by_handle.remove(handle);
            return None;
        }
        *used = Instant::now();
        Some(statement.clone())
    }

    fn bind(&mut self, handle: &[u8], values: Option<ParamValues>) -> bool {
        match self.by_handle.get_mut(handle) {
            Some((statement, used)) => {
                statement.values = values;
                *used = Instant::now();
                true
            }
            None => false,
        }
    }
}

/// The placeholders of a planned query, in binding order.
fn placeholders_of(df: &datafusion::prelude::DataFrame) -> Result<Vec<Placeholder>, Status> {
    let fields = df
        .logical_plan()
        .get_parameter_fields()
        .map_err(|e| Status::invalid_argument(format!("the query's parameters: {e}")))?;
    let mut out: Vec<Placeholder> = fields
        .into_iter()
        .map(|(id, field)| Placeholder {
            id,
            data_type: field.map(|f| f.data_type().clone()),
        })
        .collect();
    out.sort_by(|a, b| (a.position(), a.name()).cmp(&(b.position(), b.name())));
    Ok(out)
}

/// The parameter schema a client binds against: one column per placeholder, named as the
/// placeholder without its `$`. A type DataFusion could not infer is announced as text, the
/// kind of value an investigation binds most.
fn parameter_schema(placeholders: &[Placeholder]) -> Schema {
    Schema::new(
        placeholders
            .iter()
            .map(|p| {
                Field::new(
                    p.name(),
                    p.data_type.clone().unwrap_or(DataType::Utf8),
                    true,
                )
            })
            .collect::<Vec<_>>(),
    )
}

/// Values for `placeholders` from the one row of `batch`: `$1`, `$2`... from its columns in
/// order; `$name` from the column `name` (or by position when no column is named so but the
/// counts agree, for clients that name parameters `0`, `1`...).
fn bind(placeholders: &[Placeholder], batch: &RecordBatch) -> Result<ParamValues, Status> {
    if batch.num_rows() != 1 {
        return Err(Status::invalid_argument(format!(
            "parameters come as one row (one execution); got {} rows",
            batch.num_rows()
        )));
    }
    let value = |p: &Placeholder, column: usize| -> Result<ScalarValue, Status> {
        let v = ScalarValue::try_from_array(batch.column(column), 0)
            .map_err(|e| Status::invalid_argument(format!("parameter {}: {e}", p.id)))?;
        match &p.data_type {
            Some(t) if v.data_type() != *t && !v.is_null() => v.cast_to(t).map_err(|e| {
                Status::invalid_argument(format!("parameter {}: {v} is not a {t}: {e}", p.id))
            }),
            _ => Ok(v),
        }
    };
    let schema = batch.schema();
    if placeholders.iter().all(|p| p.position().is_some()) {
        let count = placeholders
            .iter()
            .filter_map(Placeholder::position)
            .max()
            .unwrap_or(0);
        if batch.num_columns() < count {
            return Err(Status::invalid_argument(format!(
                "the statement has parameters up to ${count}; got {} values",
                batch.num_columns()
            )));
        }
        let mut values = Vec::with_capacity(count);
        for i in 0..count {
            let p = placeholders
                .iter()
                .find(|p| p.position() == Some(i + 1))
                .cloned()
                .unwrap_or(Placeholder {
                    id: format!("${}", i + 1),
                    data_type: None,
                });
            values.push(value(&p, i)?);
        }
        return Ok(values.into());
    }
    let by_position = placeholders.len() == batch.num_columns();
    let mut values = HashMap::new();
    for (i, p) in placeholders.iter().enumerate() {
        let column = schema
            .index_of(p.name())
            .or_else(|_| schema.index_of(&p.id))
            .ok()
            .or(by_position.then_some(i))
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "no value for {}: bind a column named {}",
                    p.id,
                    p.name()
                ))
            })?;
        values.insert(p.name().to_owned(), value(p, column)?.into());
    }
    Ok(ParamValues::Map(values))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    /// The interceptor has checked the credentials already; this hands back the bearer token
    /// for the calls that follow.
    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let payload = self
            .token
            .as_ref()
            .map(|t| t.secret().as_bytes().to_vec())
            .unwrap_or_default();
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: payload.into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter([Ok(answer)])));
        if let Some(token) = &self.token {
            let bearer = MetadataValue::try_from(format!("Bearer {}", token.secret()))
                .map_err(|e| Status::internal(format!("the token as a header: {e}")))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.plan_schema(&query.query, None).await?;
        let ticket = TicketStatementQuery {
            statement_handle: query.query.into_bytes().into(),
        };
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(request.into_inner())
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let sql = std::str::from_utf8(&ticket.statement_handle).map_err(|_| {
            Status::invalid_argument("not a ticket of this server (its query is not UTF-8)")
        })?;
        self.stream_query(sql, None).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let limit = self.session.limits().timeout;
        let df = tokio::time::timeout(limit, self.session.describe(&query.query, None))
            .await
            .map_err(|_| status(&AnalyticsError::Timeout(limit)))?
            .map_err(|e| status(&e))?;
        let placeholders = placeholders_of(&df)?;
        let dataset_schema = ipc_schema(df.schema().as_arrow())?;
        let parameter_schema = if placeholders.is_empty() {
            Default::default()
        } else {
            ipc_schema(&parameter_schema(&placeholders))?
        };
        let handle = self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(PreparedStatement {
                sql: query.query,
                placeholders,
                values: None,
            });
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = query.prepared_statement_handle;
        let statement = self.prepared(&handle)?;
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("reading the parameters: {e}")))?;
        let values = match batches.iter().filter(|b| b.num_rows() > 0).count() {
            0 => None,
            1 => Some(bind(
                &statement.placeholders,
                batches.iter().find(|b| b.num_rows() > 0).expect("counted"),
            )?),
            n => {
                return Err(Status::invalid_argument(format!(
                    "parameters come as one row (one execution); got {n} batches"
                )));
            }
        };
        let known = self
            .prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .bind(&handle, values);
        if !known {
            return Err(Status::not_found("the prepared statement was closed"));
        }
        // The same handle: the bound values are kept with it here.
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let statement = self.prepared(&cmd.prepared_statement_handle)?;
        check_bound(&statement)?;
        let schema = self
            .plan_schema(&statement.sql, statement.values.clone())
            .await?;
        let ticket = Ticket::new(cmd.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner())
            .with_ordered(true);
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let statement = self.prepared(&cmd.prepared_statement_handle)?;
        check_bound(&statement)?;
        self.stream_query(&statement.sql, statement.values).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Closing one that expired already is not an error: the client is done with it either way.
        self.prepared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .by_handle
            .remove(query.prepared_statement_handle.as_ref());
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let mut builder = query.into_builder();
        let mut names = self.session.context().catalog_names();
        names.sort();
        for name in names {
            builder.append(name);
        }
        Ok(batch_stream(builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let ctx = self.session.context();
        // The builder applies the command's catalog and pattern filters.
        let mut builder = query.into_builder();
        for catalog_name in ctx.catalog_names() {
            if let Some(catalog) = ctx.catalog(&catalog_name) {
                for schema_name in catalog.schema_names() {
                    builder.append(&catalog_name, schema_name);
                }
            }
        }
        Ok(batch_stream(builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let mut builder = query.into_builder();
        for t in self.tables().await? {
            builder
                .append(
                    &t.catalog,
                    &t.schema,
                    &t.name,
                    t.table_type,
                    &t.arrow_schema,
                )
                .map_err(|e| Status::internal(format!("table {}: {e}", t.name)))?;
        }
        Ok(batch_stream(builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        let mut types: Vec<&str> = self.tables().await?.iter().map(|t| t.table_type).collect();
        types.sort_unstable();
        types.dedup();
        let mut builder = query.into_builder();
        for t in types {
            builder.append(t);
        }
        Ok(batch_stream(builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(batch_stream(query.into_builder(&self.sql_info).build()))
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query, &primary_keys_schema(), request.into_inner())
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        // An audit log has no keys: no rows, in the shape clients expect.
        Ok(no_rows(primary_keys_schema()))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query, &foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(no_rows(foreign_keys_schema()))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query, &foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(no_rows(foreign_keys_schema()))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        metadata_info(&query, &foreign_keys_schema(), request.into_inner())
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<FlightDataStream>, Status> {
        Ok(no_rows(foreign_keys_schema()))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        _query: CommandGetXdbcTypeInfo,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "sandwatch does not list XDBC type info: every column's Arrow type comes with GetTables (include_schema)",
        ))
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented(
            "sandwatch runs SQL, not Substrait plans",
        ))
    }

    async fn do_put_statement_update(
        &self,
        _query: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _query: CommandStatementIngest,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("ingesting data"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only("an update statement"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(Status::unimplemented(
            "sandwatch runs SQL, not Substrait plans",
        ))
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        Err(Status::unimplemented(
            "sandwatch runs SQL, not Substrait plans",
        ))
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(Status::unimplemented(
            "no transactions: the audit log is read-only, and every query sees the files present when it starts",
        ))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(Status::unimplemented(
            "no transactions: the audit log is read-only",
        ))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(Status::unimplemented(
            "no savepoints: the audit log is read-only",
        ))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(Status::unimplemented(
            "no savepoints: the audit log is read-only",
        ))
    }

    async fn do_action_cancel_query(
        &self,
        _query: ActionCancelQueryRequest,
        _request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        Err(Status::unimplemented(
            "CancelQuery is not implemented: a query stops when its client closes the DoGet stream",
        ))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A statement with parameters cannot run before they are bound.
fn check_bound(statement: &PreparedStatement) -> Result<(), Status> {
    if statement.values.is_none() && !statement.placeholders.is_empty() {
        let ids: Vec<&str> = statement
            .placeholders
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        return Err(Status::invalid_argument(format!(
            "the statement has parameters ({}): bind their values before executing it",
            ids.join(", ")
        )));
    }
    Ok(())
}
