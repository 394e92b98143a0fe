//! Which calls of an enrolled user go to their Stratos service and which to their PDS.

use stratos_domain::enrollment::normalize_endpoint;

/// Where a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The user's Stratos service.
    Stratos,
    /// The user's PDS (public records, profile, identity, the enrollment record itself).
    Pds,
}

/// Methods a Stratos service serves for an enrolled user's private records.
pub const STRATOS_METHODS: &[&str] = &[
    "com.atproto.repo.getRecord",
    "com.atproto.repo.listRecords",
    "com.atproto.repo.describeRepo",
    "com.atproto.repo.createRecord",
    "com.atproto.repo.putRecord",
    "com.atproto.repo.deleteRecord",
    "com.atproto.repo.applyWrites",
    "com.atproto.repo.uploadBlob",
    "com.atproto.sync.getRecord",
    "com.atproto.sync.listBlobs",
    "com.atproto.sync.getBlob",
    "zone.stratos.sync.getRepo",
    "zone.stratos.sync.subscribeRecords",
    "zone.stratos.repo.importRepo",
    "zone.stratos.repo.hydrateRecord",
    "zone.stratos.repo.hydrateRecords",
    "zone.stratos.enrollment.status",
    "zone.stratos.enrollment.unenroll",
];

/// The route of an XRPC method for a record of `collection` (when the call concerns one).
/// Repository calls go to Stratos for collections under `zone.stratos.` except the enrollment
/// record, which lives on the PDS; every other `zone.stratos.*` method goes to Stratos; the
/// rest to the PDS.
///
/// ```
/// use stratos_client::routing::{Route, route};
/// assert_eq!(route("com.atproto.repo.createRecord", Some("zone.stratos.feed.post")), Route::Stratos);
/// assert_eq!(route("com.atproto.repo.createRecord", Some("app.bsky.feed.post")), Route::Pds);
/// assert_eq!(route("com.atproto.repo.getRecord", Some("zone.stratos.actor.enrollment")), Route::Pds);
/// ```
pub fn route(method: &str, collection: Option<&str>) -> Route {
    if method.starts_with("zone.stratos.") {
        return Route::Stratos;
    }
    if !STRATOS_METHODS.contains(&method) {
        return Route::Pds;
    }
    match collection {
        Some(c) if c == crate::scopes::ENROLLMENT => Route::Pds,
        Some(c) if c.starts_with("zone.stratos.") => Route::Stratos,
        Some(_) => Route::Pds,
        // Calls about the repository as a whole (describeRepo, listBlobs, …) ask Stratos.
        None => Route::Stratos,
    }
}

/// The enrollment among `enrollments` whose service URL is `service` (compared without a
/// trailing `/`).
pub fn find_by_service<'a, T>(
    enrollments: &'a [T],
    service: &str,
    url_of: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    let wanted = normalize_endpoint(service);
    enrollments
        .iter()
        .find(|e| normalize_endpoint(url_of(e)) == wanted)
}

/// The absolute URL of an XRPC path (with its query) on the service at `service`, so that a
/// DPoP proof made for it names the Stratos origin.
pub fn service_url(service: &str, path_and_query: &str) -> String {
    format!(
        "{}/{}",
        service.trim_end_matches('/'),
        path_and_query.trim_start_matches('/')
    )
}
