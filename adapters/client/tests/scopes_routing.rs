//! Scope strings exactly as the TypeScript client builds them (reference §2.6), and routing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use stratos_client::routing::{Route, find_by_service, route, service_url};
use stratos_client::scopes::{ENROLLMENT, POST, RepoAction, collection_scope, stratos_scopes};

#[test]
fn scope_strings() {
    use RepoAction::*;
    assert_eq!(
        collection_scope(POST, &[Create, Update, Delete]),
        "repo:zone.stratos.feed.post"
    );
    assert_eq!(
        collection_scope(POST, &[Delete, Create, Update]),
        "repo:zone.stratos.feed.post"
    );
    assert_eq!(
        collection_scope(POST, &[Create]),
        "repo:zone.stratos.feed.post?action=create"
    );
    assert_eq!(
        collection_scope(POST, &[Create, Update]),
        "repo:zone.stratos.feed.post?action=create&action=update"
    );
    assert_eq!(
        stratos_scopes(),
        [
            "atproto",
            "repo:zone.stratos.actor.enrollment",
            "repo:zone.stratos.feed.post?action=create&action=delete"
        ]
    );
    assert_eq!(ENROLLMENT, "zone.stratos.actor.enrollment");
}

#[test]
fn routes() {
    assert_eq!(
        route("com.atproto.repo.getRecord", Some(POST)),
        Route::Stratos
    );
    assert_eq!(
        route("com.atproto.repo.listRecords", Some(POST)),
        Route::Stratos
    );
    assert_eq!(
        route("com.atproto.repo.createRecord", Some("app.bsky.feed.post")),
        Route::Pds
    );
    assert_eq!(
        route("com.atproto.repo.putRecord", Some(ENROLLMENT)),
        Route::Pds
    );
    assert_eq!(
        route("com.atproto.sync.getRecord", Some(POST)),
        Route::Stratos
    );
    assert_eq!(
        route("zone.stratos.sync.subscribeRecords", None),
        Route::Stratos
    );
    assert_eq!(route("com.atproto.repo.describeRepo", None), Route::Stratos);
    assert_eq!(route("app.bsky.actor.getProfile", None), Route::Pds);
    assert_eq!(
        route("com.atproto.identity.resolveHandle", None),
        Route::Pds
    );
    assert_eq!(
        service_url(
            "https://stratos.example/",
            "/xrpc/com.atproto.repo.getRecord?repo=did:plc:a&rkey=x"
        ),
        "https://stratos.example/xrpc/com.atproto.repo.getRecord?repo=did:plc:a&rkey=x"
    );
    let list = ["https://a.example", "https://b.example/"];
    assert_eq!(
        find_by_service(&list, "https://b.example", |s| s),
        Some(&list[1])
    );
    assert_eq!(
        find_by_service(&list, "https://a.example/", |s| s),
        Some(&list[0])
    );
    assert_eq!(find_by_service(&list, "https://c.example", |s| s), None);
    assert_eq!(
        find_by_service::<&str>(&[], "https://a.example", |s| s),
        None
    );
}
