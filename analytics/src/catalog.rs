//! The audit log as DataFusion tables: one listing table per table directory, partitioned by
//! the `date=`/`hour=` directories the Parquet sink writes, and the `events` view over the four
//! event tables.
//!
//! Every table is registered with the schema this build writes (`sandwatch_schema`), not with a
//! schema inferred from the files: a file written before a column was added reads that column
//! as null, and a table with no file yet is an empty table rather than an error.

use std::{path::Path, sync::Arc};

use datafusion::{
    arrow::datatypes::{DataType, Field, Schema, SchemaRef},
    datasource::{
        MemTable,
        file_format::parquet::ParquetFormat,
        listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl},
    },
    prelude::SessionContext,
};
use sandwatch_schema::{COMMON_COLUMNS, Table};

use crate::AnalyticsError;

/// The partition columns, in directory order. `date` is a real date, so `date >= '2026-12-01'`
/// and `date = current_date()` prune directories; `hour` is the UTC hour, 0 to 23.
pub const PARTITION_COLUMNS: [(&str, DataType); 2] =
    [("date", DataType::Date32), ("hour", DataType::Int32)];

/// The event tables the `events` view unions, with the value of its `kind` column.
pub const EVENT_TABLES: [(Table, &str); 4] = [
    (Table::ProcessEvents, "process"),
    (Table::FileEvents, "file"),
    (Table::NetworkEvents, "network"),
    (Table::SyscallEvents, "syscall"),
];

/// The schema a table has in SQL: its Parquet columns, then the partition columns.
pub fn sql_schema(table: Table) -> SchemaRef {
    let mut fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(
        PARTITION_COLUMNS
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), false)),
    );
    Arc::new(Schema::new(fields))
}

/// Registers every table of the audit log at `data` in `ctx`, and the `events` view.
pub async fn register_audit_log(ctx: &SessionContext, data: &Path) -> Result<(), AnalyticsError> {
    for table in Table::ALL {
        register_table(ctx, data, table)?;
    }
    ctx.sql(&events_view_sql())
        .await
        .map_err(|e| AnalyticsError::Catalog(format!("the events view: {e}")))?;
    Ok(())
}

fn register_table(ctx: &SessionContext, data: &Path, table: Table) -> Result<(), AnalyticsError> {
    let dir = data.join(table.name());
    let catalog_err =
        |e: &dyn std::fmt::Display| AnalyticsError::Catalog(format!("{}: {e}", table.name()));
    if !dir.is_dir() {
        // A table the log has no file of yet is still a table: queries see no rows. Nothing is
        // created on disk: reading the log never writes to it.
        let empty =
            MemTable::try_new(sql_schema(table), vec![vec![]]).map_err(|e| catalog_err(&e))?;
        ctx.register_table(table.name(), Arc::new(empty))
            .map_err(|e| catalog_err(&e))?;
        return Ok(());
    }
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))
        .map_err(|e| AnalyticsError::Catalog(format!("{}: {e}", dir.display())))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        // `.<name>.parquet.tmp` files are being written: not yet part of the log.
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            PARTITION_COLUMNS
                .iter()
                .map(|(n, t)| ((*n).to_owned(), t.clone()))
                .collect(),
        );
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(table.schema());
    let provider = ListingTable::try_new(config).map_err(|e| catalog_err(&e))?;
    ctx.register_table(table.name(), Arc::new(provider))
        .map_err(|e| catalog_err(&e))?;
    Ok(())
}

/// `events`: the common columns of the four event tables, plus `kind` (process, file, network,
/// syscall) and the partition columns.
pub fn events_view_sql() -> String {
    let cols = COMMON_COLUMNS.join(", ");
    let parts: Vec<String> = EVENT_TABLES
        .iter()
        .map(|(t, kind)| {
            format!(
                "SELECT '{kind}' AS kind, {cols}, date, hour FROM {}",
                t.name()
            )
        })
        .collect();
    format!("CREATE VIEW events AS {}", parts.join(" UNION ALL "))
}
