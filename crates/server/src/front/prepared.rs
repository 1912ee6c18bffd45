//! Prepared statements as a session keeps them: the parsed statement of each template, and a plan that later
//! executions may reuse when its partitions follow from the parameter values alone. Pure bookkeeping over
//! `canopy-sql`'s planner: no IO.

use std::sync::Arc;

use canopy_meta::ClusterMeta;
use canopy_sql::Value;
use canopy_sql::plan;

/// A prepared statement as this session keeps it.
pub struct Template {
    /// The query or DML statement; None for statements that run as literal text (everything else, and text that
    /// does not parse with its placeholders).
    pub statement: Option<Arc<sqlparser::ast::Statement>>,
    /// A plan made by an earlier execution, reusable while nothing it depends on changed.
    pub reuse: Option<Reuse>,
}

/// A plan whose partition follows from the parameters alone (`plan::reusable_route`): later executions re-hash
/// their values instead of planning again. Valid for the metadata version and current database it was made with.
pub struct Reuse {
    meta_version: u64,
    db: Option<String>,
    plan: plan::Plan,
    route: plan::ParamRoute,
}

impl Reuse {
    /// The plan for `params`, if this reuse applies to them.
    pub fn plan_for(&self, meta: &ClusterMeta, db: Option<&str>, params: &[Value]) -> Option<plan::Plan> {
        if self.meta_version != meta.version || self.db.as_deref() != db {
            return None;
        }
        if self.route == plan::ParamRoute::Everywhere {
            return Some(self.plan.clone());
        }
        let ordinal = self.route.ordinal(params)?;
        Some(match &self.plan {
            plan::Plan::Single { db, sql, .. } => plan::Plan::Single { db: db.clone(), ordinal, sql: sql.clone() },
            plan::Plan::Write { db, sql, .. } => {
                plan::Plan::Write { db: db.clone(), ordinals: vec![ordinal], sql: sql.clone() }
            }
            _ => return None,
        })
    }

    /// A reuse for `plan`, made for `params`, when `statement` routes by parameters and agrees with the plan.
    pub fn of(
        statement: &sqlparser::ast::Statement,
        plan: &plan::Plan,
        params: &[Value],
        meta: &ClusterMeta,
        db: Option<&str>,
    ) -> Option<Reuse> {
        // Only single-partition plans, scatters and writes can be reused; ask nothing more of other plans.
        if !matches!(plan, plan::Plan::Single { .. } | plan::Plan::Scatter { .. } | plan::Plan::Write { .. }) {
            return None;
        }
        let route = plan::reusable_route(statement, db, meta)?;
        let agrees = match (&route, plan) {
            // Every partition whatever the values: the plan does not depend on them (a scatter merge that read a
            // parameter would not run with parameters, and is never offered for reuse).
            (plan::ParamRoute::Everywhere, plan::Plan::Scatter { .. } | plan::Plan::Write { .. }) => true,
            (plan::ParamRoute::Keys { .. }, plan::Plan::Single { ordinal, .. }) => {
                route.ordinal(params) == Some(*ordinal)
            }
            (plan::ParamRoute::Keys { .. }, plan::Plan::Write { ordinals, .. }) => {
                ordinals.len() == 1 && route.ordinal(params) == Some(ordinals[0])
            }
            _ => false,
        };
        agrees.then(|| Reuse { meta_version: meta.version, db: db.map(str::to_string), plan: plan.clone(), route })
    }
}
