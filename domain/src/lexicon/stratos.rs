//! The lexicon documents the service validates with, embedded from `lexicons/` at the workspace
//! root so the domain enforces exactly the schemas it publishes.

macro_rules! lexicons {
    ($(#[$doc:meta])* $name:ident { $($nsid:literal => $path:literal),* $(,)? }) => {
        $(#[$doc])*
        pub const $name: &[(&str, &str)] = &[
            $(($nsid, include_str!(concat!("../../../lexicons/", $path)))),*
        ];
    };
}

lexicons! {
    /// `(NSID, JSON text)` of every `zone.stratos.*` lexicon.
    STRATOS_LEXICONS {
        "zone.stratos.actor.enrollment" => "zone/stratos/actor/enrollment.json",
        "zone.stratos.boundary.defs" => "zone/stratos/boundary/defs.json",
        "zone.stratos.defs" => "zone/stratos/defs.json",
        "zone.stratos.feed.post" => "zone/stratos/feed/post.json",
        "zone.stratos.enrollment.status" => "zone/stratos/enrollment/status.json",
        "zone.stratos.enrollment.unenroll" => "zone/stratos/enrollment/unenroll.json",
        "zone.stratos.identity.resolveEnrollments" => "zone/stratos/identity/resolveEnrollments.json",
        "zone.stratos.repo.hydrateRecord" => "zone/stratos/repo/hydrateRecord.json",
        "zone.stratos.repo.hydrateRecords" => "zone/stratos/repo/hydrateRecords.json",
        "zone.stratos.repo.importRepo" => "zone/stratos/repo/importRepo.json",
        "zone.stratos.server.listDomains" => "zone/stratos/server/listDomains.json",
        "zone.stratos.sync.getRepo" => "zone/stratos/sync/getRepo.json",
        "zone.stratos.sync.subscribeRecords" => "zone/stratos/sync/subscribeRecords.json",
        "zone.stratos.admin.addBoundary" => "zone/stratos/admin/addBoundary.json",
        "zone.stratos.admin.removeBoundary" => "zone/stratos/admin/removeBoundary.json",
        "zone.stratos.admin.setBoundaries" => "zone/stratos/admin/setBoundaries.json",
        "zone.stratos.admin.listDeadLetters" => "zone/stratos/admin/listDeadLetters.json",
        "zone.stratos.admin.retryDeadLetter" => "zone/stratos/admin/retryDeadLetter.json",
    }
}

lexicons! {
    /// `(NSID, JSON text)` of the atproto lexicons bundled for what Stratos records embed: the
    /// record-data definitions of the `app.bsky.embed.*` members of `zone.stratos.feed.post`'s
    /// `embed` union (views left out), so their blob fields' `accept` and `maxSize` are enforced.
    ATPROTO_LEXICONS {
        "app.bsky.embed.defs" => "app/bsky/embed/defs.json",
        "app.bsky.embed.images" => "app/bsky/embed/images.json",
        "app.bsky.embed.external" => "app/bsky/embed/external.json",
        "app.bsky.embed.video" => "app/bsky/embed/video.json",
        "app.bsky.embed.record" => "app/bsky/embed/record.json",
        "app.bsky.embed.recordWithMedia" => "app/bsky/embed/recordWithMedia.json",
    }
}
