//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.

use axum::response::IntoResponse;

pub fn document() -> serde_json::Value {
    serde_json::json!({ "openapi": "3.1.0", "info": { "title": "Expereon API", "version": "1" }, "paths": {} })
}

pub async fn serve() -> impl IntoResponse {
    axum::Json(document())
}
