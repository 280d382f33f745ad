//! [`AggregateUnionByLiteral`]: an optimizer rule that groups each branch of a `UNION ALL` on its
//! own when a grouping key tells the branches apart.
//!
//! The `events` view is a `UNION ALL` of the four event tables, each branch naming itself in a
//! literal `kind` column. `GROUP BY sandbox_id, kind` over it made DataFusion 55 hash 50 M rows
//! on two columns (one of them a constant within each branch) after the union. When, for some
//! grouping column, every branch projects a distinct non-null literal, no group can hold rows of
//! two branches, so grouping each branch and concatenating the results is the same answer for
//! any aggregate function (`count(DISTINCT ...)` included), not only for decomposable ones. In
//! each branch that key is then a constant, which DataFusion's own `EliminateGroupByConstant`
//! drops, leaving the single-column grouping its fastest hash tables serve.
//!
//! The rewrite keeps the aggregate's output schema (names, qualifiers, order) with a projection
//! over the new union, so nothing above it changes.

use std::{collections::HashSet, sync::Arc};

use datafusion::{
    common::{
        Result,
        tree_node::{Transformed, TreeNode as _},
    },
    logical_expr::{
        Aggregate, Expr, LogicalPlan, Projection, Union,
        expr::{Exists, InSubquery},
    },
    optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule},
};

#[derive(Debug, Default)]
pub struct AggregateUnionByLiteral;

impl OptimizerRule for AggregateUnionByLiteral {
    fn name(&self) -> &str {
        "aggregate_union_by_literal"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        match split(&aggregate)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
        }
    }
}

/// The aggregate grouped per branch, or None when the rule does not apply.
fn split(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let mut input = aggregate.input.as_ref();
    while let LogicalPlan::SubqueryAlias(alias) = input {
        input = alias.input.as_ref();
    }
    let LogicalPlan::Union(union) = input else {
        return Ok(None);
    };
    let branches: Option<Vec<&Projection>> = union
        .inputs
        .iter()
        .map(|b| match b.as_ref() {
            LogicalPlan::Projection(p) => Some(p),
            _ => None,
        })
        .collect();
    let Some(branches) = branches else {
        return Ok(None);
    };
    let exprs = || aggregate.group_expr.iter().chain(&aggregate.aggr_expr);
    if branches.len() < 2
        || aggregate.group_expr.is_empty()
        || aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        || exprs().any(has_subquery)
    {
        return Ok(None);
    }
    // The union's schema, as the aggregate names its columns (qualified by the view's alias).
    let schema = aggregate.input.schema();
    let tells_apart = aggregate.group_expr.iter().any(|g| {
        let Expr::Column(c) = g else { return false };
        let Ok(i) = schema.index_of_column(c) else {
            return false;
        };
        let mut seen = HashSet::new();
        branches
            .iter()
            .all(|p| match p.expr.get(i).map(|e| e.clone().unalias()) {
                Some(Expr::Literal(v, _)) if !v.is_null() => seen.insert(v),
                _ => false,
            })
    });
    if !tells_apart {
        return Ok(None);
    }

    let out = aggregate.schema.as_ref();
    let mut grouped = Vec::with_capacity(branches.len());
    for p in &branches {
        // A column of the union is, in this branch, the branch's expression at its position.
        let in_branch = |e: &Expr| -> Result<Expr> {
            e.clone()
                .transform_up(|e| match e {
                    Expr::Column(c) => match schema.index_of_column(&c) {
                        Ok(i) => Ok(Transformed::yes(p.expr[i].clone().unalias())),
                        Err(_) => Ok(Transformed::no(Expr::Column(c))),
                    },
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
        };
        let group = aggregate
            .group_expr
            .iter()
            .map(in_branch)
            .collect::<Result<Vec<_>>>()?;
        let aggr = aggregate
            .aggr_expr
            .iter()
            .map(in_branch)
            .collect::<Result<Vec<_>>>()?;
        let branch = LogicalPlan::Aggregate(Aggregate::try_new(Arc::clone(&p.input), group, aggr)?);
        // The branch's columns under the aggregate's own names, so the union lines them up.
        let named = branch
            .schema()
            .columns()
            .into_iter()
            .zip(out.fields())
            .map(|(c, f)| Expr::Column(c).alias(f.name()))
            .collect();
        grouped.push(Arc::new(LogicalPlan::Projection(Projection::try_new(
            named,
            Arc::new(branch),
        )?)));
    }
    let Ok(union) = Union::try_new(grouped) else {
        // Branches whose results do not line up type for type: leave the plan as it was.
        return Ok(None);
    };
    let union = LogicalPlan::Union(union);
    let restored = union
        .schema()
        .columns()
        .into_iter()
        .zip(out.iter())
        .map(|(c, (qualifier, f))| Expr::Column(c).alias_qualified(qualifier.cloned(), f.name()))
        .collect();
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        restored,
        Arc::new(union),
    )?)))
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_)
                | Expr::Exists(Exists { .. })
                | Expr::InSubquery(InSubquery { .. })
                | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::{
        arrow::{
            array::{Int64Array, RecordBatch, StringArray},
            datatypes::{DataType, Field, Schema},
        },
        datasource::MemTable,
        prelude::SessionContext,
    };

    use super::AggregateUnionByLiteral;

    async fn context(with_rule: bool) -> SessionContext {
        let ctx = SessionContext::new();
        if with_rule {
            ctx.add_optimizer_rule(Arc::new(AggregateUnionByLiteral));
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("sandbox_id", DataType::Utf8, true),
            Field::new("pid", DataType::Int64, true),
        ]));
        for (name, ids, pids) in [
            ("a", vec!["s1", "s1", "s2", "s3"], vec![1, 2, 2, 9]),
            ("b", vec!["s1", "s2", "s2"], vec![1, 1, 1]),
            ("c", vec![], vec![]),
        ] {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(StringArray::from(ids)),
                    Arc::new(Int64Array::from(pids)),
                ],
            )
            .unwrap();
            let t = MemTable::try_new(Arc::clone(&schema), vec![vec![batch]]).unwrap();
            ctx.register_table(name, Arc::new(t)).unwrap();
        }
        ctx.sql(
            "CREATE VIEW v AS SELECT 'a' AS kind, sandbox_id, pid FROM a \
             UNION ALL SELECT 'b' AS kind, sandbox_id, pid FROM b \
             UNION ALL SELECT 'c' AS kind, sandbox_id, pid FROM c",
        )
        .await
        .unwrap();
        ctx.sql(
            "CREATE VIEW same AS SELECT 'x' AS kind, sandbox_id, pid FROM a \
             UNION ALL SELECT 'x' AS kind, sandbox_id, pid FROM b",
        )
        .await
        .unwrap();
        ctx
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = format!(
            "{}",
            df.clone().into_optimized_plan().unwrap().display_indent()
        );
        let batches = df.collect().await.unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        (plan, text)
    }

    #[tokio::test]
    async fn same_answers_grouped_per_branch() {
        let (plain, ruled) = (context(false).await, context(true).await);
        for sql in [
            "SELECT sandbox_id, kind, count(*) AS n FROM v GROUP BY sandbox_id, kind ORDER BY 1, 2",
            "SELECT kind, count(DISTINCT pid), max(pid) FROM v GROUP BY kind ORDER BY 1",
            "SELECT v.kind, sum(v.pid + 1) AS s FROM v WHERE sandbox_id <> 's3' GROUP BY v.kind, v.sandbox_id ORDER BY 1, 2",
        ] {
            let (before_plan, before) = answer(&plain, sql).await;
            let (after_plan, after) = answer(&ruled, sql).await;
            assert_eq!(before, after, "{sql}");
            // An aggregate per branch (the empty one included) where there was one over the union.
            let aggregates = |p: &str| p.matches("Aggregate:").count();
            assert!(
                aggregates(&after_plan) >= aggregates(&before_plan) + 2,
                "{before_plan}\n{after_plan}"
            );
        }
    }

    #[tokio::test]
    async fn left_alone_when_no_key_tells_branches_apart() {
        let ctx = context(true).await;
        // Equal literals: a group may hold rows of both branches.
        let (plan, text) = answer(&ctx, "SELECT kind, count(*) AS n FROM same GROUP BY kind").await;
        assert_eq!(plan.matches("Aggregate:").count(), 1, "{plan}");
        assert!(text.contains("| x    | 7 |"), "{text}");
        // No literal among the keys.
        let (plan, _) = answer(
            &ctx,
            "SELECT sandbox_id, count(*) FROM v GROUP BY sandbox_id",
        )
        .await;
        assert_eq!(plan.matches("Aggregate:").count(), 1, "{plan}");
    }
}
