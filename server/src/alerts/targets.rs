//! Who a step reaches. User ids come from documents (roster people, instruction addressees)
//! and policies, and a document may name anyone or anything: a roster's people count only if
//! they are users of the roster's unit, an instruction's addressee only if a user of the
//! alert's unit, a policy's `user:` if of the unit or an office above it (a classified alert:
//! only cleared ones, D18); the others are ignored and
//! noted on the timeline. Nobody on the roster falls back to the unit's
//! leaders (or officers), because an alert must reach someone; that is noted too.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::Row;
use zhiban_api::{AlertKind, Role, Target};

use super::Alert;
use crate::access::units_above;
use crate::db::{Arg, Sql};
use crate::records::roster::on_duty_users;
use crate::units::users_with_roles;

/// Whom a step reaches, and why some were not.
#[derive(Debug, Default)]
pub struct Reached {
    pub users: Vec<String>,
    /// Targets that found nobody and what was used instead.
    pub fallbacks: Vec<String>,
    /// Names that were not paged, with the reason.
    pub ignored: Vec<Ignored>,
}

#[derive(Debug, Serialize)]
pub struct Ignored {
    pub user_id: String,
    pub reason: &'static str,
}

/// Whose names are checked, and against what.
enum Names {
    /// Found by unit and role: theirs by construction (checked only for clearance).
    Found,
    /// A roster's people: users of that roster's unit.
    Of(String),
    /// An instruction's addressee: a user of the alert's unit (D14: the unit carries it out).
    Unit,
    /// A policy's `user:`: the alert's unit or an office above (escalation goes up).
    UnitOrAbove,
}

/// The longest user id a document may name; longer ones are ignored unread.
const MAX_USER_ID: usize = 64;

pub async fn resolve(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    targets: &[Target],
    now: i64,
) -> Result<Reached, sqlx::Error> {
    let mut reached = Reached::default();
    for target in targets {
        // Users found by their unit and role are the unit's by construction; names from a
        // roster or a policy are checked.
        let (candidates, named, fallback) = match target {
            Target::LeaderOnDuty => (
                on_duty_users(connection, &alert.unit_id, now).await?.0,
                Names::Of(alert.unit_id.clone()),
                Some((alert.unit_id.clone(), Role::Leader, "unit leaders")),
            ),
            Target::OfficersOnDuty => (
                on_duty_users(connection, &alert.unit_id, now).await?.1,
                Names::Of(alert.unit_id.clone()),
                Some((alert.unit_id.clone(), Role::Officer, "unit officers")),
            ),
            Target::UnitLeaders => (
                users_with_roles(connection, &alert.unit_id, &[Role::Leader]).await?,
                Names::Found,
                None,
            ),
            Target::SuperiorOnDuty => match superior(connection, &alert.unit_id).await? {
                Some(parent) => {
                    let (leaders, officers) = on_duty_users(connection, &parent, now).await?;
                    (
                        leaders.into_iter().chain(officers).collect(),
                        Names::Of(parent.clone()),
                        Some((parent, Role::Leader, "its leaders")),
                    )
                }
                None => (Vec::new(), Names::Found, None),
            },
            Target::UnitAdmins => {
                // The nearest office that has admins.
                let mut admins = Vec::new();
                for office in units_above(&mut *connection, &alert.unit_id).await? {
                    admins = users_with_roles(connection, &office, &[Role::Admin]).await?;
                    if !admins.is_empty() {
                        break;
                    }
                }
                (admins, Names::Found, None)
            }
            Target::User(user) => {
                let names = if alert.kind == AlertKind::Instruction {
                    Names::Unit
                } else {
                    Names::UnitOrAbove
                };
                (vec![user.0.clone()], names, None)
            }
            // Replaced by the reporter when the alert was raised.
            Target::Responsible => (Vec::new(), Names::Found, None),
        };
        let mut found = valid(connection, alert, candidates, named, &mut reached.ignored).await?;
        if found.is_empty()
            && let Some((unit, role, instead)) = fallback
        {
            reached
                .fallbacks
                .push(format!("{target}: nobody on the roster; {instead}"));
            let users = users_with_roles(connection, &unit, &[role]).await?;
            found = valid(connection, alert, users, Names::Found, &mut reached.ignored).await?;
        }
        for user in found {
            if !reached.users.contains(&user) {
                reached.users.push(user);
            }
        }
    }
    Ok(reached)
}

async fn superior(
    connection: &mut sqlx::AnyConnection,
    unit_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT parent_id FROM units WHERE id = $1")
            .bind(unit_id)
            .fetch_optional(connection)
            .await?
            .flatten(),
    )
}

/// The candidates who may be paged (see `Names`); for a classified alert, cleared users only.
async fn valid(
    connection: &mut sqlx::AnyConnection,
    alert: &Alert,
    mut candidates: Vec<String>,
    names: Names,
    ignored: &mut Vec<Ignored>,
) -> Result<Vec<String>, sqlx::Error> {
    candidates.dedup();
    if candidates.is_empty() || (matches!(names, Names::Found) && !alert.classified) {
        return Ok(candidates);
    }
    // The units whose users count: the roster's, or the alert's and those above it.
    let (unit, levels_above, outside) = match names {
        Names::Of(unit) => (unit, 0, "not of the roster's unit"),
        Names::Unit => (alert.unit_id.clone(), 0, "not of this unit"),
        Names::Found | Names::UnitOrAbove => (
            alert.unit_id.clone(),
            64,
            "not of this unit or an office above it",
        ),
    };
    let (plausible, implausible): (Vec<String>, Vec<String>) = candidates
        .into_iter()
        .partition(|id| !id.is_empty() && id.len() <= MAX_USER_ID);
    ignored.extend(implausible.into_iter().map(|id| Ignored {
        user_id: id.chars().take(MAX_USER_ID).collect(),
        reason: "not a user id",
    }));
    if plausible.is_empty() {
        return Ok(Vec::new());
    }
    let mut select = Sql::new(
        "WITH RECURSIVE above(id, parent_id, depth) AS ( \
             SELECT id, parent_id, 0 FROM units WHERE id = ",
    );
    select
        .bind(unit)
        .push(
            " UNION SELECT u.id, u.parent_id, a.depth + 1 FROM units u \
             JOIN above a ON u.id = a.parent_id WHERE a.depth < ",
        )
        .bind(levels_above)
        .push(
            ") SELECT id, cleared, CAST(CASE WHEN unit_id IN (SELECT id FROM above) \
             THEN 1 ELSE 0 END AS BIGINT) AS ours FROM users WHERE id IN ",
        )
        .bind_list(plausible.iter().map(|id| Arg::from(id.as_str())));
    let known: HashMap<String, (bool, bool)> = select
        .query()
        .fetch_all(&mut *connection)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.try_get("id")?,
                (
                    row.try_get::<i64, _>("ours")? != 0,
                    row.try_get::<i64, _>("cleared")? != 0,
                ),
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let mut kept = Vec::with_capacity(plausible.len());
    for id in plausible {
        let reason = match known.get(&id) {
            None => Some("no such user"),
            Some((false, _)) => Some(outside),
            Some((_, false)) if alert.classified => Some("not cleared for classified items"),
            Some(_) => None,
        };
        match reason {
            Some(reason) => {
                tracing::warn!(alert_id = %alert.id, user_id = %id, reason, "alert target ignored");
                ignored.push(Ignored {
                    user_id: id,
                    reason,
                });
            }
            None => kept.push(id),
        }
    }
    Ok(kept)
}
