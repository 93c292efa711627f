//! Who wrote each change. A document's fields can carry anybody's name, so an approval (D4) or
//! an instruction (D14) is only trusted through the Automerge actor of the operation that
//! wrote it. Each actor id is bound to the user whose device first delivered a change made by
//! it; a later change by that actor arriving from another user is a forgery and is refused.
//!
//! First delivery is authoritative because devices only exchange changes through the server:
//! nobody else can have seen a change the server has not stored. (After restoring the database
//! from an older backup, devices re-sending colleagues' changes would be refused: restore the
//! `actors` table with it.)

use std::collections::HashMap;
use std::sync::Mutex;

use automerge::ActorId;

use crate::db::Pool;

/// The known bindings, cached: every received change is checked against them.
#[derive(Default)]
pub struct Authors {
    known: Mutex<HashMap<ActorId, String>>,
}

impl Authors {
    /// The user an actor is bound to, if any.
    pub async fn owner(&self, pool: &Pool, actor: &ActorId) -> Result<Option<String>, sqlx::Error> {
        if let Some(user) = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(actor)
        {
            return Ok(Some(user.clone()));
        }
        let user = crate::documents::actor_owner(pool, &actor.to_hex_string()).await?;
        if let Some(user) = &user {
            self.remember(actor.clone(), user.clone());
        }
        Ok(user)
    }

    /// Called once a binding is committed.
    pub fn remember(&self, actor: ActorId, user_id: String) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(actor, user_id);
    }
}
