//! The API described as OpenAPI 3.1, from the handlers' annotations and the `zhiban-api`
//! types, served at `GET /api/openapi.json`. A test reads every route the server registers
//! and fails when one is missing here.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{accounts, alerts, auth, kpis, push, records, sync, units};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Zhiban",
        description = "The duty-office relay: records sync over /sync (automerge-repo); this is \
                       the HTTP API beside it. Times are milliseconds since the Unix epoch."
    ),
    paths(
        crate::healthz,
        serve,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        auth::list_devices,
        auth::revoke_device,
        auth::sync_ticket,
        units::visible,
        units::set_intervals,
        accounts::list,
        accounts::create,
        accounts::update,
        accounts::disable,
        accounts::enable,
        accounts::reset,
        accounts::save_unit_route,
        records::incident::list,
        records::incident::one,
        records::duty_log::list,
        records::handover::list,
        records::roster::oncall,
        records::search::search,
        records::status::list,
        records::status::one,
        kpis::kpis,
        push::api::vapid_public_key,
        push::api::subscribe,
        push::api::unsubscribe_by_endpoint,
        push::api::unsubscribe_by_id,
        alerts::api::list,
        alerts::api::one,
        alerts::api::acknowledge,
        alerts::api::take_over,
        alerts::api::receipt,
        alerts::api::push_acknowledge,
        alerts::api::push_receipt,
        alerts::api::call,
        alerts::api::rollcalls,
        alerts::api::answer,
        alerts::api::get_policy,
        alerts::api::put_policy,
        sync::upgrade,
        sync::stats,
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// The access token from `/api/auth/login`, as `Authorization: Bearer <token>`.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// This description, for clients and tools.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operators",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API")))]
pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
