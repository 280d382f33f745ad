//! A query's result as text: an aligned table for a person, CSV or JSON lines for a program.

use std::{io::Write, str::FromStr, sync::Arc};

use datafusion::arrow::{
    array::{Array, ArrayRef, RecordBatch, StringArray},
    csv::WriterBuilder,
    datatypes::{DataType, Field, Schema, SchemaRef},
    json::LineDelimitedWriter,
    util::{
        display::{ArrayFormatter, FormatOptions},
        pretty::pretty_format_batches_with_options,
    },
};

use crate::AnalyticsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("{s:?} is not a format (table, csv, json)")),
        }
    }
}

fn out_err(e: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Output(e.to_string())
}

/// Writes `batches` to `w`. A table with no rows still shows its header; CSV has a header line;
/// JSON is one object per row (nulls left out, as arrow writes them).
pub fn write(
    w: &mut dyn Write,
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), AnalyticsError> {
    match format {
        Format::Table => {
            let options = FormatOptions::default().with_null("NULL");
            let table = if batches.iter().all(|b| b.num_rows() == 0) {
                // Header only, so an empty answer still says what it would have shown.
                pretty_format_batches_with_options(
                    &[RecordBatch::new_empty(schema.clone())],
                    &options,
                )
            } else {
                pretty_format_batches_with_options(batches, &options)
            }
            .map_err(out_err)?;
            writeln!(w, "{table}").map_err(out_err)
        }
        Format::Csv => {
            let mut writer = WriterBuilder::new().with_header(true).build(w);
            if batches.is_empty() {
                writer
                    .write(&flatten_nested(&RecordBatch::new_empty(schema.clone()))?)
                    .map_err(out_err)?;
            }
            for b in batches {
                writer.write(&flatten_nested(b)?).map_err(out_err)?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = LineDelimitedWriter::new(w);
            for b in batches {
                writer.write(b).map_err(out_err)?;
            }
            writer.finish().map_err(out_err)
        }
    }
}

/// Writes one batch of a result that comes batch by batch (the HTTP endpoint streams this way):
/// the same text [`write`] gives for the whole result, CSV's header with the `first` batch.
/// `Format::Table` needs the whole result to align its columns and is refused.
pub fn write_batch(
    w: &mut dyn Write,
    format: Format,
    batch: &RecordBatch,
    first: bool,
) -> Result<(), AnalyticsError> {
    match format {
        Format::Table => Err(AnalyticsError::Output(
            "a table needs the whole result; stream CSV or JSON lines".into(),
        )),
        Format::Csv => WriterBuilder::new()
            .with_header(first)
            .build(w)
            .write(&flatten_nested(batch)?)
            .map_err(out_err),
        Format::Json => {
            let mut writer = LineDelimitedWriter::new(w);
            writer.write(batch).map_err(out_err)?;
            writer.finish().map_err(out_err)
        }
    }
}

/// CSV has no lists: a list column (`argv`, `tags`) becomes its text as the table shows it.
fn flatten_nested(b: &RecordBatch) -> Result<RecordBatch, AnalyticsError> {
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(b.clone());
    }
    let options = FormatOptions::default();
    let mut fields = Vec::with_capacity(b.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        if !f.data_type().is_nested() {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
            continue;
        }
        let fmt = ArrayFormatter::try_new(c.as_ref(), &options).map_err(out_err)?;
        let text: StringArray = (0..c.len())
            .map(|i| c.is_valid(i).then(|| fmt.value(i).to_string()))
            .collect();
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        columns.push(Arc::new(text));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(out_err)
}
