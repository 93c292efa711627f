//! Who may see what (D18): the caller's [`Identity`] and role, the unit tree below a unit,
//! and [`Visibility`], the one filter every query of records, alerts and figures carries: the
//! caller's unit and the units below it, classified items only for cleared users. The sync
//! policy applies the same rule per document (a 256-case matrix test holds them together).
//! Knows nothing of HTTP: `auth` turns a token into an [`Identity`].

use std::collections::HashSet;

use zhiban_protocol::PeerId;

use crate::db::{Arg, Sql};

pub use zhiban_api::Role;

/// An authenticated user on a registered, unrevoked device.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    pub device_id: String,
    pub unit_id: String,
    pub role: Role,
    pub cleared: bool,
}

impl Identity {
    /// The peer id this device must use on `/sync`.
    pub fn peer_id(&self) -> PeerId {
        PeerId::for_device(&self.user_id, &self.device_id)
    }
}

/// The unit itself and every unit below it: what a member of `unit_id` may read.
pub async fn visible_units<'c, E>(
    executor: E,
    unit_id: &str,
) -> Result<HashSet<String>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query_scalar(
        "WITH RECURSIVE below(id) AS ( \
             SELECT id FROM units WHERE id = $1 \
             UNION SELECT u.id FROM units u JOIN below b ON u.parent_id = b.id) \
         SELECT id FROM below",
    )
    .bind(unit_id)
    .fetch_all(executor)
    .await
    .map(|ids| ids.into_iter().collect())
}

/// The unit itself and every unit above it, nearest first: the offices whose people may be
/// paged about the unit's matters.
pub async fn units_above<'c, E>(executor: E, unit_id: &str) -> Result<Vec<String>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query_scalar(
        "WITH RECURSIVE above(id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM units WHERE id = $1 \
             UNION SELECT u.id, u.parent_id, a.depth + 1 FROM units u \
             JOIN above a ON u.id = a.parent_id WHERE a.depth < 64) \
         SELECT id FROM above ORDER BY depth",
    )
    .bind(unit_id)
    .fetch_all(executor)
    .await
}

/// What one caller may see.
#[derive(Debug, Clone)]
pub struct Visibility {
    units: HashSet<String>,
    cleared: bool,
}

impl Visibility {
    pub async fn of(pool: &crate::db::Pool, identity: &Identity) -> Result<Self, sqlx::Error> {
        Ok(Self {
            units: visible_units(pool, &identity.unit_id).await?,
            cleared: identity.cleared,
        })
    }

    pub fn new(units: HashSet<String>, cleared: bool) -> Self {
        Self { units, cleared }
    }

    pub fn sees_unit(&self, unit_id: &str) -> bool {
        self.units.contains(unit_id)
    }

    pub fn units(&self) -> &HashSet<String> {
        &self.units
    }

    /// Appends ` AND <unit_column> IN (…)` and, for an uncleared caller,
    /// ` AND NOT (<classified_condition>)`.
    pub fn restrict(&self, query: &mut Sql, unit_column: &str, classified_condition: &str) {
        query
            .push(&format!(" AND {unit_column} IN "))
            .bind_list(self.units.iter().map(|unit| Arg::from(unit.as_str())));
        if !self.cleared {
            query.push(&format!(" AND NOT ({classified_condition})"));
        }
    }
}
