//! The OpenAPI 3.1 document of the admin API, the public room list and the observability
//! endpoints, generated from the handlers' `#[utoipa::path]` annotations and served at
//! `GET /admin/openapi.json` (behind the admin token, like every admin route).
//!
//! A new endpoint is documented by annotating its handler and listing it in [`ApiDoc`]'s
//! `paths(...)` (and its body types in `components(schemas(...))` when utoipa cannot find
//! them by itself). `host/tests/openapi.rs` runs schemathesis against the served document:
//! every listed path must answer as documented, never with a 5xx.

use super::AdminState;
use super::{plugins, recordings, rooms, sessions, webhooks};
use axum::Json;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document. `ApiDoc::openapi()` builds it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard admin API",
        description = "Operator endpoints of a Switchboard server (bearer `admin.token`; 401 \
                       without it, 404 when no token is configured), its public room list \
                       and its health and metrics endpoints.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        rooms::list_rooms,
        rooms::get_room,
        rooms::close_room,
        sessions::get_session,
        sessions::kick,
        plugins::list_plugins,
        plugins::reload,
        plugins::reload_alias,
        webhooks::list_webhooks,
        webhooks::parked,
        webhooks::replay,
        recordings::list_recordings,
        openapi_json,
        rooms::public_rooms,
        crate::health::readyz,
    ),
    components(schemas(super::ErrorBody)),
    modifiers(&AdminToken),
    tags(
        (name = "rooms", description = "Rooms: list, inspect, close"),
        (name = "sessions", description = "One session: inspect, kick"),
        (name = "plugins", description = "Plugins: health, call statistics, reload"),
        (name = "webhooks", description = "Webhook endpoints: queue depth, last error, parked deliveries, replay"),
        (name = "recordings", description = "Recordings: in progress and recently finished"),
        (name = "meta", description = "This document"),
        (name = "public", description = "Read-only endpoints without a token"),
    )
)]
pub struct ApiDoc;

/// The `admin_token` security scheme: `Authorization: Bearer <admin.token>`.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`admin.token` from the server's configuration"))
                    .build(),
            ),
        );
    }
}

/// The document route (state applied by the admin router).
pub fn routes() -> axum::Router<AdminState> {
    axum::Router::new().route("/admin/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(
    get,
    path = "/admin/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
        (status = 401, description = "Missing or wrong admin token", body = super::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_admin_path() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/admin/rooms",
            "/admin/rooms/{room}",
            "/admin/rooms/{room}/sessions/{session}",
            "/admin/plugins",
            "/admin/plugins/reload",
            "/admin/reload",
            "/admin/webhooks",
            "/admin/webhooks/{name}/parked",
            "/admin/webhooks/{name}/replay",
            "/admin/openapi.json",
            "/api/rooms",
            "/readyz",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["admin_token"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["paths"]["/admin/reload"]["post"]["deprecated"], true);
    }
}
