//! The OpenAPI 3.1 document of the collector's HTTP API (`collector/openapi.json`), served
//! unauthenticated at `GET /api/v1/openapi.json`.
//!
//! The document is written by hand and embedded at build time, so the binary always serves
//! the document of its own source. `collector/tests/openapi.rs` keeps it honest: every route
//! registered in `api.rs` and `api_eval.rs` must be documented (and nothing else), and real
//! responses of a running collector must validate against the documented schemas.

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi.json");

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    #[test]
    fn the_embedded_document_is_openapi_3_1_json() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert!(doc["paths"]["/api/v1/openapi.json"]["get"].is_object());
    }
}
